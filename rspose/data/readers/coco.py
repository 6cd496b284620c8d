"""COCO-format keypoint annotations (COCO, CrowdPose, any person_keypoints file) -> PoseInstance list.

Conventions (mmpose 1.x ``BaseCocoStyleDataset``):

* A box (x, y, w, h) is clipped to [0, width - 1] x [0, height - 1]; one with no area left is skipped
  (a counted warning: it cannot be cropped).
* Visibility v in {0, 1, 2}: v >= 1 is labelled.
* ``mode="train"`` drops crowd annotations and those with no labelled keypoint (``num_keypoints == 0`` or
  all v == 0), counted in ``InstanceList.skipped`` (expected in COCO, so no warning);
  ``mode="eval"`` (ground-truth boxes) keeps every non-crowd annotation.
* ``area`` is the annotation's; CrowdPose has none, so w x h x 0.53 of the unclipped box (the OKS area of the
  CrowdPose protocol) is used.
* Malformed entries are errors naming the file and the annotation id: no ``keypoints``, a keypoint count
  other than the spec's, a NaN or infinite keypoint or box value, no ``bbox``, an ``image_id`` missing from
  ``images``, an annotation ``id`` used twice (it is the instance id that evaluation deduplicates by), a value
  of the wrong type (a string where a number belongs), a ``category_id`` other than the file's keypoint
  category (the ``categories`` entry with ``keypoints``; 1 when the file has none): every annotation is read as
  a person, and the metric would score another category apart.
* ``images``: an ``id`` used by two entries with different files or sizes, a ``width``/``height`` that is not a
  non-negative integer (0 or absent: unknown, not checked) are errors naming the file and the image id.
* ``num_keypoints`` missing: computed as the number of keypoints with v > 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from rspose.data.readers.instance import (
    AREA_FROM_BOX,
    InstanceList,
    PoseInstance,
    box_center_scale,
    warn_skipped,
)
from rspose.errors import UserError
from rspose.json_file import load_json


def as_int(value: Any, where: str, key: str) -> int:
    """``value`` as an int (an integral number, or a string of one as some converters write ids); else a
    ValueError naming ``where`` and ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{where} has {key!r} {value!r}; expected an integer")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{where} has {key!r} {value!r}; expected an integer") from None
    if not (np.isfinite(number) and number == int(number)):
        raise UserError(f"{where} has {key!r} {value!r}; expected an integer")
    return int(number)


def as_numbers(value: Any, where: str, key: str) -> np.ndarray:
    """``value`` (a list of numbers) as a float32 array; a string, an object or a list with a non-numeric item is
    a ValueError naming ``where`` and ``key`` (NaN / inf are left for the caller to report)."""
    try:
        if isinstance(value, (str, bytes, dict)) or value is None:
            raise TypeError
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise UserError(f"{where} has a non-numeric {key!r} {value!r:.120}; expected a list of numbers") from None


def as_float(value: Any, where: str, key: str) -> float:
    """``value`` as a float (a number, or a string of one); else a ValueError naming ``where`` and ``key``."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where} has {key!r} {value!r:.80}; expected a number") from None


def person_category_ids(data: dict[str, Any]) -> set[int]:
    """The ids of the file's keypoint categories (``categories`` entries with ``keypoints``); {1} without any."""
    ids = {
        int(c["id"]) for c in data.get("categories") or [] if isinstance(c, dict) and "id" in c and c.get("keypoints")
    }
    return ids or {1}


