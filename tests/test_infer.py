"""`rspose infer` and `rspose.Inferencer` on the real fixture images and on a video written here (the tiny
quickstart network with random weights, saved as a checkpoint by the test)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import DATA
from pycocotools.coco import COCO as COCOApi

from rspose import Inferencer
from rspose.data.dataset import TopDownDataset
from rspose.data.readers.detections import read_detections
from rspose.inferencer import build_module
from rspose.main import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = DATA / "coco"
CONFIG = str(ROOT / "configs" / "quickstart.yaml")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    module, _ = build_module(CONFIG)
    with torch.no_grad():  # non-trivial BN statistics so that eval-mode outputs vary across the image
        for m in module.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"state_dict": module.state_dict(), "epoch": 0}, path)
    return path


@pytest.fixture(scope="module")
def pose(ckpt) -> Inferencer:
    return Inferencer(CONFIG, ckpt)


def test_inferencer_equals_the_evaluation_path(pose: Inferencer) -> None:
    """Same crops and decoding as `rspose test` with detection boxes: TopDownDataset + decode_to_image."""
    codec = pose.codec
    instances = read_detections(FIXTURES / "test_coco_det_AP_H_56.json", FIXTURES / "test_coco.json", FIXTURES,
                                17, codec.input_size)
    dataset = TopDownDataset(instances, pose.spec, codec, train=False, malloc_tuning=False)
    ids = [i for i in range(len(dataset)) if instances[i].image_id == 785][:5]
    batch = torch.utils.data.default_collate([dataset[i] for i in ids])
    with torch.no_grad():
        ref_kpts, ref_scores = pose.module.decode_to_image(batch)
    boxes = np.array([[*instances[i].bbox, instances[i].bbox_score] for i in ids])
    image = cv2.imread(str(FIXTURES / "000000000785.jpg"))
    pred = pose.predict(image, boxes)
    np.testing.assert_allclose(pred.keypoints, ref_kpts.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(pred.keypoint_scores, ref_scores.numpy(), rtol=0, atol=1e-6)
    # instance score: box score x mean of the keypoint scores above keypoint_score_thr (a loop here)
    thr = pose.module.hparams.keypoint_score_thr
    for n in range(len(ids)):
        s = pred.keypoint_scores[n]
        expected = (s[s > thr].mean() if (s > thr).any() else 0.0) * boxes[n, 4]
        assert pred.instance_scores[n] == pytest.approx(expected, rel=1e-9)
    kpts, scores = pose(image[..., ::-1].copy(), boxes, color="rgb")  # RGB input gives the same result
    np.testing.assert_allclose(kpts, pred.keypoints, rtol=0, atol=1e-6)
    # no boxes: one box over the whole image
    whole = pose.predict(image)
    assert whole.boxes.tolist() == [[0.0, 0.0, 640.0, 425.0, 1.0]] and whole.keypoints.shape == (1, 17, 2)
    with pytest.raises(ValueError, match=r"\(N, 4\) or \(N, 5\)"):
        pose(image, [[1, 2, 3]])


def _run(args: list[str]) -> int:
    return main(["infer", "--config", CONFIG, *args])


def test_infer_folder_whole_image_and_a_corrupt_file(ckpt: Path, tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(FIXTURES.glob("*.jpg"))[:3]:
        shutil.copy(p, photos / p.name)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    code = _run(["--ckpt_path", str(ckpt), "--input", str(photos), "--out", str(out)])
    assert code == 1  # one input failed
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "boxes: whole image" in err
    res = json.loads((out / "results.json").read_text())
    assert res["box_source"] == "whole image"
    assert [e["file_name"] for e in res["errors"]] == ["broken.jpg"]
    names = sorted(p.name for p in photos.glob("0*.jpg"))
    assert [p["file_name"] for p in res["predictions"]] == names  # one pose per photo, in name order
    for p in res["predictions"]:
        h, w = cv2.imread(str(photos / p["file_name"])).shape[:2]
        assert p["bbox"] == [0.0, 0.0, float(w), float(h)] and p["frame"] is None and len(p["keypoints"]) == 51
        assert p["box_source"] == "whole image"
    for name in names:
        overlay = cv2.imread(str(out / "overlays" / name.replace(".jpg", "_pose.jpg")))
        assert overlay is not None and overlay.shape == cv2.imread(str(photos / name)).shape


def test_infer_coco_detections_and_simple_boxes_file(ckpt: Path, pose: Inferencer, tmp_path: Path, capsys) -> None:
    out = tmp_path / "det"
    code = _run(["--ckpt_path", str(ckpt), "--input", str(FIXTURES), "--out", str(out), "--no_overlays",
                 "--boxes", str(FIXTURES / "test_coco_det_AP_H_56.json"), "--images", str(FIXTURES / "test_coco.json"),
                 "--bbox_thr", "0.3"])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["box_source"] == "COCO detections" and not res["errors"]
    dets = [d for d in json.loads((FIXTURES / "test_coco_det_AP_H_56.json").read_text()) if d["score"] >= 0.3]
    assert 0 < len(res["predictions"]) <= len(dets)
    gt = COCOApi(str(FIXTURES / "test_coco.json"))
    assert len(gt.loadRes(res["predictions"]).getAnnIds()) == len(res["predictions"])  # COCO ids, COCO layout
    for p in res["predictions"]:
        assert gt.imgs[p["image_id"]]["file_name"] == p["file_name"]

    # {file name: [[x, y, w, h, score]]}: the boxes used are the given ones, an unlisted image gets none
    boxes = {"000000000785.jpg": [[277.1, 45.7, 225.1, 333.6, 0.9], [10.0, 20.0, 60.0, 120.0, 0.8]]}
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps(boxes))
    out = tmp_path / "simple"
    assert _run(["--ckpt_path", str(ckpt), "--input", str(FIXTURES), "--out", str(out), "--no_overlays",
                 "--boxes", str(boxes_file), "--nms", "none"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["box_source"] == "boxes file"
    assert {p["file_name"] for p in res["predictions"]} == {"000000000785.jpg"}
    got = sorted((p["bbox"] + [p["bbox_score"]] for p in res["predictions"]), key=lambda b: b[0])
    np.testing.assert_allclose(got, sorted(boxes["000000000785.jpg"], key=lambda b: b[0]))
    ref = pose.predict(cv2.imread(str(FIXTURES / "000000000785.jpg")), boxes["000000000785.jpg"])
    first = next(p for p in res["predictions"] if p["bbox"][0] == 10.0)
    np.testing.assert_allclose(np.reshape(first["keypoints"], (17, 3))[:, :2], ref.keypoints[1], atol=1e-4)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 785, "bbox": [0, 0, 5, 5], "score": 1.0}]))
    capsys.readouterr()
    # a COCO detection list needs --images: one `rspose: error:` line naming the file, exit code 2
    assert _run(["--ckpt_path", str(ckpt), "--input", str(FIXTURES), "--out", str(out), "--boxes", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rspose: error: --boxes ") and "bad.json" in err[0], err


@pytest.mark.parametrize(("box", "message"), [
    ([float("nan"), 10, 50, 80, 0.9], r"box 0 \[nan, 10.0, 50.0, 80.0, 0.9\] has a NaN or infinite value"),
    ([10, 10, -5, 80, 0.9], r"box 0 \[10.0, 10.0, -5.0, 80.0, 0.9\] has a NaN or infinite value or a negative size"),
])
def test_infer_bad_boxes_are_one_message(ckpt: Path, tmp_path: Path, capsys, box, message) -> None:
    """Boxes are checked like detection files: a NaN or a negative size is an error naming the file and entry,
    before any inference (no NaN keypoints written)."""
    import re

    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"000000000785.jpg": [box]}))
    out = tmp_path / "out"
    assert _run(["--ckpt_path", str(ckpt), "--input", str(FIXTURES), "--out", str(out), "--boxes", str(boxes)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(rf"rspose: error: --boxes .*boxes\.json, entry '000000000785\.jpg': {message}",
                                       err[0]), err
    assert not out.exists()


def test_infer_box_far_larger_than_the_image_is_a_named_input_error(ckpt: Path, tmp_path: Path) -> None:
    """A box 1e9 px wide would squeeze the whole image into a few crop pixels (keypoints at 7e8 px): refused for
    that input, named in results.json's errors, no prediction written for it."""
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"000000000785.jpg": [[10, 10, 1e9, 100, 0.9]]}))
    out = tmp_path / "out"
    code = _run(["--ckpt_path", str(ckpt), "--input", str(FIXTURES / "000000000785.jpg"), "--out", str(out),
                 "--boxes", str(boxes)])
    res = json.loads((out / "results.json").read_text())
    assert code == 1 and res["predictions"] == []
    assert res["errors"] == [{"file_name": "000000000785.jpg", "error": "box [10.0, 10.0, 1000000000.0, 100.0, 0.9] "
                              "(x, y, w, h, score) is more than 10 times the size of the 640x425 image"}]


