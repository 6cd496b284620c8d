"""CrowdPose (14 keypoints, OKS AP with the crowd IoU)."""

from __future__ import annotations

from typing import ClassVar

from rspose.data import specs
from rspose.datasets.base import PoseDataset


class CrowdPose(PoseDataset):
    """CrowdPose: ``root`` (default data/crowdpose) holds ``annotations/mmpose_crowdpose_{trainval,test}.json``,
    ``images/`` and, for ``test_bbox_file: auto``, ``annotations/det_for_crowd_test_0.1_0.5.json``. Test = the test
    split. Metric: OKS AP with CrowdPose's crowd IoU (``keypoints_crowd``: AP, AP(E/M/H)), monitor val/AP.
    Arguments: :class:`rspose.datasets.PoseDataset`."""

    default_root: ClassVar[str | None] = "data/crowdpose"
    files = {
        "train_ann": "annotations/mmpose_crowdpose_trainval.json",
        "val_ann": "annotations/mmpose_crowdpose_test.json",
        "test_ann": "annotations/mmpose_crowdpose_test.json",
        "train_img_dir": "images",
        "val_img_dir": "images",
        "test_img_dir": "images",
        "test_bbox_file": "annotations/det_for_crowd_test_0.1_0.5.json",
    }
    keypoint_spec = specs.CROWDPOSE
    iou_type = "keypoints_crowd"
