"""Synthetic COCO-format data: layout, determinism, self-consistency (pycocotools), left/right asymmetry."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO as CocoApi
from pycocotools.cocoeval import COCOeval

from rspose.data.specs import COCO
from rspose.data.synthetic import generate_synthetic_coco, main

W, H = 320, 256
TRAIN_JSON = "annotations/person_keypoints_train2017.json"
VAL_JSON = "annotations/person_keypoints_val2017.json"
DET_JSON = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _quiet_coco(path: Path) -> CocoApi:
    with contextlib.redirect_stdout(io.StringIO()):
        return CocoApi(str(path))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    summary = generate_synthetic_coco(out, num_train=60, num_val=20, seed=0)
    assert summary["images"] == 80 and summary["train"]["images"] == 60 and summary["val"]["images"] == 20
    return out


def _annotations(root: Path) -> list[tuple[str, dict, dict]]:
    """(split, annotation, image) for every annotation of both splits."""
    rows = []
    for split, rel in (("train", TRAIN_JSON), ("val", VAL_JSON)):
        d = json.loads((root / rel).read_text())
        images = {im["id"]: im for im in d["images"]}
        rows += [(split, a, images[a["image_id"]]) for a in d["annotations"]]
    return rows


def test_layout_and_summary(root: Path) -> None:
    for rel in (TRAIN_JSON, VAL_JSON, DET_JSON):
        assert (root / rel).is_file(), rel
    for split, n in (("train", 60), ("val", 20)):
        d = json.loads((root / f"annotations/person_keypoints_{split}2017.json").read_text())
        assert len(d["images"]) == n
        for im in d["images"]:
            img = cv2.imread(str(root / f"{split}2017" / im["file_name"]))
            assert img is not None and img.shape == (im["height"], im["width"], 3) == (H, W, 3)
        cat = d["categories"][0]
        assert cat["id"] == 1 and cat["keypoints"] == list(COCO.keypoint_names)
        assert [tuple(x - 1 for x in link) for link in cat["skeleton"]] == list(COCO.skeleton)


def test_same_seed_same_bytes_other_seed_differs(root: Path, tmp_path: Path) -> None:
    generate_synthetic_coco(tmp_path / "a", num_train=60, num_val=20, seed=0)
    generate_synthetic_coco(tmp_path / "b", num_train=5, num_val=3, seed=1)
    same, other = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert same == _hashes(root)
    shared_jpgs = [k for k in other if k.endswith(".jpg")]
    assert shared_jpgs and all(other[k] != same[k] for k in shared_jpgs)
    for rel in (TRAIN_JSON, VAL_JSON, DET_JSON):
        assert other[rel] != same[rel]


def test_annotations_are_consistent(root: Path) -> None:
    for rel in (TRAIN_JSON, VAL_JSON):
        api = _quiet_coco(root / rel)
        assert len(api.getAnnIds()) > 0
    ids = set()
    for _, a, im in _annotations(root):
        assert a["id"] not in ids
        ids.add(a["id"])
        assert a["category_id"] == 1 and a["iscrowd"] == 0
        kp = np.asarray(a["keypoints"], dtype=float)
        assert kp.shape == (17 * 3,)
        kp = kp.reshape(17, 3)
        v = kp[:, 2]
        assert set(np.unique(v)) <= {0, 1, 2}
        assert a["num_keypoints"] == int(np.count_nonzero(v > 0))
        assert np.all(kp[v == 0] == 0), "unlabelled keypoints must be [0, 0, 0]"
        x, y, bw, bh = a["bbox"]
        assert 0 <= x and 0 <= y and bw > 0 and bh > 0 and x + bw <= im["width"] and y + bh <= im["height"]
        assert a["area"] > 0
        assert a["area"] <= bw * bh + 1e-6, "area is a pixel count inside the box"
        lab = kp[v > 0]
        # labelled keypoints lie in the image and inside the (amodal) box, up to half a pixel
        assert np.all((lab[:, 0] >= 0) & (lab[:, 0] <= im["width"] - 1) & (lab[:, 1] >= 0) & (lab[:, 1] <= im["height"] - 1))
        assert np.all((lab[:, 0] >= x - 0.5) & (lab[:, 0] <= x + bw - 0.5) & (lab[:, 1] >= y - 0.5) & (lab[:, 1] <= y + bh - 0.5))


def test_detections(root: Path) -> None:
    val = json.loads((root / VAL_JSON).read_text())
    dets = json.loads((root / DET_JSON).read_text())
    val_ids = {im["id"] for im in val["images"]}
    assert dets and {d["image_id"] for d in dets} <= val_ids
    scores = np.array([d["score"] for d in dets])
    assert np.all((scores > 0) & (scores <= 1))
    for d in dets:
        x, y, bw, bh = d["bbox"]
        assert d["category_id"] == 1 and bw > 0 and bh > 0 and x >= 0 and y >= 0
        assert x + bw <= W + 0.01 and y + bh <= H + 0.01

    def iou(a: list[float], b: list[float]) -> float:
        ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)

    best = []
    for d in dets:
        gts = [a["bbox"] for a in val["annotations"] if a["image_id"] == d["image_id"]]
        best.append(max([iou(d["bbox"], g) for g in gts], default=0.0))
    best = np.array(best)
    assert np.mean(best < 0.3) > 0.05, "false positives expected"
    assert np.corrcoef(best, scores)[0, 1] > 0.5, "scores should grow with box quality"
    # every annotated person is found, and some more than once (duplicates for OKS-NMS)
    hits = [sum(iou(d["bbox"], a["bbox"]) > 0.5 for d in dets if d["image_id"] == a["image_id"])
            for a in val["annotations"] if a["num_keypoints"] > 0 and a["area"] > 500]
    assert min(hits) >= 1 and max(hits) >= 2


@pytest.mark.parametrize("rel", [TRAIN_JSON, VAL_JSON])
def test_ground_truth_as_predictions_gives_ap_one(root: Path, rel: str) -> None:
    gt = _quiet_coco(root / rel)
    results = [{"image_id": a["image_id"], "category_id": 1, "score": 1.0,
                "keypoints": [c if j % 3 < 2 else 1 for j, c in enumerate(a["keypoints"])]}
               for a in gt.loadAnns(gt.getAnnIds()) if a["num_keypoints"] > 0]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0) and ev.stats[5] == pytest.approx(1.0)
    # a prediction shifted by a few pixels must score lower (the check can fail)
    shifted = [dict(r, keypoints=[c + 6 if j % 3 < 2 else 1 for j, c in enumerate(r["keypoints"])]) for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(shifted), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] < 0.9


def _patch_means(root: Path, kid: int) -> np.ndarray:
    """(N, 3) mean BGR of the 3x3 patch at every visible keypoint ``kid`` (independent pixel loop)."""
    out = []
    for split, a, im in _annotations(root):
        x, y, v = a["keypoints"][3 * kid: 3 * kid + 3]
        if v != 2:
            continue
        img = cv2.imread(str(root / f"{split}2017" / im["file_name"])).astype(float)
        xi, yi = int(round(x)), int(round(y))
        patch = img[max(yi - 1, 0): yi + 2, max(xi - 1, 0): xi + 2].reshape(-1, 3)
        out.append(patch.mean(0))
    return np.array(out)


@pytest.mark.parametrize("left,right", [("left_wrist", "right_wrist"), ("left_knee", "right_knee")])
def test_left_and_right_look_different(root: Path, left: str, right: str) -> None:
    names = COCO.keypoint_names
    lm, rm = _patch_means(root, names.index(left)), _patch_means(root, names.index(right))
    assert len(lm) > 20 and len(rm) > 20
    # left limbs are warm (red > blue), right limbs cool (blue > red); BGR order
    warm_l, warm_r = lm[:, 2] - lm[:, 0], rm[:, 2] - rm[:, 0]
    assert warm_l.mean() > warm_r.mean() + 40
    assert np.mean(warm_l > 0) > 0.8 and np.mean(warm_r < 0) > 0.8


def test_occlusion_truncation_and_empty_instances(root: Path) -> None:
    rows = _annotations(root)
    v = np.array([np.asarray(a["keypoints"]).reshape(17, 3)[:, 2] for _, a, _ in rows])
    assert np.any(v == 1), "some keypoints must be occluded by a later figure"
    # truncation: instances whose box touches the border and that miss some keypoints
    truncated = [a for _, a, im in rows if 0 < a["num_keypoints"] < 17 and (
        a["bbox"][0] == 0 or a["bbox"][1] == 0 or a["bbox"][0] + a["bbox"][2] == im["width"]
        or a["bbox"][1] + a["bbox"][3] == im["height"])]
    assert truncated
    assert any(a["num_keypoints"] == 0 for _, a, _ in rows)
    assert np.mean(v == 2) > 0.6, "most keypoints stay visible"


def test_cli_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--images", "3", "--val-images", "2", "--seed", "5"]) == 0
    assert "3 train / 2 val images" in capsys.readouterr().out
    assert len(list((out / "train2017").glob("*.jpg"))) == 3 and len(list((out / "val2017").glob("*.jpg"))) == 2


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_people"):
        generate_synthetic_coco(tmp_path, num_train=1, num_val=1, max_people=0)
    with pytest.raises(ValueError, match="seed"):
        generate_synthetic_coco(tmp_path, num_train=1, num_val=1, seed=-1)


def test_existing_synthetic_data_is_reused_only_with_the_requested_parameters(tmp_path: Path) -> None:
    import json
    import warnings

    from rspose.data.synthetic import ensure_synthetic_coco

    root = tmp_path / "syn"
    assert ensure_synthetic_coco(root, num_train=3, num_val=2, seed=1) is True
    first = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    assert ensure_synthetic_coco(root, num_train=3, num_val=2, seed=1) is False  # same parameters: reused
    with pytest.warns(UserWarning, match="regenerating"):
        assert ensure_synthetic_coco(root, num_train=3, num_val=2, seed=2) is True  # another seed: regenerated
    second = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    assert first["annotations"] != second["annotations"]
    with pytest.warns(UserWarning, match="regenerating"):
        ensure_synthetic_coco(root, num_train=4, num_val=2, seed=2)  # another size
    assert len(list((root / "train2017").glob("*.jpg"))) == 4
    foreign = tmp_path / "coco"
    (foreign / "annotations").mkdir(parents=True)
    (foreign / "annotations" / "person_keypoints_train2017.json").write_text(
        json.dumps({"info": {"description": "COCO 2017"}, "images": [], "annotations": [], "categories": []}))
    with warnings.catch_warnings(), pytest.raises(ValueError, match="did not generate|not .*rspose"):
        ensure_synthetic_coco(foreign, num_train=3, num_val=2)
