"""KL divergence on SimCC vectors, the baseline loss of SimCC.

The codec's labels are peak-1 Gaussians truncated at 3 sigma; here each row is normalised to a distribution
p (sum 1) and compared with q = softmax(beta * pred) over the bins:

    loss(axis) = mean over (b, k) of w_bk * KL(p_bk || q_bk),   KL(p || q) = sum_bins p (log p - log q)

(w = target weight, 1 when ``use_target_weight`` is False; rows whose label sums to 0 contribute 0), and
the loss is the mean of the x and the y axis.

Reduction against mmpose 1.x ``KLDiscretLoss`` (which sums both axes): mmpose feeds the unnormalised peak-1
labels t (sum Z = sigma sqrt(2 pi), ~15 bins for sigma 6), takes the MEAN over bins instead of the sum,
SUMS over the batch and divides by K, so per axis ``mmpose = (B * Z / L) * this loss + a constant`` (same
gradient direction, a scale that Adam mostly absorbs). With ``label_softmax=True`` the labels are replaced
by softmax(label_beta * labels), as in mmpose. Computed in float32 even under autocast.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from rspose.codecs.base import HeadOutput
from rspose.losses.base import PoseLoss


def kl_discrete(
    pred: Tensor,
    target: Tensor,
    target_weight: Tensor | None = None,
    beta: float = 1.0,
    label_softmax: bool = False,
    label_beta: float = 10.0,
    use_target_weight: bool = True,
) -> Tensor:
    """KL loss of one SimCC axis (scalar float32): pred, target (B, K, L), target_weight (B, K) (or (B, K, 1))."""
    if pred.dim() != 3 or target.shape != pred.shape:
        raise ValueError(
            f"KLDiscretLoss: pred and target must both be (B, K, L) (one SimCC axis), got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    b, k, _ = pred.shape
    with torch.autocast(device_type=pred.device.type, enabled=False):
        log_q = torch.log_softmax(pred.float() * beta, dim=-1)
        t = target.float()
        if label_softmax:
            p = torch.softmax(t * label_beta, dim=-1)
        else:
            p = t / t.sum(-1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
        kl = (torch.xlogy(p, p) - p * log_q).sum(-1)  # (B, K)
        if use_target_weight:
            if target_weight is None:
                raise ValueError("KLDiscretLoss(use_target_weight=True): target_weight (B, K) is required")
            if target_weight.numel() != b * k:
                raise ValueError(
                    f"KLDiscretLoss: target_weight must be (B, K) = {(b, k)}, got {tuple(target_weight.shape)}"
                )
            kl = kl * target_weight.float().reshape(b, k)
        return kl.mean()


class KLDiscretLoss(PoseLoss):
    """KL divergence between normalised SimCC labels and softmax(beta * pred), mean of both axes (SimCC only).

    Args:
        beta: temperature of the prediction softmax.
        label_softmax: replace the labels by softmax(label_beta * labels) instead of normalising them.
        use_target_weight: multiply each (b, k) row's KL by its target weight.
        label_beta: temperature of the label softmax (only with ``label_softmax``).

    ``loss((pred_x (B, K, Lx), pred_y (B, K, Ly)), batch) -> {"loss", "kl_x", "kl_y"}``; the per-axis math is
    :func:`kl_discrete`.
    """

    codec_dims = (1,)

    def __init__(
        self, beta: float = 1.0, label_softmax: bool = False, use_target_weight: bool = True, label_beta: float = 10.0
    ) -> None:
        super().__init__()
        if label_beta != 10.0 and not label_softmax:
            raise ValueError(f"KLDiscretLoss: label_beta={label_beta} is only used with label_softmax=true")
        self.beta = float(beta)
        self.label_softmax = bool(label_softmax)
        self.use_target_weight = bool(use_target_weight)
        self.label_beta = float(label_beta)

    def extra_repr(self) -> str:
        return (f"beta={self.beta}, label_softmax={self.label_softmax}, use_target_weight={self.use_target_weight}"
                + (f", label_beta={self.label_beta}" if self.label_softmax else ""))

    def forward(self, output: HeadOutput, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        weight = batch["target_weight"]
        kl_x, kl_y = (
            kl_discrete(p, t, weight, self.beta, self.label_softmax, self.label_beta, self.use_target_weight)
            for p, t in zip(self.outputs(output), self.targets(batch))
        )
        return {"loss": 0.5 * (kl_x + kl_y), "kl_x": kl_x, "kl_y": kl_y}
