"""rspose.metrics.instances: round trip, and rspose.viz reads what OKSMeanAP wrote."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_metrics_coco_ap import COCO_DET, COCO_GT, _load, _perturbed_predictions

from rspose.data.specs import COCO
from rspose.metrics import OKSMeanAP
from rspose.metrics.instances import INSTANCE_KEYS, instance_rows, read_instances, write_instances
from rspose.viz import correlation_summary, load_instances


def test_round_trip_and_nan_as_null(tmp_path):
    table = {"instance_ids": np.array([3, 4]), "image_ids": np.array([1, 1]), "scores": np.array([0.5, 0.25]),
             "bbox_scores": np.array([1.0, 0.5]), "oks": np.array([0.9, 0.0]), "kept": np.array([True, False]),
             "keypoint_scores": np.array([[0.5, 0.5], [0.25, 0.25]]),
             "keypoint_oks": np.array([[0.8, math.nan], [math.nan, math.nan]])}
    rows = instance_rows(table)
    assert rows[0] == {"instance_id": 3, "image_id": 1, "score": 0.5, "bbox_score": 1.0, "oks": 0.9, "kept": True,
                       "keypoint_scores": [0.5, 0.5], "keypoint_oks": [0.8, None]}
    path = write_instances(tmp_path / "a.instances.json", rows, [0.1, 0.2], ["l", "r"], {"AP": 0.5, "x": math.nan})
    back = read_instances(path)
    assert back["instances"] == rows and set(back["instances"][1]) == set(INSTANCE_KEYS)
    assert back["meta"] == {"keypoint_names": ["l", "r"], "sigmas": [0.1, 0.2], "metrics": {"AP": 0.5, "x": None}}


def test_writer_refuses_a_malformed_row(tmp_path):
    with pytest.raises(ValueError, match="keypoint_scores has 1 entries"):
        write_instances(tmp_path / "b.instances.json", [{"instance_id": 1, "image_id": 1, "score": 0.1,
                        "bbox_score": 1.0, "oks": 0.0, "kept": True, "keypoint_scores": [0.1],
                        "keypoint_oks": None}], [0.1, 0.2])


def test_viz_reads_what_the_metric_wrote(tmp_path):
    gt = _load(COCO_GT)
    p = _perturbed_predictions(gt, _load(COCO_DET), seed=1)
    m = OKSMeanAP(gt, spec=COCO, outfile_prefix=str(tmp_path / "run"))
    m.update(**p)
    out = m.compute()
    m.write_outputs()
    table = load_instances(tmp_path / "run.instances.json")
    row = correlation_summary({"run": table})[0]
    assert row["spearman"] == pytest.approx(out["spearman"], abs=1e-9)
    assert row["n"] == sum(r["kept"] for r in table["instances"])
