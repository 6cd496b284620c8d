"""Readers: counts and values on the real fixtures (COCO, CrowdPose, detections, MPII) and every bad-input path.

Expected values are recomputed here from the raw JSON with the mmpose 1.x rules written out by hand
(clip to [0, size - 1], centre = box centre, scale = size x 1.25 grown to W / H = 0.75, v >= 1 visible).
Tests that corrupt a fixture copy it to tmp_path first.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA
from scipy.io import savemat

from rspose.data.readers import read_coco, read_detections, read_image, read_mpii, verify_images

FIXTURES = DATA
COCO_DIR, CROWD_DIR, MPII_DIR = FIXTURES / "coco", FIXTURES / "crowdpose", FIXTURES / "mpii"
COCO_JSON, COCO_DET = COCO_DIR / "test_coco.json", COCO_DIR / "test_coco_det_AP_H_56.json"
CROWD_JSON, CROWD_DET = CROWD_DIR / "test_crowdpose.json", CROWD_DIR / "test_crowdpose_det_AP_40.json"
MPII_JSON = MPII_DIR / "test_mpii.json"
SIZE = (192, 256)


def load(path: Path):
    with path.open() as f:
        return json.load(f)


def expected_center_scale(x1, y1, x2, y2, padding=1.25, aspect=0.75):
    w, h = (x2 - x1) * padding, (y2 - y1) * padding
    if w > h * aspect:
        h = w / aspect
    else:
        w = h * aspect
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2]), np.array([w, h])


def copy_fixture(src_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src_dir.name
    shutil.copytree(src_dir, dst)
    return dst


# ------------------------------------------------------------------------------------------------ COCO
def test_coco_counts_ids_and_values():
    raw = load(COCO_JSON)
    images = {im["id"]: im for im in raw["images"]}
    train = read_coco(COCO_JSON, COCO_DIR, 17, SIZE, mode="train")
    evals = read_coco(COCO_JSON, COCO_DIR, 17, SIZE, mode="eval")
    assert len(raw["annotations"]) == 14
    assert len(evals) == 14 and len(train) == 12
    assert train.skipped["no labelled keypoints"] == 2
    no_kp = {a["id"] for a in raw["annotations"] if a["num_keypoints"] == 0}
    assert {i.instance_id for i in train} == {a["id"] for a in raw["annotations"]} - no_kp
    by_id = {i.instance_id: i for i in evals}
    for ann in raw["annotations"]:
        inst = by_id[ann["id"]]
        im = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        x1, y1 = min(max(x, 0), im["width"] - 1), min(max(y, 0), im["height"] - 1)
        x2, y2 = min(max(x + w, 0), im["width"] - 1), min(max(y + h, 0), im["height"] - 1)
        c, s = expected_center_scale(x1, y1, x2, y2)
        np.testing.assert_allclose(inst.center, c, rtol=1e-5)
        np.testing.assert_allclose(inst.scale, s, rtol=1e-5)
        np.testing.assert_allclose(inst.bbox, [x1, y1, x2 - x1, y2 - y1], rtol=1e-5)
        kp = np.array(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        np.testing.assert_array_equal(inst.keypoints, kp[:, :2])
        np.testing.assert_array_equal(inst.keypoints_visible, (kp[:, 2] >= 1).astype(np.float32))
        assert inst.image_id == ann["image_id"] and inst.area == pytest.approx(ann["area"])
        assert inst.image_file == str(COCO_DIR / im["file_name"])
        assert inst.num_keypoints == ann["num_keypoints"] and inst.bbox_score == 1.0 and inst.crowd_index is None
    # 531914 runs to x = 640.0 on a 640-wide image: clipped to 639
    assert by_id[531914].bbox[0] + by_id[531914].bbox[2] == pytest.approx(639.0)


def test_crowdpose_counts_crowd_index_and_area():
    raw = load(CROWD_JSON)
    train = read_coco(CROWD_JSON, CROWD_DIR, 14, SIZE, mode="train")
    evals = read_coco(CROWD_JSON, CROWD_DIR, 14, SIZE, mode="eval")
    assert len(raw["annotations"]) == 5 and len(evals) == 5 and len(train) == 4
    crowd = {im["id"]: im["crowdIndex"] for im in raw["images"]}
    for inst, ann in zip(evals, raw["annotations"]):
        assert inst.instance_id == ann["id"]
        assert inst.crowd_index == pytest.approx(crowd[ann["image_id"]])
        assert inst.area == pytest.approx(ann["bbox"][2] * ann["bbox"][3] * 0.53, rel=1e-5)


def test_detections_coco_and_crowdpose():
    raw = load(COCO_DET)
    dets = read_detections(COCO_DET, COCO_JSON, COCO_DIR, 17, SIZE)
    assert len(dets) == len(raw) == 118
    assert [d.instance_id for d in dets] == list(range(118))
    for inst, det in zip(dets, raw):
        x, y, w, h = det["bbox"]
        c, s = expected_center_scale(x, y, x + w, y + h)
        np.testing.assert_allclose(inst.center, c, rtol=1e-5)
        np.testing.assert_allclose(inst.scale, s, rtol=1e-5)
        assert inst.bbox_score == pytest.approx(det["score"]) and inst.image_id == det["image_id"]
        assert not inst.keypoints.any() and not inst.keypoints_visible.any()
    high = read_detections(COCO_DET, COCO_JSON, COCO_DIR, 17, SIZE, score_thr=0.5)
    assert len(high) == sum(d["score"] >= 0.5 for d in raw) == 18
    assert [d.instance_id for d in high] == [i for i, d in enumerate(raw) if d["score"] >= 0.5]
    crowd = read_detections(CROWD_DET, CROWD_JSON, CROWD_DIR, 14, SIZE)
    assert len(crowd) == len(load(CROWD_DET)) and {d.crowd_index for d in crowd} <= {0.33, 0.39}


def test_mpii_counts_centre_scale_keypoints_and_head_boxes(tmp_path):
    raw = load(MPII_JSON)
    insts = read_mpii(MPII_JSON, MPII_DIR, (256, 256), mode="eval")
    assert len(insts) == 5
    for row, (inst, ann) in enumerate(zip(insts, raw)):
        assert inst.instance_id == row
        assert inst.image_id == int(ann["image"].split(".")[0])
        s = ann["scale"]
        np.testing.assert_allclose(inst.center, [ann["center"][0] - 1, ann["center"][1] + 15 * s - 1], rtol=1e-5)
        np.testing.assert_allclose(inst.scale, [200 * s * 1.25] * 2, rtol=1e-5)
        np.testing.assert_allclose(inst.keypoints, np.array(ann["joints"]) - 1, rtol=1e-6)
        np.testing.assert_array_equal(inst.keypoints_visible, np.array(ann["joints_vis"]) > 0)
        assert inst.head_box is None
    # a 192x256 input keeps the height and widens nothing (the square box is wider than 0.75: grow the height)
    wide = read_mpii(MPII_JSON, MPII_DIR, (192, 256))
    np.testing.assert_allclose(wide[0].scale, [200 * raw[0]["scale"] * 1.25, 200 * raw[0]["scale"] * 1.25 / 0.75])
    # head boxes: (2, 2, N) as in mpii_gt_val.mat
    boxes = np.arange(5 * 4, dtype=np.float64).reshape(5, 2, 2)
    mat = tmp_path / "mpii_gt_val.mat"
    savemat(mat, {"headboxes_src": boxes.transpose(1, 2, 0)})
    with_heads = read_mpii(MPII_JSON, MPII_DIR, (256, 256), mode="eval", headbox_file=mat)
    for row, inst in enumerate(with_heads):
        np.testing.assert_array_equal(inst.head_box, boxes[row])
    savemat(mat, {"headboxes_src": boxes[:3].transpose(1, 2, 0)})
    with pytest.raises(ValueError, match=r"3 boxes, expected one per annotation \(5\)"):
        read_mpii(MPII_JSON, MPII_DIR, (256, 256), headbox_file=mat)


# ------------------------------------------------------------------------------------------------ bad input
def test_missing_and_corrupt_images(tmp_path):
    root = copy_fixture(COCO_DIR, tmp_path)
    (root / "000000000785.jpg").unlink()
    (root / "000000040083.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    insts = read_coco(root / "test_coco.json", root, 17, SIZE)  # lazy: reading annotations does not touch images
    problems = verify_images(insts)
    assert problems == [
        f"{root / '000000000785.jpg'}: does not exist",
        f"{root / '000000040083.jpg'}: could not be decoded",
    ]
    with pytest.raises(FileNotFoundError, match="000000000785.jpg.*instance 442619.*does not exist"):
        read_image(str(root / "000000000785.jpg"), 442619)
    with pytest.raises(ValueError, match="000000040083.jpg.*could not be decoded"):
        read_image(str(root / "000000040083.jpg"))
    assert verify_images([i for i in insts if i.image_id == 196141]) == []


def _write_coco(tmp_path: Path, edit) -> Path:
    data = load(COCO_JSON)
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


def test_annotation_without_keypoints_is_an_error(tmp_path):
    path = _write_coco(tmp_path, lambda d: d["annotations"][1].pop("keypoints"))
    with pytest.raises(ValueError, match=r"edited\.json: annotation id 198196 has no 'keypoints'"):
        read_coco(path, COCO_DIR, 17, SIZE)


def test_keypoint_count_mismatch_is_an_error(tmp_path):
    path = _write_coco(tmp_path, lambda d: d["annotations"][2].update(keypoints=d["annotations"][2]["keypoints"][:-3]))
    with pytest.raises(ValueError, match=r"edited\.json: annotation id 230195 has 16 keypoints.*expected 17"):
        read_coco(path, COCO_DIR, 17, SIZE)
    with pytest.raises(ValueError, match=r"test_coco\.json: annotation id 442619 has 17 keypoints.*expected 14"):
        read_coco(COCO_JSON, COCO_DIR, 14, SIZE)


def test_zero_or_negative_box_is_skipped_with_one_warning(tmp_path):
    def edit(d):
        d["annotations"][0]["bbox"] = [10, 10, 0, 50]
        d["annotations"][1]["bbox"] = [10, 10, 40, -5]

    path = _write_coco(tmp_path, edit)
    with pytest.warns(
        UserWarning, match=r"skipped 4 of 14 entries \(2 no labelled keypoints, 2 zero-area box\)"
    ) as rec:
        insts = read_coco(path, COCO_DIR, 17, SIZE)
    assert len(rec) == 1 and len(insts) == 10 and insts.skipped["zero-area box"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the untouched file: expected skips only, no warning
        read_coco(COCO_JSON, COCO_DIR, 17, SIZE)


def test_no_visible_keypoints_dropped_for_training(tmp_path):
    def edit(d):
        kp = np.array(d["annotations"][0]["keypoints"]).reshape(17, 3)
        kp[:, 2] = 0
        d["annotations"][0]["keypoints"] = kp.reshape(-1).tolist()  # num_keypoints still says 17

    path = _write_coco(tmp_path, edit)
    train = read_coco(path, COCO_DIR, 17, SIZE, mode="train")
    assert len(train) == 11 and train.skipped["no labelled keypoints"] == 3
    assert 442619 not in {i.instance_id for i in train}
    assert len(read_coco(path, COCO_DIR, 17, SIZE, mode="eval")) == 14


def test_crowd_annotations_dropped(tmp_path):
    path = _write_coco(tmp_path, lambda d: d["annotations"][0].update(iscrowd=1))
    assert len(read_coco(path, COCO_DIR, 17, SIZE, mode="train")) == 11
    assert len(read_coco(path, COCO_DIR, 17, SIZE, mode="eval")) == 13


def test_missing_files_and_unknown_image_ids(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        read_coco(tmp_path / "nope.json", COCO_DIR, 17, SIZE)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_coco(bad, COCO_DIR, 17, SIZE)
    dets = load(COCO_DET)
    dets[5]["image_id"] = 123456789
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    with pytest.raises(ValueError, match=r"dets\.json: detection #5 is for image_id 123456789.*test_coco\.json"):
        read_detections(det_file, COCO_JSON, COCO_DIR, 17, SIZE)


def test_detection_boxes_zero_negative_and_other_categories(tmp_path):
    dets = load(COCO_DET)
    dets[0]["bbox"][2] = 0.0
    dets[1]["category_id"] = 2
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    with pytest.warns(UserWarning, match="1 zero-area box"):
        insts = read_detections(det_file, COCO_JSON, COCO_DIR, 17, SIZE)
    assert len(insts) == 116 and insts[0].instance_id == 2
    dets[3]["bbox"][3] = -4.0
    det_file.write_text(json.dumps(dets))
    with pytest.raises(ValueError, match=r"detection #3 \(image_id 785\) has an invalid bbox"):
        read_detections(det_file, COCO_JSON, COCO_DIR, 17, SIZE)


def test_mpii_bad_rows(tmp_path):
    rows = load(MPII_JSON)
    rows[2].pop("joints_vis")
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"mpii\.json: row 2 \(.*\.jpg\) has no 'joints_vis'"):
        read_mpii(path, MPII_DIR, (256, 256))
    rows = load(MPII_JSON)
    rows[1]["joints"] = rows[1]["joints"][:15]
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="row 1 .* has 15 joints and 16 joints_vis, expected 16"):
        read_mpii(path, MPII_DIR, (256, 256))
    rows = load(MPII_JSON)
    rows[0]["joints_vis"] = [0] * 16
    path.write_text(json.dumps(rows))
    train = read_mpii(path, MPII_DIR, (256, 256), mode="train")
    assert len(train) == 4 and train.skipped["no labelled keypoints"] == 1 and train[0].instance_id == 1
