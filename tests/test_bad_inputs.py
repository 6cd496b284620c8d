"""Bad data, as a new user brings it: one table of broken copies of the real fixtures, each made here in tmp_path.

Every row is a clear error that names the file and the key or value, or a counted skip; for a skip, the AP of
the ground truth fed back as predictions on what remains equals a plain pycocotools COCOeval of the same
predictions against the ground truth of the images that remain (1.0 when every remaining instance is predicted).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import json
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA
from pycocotools.coco import COCO as PyCOCO
from pycocotools.cocoeval import COCOeval

from rspose.codecs import MSRAHeatmap
from rspose.data.datamodule import PoseDataModule
from rspose.data.readers import image_check
from rspose.data.readers.coco import read_coco
from rspose.data.readers.image_check import check_images
from rspose.data.specs import COCO, CROWDPOSE
from rspose.data.transforms import TopDownAugment
from rspose.datasets import MPII, COCOFormat
from rspose.metrics import OKSMeanAP
from rspose.metrics.coco_ap import KeypointPredictions, deduplicate

FIXTURES = DATA
ANN, DET = "test_coco.json", "test_coco_det_AP_H_56.json"


# ------------------------------------------------------------------------------------------------ corruptions
def edit_json(path: Path, fn: Callable) -> None:
    data = json.loads(path.read_text())
    data = fn(data) or data
    path.write_text(json.dumps(data))  # allow_nan: NaN is written as the bare token NaN, which json reads back


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def set_ann(index: int, **values):
    def fn(d):
        d["annotations"][index].update(values)
    return fn


def nan_keypoint(d):
    d["annotations"][0]["keypoints"][3] = float("nan")


def dup_id(d):
    d["annotations"][3]["id"] = d["annotations"][1]["id"]


def no_num_keypoints(d):
    for a in d["annotations"]:
        del a["num_keypoints"]


def all_crowd(d):
    for a in d["annotations"]:
        a["iscrowd"] = 1


def wider_image(d):
    d["images"][1]["width"] += 1  # 000000040083.jpg is 500 x 333


def det_category_2(d):
    for det in d:
        det["category_id"] = 2


def same_id_two_files(d):
    d["images"].append(dict(d["images"][0], file_name="000000040083.jpg", width=500, height=333))


def det_set(index: int, **values):
    def fn(d):
        d[index].update(values)
    return fn


def corrupt_jpeg_middle(path: Path) -> None:
    """1 KB of random bytes in the middle of the entropy-coded data; header and end marker intact."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 1024] = np.random.default_rng(0).integers(0, 256, 1024, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def first_ann(root: Path) -> dict:
    return json.loads((root / ANN).read_text())["annotations"][0]


