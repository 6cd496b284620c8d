"""MPII annotations (the mmpose JSON list: image, center, scale, joints, joints_vis) -> PoseInstance list.

Conventions (docs/protocols.md, mmpose ``MpiiDataset``): the person scale is in units of 200 px; the centre moves
down by 15 x scale px to avoid cropping the legs; the box is the (200 scale)-px square around it, padded
x1.25 for the crop. MPII coordinates are 1-based (Matlab): centre and joints become 0-based (minus 1), as the
reference code does; PCKh is translation invariant, so a metric comparing with these keypoints needs no shift.

The image id is the number in the image file name (``005808361.jpg`` -> 5808361); the instance id is the
row of the JSON list. Optional head boxes come from ``mpii_gt_val.mat`` (``headboxes_src``, 2 x 2 x N, one per
row). The OKS ``area`` has no MPII definition: we use the unpadded square w x h x 0.53 (as a CrowdPose box).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np

from rspose.data.readers.coco import as_float, as_numbers
from rspose.data.readers.instance import AREA_FROM_BOX, InstanceList, PoseInstance, box_center_scale
from rspose.errors import UserError
from rspose.json_file import load_json

#: MPII ``scale`` is the person height / 200 px.
PIXEL_STD = 200.0


def image_id_from_name(name: str, ann_file: str | Path, row: int) -> int:
    """The digits of the file stem as an int64 (``005808361.jpg`` -> 5808361)."""
    digits = re.sub(r"\D", "", Path(name).stem)
    if not digits:
        raise UserError(f"{ann_file}: row {row}: image {name!r} has no number in its name to serve as image id")
    return int(digits)


def load_head_boxes(headbox_file: str | Path, num_rows: int) -> np.ndarray:
    """``headboxes_src`` of mpii_gt_val.mat -> (N, 2, 2) float32 [[x1, y1], [x2, y2]] per row."""
    from scipy.io import loadmat

    path = Path(headbox_file)
    if not path.is_file():
        raise FileNotFoundError(f"MPII head-box file {path} does not exist")
    mat = loadmat(str(path))
    if "headboxes_src" not in mat:
        raise UserError(
            f"{path}: no 'headboxes_src' variable (keys: {sorted(k for k in mat if not k.startswith('_'))})"
        )
    boxes = np.asarray(mat["headboxes_src"], dtype=np.float32)
    if boxes.ndim != 3 or boxes.shape[:2] != (2, 2):
        raise UserError(f"{path}: headboxes_src has shape {boxes.shape}, expected (2, 2, N)")
    if boxes.shape[2] != num_rows:
        raise UserError(f"{path}: headboxes_src has {boxes.shape[2]} boxes, expected one per annotation ({num_rows})")
    return np.ascontiguousarray(boxes.transpose(2, 0, 1))


def read_mpii(
    ann_file: str | Path,
    img_dir: str | Path,
    input_size: tuple[int, int],
    mode: Literal["train", "eval"] = "train",
    headbox_file: str | Path | None = None,
    num_keypoints: int = 16,
    padding: float = 1.25,
) -> InstanceList:
    """Read an MPII JSON list.

    Args:
        ann_file: mmpose-style JSON list; img_dir: image folder; input_size: (W, H) (aspect ratio of ``scale``);
        mode: "train" drops rows with no labelled joint (counted in ``skipped``), "eval" keeps all;
        headbox_file: mpii_gt_val.mat, or None; num_keypoints: K (16); padding: box padding (1.25).
    """
    rows = load_json(ann_file, "MPII annotation file")
    if not isinstance(rows, list):
        raise UserError(f"{ann_file}: an MPII annotation file must be a JSON list of persons")
    head_boxes = load_head_boxes(headbox_file, len(rows)) if headbox_file is not None else None
    skipped = {"no labelled keypoints": 0}
    out = []
    for row, ann in enumerate(rows):
        for key in ("image", "center", "scale", "joints", "joints_vis"):
            if key not in ann:
                raise UserError(f"{ann_file}: row {row} ({ann.get('image', '?')}) has no {key!r}")
        where = f"{ann_file}: row {row} ({ann['image']})"
        joints = as_numbers(ann["joints"], where, "joints")
        vis = as_numbers(ann["joints_vis"], where, "joints_vis").reshape(-1)
        as_numbers(ann["center"], where, "center")
        scale_value = as_float(ann["scale"], where, "scale")
        if joints.shape != (num_keypoints, 2) or vis.shape != (num_keypoints,):
            raise UserError(
                f"{ann_file}: row {row} ({ann['image']}) has {joints.shape[0] if joints.ndim else 0} joints and "
                f"{vis.shape[0]} joints_vis, expected {num_keypoints} of each"
            )
        for key, value in (("joints", joints), ("joints_vis", vis), ("center", ann["center"]), ("scale", ann["scale"])):
            if not np.isfinite(np.asarray(value, dtype=np.float64)).all():
                raise UserError(f"{ann_file}: row {row} ({ann['image']}) has a NaN or infinite value in {key!r}")
        if not scale_value > 0:
            raise UserError(f"{where} has 'scale' {ann['scale']!r}; expected a number > 0 (person height / 200 px)")
        visible = (vis > 0).astype(np.float32)
        if mode == "train" and visible.sum() == 0:
            skipped["no labelled keypoints"] += 1
            continue
        size = scale_value * PIXEL_STD
        center = np.asarray(ann["center"], dtype=np.float32).copy()
        if center[0] != -1:
            center[1] += 15.0 / PIXEL_STD * size
        center -= 1.0
        bbox = np.array([center[0] - size / 2, center[1] - size / 2, size, size], dtype=np.float32)
        box_center, scale = box_center_scale(bbox, input_size, padding)
        out.append(
            PoseInstance(
                instance_id=row,
                image_id=image_id_from_name(ann["image"], ann_file, row),
                image_file=str(Path(img_dir) / ann["image"]),
                bbox=bbox,
                center=box_center,
                scale=scale,
                keypoints=joints - 1.0,
                keypoints_visible=visible,
                area=size * size * AREA_FROM_BOX,
                bbox_score=1.0,
                num_keypoints=int(visible.sum()),
                head_box=None if head_boxes is None else head_boxes[row],
            )
        )
    return InstanceList(out, str(ann_file), skipped)
