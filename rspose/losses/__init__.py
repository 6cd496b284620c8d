"""Losses. A config chooses one :class:`PoseLoss` as ``model.loss`` (by ``class_path``):

* :class:`KeypointMSELoss`: the heatmap baseline (SimpleBaseline, HRNet, ViTPose);
* :class:`KLDiscretLoss`: the SimCC baseline;
* :class:`RankingLoss`: the RSPose objective, Spatial-RS + lambda x Instance-Sort, for both codec kinds.

Its parts, usable on plain tensors: :class:`SpatialRSLoss`, :class:`InstanceSortLoss`, :func:`rank_sort` (the
exact vectorised Rank & Sort core), :func:`instance_confidence`, :func:`oks_quality`, :func:`keypoint_mse`,
:func:`kl_discrete`. Definitions: docs/method.md.
"""

from rspose.losses.base import PoseLoss
from rspose.losses.instance_sort import DEFAULT_INSTANCE_SORT_WEIGHT, InstanceSortLoss
from rspose.losses.kl import KLDiscretLoss, kl_discrete
from rspose.losses.mse import KeypointMSELoss, keypoint_mse
from rspose.losses.quality import MIN_QUALITY, instance_confidence, keypoint_max_logits, oks_quality
from rspose.losses.rank_sort import DEFAULT_DELTA, RankSortOutput, rank_sort, smoothed_step
from rspose.losses.ranking import RankingLoss, max_positives
from rspose.losses.spatial_rs import SpatialRSLoss, attach_gradient, identity_update

__all__ = [
    "DEFAULT_DELTA",
    "DEFAULT_INSTANCE_SORT_WEIGHT",
    "MIN_QUALITY",
    "InstanceSortLoss",
    "KLDiscretLoss",
    "KeypointMSELoss",
    "PoseLoss",
    "RankSortOutput",
    "RankingLoss",
    "SpatialRSLoss",
    "attach_gradient",
    "identity_update",
    "instance_confidence",
    "keypoint_max_logits",
    "keypoint_mse",
    "max_positives",
    "kl_discrete",
    "oks_quality",
    "rank_sort",
    "smoothed_step",
]