# name -> (corrupt(root), datamodule kwargs, stage, expected): expected is (exception, regex) for an error or
# ("skip", regex of the one warning, image files skipped) for a counted skip.
CASES: dict[str, tuple] = {
    "missing image": (
        lambda r: (r / "000000040083.jpg").unlink(), {}, "validate",
        ("skip", r"data\.val: .*test_coco\.json: 1 of 4 images skipped: 1 does not exist \(000000040083\.jpg\)",
         {"000000040083.jpg"}),
    ),
    "truncated jpeg": (
        lambda r: truncate(r / "000000196141.jpg"), {}, "validate",
        ("skip", r"1 of 4 images skipped: 1 truncated \(000000196141\.jpg\)", {"000000196141.jpg"}),
    ),
    "not an image": (
        lambda r: (r / "000000000785.jpg").write_bytes(b"<html>not found</html>"), {}, "fit",
        ("skip", r"data\.train: .*1 of 4 images skipped: 1 not a readable image \(000000000785\.jpg\)",
         {"000000000785.jpg"}),
    ),
    "missing image, strict": (
        lambda r: (r / "000000040083.jpg").unlink(), {"strict": True}, "validate",
        (ValueError, r"test_coco\.json: 1 of 4 images skipped: 1 does not exist \(000000040083\.jpg\) "
                     r"\(data\.strict is set"),
    ),
    "wrong image size": (
        lambda r: edit_json(r / ANN, wider_image), {}, "validate",
        (ValueError, r"test_coco\.json: 1 images differ in size .*000000040083\.jpg: annotated 501x333 "
                     r"\(width x height\), real 500x333"),
    ),
    "duplicate annotation id": (
        lambda r: edit_json(r / ANN, dup_id), {}, "validate",
        (ValueError, r"test_coco\.json: annotation id \d+ appears more than once"),
    ),
    "NaN keypoint": (
        lambda r: edit_json(r / ANN, nan_keypoint), {}, "validate",
        (ValueError, r"test_coco\.json: annotation id \d+ has a NaN or infinite value in 'keypoints' \(keypoint 1"),
    ),
    "NaN box": (
        lambda r: edit_json(r / ANN, set_ann(0, bbox=[float("nan"), 1.0, 2.0, 3.0])), {}, "validate",
        (ValueError, r"test_coco\.json: annotation id \d+ has a NaN or infinite 'bbox'"),
    ),
    "image id not in images": (
        lambda r: edit_json(r / ANN, set_ann(0, image_id=5)), {}, "validate",
        (ValueError, r"test_coco\.json: annotation id \d+ refers to image_id 5, not in 'images'"),
    ),
    "empty training split": (
        lambda r: edit_json(r / ANN, all_crowd), {}, "fit",
        (ValueError, r"data\.train: .*test_coco\.json gives no instance to train on \(every annotation was "
                     r"filtered out: 14 crowd\)"),
    ),
    "no annotations at all": (
        lambda r: edit_json(r / ANN, lambda d: d.update(annotations=[])), {}, "fit",
        (ValueError, r"data\.train: .*test_coco\.json gives no instance to train on \(it has no annotation\)"),
    ),
    "detections of another category": (
        lambda r: edit_json(r / DET, det_category_2), {}, "test",
        (ValueError, r"test_coco_det_AP_H_56\.json: no usable detection among its \d+ entries \(\d+ other category\)"),
    ),
    "empty detection file": (
        lambda r: (r / DET).write_text("[]"), {}, "test",
        (ValueError, r"test_coco_det_AP_H_56\.json: no usable detection \(the file is an empty list\)"),
    ),
    "every detection below the threshold": (
        lambda r: None, {"bbox_score_thr": 2.0}, "test",
        (ValueError, r"test_coco_det_AP_H_56\.json: no usable detection among .*below score threshold 2\)"),
    ),
    "malformed JSON": (
        lambda r: (r / ANN).write_text('{"images": ['), {}, "validate",
        (ValueError, r"test_coco\.json is not valid JSON"),
    ),
    "detection file not a list": (
        lambda r: (r / DET).write_text('{"image_id": 785}'), {}, "test",
        (ValueError, r"test_coco_det_AP_H_56\.json: a detection file must be a JSON list"),
    ),
    "a dataset name instead of a dataset object": (
        lambda r: None, {"dataset": "cocoo"}, "validate",
        (ValueError, r"data\.dataset: 'cocoo' is not a dataset object; write data\.dataset: \{class_path: "),
    ),
    "zero-size box": (
        lambda r: edit_json(r / ANN, set_ann(0, bbox=[first_ann(r)["bbox"][0], 10.0, 0.0, 50.0])), {}, "validate",
        ("skip", r"test_coco\.json: skipped 1 of 14 entries \(1 zero-area box\)", set()),
    ),
    "annotation of another category": (
        lambda r: edit_json(r / ANN, set_ann(0, category_id=2)), {}, "validate",
        (ValueError, r"test_coco\.json: annotation id \d+ has category_id 2, not the keypoint category of this file "
                     r"\(1: .*remove the other categories"),
    ),
    "one image id, two files": (
        lambda r: edit_json(r / ANN, same_id_two_files), {}, "validate",
        (ValueError, r"test_coco\.json: image id 785 is used by two 'images' entries \(000000000785\.jpg 640x425 and "
                     r"000000040083\.jpg 500x333\)"),
    ),
    "NaN detection score": (
        lambda r: edit_json(r / DET, det_set(3, score=float("nan"))), {}, "test",
        (ValueError, r"test_coco_det_AP_H_56\.json: detection #3 \(image_id \d+\) has 'score' nan; expected a finite"),
    ),
    "detection score a string": (
        lambda r: edit_json(r / DET, det_set(3, score="high")), {}, "test",
        (ValueError, r"test_coco_det_AP_H_56\.json: detection #3 has 'score' 'high'; expected a number"),
    ),
    "detection box of strings": (
        lambda r: edit_json(r / DET, det_set(2, bbox=["a", 1, 2, 3])), {}, "test",
        (ValueError, r"test_coco_det_AP_H_56\.json: detection #2 has a non-numeric 'bbox' \['a', 1, 2, 3\]"),
    ),
    "random bytes in a JPEG's middle": (
        lambda r: corrupt_jpeg_middle(r / "000000196141.jpg"), {}, "validate",
        ("skip", r"1 of 4 images skipped: 1 corrupt \(000000196141\.jpg\)", {"000000196141.jpg"}),
    ),
    "image width null": (
        lambda r: edit_json(r / ANN, lambda d: d["images"][1].update(width=None)), {}, "validate",
        (ValueError, r"test_coco\.json: image id 40083 has 'width' None; expected a non-negative integer"),
    ),
    "image width a word": (
        lambda r: edit_json(r / ANN, lambda d: d["images"][1].update(width="wide")), {}, "validate",
        (ValueError, r"test_coco\.json: image id 40083 has 'width' 'wide'; expected an integer"),
    ),
    "annotations as a dict": (
        lambda r: edit_json(r / ANN, lambda d: d.update(annotations={"1": d["annotations"][0]})), {}, "validate",
        (ValueError, r"test_coco\.json: 'annotations' is a dict; expected a list"),
    ),
    "box of strings": (
        lambda r: edit_json(r / ANN, set_ann(0, bbox=["a", 1, 2, 3])), {}, "validate",
        (ValueError, r"test_coco\.json: annotation id \d+ has a non-numeric 'bbox' \['a', 1, 2, 3\]"),
    ),
    "keypoints as a string": (
        lambda r: edit_json(r / ANN, set_ann(0, keypoints="1 2 2 3 4 2")), {}, "validate",
        (ValueError, r"test_coco\.json: annotation id \d+ has a non-numeric 'keypoints' '1 2 2 3 4 2'"),
    ),
    "image_id a file name": (
        lambda r: edit_json(r / ANN, set_ann(0, image_id="000000000785.jpg")), {}, "validate",
        (ValueError, r"test_coco\.json: annotation id \d+ has 'image_id' '000000000785\.jpg'; expected an integer"),
    ),
    "bbox_padding -1": (
        lambda r: None, {"bbox_padding": -1.0}, "validate",
        (ValueError, r"data\.bbox_padding: -1\.0, expected a finite number > 0"),
    ),
    "bbox_padding 0": (
        lambda r: None, {"bbox_padding": 0.0}, "validate",
        (ValueError, r"data\.bbox_padding: 0\.0, expected a finite number > 0"),
    ),
    "batch_size 0": (
        lambda r: None, {"batch_size": 0}, "fit", (ValueError, r"data\.batch_size: 0, expected an integer >= 1"),
    ),
    "negative rotation": (
        lambda r: None, {"augment": {"rotate_factor": -10.0}}, "fit",
        (ValueError, r"TopDownAugment\.rotate_factor must be a finite number >= 0, got -10"),
    ),
    "missing num_keypoints": (
        lambda r: edit_json(r / ANN, no_num_keypoints), {}, "validate",
        ("skip", None, set()),  # nothing to skip: counted from the keypoints (v > 0), as COCO defines it
    ),
}


