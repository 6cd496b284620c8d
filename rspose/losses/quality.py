"""The inputs of Instance-Sort: instance confidence from a head's output, and OKS quality (docs/method.md).

* :func:`instance_confidence`: c_n from the max logit of each keypoint's heatmap (SimCC: the min of the x
  and y max logits): their mean over the valid keypoints (the first reconstruction), the mean of their
  sigmoids, or the test-time score (mean of the sigmoids above the rescoring threshold). Differentiable:
  the gradient flows through the mean and the max to the arg-max pixels (shared equally among tied maxima).
* :func:`oks_quality`: q_n = OKS (pycocotools' formula, docs/protocols.md) between the decoded, detached
  prediction and the ground truth, both in input-crop pixels, with the instance area scaled into the crop;
  clamped to >= 1e-6 so that every instance is a positive of the Instance-Sort set.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from rspose.codecs.base import HeadOutput
from rspose.data.oks_formula import oks_exponent
from rspose.data.specs import KEYPOINT_SCORE_THR

#: Lower bound of the quality labels (Instance-Sort needs every element positive).
MIN_QUALITY = 1e-6


def keypoint_max_logits(output: HeadOutput) -> Tensor:
    """(B, K) float32 max logit of every keypoint: heatmaps (B, K, H, W), or the min of the x and y
    maxima for a SimCC pair ((B, K, Lx), (B, K, Ly))."""
    if isinstance(output, Tensor):
        if output.dim() != 4:
            raise ValueError(f"instance_confidence: heatmaps must be (B, K, H, W), got shape {tuple(output.shape)}")
        return output.float().flatten(2).amax(-1)
    if len(output) != 2 or any(o.dim() != 3 for o in output) or output[0].shape[:2] != output[1].shape[:2]:
        shapes = [tuple(o.shape) for o in output]
        raise ValueError(f"instance_confidence: SimCC output must be ((B, K, Lx), (B, K, Ly)), got shapes {shapes}")
    return torch.minimum(output[0].float().amax(-1), output[1].float().amax(-1))


ConfidenceKind = Literal["max_logit", "sigmoid", "score"]


def instance_confidence(
    output: HeadOutput,
    target_weight: Tensor,
    per_keypoint: bool = False,
    kind: ConfidenceKind = "max_logit",
    score_thr: float = KEYPOINT_SCORE_THR,
) -> Tensor:
    """Confidence of every instance (or keypoint), differentiable w.r.t. ``output``.

    Args:
        output: (B, K, H, W) heatmap logits, or the SimCC pair ((B, K, Lx), (B, K, Ly)).
        target_weight: (B, K); > 0 marks a valid (labelled) keypoint.
        per_keypoint: return the (B, K) keypoint confidences instead of the instance confidence.
        kind: with m_k the max logit of keypoint k (:func:`keypoint_max_logits`):

            * ``"max_logit"``: keypoint m_k; instance = mean of m_k over the valid keypoints (the first
              reconstruction of the method);
            * ``"sigmoid"``: keypoint sigmoid(m_k); instance = mean of sigmoid(m_k) over the valid keypoints;
            * ``"score"``: keypoint sigmoid(m_k); instance = mean of sigmoid(m_k) over ALL keypoints whose
              sigmoid(m_k) > ``score_thr`` (0 when none): the score that test-time rescoring ranks (without the
              box score). The threshold mask is not differentiated.
        score_thr: the rescoring threshold of ``"score"``.

    Returns:
        (B,) float32 (for ``max_logit`` / ``sigmoid`` 0 for an instance without a valid keypoint: leave such
        instances out of the Instance-Sort set), or (B, K) when ``per_keypoint``.
    """
    if kind not in ("max_logit", "sigmoid", "score"):
        raise ValueError(f"instance_confidence: kind={kind!r}, expected 'max_logit', 'sigmoid' or 'score'")
    with torch.autocast(device_type=target_weight.device.type, enabled=False):
        maxima = keypoint_max_logits(output)
        if target_weight.dim() == 3 and target_weight.shape[-1] == 1:
            target_weight = target_weight[..., 0]
        if target_weight.shape != maxima.shape:
            raise ValueError(
                f"instance_confidence: target_weight must be (B, K) = {tuple(maxima.shape)}, "
                f"got {tuple(target_weight.shape)}"
            )
        values = maxima if kind == "max_logit" else maxima.sigmoid()
        if per_keypoint:
            return values
        if kind == "score":
            used = (values.detach() > score_thr).float()
        else:
            used = (target_weight.detach() > 0).float()
        return (values * used).sum(1) / used.sum(1).clamp(min=1)


@torch.no_grad()
def oks_quality(
    pred_keypoints: Tensor,
    gt_keypoints: Tensor,
    keypoints_visible: Tensor,
    area: Tensor,
    sigmas: Tensor,
    per_keypoint: bool = False,
) -> Tensor:
    """OKS between predictions and their own ground truth, detached, clamped to >= 1e-6.

    e_k = d_k^2 / (2 sigma_k)^2 / (area + eps) / 2 (docs/protocols.md), OKS = mean of exp(-e_k) over labelled
    keypoints.

    Args:
        pred_keypoints: (B, K, 2) decoded predictions in input-crop pixels.
        gt_keypoints: (B, K, 2) ground truth in input-crop pixels.
        keypoints_visible: (B, K); > 0 marks a labelled keypoint.
        area: (B,) instance area in input-crop pixels^2 (the GT area scaled into the crop).
        sigmas: (K,) dataset OKS sigmas.
        per_keypoint: return the (B, K) terms exp(-e_k) (unlabelled keypoints get the terms too; mask them).

    Returns:
        (B,) float32 OKS (1e-6 for an instance without a labelled keypoint), or (B, K) terms.
    """
    b, k = pred_keypoints.shape[:2]
    if pred_keypoints.shape != (b, k, 2) or gt_keypoints.shape != (b, k, 2):
        raise ValueError(
            f"oks_quality: keypoints must be (B, K, 2), got pred {tuple(pred_keypoints.shape)} "
            f"and gt {tuple(gt_keypoints.shape)}"
        )
    if keypoints_visible.shape != (b, k) or area.shape != (b,) or sigmas.shape != (k,):
        raise ValueError(
            f"oks_quality: expected keypoints_visible (B, K) = {(b, k)}, area (B,) = {(b,)}, sigmas (K,) = {(k,)}; "
            f"got {tuple(keypoints_visible.shape)}, {tuple(area.shape)}, {tuple(sigmas.shape)}"
        )
    with torch.autocast(device_type=pred_keypoints.device.type, enabled=False):
        pred, gt = pred_keypoints.detach().double(), gt_keypoints.detach().double()
        d2 = ((pred - gt) ** 2).sum(-1)
        sigmas = sigmas.detach().double().to(pred.device)
        terms = torch.exp(-oks_exponent(d2, sigmas, area.detach().double()))
        if per_keypoint:
            return terms.clamp(min=MIN_QUALITY).float()
        visible = (keypoints_visible.detach() > 0).double()
        oks = (terms * visible).sum(1) / visible.sum(1).clamp(min=1)
        return oks.clamp(min=MIN_QUALITY).float()
