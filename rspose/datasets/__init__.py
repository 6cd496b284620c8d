"""Datasets as objects: one class per dataset, each with its files, reader, keypoint spec, metric and monitor key.

``data.dataset`` takes one by class path (``rspose.datasets.COCO``, ``CrowdPose``, ``MPII``, ``COCOFormat``,
``Synthetic``, or a user's subclass of :class:`PoseDataset`). This package sits low: it imports data, metrics and
errors, never the module, the CLI or the losses.
"""

from __future__ import annotations

import importlib

from rspose.datasets.base import PoseDataset
from rspose.datasets.coco import COCO
from rspose.datasets.coco_format import COCOFormat
from rspose.datasets.crowdpose import CrowdPose
from rspose.datasets.mpii import MPII
from rspose.datasets.synthetic import Synthetic
from rspose.errors import UserError

__all__ = ["COCO", "MPII", "COCOFormat", "CrowdPose", "PoseDataset", "Synthetic", "dataset_class"]


def dataset_class(class_path: str) -> type[PoseDataset]:
    """The :class:`PoseDataset` subclass named by ``class_path`` (e.g. "rspose.datasets.COCO")."""
    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None) if module else None
    if not (isinstance(cls, type) and issubclass(cls, PoseDataset)):
        raise UserError(f"data.dataset: {class_path!r} is not a subclass of rspose.datasets.PoseDataset")
    return cls