def test_infer_truncated_images_file_names_it(ckpt: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "images.json"
    images.write_text((FIXTURES / "test_coco.json").read_text()[:300])
    code = _run(["--ckpt_path", str(ckpt), "--input", str(FIXTURES), "--out", str(tmp_path / "o"),
                 "--boxes", str(FIXTURES / "test_coco_det_AP_H_56.json"), "--images", str(images)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"--images {images} is not valid JSON" in err[0], err


def test_infer_video_frame_by_frame(ckpt: Path, tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 96))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(3):
        writer.write(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    writer.release()
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"clip.mp4:1": [[10, 10, 40, 60, 0.7]], "clip.mp4": [[0, 0, 128, 96]]}))
    out = tmp_path / "out"
    assert _run(["--ckpt_path", str(ckpt), "--input", str(video), "--out", str(out), "--boxes", str(boxes)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [p["frame"] for p in res["predictions"]] == [0, 1, 2]
    assert [p["bbox"] for p in res["predictions"]] == [[0, 0, 128, 96], [10, 10, 40, 60], [0, 0, 128, 96]]
    assert res["inputs"][0]["frames"] == 3
    overlay = Path(res["inputs"][0]["overlay"])
    assert overlay.parent == out / "overlays" and overlay.stem == "clip_pose"
    cap = cv2.VideoCapture(str(overlay))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 3
