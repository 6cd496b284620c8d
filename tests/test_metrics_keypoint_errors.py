"""Error quantiles of kept true detections (d / sqrt(area), per keypoint group and visibility) on a hand-built case."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rspose.data.specs import COCO
from rspose.metrics.coco_eval import load_ground_truth
from rspose.metrics.keypoint_errors import error_quantile_rows, error_quantiles_of_run, keypoint_errors


def _gt(keypoints: list[list[float]], area: float) -> dict:
    return {
        "images": [{"id": 1, "width": 400, "height": 400, "file_name": "1.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": area,
                         "bbox": [0, 0, 200, 200], "keypoints": [v for kp in keypoints for v in kp],
                         "num_keypoints": sum(kp[2] > 0 for kp in keypoints)}],
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO.keypoint_names)}],
    }


def test_error_quantiles_on_a_hand_built_case(tmp_path):
    # one GT of area 10000 (sqrt 100): keypoint k at (100, 100 + 10 k); face visible, arms occluded (v=1),
    # legs visible except the last, unlabelled
    flags = [2] * 5 + [1] * 6 + [2] * 5 + [0]
    gt_kps = [[100.0, 100.0 + 10 * k, float(f)] for k, f in enumerate(flags)]
    # prediction: keypoint k moved right by k px -> error k / 100; a second prediction far away is a false detection
    pred = [[100.0 + k, 100.0 + 10 * k, 1.0] for k in range(17)]
    far = [[390.0, 5.0 + k, 1.0] for k in range(17)]
    results = [{"image_id": 1, "category_id": 1, "keypoints": sum(pred, []), "score": 0.9},
               {"image_id": 1, "category_id": 1, "keypoints": sum(far, []), "score": 0.8}]
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(_gt(gt_kps, 10000.0)))
    res_file = tmp_path / "res.keypoints.json"
    res_file.write_text(json.dumps(results))
    errors, vis = keypoint_errors(results, load_ground_truth(gt_file), COCO.sigmas)
    assert errors.shape == (1, 17)  # the far prediction (OKS < 0.05) is not a true detection
    np.testing.assert_allclose(errors[0, :16], np.arange(16) / 100.0, atol=1e-12)
    assert math.isnan(errors[0, 16]) and vis[0].tolist() == flags
    rows = {(r["group"], r["visibility"]): r for r in error_quantiles_of_run(res_file, gt_file, COCO.sigmas)}
    # face visible: errors 0, .01, .02, .03, .04 -> quantiles at 10/25/50/75/90% (linear): .004 .01 .02 .03 .036
    assert rows[("face", "visible")]["n"] == 5
    assert rows[("face", "visible")]["q"] == pytest.approx([0.004, 0.01, 0.02, 0.03, 0.036])
    # arms are all occluded: .05 .. .10
    assert rows[("arms", "occluded")]["n"] == 6 and rows[("arms", "visible")]["n"] == 0
    assert rows[("arms", "occluded")]["q"][2] == pytest.approx(0.075)
    assert all(math.isnan(q) for q in rows[("arms", "visible")]["q"])
    # legs: 5 labelled (.11 .. .15), the unlabelled ankle left out
    assert rows[("legs", "all")]["n"] == 5 and rows[("legs", "all")]["q"][2] == pytest.approx(0.13)
    assert rows[("all", "all")]["n"] == 16 and rows[("all", "occluded")]["n"] == 6


def test_error_quantile_rows_groups_and_no_detection():
    rows = error_quantile_rows(np.zeros((0, 17)), np.zeros((0, 17)))
    assert len(rows) == 4 * 3 and all(r["n"] == 0 for r in rows)
    with pytest.raises(ValueError, match="2 sigmas for a ground truth of 17 keypoints"):
        keypoint_errors([{"image_id": 1, "keypoints": [0.0] * 51}], load_ground_truth(_gt([[1, 1, 2]] * 17, 1.0)),
                        [0.1, 0.1])
