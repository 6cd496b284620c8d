"""RankingLoss: the RSPose objective, Spatial-RS + lambda x Instance-Sort, as a config-selectable loss.

    L = SpatialRS(heatmaps or both SimCC vectors) + instance_sort_weight * InstanceSort(confidences, OKS)

* Spatial-RS (:class:`rspose.losses.SpatialRSLoss`): one Rank & Sort set per heatmap (or per SimCC vector;
  the x and y losses are averaged), labels = the codec's peak-1 Gaussian; or all pixels of the batch pooled
  (``scope="batch"``).
* Instance-Sort (:class:`rspose.losses.InstanceSortLoss`): the confidences of the batch's instances (or of
  each keypoint type) sorted by the OKS of their decoded, detached predictions against their own ground truth
  (:func:`rspose.losses.oks_quality`).

The outputs are logits: evaluation and inference apply a sigmoid before decoding (``sigmoid_outputs``).
Every switch and what it changes is described in docs/method.md; the defaults are the first reconstruction
of the paper except ``confidence="score"`` and ``positive_threshold=0.1``, the choices that the seeded study
(README, docs/method.md) found best; ``RankingLoss(confidence="max_logit", positive_threshold=0.0)`` is the
first reconstruction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import Tensor

from rspose.codecs.base import HeadOutput
from rspose.data.specs import KEYPOINT_SCORE_THR
from rspose.losses.base import PoseLoss
from rspose.losses.instance_sort import DEFAULT_INSTANCE_SORT_WEIGHT, InstanceSortLoss
from rspose.losses.mse import keypoint_mse
from rspose.losses.quality import ConfidenceKind, instance_confidence, oks_quality
from rspose.losses.rank_sort import DEFAULT_DELTA
from rspose.losses.spatial_rs import Scope, SpatialRSLoss

if TYPE_CHECKING:
    from rspose.codecs.base import Codec
    from rspose.data.specs import DatasetSpec

InstanceSortMode = Literal["instance", "keypoint", "both"]
RankingSpace = Literal["logit", "sigmoid"]


class RankingLoss(PoseLoss):
    """Spatial-RS + lambda x Instance-Sort for heatmap and SimCC codecs.

    Args:
        delta: smoothing of the step function H of Spatial-RS (in the units of ``space``).
        scope: ``"heatmap"``: one Spatial-RS set per heatmap / SimCC vector; ``"batch"``: all pixels of the
            batch's labelled heatmaps in one set.
        instance_sort_weight: lambda; 0 switches Instance-Sort off.
        instance_sort_mode: ``"instance"``: one set of instance confidences labelled with their OKS;
            ``"keypoint"``: one set per keypoint type, keypoint confidences labelled with the per-keypoint OKS
            term; ``"both"``: the mean of the two.
        instance_delta: delta of Instance-Sort; None = ``delta``.
        confidence: what Instance-Sort sorts (:func:`rspose.losses.instance_confidence`): ``"score"`` (default:
            the score that is ranked at test time, the mean of the keypoint sigmoids above ``score_thr``),
            ``"sigmoid"`` (mean of their sigmoids) or ``"max_logit"`` (mean of the max logits: the first
            reconstruction).
        score_thr: the rescoring threshold used by ``confidence="score"`` (keep it equal to the evaluation's
            ``keypoint_score_thr``).
        positive_threshold: Spatial-RS positives are the pixels with label > this value; lower labels become
            negatives. 0.1 (default) keeps the disc of radius 2.15 sigma (13 pixels at sigma 1); 0 keeps the
            whole 3-sigma Gaussian (49 pixels at sigma 1, the first reconstruction); exp(-2) = 0.135 keeps the
            2-sigma disc.
        space: rank the logits (``"logit"``) or their sigmoid probabilities (``"sigmoid"``, as RankED does;
            use a delta of about 0.1 there). The gradient reaches the logits through the sigmoid.
        anchor_weight: **beyond the paper, never a default**: adds ``anchor_weight x MSE(sigmoid(logits),
            targets)`` (the heatmap/SimCC labels), which fixes the absolute level of the scores that the
            shift-invariant ranking losses leave free. 0 (default) = the pure ranking objective.

    ``loss(output, batch) -> {"loss", "spatial", "spatial_rank", "spatial_sort"[, "instance_sort", "oks_train"
    [, "oks_train_misplaced"]][, "anchor"]}`` (``oks_train``: mean OKS of the decoded training predictions;
    ``oks_train_misplaced``: the same over the batch's misplaced crops, NaN when it has none; only when the batch
    has a ``misplaced`` key; listed in ``optional_parts``: the module logs it where it is finite).

    No step waits for the device (no host synchronisation; one graph under ``torch.compile``): the positives
    of a heatmap (SimCC vector) are bounded by the codec's Gaussian (:func:`max_positives`), a bound fixed at
    :meth:`bind`; a target with more positives than that (not made by the codec) gives a NaN loss.

    Batch keys: the codec's targets, ``target_weight`` (B, K), ``keypoints_input`` (B, K, 2) crop px,
    ``keypoints_visible`` (B, K), ``area_input`` (B,), optional ``misplaced`` (B,) bool: crops whose box was
    moved off the person (``data.augment.misplace_prob``), which Instance-Sort takes as low-quality members.
    """

    sigmoid_outputs = True
    #: parts that may be NaN when the batch has nothing to measure (the module logs them only when finite)
    optional_parts: ClassVar[tuple[str, ...]] = ("oks_train_misplaced",)

    def __init__(
        self,
        delta: float = DEFAULT_DELTA,
        scope: Scope = "heatmap",
        instance_sort_weight: float = DEFAULT_INSTANCE_SORT_WEIGHT,
        instance_sort_mode: InstanceSortMode = "instance",
        instance_delta: float | None = None,
        confidence: ConfidenceKind = "score",
        score_thr: float = KEYPOINT_SCORE_THR,
        positive_threshold: float = 0.1,
        space: RankingSpace = "logit",
        anchor_weight: float = 0.0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if instance_sort_mode not in ("instance", "keypoint", "both"):
            raise ValueError(f"{name}: instance_sort_mode={instance_sort_mode!r}, expected instance/keypoint/both")
        if confidence not in ("max_logit", "sigmoid", "score"):
            raise ValueError(f"{name}: confidence={confidence!r}, expected 'max_logit', 'sigmoid' or 'score'")
        if space not in ("logit", "sigmoid"):
            raise ValueError(f"{name}: space={space!r}, expected 'logit' or 'sigmoid'")
        if not 0 <= positive_threshold < 1:
            raise ValueError(f"{name}: positive_threshold={positive_threshold}, expected 0 <= value < 1")
        if not anchor_weight >= 0:
            raise ValueError(f"{name}: anchor_weight={anchor_weight}, expected >= 0")
        if not instance_sort_weight >= 0:
            raise ValueError(f"{name}: instance_sort_weight={instance_sort_weight}, expected >= 0")
        uses_instance = instance_sort_weight > 0 and instance_sort_mode in ("instance", "both")
        uses_keypoint = instance_sort_weight > 0 and instance_sort_mode in ("keypoint", "both")
        if score_thr != KEYPOINT_SCORE_THR and not (confidence == "score" and uses_instance):
            raise ValueError(f"{name}: score_thr={score_thr} is only used with confidence='score' and an instance "
                             "Instance-Sort set (instance_sort_mode 'instance' or 'both')")
        if instance_sort_weight == 0 and (instance_delta is not None or confidence != "score"
                                          or instance_sort_mode != "instance"):
            raise ValueError(f"{name}: instance_sort_weight=0 switches Instance-Sort off; its settings "
                             "(instance_delta, confidence, instance_sort_mode) would be ignored")
        self.spatial = SpatialRSLoss(delta=delta, scope=scope)
        self.instance_sort_weight = float(instance_sort_weight)
        self.instance_sort_mode: InstanceSortMode = instance_sort_mode
        idelta = delta if instance_delta is None else instance_delta
        self.instance = InstanceSortLoss(delta=idelta) if uses_instance else None
        self.keypoint = InstanceSortLoss(delta=idelta, per_keypoint=True) if uses_keypoint else None
        self.confidence: ConfidenceKind = confidence
        self.score_thr = float(score_thr)
        self.positive_threshold = float(positive_threshold)
        self.space: RankingSpace = space
        self.anchor_weight = float(anchor_weight)
        self.max_positives: list[int | None] = []

    def bind(self, codec: Codec, spec: DatasetSpec) -> None:
        super().bind(codec, spec)
        self.max_positives = max_positives(codec, self.positive_threshold)

    def extra_repr(self) -> str:
        return (f"instance_sort_weight={self.instance_sort_weight}, instance_sort_mode={self.instance_sort_mode!r}, "
                f"confidence={self.confidence!r}, positive_threshold={self.positive_threshold}, space={self.space!r}, "
                f"anchor_weight={self.anchor_weight}")

    def forward(self, output: HeadOutput, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        weight = batch["target_weight"].float()
        bounds = self.max_positives or [None] * len(self.codec.target_keys)
        axes = [self._spatial(o, t, weight, bound)
                for o, t, bound in zip(self.outputs(output), self.targets(batch), bounds)]
        parts = {f"spatial{suffix}": torch.stack([a[key] for a in axes]).mean()
                 for key, suffix in (("loss", ""), ("rank", "_rank"), ("sort", "_sort"))}
        total = parts["spatial"]
        if self.instance_sort_weight > 0:
            parts.update(self._instance_sort(output, batch, weight))
            total = total + self.instance_sort_weight * parts["instance_sort"]
        if self.anchor_weight > 0:
            parts["anchor"] = torch.stack([
                keypoint_mse(o.float().sigmoid(), t, weight) for o, t in zip(self.outputs(output), self.targets(batch))
            ]).mean()
            total = total + self.anchor_weight * parts["anchor"]
        return {"loss": total, **parts}

    def _spatial(self, pred: Tensor, target: Tensor, weight: Tensor, bound: int | None) -> dict[str, Tensor]:
        if self.positive_threshold > 0:
            target = torch.where(target > self.positive_threshold, target, torch.zeros_like(target))
        with torch.autocast(device_type=pred.device.type, enabled=False):
            scores = pred.float().sigmoid() if self.space == "sigmoid" else pred
            return self.spatial(scores, target, weight, max_positives=bound)

    def _instance_sort(self, output: HeadOutput, batch: Mapping[str, Tensor], weight: Tensor) -> dict[str, Tensor]:
        """Instance-Sort over the batch's members: the crops with a labelled keypoint inside, plus the
        ``misplaced`` crops (``data.augment.misplace_prob``, beyond the paper) as low-quality members. A member's quality
        is the OKS of its decoded prediction over the keypoints it is trained on; a misplaced crop is judged
        over all its labelled keypoints, inside the crop or not, as test-time OKS judges a badly placed
        detection (a crop with no part of the person gets OKS ~ 0)."""
        with torch.no_grad():
            # decoded as evaluation decodes them (sigmoid, then the codec's decoder): the arg-max, the quarter shift
            # and SimCC's arg-max are unchanged by the sigmoid, DARK, soft-argmax and rank fit are defined on it
            detached = [o.detach().float().sigmoid() for o in self.outputs(output)]
            keypoints, _ = self.codec.decode(detached[0] if len(detached) == 1 else (detached[0], detached[1]))
        gt = batch["keypoints_input"].float()
        visible = batch["keypoints_visible"].float()
        misplaced = batch.get("misplaced")
        misplaced = (torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device) if misplaced is None
                     else misplaced.to(device=weight.device, dtype=torch.bool).reshape(-1))
        # the keypoints a member is judged on (and whose confidences it averages)
        member_weight = torch.where(misplaced[:, None], visible, weight)
        labelled = visible * (member_weight > 0)
        area = batch["area_input"].float()
        oks = oks_quality(keypoints, gt, labelled, area, self.sigmas)
        members = member_weight.sum(dim=1) > 0
        losses = []
        # the qualities are clamped to >= MIN_QUALITY: no host-side check (check_quality=False)
        if self.instance is not None:
            confidence = instance_confidence(output, member_weight, kind=self.confidence, score_thr=self.score_thr)
            losses.append(self.instance(confidence, oks, members.float(), check_quality=False))
        if self.keypoint is not None:
            terms = oks_quality(keypoints, gt, labelled, area, self.sigmas, per_keypoint=True)
            confidence = instance_confidence(output, member_weight, per_keypoint=True, kind=self.confidence)
            losses.append(self.keypoint(confidence, terms, member_weight, check_quality=False))
        parts = {"instance_sort": torch.stack(losses).mean()}
        placed = (members & ~misplaced).float()
        parts["oks_train"] = (oks * placed).sum() / placed.sum().clamp(min=1)  # 0 when none
        if "misplaced" in batch:
            moved = (members & misplaced).float()
            parts["oks_train_misplaced"] = (oks * moved).sum() / moved.sum()  # NaN when none
        return parts


def max_positives(codec: Codec, positive_threshold: float) -> list[int | None]:
    """A bound on the Spatial-RS positives (labels > ``positive_threshold``) of one heatmap or SimCC vector made
    by ``codec``, per output axis ([heatmaps] or [x, y]); None where the codec does not say (then the number is
    read from the data, one host synchronisation per step).

    The codecs' labels are exp(-d^2 / (2 sigma^2)) on a window of |offset| <= 3 sigma around an integer centre
    (per axis, for the heatmaps' product too), so one axis holds at most 2 floor(3 sigma) + 1 labelled bins,
    and at most floor(2 r) + 1 with a label above t > 0 (|d| < r = sigma sqrt(2 ln(1/t)), and every factor of a
    heatmap's product is <= 1). A heatmap's bound is the square of its axis bound.
    """
    axes = len(codec.target_keys)  # heatmaps: 1; SimCC: x and y
    sigma = getattr(codec, "sigma", None)
    sigmas = [sigma] * axes if isinstance(sigma, (int, float)) else sigma
    if sigmas is None or len(sigmas) != axes:
        return [None] * axes

    def per_axis(s: float) -> int:
        window = 2 * math.floor(3 * s) + 1
        if positive_threshold <= 0:
            return window
        return min(window, math.floor(2 * s * math.sqrt(2 * math.log(1 / positive_threshold))) + 1)

    if codec.num_dims == 2:
        return [per_axis(float(sigmas[0])) ** 2]
    return [per_axis(float(s)) for s in sigmas]
