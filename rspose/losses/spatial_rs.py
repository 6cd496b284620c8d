"""Spatial-RS: the Rank & Sort loss over the pixels of each heatmap (or bins of each SimCC vector).

Replaces MSE (2-D heatmaps) and KL (1-D SimCC vectors). docs/method.md, "Spatial-RS":

* ``scope="heatmap"`` (default): one set per (instance b, keypoint k); labels are the target Gaussian
  (peak 1, truncated at 3 sigma, 0 = negative). A heatmap is *valid* when its target weight is > 0 and it
  has a positive. Loss = mean over valid heatmaps of (Rank + Sort); the gradient of each heatmap is its
  identity-update gradient divided by the number of valid heatmaps.
* ``scope="batch"``: all pixels of the heatmaps with weight > 0 pooled into one set (an ablation).

Target weights only select heatmaps (> 0 means used); their magnitude does not scale the loss.
For SimCC call the loss once per axis ((B, K, Lx) then (B, K, Ly)) and average the two.
Computed in float32/float64 even under autocast; see :mod:`rspose.losses.rank_sort` for the algorithm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from rspose.losses.rank_sort import DEFAULT_DELTA, rank_sort

Scope = Literal["heatmap", "batch"]


class _IdentityUpdate(torch.autograd.Function):
    """Returns a precomputed loss and, on backward, the precomputed identity-update gradient times grad_output."""

    @staticmethod
    def forward(ctx, pred: Tensor, loss: Tensor, grad: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(grad)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_output.to(grad.dtype), None, None


def attach_gradient(pred: Tensor, loss: Tensor, grad: Tensor) -> Tensor:
    """``loss`` (a scalar computed without autograd) whose gradient w.r.t. ``pred`` is ``grad`` (like pred)."""
    return _IdentityUpdate.apply(pred, loss.detach(), grad.detach())


def identity_update(pred: Tensor, compute: Callable[[Tensor], tuple[Tensor, Tensor]]) -> Tensor:
    """Attach a precomputed gradient: ``compute(pred) -> (loss scalar, grad like pred)``, both float32."""
    with torch.no_grad():
        loss, grad = compute(pred.detach())
    return attach_gradient(pred, loss, grad)


class SpatialRSLoss(nn.Module):
    """Rank & Sort loss over heatmap pixels (2-D) or SimCC bins (1-D).

    Args:
        delta: smoothing of the step function H (docs/method.md); 0 gives the hard step.
        scope: ``"heatmap"``: one set per heatmap; ``"batch"``: all pixels of the batch in one set.

    Call: ``loss(pred, target, target_weight, max_positives=None)``, with

    * pred: (B, K, H, W) heatmap logits or (B, K, L) SimCC logits of one axis (any float dtype);
    * target: same shape, labels in [0, 1] (0 = negative);
    * target_weight: (B, K) (or (B, K, 1)); > 0 marks a labelled keypoint;
    * max_positives: optional bound on the positives of one heatmap (RankingLoss takes it from the codec's
      Gaussian): every shape is then static and the call never waits for the device; a heatmap with more
      positives makes the loss NaN. None: read from the data (one host synchronisation per call).

    Returns ``{"loss": Tensor, "rank": Tensor, "sort": Tensor}``: float32 scalars, the means over valid
    heatmaps, ``rank + sort == loss``; only ``loss`` carries the gradient. With no valid heatmap the loss is 0
    with a zero gradient. A NaN or inf logit in a valid heatmap makes the loss and every gradient NaN (as MSE
    would), so that a diverged model is visible in the logged loss and a GradScaler skips the step.
    """

    def __init__(self, delta: float = DEFAULT_DELTA, scope: Scope = "heatmap") -> None:
        super().__init__()
        if not delta >= 0:
            raise ValueError(f"SpatialRSLoss: delta must be >= 0, got {delta}")
        if scope not in ("heatmap", "batch"):
            raise ValueError(f"SpatialRSLoss: scope must be 'heatmap' or 'batch', got {scope!r}")
        self.delta = float(delta)
        self.scope: Scope = scope

    def extra_repr(self) -> str:
        return f"delta={self.delta}, scope={self.scope!r}"

    def forward(
        self, pred: Tensor, target: Tensor, target_weight: Tensor, max_positives: int | None = None
    ) -> dict[str, Tensor]:
        flat_target, weight = self._check(pred, target, target_weight)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            p = pred.float()
            with torch.no_grad():
                loss, grad, rank, sort = self._compute(p.detach().reshape(flat_target.shape), flat_target, weight,
                                                       max_positives)
            loss = attach_gradient(p, loss, grad.view(p.shape))
        return {"loss": loss, "rank": rank, "sort": sort}

    def _check(self, pred: Tensor, target: Tensor, target_weight: Tensor) -> tuple[Tensor, Tensor]:
        if pred.dim() < 3:
            raise ValueError(f"SpatialRSLoss: pred must be (B, K, H, W) or (B, K, L), got shape {tuple(pred.shape)}")
        if target.shape != pred.shape:
            raise ValueError(
                f"SpatialRSLoss: target shape {tuple(target.shape)} differs from pred shape {tuple(pred.shape)}"
            )
        b, k = pred.shape[:2]
        if target_weight.dim() == 3 and target_weight.shape[-1] == 1:
            target_weight = target_weight[..., 0]
        if tuple(target_weight.shape) != (b, k):
            raise ValueError(
                f"SpatialRSLoss: target_weight must be (B, K) = {(b, k)}, got shape {tuple(target_weight.shape)}"
            )
        return target.detach().float().reshape(b * k, -1), target_weight.detach().reshape(b * k) > 0

    def _compute(
        self, pred: Tensor, target: Tensor, weight: Tensor, max_positives: int | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """pred, target (B*K, S) float32, weight (B*K,) bool -> (loss, grad (B*K, S), rank, sort).

        Static shapes: every heatmap is evaluated and the unused ones are masked out (no ``nonzero``)."""
        used = weight & (target > 0).any(1) if self.scope == "heatmap" else weight
        finite = (torch.isfinite(pred).all(1) | ~used).all()
        if self.scope == "heatmap":
            out = rank_sort(pred, target, self.delta, max_pos=max_positives)
            n = used.sum().clamp(min=1)
            zero = pred.new_zeros(())
            grad = torch.where(used[:, None], out.grad / n, zero)
            rank = torch.where(used, out.rank, 0.0).sum() / n
            sort = torch.where(used, out.sort, 0.0).sum() / n
        else:
            mask = used[:, None].expand_as(pred).reshape(1, -1)
            bound = None if max_positives is None else max_positives * pred.shape[0]
            out = rank_sort(pred.reshape(1, -1), target.reshape(1, -1), self.delta, mask=mask, max_pos=bound)
            rank, sort = out.rank[0], out.sort[0]
            grad = out.grad.view_as(pred)
        rank, sort = rank.float(), sort.float()
        # a NaN or inf logit in a used heatmap: NaN loss, rank, sort and gradient (as MSE would give)
        nan = torch.full((), float("nan"), device=pred.device)
        rank, sort = torch.where(finite, rank, nan), torch.where(finite, sort, nan)
        return rank + sort, torch.where(finite, grad, nan), rank, sort