DATASET_ARGS = set(inspect.signature(COCOFormat).parameters)


def make_module(root: Path, **kwargs) -> PoseDataModule:
    """A COCOFormat dataset of the COCO fixture's files in ``root``; ``kwargs`` go to the dataset or the module."""
    files = dict(root=str(root), train_ann=ANN, val_ann=ANN, test_ann=ANN, train_img_dir=".", val_img_dir=".",
                 test_img_dir=".", test_bbox_file=DET)
    files.update({k: v for k, v in kwargs.items() if k in DATASET_ARGS})
    args = dict(dataset=COCOFormat(**files), num_workers=0, pin_memory=False, image_check_cache=None)
    args.update({k: v for k, v in kwargs.items() if k not in DATASET_ARGS})
    if isinstance(args.get("augment"), dict):
        args["augment"] = TopDownAugment(**args["augment"])
    return PoseDataModule(MSRAHeatmap(), **args)


def gt_predictions(ds) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The dataset's own labelled instances as predictions (metric inputs and the same as COCO results)."""
    keep = ds.keypoints_visible.sum(1) > 0
    kp = ds.keypoints[keep].astype(np.float64)
    n, k = kp.shape[:2]
    preds = dict(
        instance_ids=torch.from_numpy(ds.instance_ids[keep]), image_ids=torch.from_numpy(ds.image_ids[keep]),
        keypoints=torch.from_numpy(kp), keypoint_scores=torch.ones(n, k, dtype=torch.float64),
        bbox_scores=torch.ones(n, dtype=torch.float64), areas=torch.from_numpy(ds.areas[keep].astype(np.float64)),
    )
    results = [
        {"image_id": int(i), "category_id": 1, "score": 1.0,
         "keypoints": np.concatenate([p, np.ones((k, 1))], axis=1).ravel().tolist()}
        for i, p in zip(ds.image_ids[keep], kp)
    ]
    return preds, results


