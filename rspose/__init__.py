"""rspose: top-down human pose estimation with ranking-based losses, on PyTorch Lightning.

The public API (docs/api.md), imported on first use so that ``import rspose`` stays light:

* :class:`PoseLitModule` (:mod:`rspose.module`): backbone + head + codec + loss; train/val/test/predict steps.
* :class:`PoseDataModule` (:mod:`rspose.data.datamodule`): datasets, boxes, augmentation and loaders.
* :class:`Inferencer` (:mod:`rspose.inferencer`): a trained model on any image, with or without person boxes.
* :func:`build_module` (:mod:`rspose.builder`): the module and data module of an ``rspose`` config (a YAML file
  or a dict), without LightningCLI.

The parts are imported from their packages: ``rspose.models`` (backbones, heads), ``rspose.codecs``,
``rspose.losses``, ``rspose.datasets`` (one class per dataset), ``rspose.metrics``, ``rspose.data`` (readers, specs,
transforms), ``rspose.viz``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rspose.builder import build_module
    from rspose.data.datamodule import PoseDataModule
    from rspose.inferencer import Inferencer
    from rspose.module import PoseLitModule

__all__ = ["Inferencer", "PoseDataModule", "PoseLitModule", "build_module"]

_WHERE = {
    "Inferencer": "rspose.inferencer",
    "build_module": "rspose.builder",
    "PoseDataModule": "rspose.data.datamodule",
    "PoseLitModule": "rspose.module",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'rspose' has no attribute {name!r}")