def index_images(data: dict[str, Any], ann_file: str | Path, img_dir: str | Path) -> dict[int, dict[str, Any]]:
    """image id -> {"file", "width", "height", "crowd_index"} from the ``images`` list of a COCO file."""
    if not isinstance(data, dict) or "images" not in data:
        raise UserError(f"{ann_file}: not a COCO annotation file (no 'images' list)")
    if not isinstance(data["images"], list):
        raise UserError(f"{ann_file}: 'images' is a {type(data['images']).__name__}; expected a list of "
                         "{id, file_name, width, height}")
    images = {}
    for index, img in enumerate(data["images"]):
        if not isinstance(img, dict):
            raise UserError(f"{ann_file}: images[{index}] is {img!r:.80}; expected {{id, file_name, width, height}}")
        for key in ("id", "file_name"):
            if key not in img:
                raise UserError(f"{ann_file}: an entry of 'images' has no {key!r}: {img}")
        image_id = as_int(img["id"], f"{ann_file}: images[{index}]", "id")
        where = f"{ann_file}: image id {image_id}"
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise UserError(f"{where} has 'file_name' {img['file_name']!r}; expected a file name")
        size = {}
        for key in ("width", "height"):
            value = img.get(key, 0)
            size[key] = as_int(value, where, key) if value is not None else None
            if size[key] is None or size[key] < 0:
                raise UserError(f"{where} has {key!r} {value!r}; expected a non-negative integer (0 or absent: "
                                 "unknown)")
        entry = {
            "file": str(Path(img_dir) / img["file_name"]),
            "width": size["width"],
            "height": size["height"],
            "crowd_index": float(img["crowdIndex"]) if "crowdIndex" in img else None,
        }
        seen = images.get(image_id)
        if seen is not None and (seen["file"], seen["width"], seen["height"]) != (
            entry["file"], entry["width"], entry["height"]
        ):
            raise UserError(
                f"{where} is used by two 'images' entries ({Path(seen['file']).name} {seen['width']}x{seen['height']}"
                f" and {img['file_name']} {entry['width']}x{entry['height']}); expected one id per image"
            )
        images[image_id] = entry
    return images


def clip_bbox_xywh(bbox: np.ndarray, width: int, height: int) -> np.ndarray:
    """(4,) xywh clipped to [0, width - 1] x [0, height - 1] (mmpose); no clipping when the size is unknown."""
    x, y, w, h = (float(v) for v in bbox)
    if width <= 0 or height <= 0:
        return np.array([x, y, w, h], dtype=np.float32)
    x1, y1 = np.clip(x, 0, width - 1), np.clip(y, 0, height - 1)
    x2, y2 = np.clip(x + w, 0, width - 1), np.clip(y + h, 0, height - 1)
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)


