"""rspose: top-down human pose estimation with ranking-based losses, on PyTorch Lightning.

``rspose.Inferencer`` (:mod:`rspose.inferencer`) is imported on first use, so ``import rspose`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Inferencer"]


def __getattr__(name: str) -> Any:
    if name == "Inferencer":
        from rspose.inferencer import Inferencer

        return Inferencer
    raise AttributeError(f"module 'rspose' has no attribute {name!r}")
