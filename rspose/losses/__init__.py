"""Losses: the baselines (keypoint MSE, SimCC KL) and the ranking losses of RSPose (Spatial-RS, Instance-Sort).

Training with ranking losses: ``L = SpatialRSLoss(pred, target, w) + lambda * InstanceSortLoss(c, q)`` with
``c = instance_confidence(pred, w)`` and ``q = oks_quality(decoded, gt, visible, area, sigmas)``;
lambda = ``DEFAULT_INSTANCE_SORT_WEIGHT``, delta = ``DEFAULT_DELTA`` (METHOD.md).
"""

from rspose.losses.instance_sort import DEFAULT_INSTANCE_SORT_WEIGHT, InstanceSortLoss
from rspose.losses.kl import KLDiscretLoss
from rspose.losses.mse import KeypointMSELoss
from rspose.losses.quality import MIN_QUALITY, instance_confidence, keypoint_max_logits, oks_quality
from rspose.losses.rank_sort import DEFAULT_DELTA, RankSortOutput, rank_sort, smoothed_step
from rspose.losses.spatial_rs import SpatialRSLoss, identity_update

__all__ = [
    "DEFAULT_DELTA",
    "DEFAULT_INSTANCE_SORT_WEIGHT",
    "MIN_QUALITY",
    "InstanceSortLoss",
    "KLDiscretLoss",
    "KeypointMSELoss",
    "RankSortOutput",
    "SpatialRSLoss",
    "identity_update",
    "instance_confidence",
    "keypoint_max_logits",
    "oks_quality",
    "rank_sort",
    "smoothed_step",
]