def parse_keypoints(ann: dict[str, Any], num_keypoints: int, ann_file: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``keypoints`` [x1, y1, v1, ...] of one annotation -> (K, 2) float32 px, (K,) float32 visibility (v >= 1)."""
    ann_id = ann.get("id")
    if "keypoints" not in ann:
        raise UserError(f"{ann_file}: annotation id {ann_id} has no 'keypoints'")
    values = as_numbers(ann["keypoints"], f"{ann_file}: annotation id {ann_id}", "keypoints")
    if values.size != 3 * num_keypoints:
        raise UserError(
            f"{ann_file}: annotation id {ann_id} has {values.size / 3:g} keypoints ({values.size} values), "
            f"expected {num_keypoints} ({3 * num_keypoints} values) for this dataset spec"
        )
    values = values.reshape(num_keypoints, 3)
    if not np.isfinite(values).all():
        k = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise UserError(
            f"{ann_file}: annotation id {ann_id} has a NaN or infinite value in 'keypoints' (keypoint {k}: "
            f"{ann['keypoints'][3 * k:3 * k + 3]}); expected finite x, y, v"
        )
    return values[:, :2].copy(), (values[:, 2] > 0).astype(np.float32)


def read_coco(
    ann_file: str | Path,
    img_dir: str | Path,
    num_keypoints: int,
    input_size: tuple[int, int],
    mode: Literal["train", "eval"] = "train",
    padding: float = 1.25,
) -> InstanceList:
    """Read the person instances of a COCO-format keypoint file.

    Args:
        ann_file: the annotation JSON; img_dir: folder of the images (``file_name`` is relative to it).
        num_keypoints: K of the dataset spec (every annotation must have K keypoints).
        input_size: (W, H) of the model input: sets the aspect ratio of ``scale``.
        mode: "train" drops crowd and keypoint-less annotations; "eval" keeps every non-crowd one.
        padding: box padding of ``scale``.
    """
    if mode not in ("train", "eval"):
        raise UserError(f"read_coco: mode must be 'train' or 'eval', got {mode!r}")
    data = load_json(ann_file, "COCO annotation file")
    images = index_images(data, ann_file, img_dir)
    annotations = data.get("annotations")
    if annotations is None:
        raise UserError(f"{ann_file}: not a COCO annotation file (no 'annotations' list)")
    if not isinstance(annotations, list):
        raise UserError(f"{ann_file}: 'annotations' is a {type(annotations).__name__}; expected a list of "
                         "annotations")
    persons = person_category_ids(data)
    skipped = {"crowd": 0, "no labelled keypoints": 0, "zero-area box": 0}
    out = []
    seen: set[int] = set()
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise UserError(f"{ann_file}: annotations[{index}] is {ann!r:.80}; expected an annotation object")
        ann_id = ann.get("id")
        if ann_id is None:
            raise UserError(f"{ann_file}: an annotation has no 'id' (image_id {ann.get('image_id')})")
        ann_id = as_int(ann_id, f"{ann_file}: annotations[{index}]", "id")
        where = f"{ann_file}: annotation id {ann_id}"
        category = as_int(ann.get("category_id", min(persons)), where, "category_id")
        if category not in persons:
            raise UserError(
                f"{where} has category_id {category}, not the keypoint category of this file "
                f"({', '.join(map(str, sorted(persons)))}: the 'categories' entry with 'keypoints'); rspose reads "
                "every annotation as a person: remove the other categories' annotations from the file"
            )
        if int(ann_id) in seen:  # the instance id: a second copy would be dropped as a distributed duplicate
            raise UserError(f"{ann_file}: annotation id {ann_id} appears more than once; ids must be unique")
        seen.add(int(ann_id))
        if as_int(ann.get("iscrowd", 0), where, "iscrowd"):
            skipped["crowd"] += 1
            continue
        keypoints, visible = parse_keypoints(ann, num_keypoints, ann_file)
        image_id = as_int(ann.get("image_id", -1), where, "image_id")
        if image_id not in images:
            raise UserError(f"{ann_file}: annotation id {ann_id} refers to image_id {image_id}, not in 'images'")
        if "bbox" not in ann or not isinstance(ann["bbox"], (list, tuple)) or len(ann["bbox"]) != 4:
            raise UserError(f"{ann_file}: annotation id {ann_id} has no 4-number 'bbox' (x, y, w, h)")
        img = images[image_id]
        raw = as_numbers(ann["bbox"], where, "bbox")
        if not np.isfinite(raw).all():
            raise UserError(f"{ann_file}: annotation id {ann_id} has a NaN or infinite 'bbox' {ann['bbox']}")
        bbox = clip_bbox_xywh(raw, img["width"], img["height"])
        if not (bbox[2] > 0 and bbox[3] > 0):
            skipped["zero-area box"] += 1
            continue
        labelled = as_int(ann["num_keypoints"], where, "num_keypoints") if "num_keypoints" in ann else int(
            visible.sum())
        if mode == "train" and (labelled == 0 or visible.sum() == 0):
            skipped["no labelled keypoints"] += 1
            continue
        center, scale = box_center_scale(bbox, input_size, padding)
        area = as_float(ann["area"], where, "area") if "area" in ann else float(raw[2] * raw[3] * AREA_FROM_BOX)
        out.append(
            PoseInstance(
                instance_id=int(ann_id),
                image_id=image_id,
                image_file=img["file"],
                bbox=bbox,
                center=center,
                scale=scale,
                keypoints=keypoints,
                keypoints_visible=visible,
                area=area,
                bbox_score=1.0,
                num_keypoints=labelled,
                crowd_index=img["crowd_index"],
                image_size=(img["width"], img["height"]),
            )
        )
    warn_skipped(str(ann_file), len(annotations), skipped, unexpected=("zero-area box",))
    return InstanceList(out, str(ann_file), skipped)
