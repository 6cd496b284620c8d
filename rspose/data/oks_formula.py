"""The OKS falloff, written once: e_k = d_k^2 / (2 sigma_k)^2 / (area + eps) / 2 (pycocotools ``computeOks``).

Used by the metrics (rspose/metrics/oks.py, the OKS-NMS of rspose/metrics/nms.py) and by the Instance-Sort
quality labels (rspose/losses/quality.py). It sits at the data floor, next to the sigmas of
rspose/data/specs.py, because the losses may not import the metrics.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from torch import Tensor

#: pycocotools adds np.spacing(1) (2^-52) to the area.
AREA_EPS = float(np.spacing(1))

T = TypeVar("T", Tensor, np.ndarray)


def oks_exponent(d2: T, sigmas: T, areas: T) -> T:
    """The exponent e_k of the OKS term exp(-e_k), for torch tensors or numpy arrays alike (float64 in the callers).

    Args:
        d2: (..., K) squared distances between predicted and reference keypoints.
        sigmas: (K,) per-keypoint OKS sigmas.
        areas: (...) object areas (the GT area; the mean of both areas for OKS-NMS).

    Returns:
        (..., K) e_k = d2 / (2 sigma_k)^2 / (area + eps) / 2.
    """
    return d2 / (sigmas * 2) ** 2 / (areas[..., None] + AREA_EPS) / 2
