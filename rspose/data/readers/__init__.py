"""Annotation readers: COCO-format keypoints, person detections and MPII -> lists of PoseInstance."""

from rspose.data.readers.coco import read_coco
from rspose.data.readers.detections import read_detections
from rspose.data.readers.images import read_image, verify_images
from rspose.data.readers.instance import InstanceList, PoseInstance
from rspose.data.readers.mpii import load_head_boxes, read_mpii

__all__ = [
    "InstanceList",
    "PoseInstance",
    "load_head_boxes",
    "read_coco",
    "read_detections",
    "read_image",
    "read_mpii",
    "verify_images",
]
