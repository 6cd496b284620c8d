"""Instance-Sort: sort instance confidences by their localisation quality (OKS), docs/method.md.

The set is the instances of the batch: confidences c_n (see :func:`rspose.losses.instance_confidence`)
labelled with their OKS q_n in (0, 1] (see :func:`rspose.losses.oks_quality`). Every element is a
positive, so the Rank part is 0 and the loss is the Sort error of the set, with its identity-update
gradient to the confidences. The total training loss is ``Spatial-RS + lambda * Instance-Sort``
(``DEFAULT_INSTANCE_SORT_WEIGHT`` = lambda = 1); the LightningModule forms that sum.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rspose.losses.rank_sort import DEFAULT_DELTA, rank_sort
from rspose.losses.spatial_rs import attach_gradient

#: lambda in L = Spatial-RS + lambda * Instance-Sort (docs/method.md).
DEFAULT_INSTANCE_SORT_WEIGHT = 1.0


class InstanceSortLoss(nn.Module):
    """Sort loss of instance (or per-keypoint) confidences against their OKS quality.

    Args:
        delta: smoothing of the step function H (docs/method.md).
        per_keypoint: False: one set of N instance confidences. True: one set per keypoint type k, over
            the instances where that keypoint is labelled; the loss is the mean over keypoint types that
            have at least one labelled instance.

    Call: ``loss(scores, quality, weight=None, check_quality=True) -> Tensor`` (scalar float32):

    * instance mode: scores (N,) confidences (logits, any float dtype), quality (N,) in (0, 1], optional
      weight (N,): elements with weight <= 0 are left out of the set;
    * per-keypoint mode: scores (N, K), quality (N, K) per-keypoint OKS terms, weight (N, K) target weights
      (<= 0: not in keypoint k's set; None: all in).

    Quality values must be > 0 (every element is a positive); clamp them (``oks_quality`` does).
    ``check_quality=True`` raises a ValueError otherwise, which waits for the device (one host
    synchronisation); ``False`` (RankingLoss, whose qualities are clamped) makes such a loss NaN instead.
    With no element in any set the loss is 0 with a zero gradient. A NaN or inf score or quality in a set
    makes the loss and the gradient NaN (never a finite loss with a broken gradient). Shapes are static: a
    set holds at most N elements, so the call itself never waits for the device.
    """

    def __init__(self, delta: float = DEFAULT_DELTA, per_keypoint: bool = False) -> None:
        super().__init__()
        if not delta >= 0:
            raise ValueError(f"InstanceSortLoss: delta must be >= 0, got {delta}")
        self.delta = float(delta)
        self.per_keypoint = bool(per_keypoint)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, per_keypoint={self.per_keypoint}"

    def forward(
        self, scores: Tensor, quality: Tensor, weight: Tensor | None = None, check_quality: bool = True
    ) -> Tensor:
        want = 2 if self.per_keypoint else 1
        names = "(N, K)" if self.per_keypoint else "(N,)"
        if scores.dim() != want or quality.shape != scores.shape:
            raise ValueError(
                f"InstanceSortLoss(per_keypoint={self.per_keypoint}): scores and quality must both be {names}, "
                f"got {tuple(scores.shape)} and {tuple(quality.shape)}"
            )
        if weight is not None and weight.shape != scores.shape:
            raise ValueError(f"InstanceSortLoss: weight must be {names} like scores, got {tuple(weight.shape)}")
        q = quality.detach().float()
        keep = torch.ones_like(q, dtype=torch.bool) if weight is None else weight.detach() > 0
        if check_quality and bool(((q <= 0) & keep).any()):  # NaN compares False: handled below
            raise ValueError("InstanceSortLoss: quality must be > 0 for every element in a set (clamp it, e.g. 1e-6)")
        with torch.autocast(device_type=scores.device.type, enabled=False):
            p = scores.float()
            with torch.no_grad():
                loss, grad = self._compute(p.detach(), q, keep)
            return attach_gradient(p, loss, grad)

    def _compute(self, p: Tensor, q: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """scores p, quality q (N,) or (N, K) float32, keep (same) bool -> (loss, grad like p)."""
        # sets as rows: (1, N) for instances, (K, N) for keypoint types
        labels = q.reshape(1, -1) if not self.per_keypoint else q.t()
        mask = keep.reshape(1, -1) if not self.per_keypoint else keep.t()
        labels = torch.where(mask, labels, torch.zeros_like(labels))
        logits = p.reshape(1, -1) if not self.per_keypoint else p.t()
        # NaN or inf, or a quality <= 0 (not a positive), in a set: NaN loss and gradient
        finite = ((torch.isfinite(q) & torch.isfinite(p) & (q > 0)) | ~keep).all()
        used = mask.any(1)
        n = used.sum().clamp(min=1)
        out = rank_sort(logits, labels, self.delta, mask=mask, max_pos=logits.shape[1])
        loss = (torch.where(used, out.sort, 0.0).sum() / n).float()
        grad = out.grad / n
        grad = grad.view_as(p) if not self.per_keypoint else grad.t()
        nan = torch.full((), float("nan"), device=p.device)
        return torch.where(finite, loss, nan), torch.where(finite, grad, nan)