def plain_cocoeval_ap(gt: dict, results: list[dict]) -> float:
    """AP of a plain pycocotools COCOeval (COCO sigmas are its defaults)."""
    gt = copy.deepcopy(gt)
    for a in gt["annotations"]:  # COCO's definition, for a file that leaves it out
        a.setdefault("num_keypoints", sum(v > 0 for v in a["keypoints"][2::3]))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = PyCOCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path):
    corrupt, kwargs, stage, expected = CASES[case]
    root = tmp_path / "coco"
    shutil.copytree(FIXTURES / "coco", root)
    corrupt(root)
    if expected[0] != "skip":
        error, pattern = expected
        with pytest.raises(error, match=pattern):
            make_module(root, **kwargs).setup(stage)
        return
    _, pattern, skipped_files = expected
    dm = make_module(root, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup(stage)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    splits = ("train", "val") if stage == "fit" else ("val",)
    if pattern is None:
        assert messages == []
    else:  # one summary per split built (train and val read the same file here)
        assert len([m for m in messages if "skipped" in m]) == len(splits), messages
        assert any(re.search(pattern, m) for m in messages), messages
    for split in splits:
        assert {Path(p).name for p in dm.skipped_images.get(split, {})} == skipped_files
        assert not {Path(f).name for f in dm.datasets[split].image_files} & skipped_files
    ds = dm.datasets["val"]
    # AP on what remains: the metric's ground truth lost the skipped images, and only those
    gt_full = json.loads((root / ANN).read_text())
    dropped = {img["id"] for img in gt_full["images"] if img["file_name"] in skipped_files}
    gt_left = dict(gt_full, images=[i for i in gt_full["images"] if i["id"] not in dropped],
                   annotations=[a for a in gt_full["annotations"] if a["image_id"] not in dropped])
    preds, results = gt_predictions(ds)
    metric = OKSMeanAP(dm.eval_ann_file(stage), spec=COCO, nms="none")
    metric.update(**preds)
    ap = metric.compute()["AP"]
    reference = plain_cocoeval_ap(gt_left, results)
    assert ap == pytest.approx(reference, abs=1e-12)
    if case != "zero-size box":  # every remaining labelled instance was predicted exactly
        assert ap == pytest.approx(1.0, abs=1e-12)
    if dropped:  # against the unfiltered file the same predictions miss the skipped image's people
        assert plain_cocoeval_ap(gt_full, results) < 1.0


def test_image_check_cache_is_keyed_by_mtime_and_size(tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(FIXTURES / "coco", root)
    insts = read_coco(root / ANN, root, 17, (192, 256))
    first = check_images(insts, tmp_path / "cache")
    assert (first.checked, first.from_cache, first.problems, first.size_mismatch) == (4, 0, {}, {})
    assert check_images(insts, tmp_path / "cache").from_cache == 4
    image_check._MEMORY.clear()  # a new process: the JSON cache answers
    assert check_images(insts, tmp_path / "cache").from_cache == 4
    truncate(root / "000000196141.jpg")  # size (and mtime) change: probed again, and found truncated
    again = check_images(insts, tmp_path / "cache")
    assert again.from_cache == 3 and again.problems == {str(root / "000000196141.jpg"): "truncated"}
    assert len(list((tmp_path / "cache").glob("image_check_*.json"))) == 1


def test_image_check_agrees_with_opencv_on_the_real_sizes():
    import cv2

    insts = read_coco(FIXTURES / "coco" / ANN, FIXTURES / "coco", 17, (192, 256))
    report = check_images(insts)
    assert report.problems == {} and report.size_mismatch == {}
    for path in {i.image_file for i in insts}:
        h, w = cv2.imread(path).shape[:2]
        assert image_check.probe_image(path) == (w, h, None)


def test_mpii_missing_image_is_skipped(tmp_path):
    root = tmp_path / "mpii"
    shutil.copytree(FIXTURES / "mpii", root / "images")
    (root / "annotations").mkdir()
    shutil.copy(root / "images" / "test_mpii.json", root / "annotations" / "mpii_val.json")
    (root / "images" / "005808361.jpg").unlink()
    dm = PoseDataModule(MSRAHeatmap(), MPII(root=str(root)), num_workers=0, image_check_cache=None)
    with pytest.warns(UserWarning, match=r"data\.val: .*mpii_val\.json: 1 of 5 images skipped: 1 does not exist"):
        dm.setup("validate")
    assert len(dm.datasets["val"]) == 4 and dm.eval_ann_file("validate").endswith("mpii_val.json")


def test_mpii_nan_joint_is_an_error(tmp_path):
    rows = json.loads((FIXTURES / "mpii" / "test_mpii.json").read_text())
    rows[2]["joints"][4][0] = float("nan")
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps(rows))
    from rspose.data.readers import read_mpii

    with pytest.raises(ValueError, match=r"mpii\.json: row 2 \(.*\) has a NaN or infinite value in 'joints'"):
        read_mpii(path, tmp_path, (192, 256))


def test_ground_truth_without_num_keypoints_or_with_duplicate_ids():
    gt = json.loads((FIXTURES / "coco" / ANN).read_text())
    for a in gt["annotations"]:
        del a["num_keypoints"]
    labelled = [a for a in gt["annotations"] if any(v > 0 for v in a["keypoints"][2::3])]
    metric = OKSMeanAP(gt, spec=COCO, nms="none")
    kp = torch.tensor([a["keypoints"] for a in labelled], dtype=torch.float64).reshape(len(labelled), 17, 3)
    metric.update(torch.tensor([a["id"] for a in labelled]), torch.tensor([a["image_id"] for a in labelled]),
                  kp[..., :2], torch.ones(len(labelled), 17), torch.ones(len(labelled)),
                  torch.tensor([a["area"] for a in labelled]))
    assert metric.compute()["AP"] == pytest.approx(1.0, abs=1e-12)
    gt["annotations"][5]["id"] = gt["annotations"][2]["id"]
    with pytest.raises(ValueError, match=rf"<dict>: annotation id {gt['annotations'][2]['id']} appears more than once"):
        OKSMeanAP(gt, spec=COCO)
    gt["annotations"][5]["id"] = 12345
    gt["annotations"][4]["keypoints"][7] = float("inf")
    with pytest.raises(ValueError, match=rf"annotation id {gt['annotations'][4]['id']} has a NaN or infinite"):
        OKSMeanAP(gt, spec=COCO)


def _preds(keypoints: np.ndarray, ids: list[int], bbox_scores: list[float] | None = None) -> KeypointPredictions:
    n = len(ids)
    return KeypointPredictions(np.asarray(ids), np.ones(n, dtype=np.int64), keypoints, np.full((n, 17), 0.5),
                               np.asarray(bbox_scores or [1.0] * n), np.full(n, 100.0))


def test_same_instance_id_twice_in_one_image():
    kp = np.random.default_rng(0).uniform(0, 100, (2, 17, 2))
    # distributed padding repeats a sample: identical copies (up to float noise) are merged into the first
    padded = deduplicate(_preds(np.stack([kp[0], kp[1], kp[0] + 1e-4]), [7, 8, 7]))
    assert padded.instance_ids.tolist() == [7, 8] and np.array_equal(padded.keypoints, kp)
    # two different people under one id: not merged, an error
    with pytest.raises(ValueError, match=r"instance id 7 was given twice for image 1 with different predictions"):
        deduplicate(_preds(kp, [7, 7]))
    with pytest.raises(ValueError, match=r"instance id 7 was given twice for image 1 with different predictions"):
        deduplicate(_preds(np.stack([kp[0], kp[0]]), [7, 7], bbox_scores=[1.0, 0.3]))


def test_custom_dataset_with_known_keypoint_names_uses_that_spec(tmp_path):
    dm = make_module(FIXTURES / "coco")  # no sigmas, flip indices or body parts given
    spec = dm.spec
    assert spec.sigmas == COCO.sigmas and spec.flip_indices == COCO.flip_indices
    assert (spec.upper_body_ids, spec.lower_body_ids) == (COCO.upper_body_ids, COCO.lower_body_ids)
    gt = json.loads((FIXTURES / "crowdpose" / "test_crowdpose.json").read_text())
    assert gt["categories"][0]["keypoints"][12] == "head"  # the fixture's name; the spec (PROTOCOLS.md) says top_head
    gt["categories"][0]["keypoints"] = list(CROWDPOSE.keypoint_names)
    gt["categories"][0].pop("skeleton", None)
    (tmp_path / "crowd.json").write_text(json.dumps(gt))
    spec = make_module(tmp_path, train_ann="crowd.json").spec
    assert spec.sigmas == CROWDPOSE.sigmas and spec.flip_indices == CROWDPOSE.flip_indices
    assert spec.skeleton == CROWDPOSE.skeleton
    # what the config gives still wins
    sigmas = [0.05] * 17
    assert make_module(FIXTURES / "coco", sigmas=sigmas).spec.sigmas == tuple(sigmas)


def _exif_jpeg(path: Path, pixels_bgr: np.ndarray, orientation: int) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(pixels_bgr[..., ::-1])).save(path, quality=95, exif=exif.tobytes())


