"""COCO keypoints 2017 (17 keypoints, OKS AP)."""

from __future__ import annotations

from typing import ClassVar

from rspose.data import specs
from rspose.datasets.base import PoseDataset

#: the COCO 2017 layout (docs/protocols.md), relative to ``root``.
COCO_FILES = {
    "train_ann": "annotations/person_keypoints_train2017.json",
    "val_ann": "annotations/person_keypoints_val2017.json",
    "test_ann": "annotations/person_keypoints_val2017.json",
    "train_img_dir": "train2017",
    "val_img_dir": "val2017",
    "test_img_dir": "val2017",
    "test_bbox_file": "person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
}


class COCO(PoseDataset):
    """COCO keypoints 2017: ``root`` (default data/coco) holds ``annotations/person_keypoints_{train,val}2017.json``,
    ``train2017/``, ``val2017/`` and, for ``test_bbox_file: auto``, the detections
    ``person_detection_results/COCO_val2017_detections_AP_H_56_person.json`` (AP 56.4). Test = val2017.
    Metric: OKS AP (val/AP). Arguments: :class:`rspose.datasets.PoseDataset`."""

    default_root: ClassVar[str | None] = "data/coco"
    files = COCO_FILES
    keypoint_spec = specs.COCO
