"""Keypoint MSE on heatmaps, the baseline loss of SimpleBaseline / HRNet / ViTPose (mmpose 1.x convention).

    loss = loss_weight * mean over (b, k, h, w) of w_bk * (pred_bkhw - target_bkhw)^2

with w_bk the target weight (1 when ``use_target_weight`` is False). This equals mmpose 1.x
``KeypointMSELoss(use_target_weight=True)`` (the weight multiplies the squared error; the mean runs over
every element, masked ones included). The legacy variant (HRNet / mmpose 0.x ``JointsMSELoss``) is
``0.5 * mean_k MSE(pred_k * w_k, target_k * w_k)``: for 0/1 weights it is exactly 0.5 x this loss (and it
squares non-binary weights). Computed in float32 even under autocast.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from rspose.codecs.base import HeadOutput
from rspose.losses.base import PoseLoss


def keypoint_mse(
    pred: Tensor, target: Tensor, target_weight: Tensor | None = None, use_target_weight: bool = True
) -> Tensor:
    """Mean weighted squared error (scalar float32).

    Args:
        pred, target: (B, K, H, W) (or any (B, K, *S)), any float dtype.
        target_weight: (B, K) (or (B, K, 1)); required when ``use_target_weight``.
    """
    if target.shape != pred.shape or pred.dim() < 3:
        raise ValueError(
            f"KeypointMSELoss: pred and target must both be (B, K, ...), got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    with torch.autocast(device_type=pred.device.type, enabled=False):
        sq = (pred.float() - target.float()) ** 2
        if use_target_weight:
            if target_weight is None:
                raise ValueError("KeypointMSELoss(use_target_weight=True): target_weight (B, K) is required")
            weight = target_weight.float().reshape(pred.shape[0], pred.shape[1], -1)
            if weight.shape[-1] != 1:
                raise ValueError(
                    f"KeypointMSELoss: target_weight must be (B, K) = {tuple(pred.shape[:2])}, "
                    f"got {tuple(target_weight.shape)}"
                )
            sq = sq * weight.reshape(weight.shape[:2] + (1,) * (pred.dim() - 2))
        return sq.mean()


class KeypointMSELoss(PoseLoss):
    """MSE between heatmaps with per-keypoint target weights (heatmap codecs only).

    Args:
        use_target_weight: multiply the squared error of keypoint (b, k) by its target weight.
        loss_weight: overall factor.

    ``loss(output (B, K, h, w), batch) -> {"loss"}``; the element-wise math is :func:`keypoint_mse`.
    """

    codec_dims = (2,)

    def __init__(self, use_target_weight: bool = True, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.use_target_weight = bool(use_target_weight)
        self.loss_weight = float(loss_weight)

    def extra_repr(self) -> str:
        return f"use_target_weight={self.use_target_weight}, loss_weight={self.loss_weight}"

    def forward(self, output: HeadOutput, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        (pred,), (target,) = self.outputs(output), self.targets(batch)
        loss = keypoint_mse(pred, target, batch["target_weight"], self.use_target_weight) * self.loss_weight
        return {"loss": loss}
