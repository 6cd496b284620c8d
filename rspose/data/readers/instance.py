"""One person to crop: the record every reader produces and the dataset consumes."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from rspose.data.transforms import bbox_xywh_to_center_scale, fix_aspect_ratio

#: CrowdPose (and any COCO-format file without ``area``) uses box w x h x 0.53 as the OKS area.
AREA_FROM_BOX = 0.53


@dataclass(slots=True)
class PoseInstance:
    """One person instance (ground truth or detection) of one image.

    Attributes:
        instance_id: stable int64 id: the COCO annotation id (GT), the position in the detection file
            (detections) or the row of the MPII JSON (MPII). Used to deduplicate distributed predictions.
        image_id: int64 image id (COCO ``image_id``; MPII: the number in the image file name).
        image_file: path of the image.
        bbox: (4,) float32 x, y, w, h in image px (GT boxes clipped to the image as mmpose).
        center: (2,) float32 box centre, image px.
        scale: (2,) float32 box size padded by ``padding`` and reshaped to the input aspect ratio, image px.
        keypoints: (K, 2) float32 image px (zeros for a detection).
        keypoints_visible: (K,) float32, 1 for a labelled keypoint (COCO v >= 1), else 0 (all 0 for a detection).
        area: OKS area (COCO ``area``; w x h x 0.53 of the box when missing; a detection: its box w x h).
        bbox_score: detector score (1.0 for GT).
        num_keypoints: number of labelled keypoints (COCO ``num_keypoints`` when given).
        crowd_index: CrowdPose image ``crowdIndex``, else None.
        image_size: (width, height) from the annotation file, or None.
        head_box: MPII (2, 2) head box [[x1, y1], [x2, y2]] from mpii_gt_val.mat, else None.
    """

    instance_id: int
    image_id: int
    image_file: str
    bbox: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    keypoints: np.ndarray
    keypoints_visible: np.ndarray
    area: float
    bbox_score: float = 1.0
    num_keypoints: int = 0
    crowd_index: float | None = None
    image_size: tuple[int, int] | None = None
    head_box: np.ndarray | None = field(default=None)


class InstanceList(list):
    """A list of :class:`PoseInstance` that also says what the reader skipped and why.

    Attributes:
        source: the annotation (or detection) file read.
        skipped: reason -> count of entries not turned into instances.
        raw_orientation: image files to read without applying their EXIF orientation (set by the image check:
            the annotation was drawn on the stored pixels).
    """

    def __init__(self, items: list[PoseInstance], source: str, skipped: dict[str, int] | None = None,
                 raw_orientation: set[str] | None = None) -> None:
        super().__init__(items)
        self.source = source
        self.skipped = dict(skipped or {})
        self.raw_orientation = set(raw_orientation or ())


def box_center_scale(bbox: np.ndarray, input_size: tuple[int, int], padding: float) -> tuple[np.ndarray, np.ndarray]:
    """bbox: (4,) xywh -> centre (2,), scale (2,) padded and fixed to the aspect ratio W / H of ``input_size``."""
    center, scale = bbox_xywh_to_center_scale(bbox, padding)
    return center, fix_aspect_ratio(scale, input_size[0] / input_size[1])


def warn_skipped(source: str, total: int, skipped: dict[str, int], unexpected: tuple[str, ...]) -> None:
    """One warning per file when entries were skipped for an ``unexpected`` reason (e.g. a zero-area box)."""
    if any(skipped.get(k, 0) for k in unexpected):
        detail = ", ".join(f"{n} {reason}" for reason, n in skipped.items() if n)
        warnings.warn(f"{source}: skipped {sum(skipped.values())} of {total} entries ({detail})", stacklevel=3)
