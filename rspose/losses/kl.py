"""KL divergence on SimCC vectors, the baseline loss of SimCC (one axis per call).

The codec's labels are peak-1 Gaussians truncated at 3 sigma; here each row is normalised to a distribution
p (sum 1) and compared with q = softmax(beta * pred) over the bins:

    loss = mean over (b, k) of w_bk * KL(p_bk || q_bk),   KL(p || q) = sum_bins p (log p - log q)

(w = target weight, 1 when ``use_target_weight`` is False; rows whose label sums to 0 contribute 0).

Reduction against mmpose 1.x ``KLDiscretLoss`` (which sums both axes in one call): mmpose feeds the
unnormalised peak-1 labels t (sum Z = sigma sqrt(2 pi), ~15 bins for sigma 6), takes the MEAN over bins
instead of the sum, SUMS over the batch and divides by K, so per axis
``mmpose = (B * Z / L) * this loss + a constant`` (same gradient direction, a scale that Adam mostly
absorbs). The LightningModule averages the two axes (mmpose adds them). With ``label_softmax=True`` the labels
are replaced by softmax(label_beta * labels), as in mmpose. Computed in float32 even under autocast.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class KLDiscretLoss(nn.Module):
    """KL divergence between normalised SimCC labels and softmax(beta * pred), one axis.

    Args:
        beta: temperature of the prediction softmax.
        label_softmax: replace the labels by softmax(label_beta * labels) instead of normalising them.
        use_target_weight: multiply each (b, k) row's KL by its target weight.
        label_beta: temperature of the label softmax (only with ``label_softmax``).

    Call: ``loss(pred, target, target_weight) -> Tensor`` (scalar float32) with pred, target (B, K, L)
    and target_weight (B, K) (or (B, K, 1)).
    """

    def __init__(
        self, beta: float = 1.0, label_softmax: bool = False, use_target_weight: bool = True, label_beta: float = 10.0
    ) -> None:
        super().__init__()
        self.beta = float(beta)
        self.label_softmax = bool(label_softmax)
        self.use_target_weight = bool(use_target_weight)
        self.label_beta = float(label_beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, label_softmax={self.label_softmax}, use_target_weight={self.use_target_weight}"

    def forward(self, pred: Tensor, target: Tensor, target_weight: Tensor | None = None) -> Tensor:
        if pred.dim() != 3 or target.shape != pred.shape:
            raise ValueError(
                f"KLDiscretLoss: pred and target must both be (B, K, L) (one SimCC axis), got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        b, k, _ = pred.shape
        with torch.autocast(device_type=pred.device.type, enabled=False):
            log_q = torch.log_softmax(pred.float() * self.beta, dim=-1)
            t = target.float()
            if self.label_softmax:
                p = torch.softmax(t * self.label_beta, dim=-1)
            else:
                p = t / t.sum(-1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
            kl = (torch.xlogy(p, p) - p * log_q).sum(-1)  # (B, K)
            if self.use_target_weight:
                if target_weight is None:
                    raise ValueError("KLDiscretLoss(use_target_weight=True): target_weight (B, K) is required")
                if target_weight.numel() != b * k:
                    raise ValueError(
                        f"KLDiscretLoss: target_weight must be (B, K) = {(b, k)}, got {tuple(target_weight.shape)}"
                    )
                kl = kl * target_weight.float().reshape(b, k)
            return kl.mean()