def _one_image_module(root: Path, file_name: str, width: int, height: int) -> PoseDataModule:
    gt = json.loads((FIXTURES / "coco" / ANN).read_text())
    gt["images"] = [dict(i, file_name=file_name, width=width, height=height) for i in gt["images"] if i["id"] == 40083]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] == 40083]
    (root / f"{file_name}.json").write_text(json.dumps(gt))
    return make_module(root, train_ann=f"{file_name}.json", val_ann=f"{file_name}.json")


def _crops(dm: PoseDataModule) -> np.ndarray:
    dm.setup("validate")
    ds = dm.datasets["val"]
    return np.stack([ds[i]["image"] for i in range(len(ds))])


@pytest.mark.parametrize("drawn_on", ["stored pixels", "rotated image"])
def test_exif_orientation_follows_the_annotated_size(tmp_path, drawn_on):
    """EXIF orientation 6 (display rotated 90 degrees clockwise): the annotation of a 500 x 333 image was drawn on
    the stored pixels when those are 500 x 333, on the displayed (rotated) image when the stored pixels are
    333 x 500. Reference: a lossless PNG of the pixels the annotation was drawn on, rotated here by numpy."""
    import cv2

    original = cv2.imread(str(FIXTURES / "coco" / "000000040083.jpg"))  # 500 x 333
    stored = original if drawn_on == "stored pixels" else np.rot90(original, 1)  # 90 deg counter-clockwise
    _exif_jpeg(tmp_path / "rot.jpg", stored, orientation=6)
    pixels = cv2.imread(str(tmp_path / "rot.jpg"), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)  # as stored
    assert pixels.shape[:2] == stored.shape[:2]
    drawn = pixels if drawn_on == "stored pixels" else np.ascontiguousarray(np.rot90(pixels, -1))  # clockwise
    assert drawn.shape[:2] == (333, 500)
    cv2.imwrite(str(tmp_path / "ref.png"), drawn)
    got = _crops(_one_image_module(tmp_path, "rot.jpg", 500, 333))
    want = _crops(_one_image_module(tmp_path, "ref.png", 500, 333))
    np.testing.assert_array_equal(got, want)
    # neither the stored nor the rotated size: the size-mismatch error, naming the file
    with pytest.raises(ValueError, match=r"rot\.jpg: annotated 400x333 \(width x height\)"):
        _one_image_module(tmp_path, "rot.jpg", 400, 333).setup("validate")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("joints", "12 34", r"has a non-numeric 'joints' '12 34'; expected a list of numbers"),
    ("scale", "big", r"has 'scale' 'big'; expected a number"),
    ("scale", 0.0, r"has 'scale' 0\.0; expected a number > 0"),
])
def test_mpii_values_of_the_wrong_type_name_row_and_key(tmp_path, key, value, message):
    rows = json.loads((FIXTURES / "mpii" / "test_mpii.json").read_text())
    rows[1][key] = value
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps(rows))
    from rspose.data.readers import read_mpii

    with pytest.raises(ValueError, match=rf"mpii\.json: row 1 \(.*\) {message}"):
        read_mpii(path, tmp_path, (192, 256))
