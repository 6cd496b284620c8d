"""Data: read annotations (readers), crop and augment (transforms, dataset), serve batches (datamodule)."""

from typing import TYPE_CHECKING, Any

from rspose.data.dataset import TopDownDataset
from rspose.data.readers import (
    InstanceList,
    PoseInstance,
    read_coco,
    read_detections,
    read_image,
    read_mpii,
    verify_images,
)
from rspose.data.specs import COCO, CROWDPOSE, MPII, DatasetSpec, get_spec, spec_from_coco_json
from rspose.data.transforms import TopDownAugment, crop_to_image

if TYPE_CHECKING:
    from rspose.data.datamodule import PoseDataModule

__all__ = [
    "COCO",
    "CROWDPOSE",
    "MPII",
    "DatasetSpec",
    "InstanceList",
    "PoseDataModule",
    "PoseInstance",
    "TopDownAugment",
    "TopDownDataset",
    "crop_to_image",
    "get_spec",
    "read_coco",
    "read_detections",
    "read_image",
    "read_mpii",
    "spec_from_coco_json",
    "verify_images",
]


def __getattr__(name: str) -> Any:
    # PoseDataModule imports lightning: load it only when asked for.
    if name == "PoseDataModule":
        from rspose.data.datamodule import PoseDataModule

        return PoseDataModule
    raise AttributeError(f"module 'rspose.data' has no attribute {name!r}")
