"""Slow, obviously-correct reference of the ranking losses, written line by line from METHOD.md.

One Python loop over the positives of each set (the way the RS loss of the literature is written),
float64 throughout. Used by the tests (agreement with the vectorised losses) and by
benchmarks/losses.py (the speed-up).
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-10


def step(x: Tensor, delta: float) -> Tensor:
    if delta == 0:
        return (x >= 0).double()
    return torch.clamp(x / (2 * delta) + 0.5, 0, 1)


def rank_sort_set(logits: Tensor, labels: Tensor, delta: float) -> tuple[float, float, Tensor]:
    """One set: logits (M,), labels (M,) -> (rank error, sort error, identity-update gradient (M,) float64)."""
    s = logits.double()
    y = labels.double()
    pos = (y > 0).nonzero().flatten().tolist()
    neg = (y == 0).nonzero().flatten()
    g = torch.zeros_like(s)
    if not pos:
        return 0.0, 0.0, g
    s_pos, y_pos = s[pos], y[pos]
    s_neg = s[neg]
    rank_errors, sort_errors = [], []
    for i in pos:
        h_pos = step(s_pos - s[i], delta)  # H(x_ij) over positives j, self included
        h_neg = step(s_neg - s[i], delta)  # H(x_ij) over negatives j
        rank_pos = h_pos.sum()
        fp = h_neg.sum()
        l_rank = fp / (rank_pos + fp)
        l_sort = (h_pos * (1 - y_pos)).sum() / rank_pos
        ge = y_pos >= y[i]
        l_sort_target = (h_pos * ge * (1 - y_pos)).sum() / (h_pos * ge).sum()
        e = l_sort - l_sort_target
        rank_errors.append(float(l_rank))
        sort_errors.append(float(e))
        if fp > EPS:
            g[i] -= l_rank
            g[neg] += l_rank * h_neg / fp
        m = h_pos * (y_pos < y[i])
        z = m.sum()
        if z > EPS:
            g[i] -= e
            g[pos] += e * m / z
    g /= len(pos)
    return sum(rank_errors) / len(pos), sum(sort_errors) / len(pos), g


def spatial_rs(
    pred: Tensor, target: Tensor, target_weight: Tensor, delta: float = 0.5, scope: str = "heatmap"
) -> tuple[float, float, float, Tensor]:
    """pred, target (B, K, *S), target_weight (B, K) -> (loss, rank, sort, grad like pred, float64)."""
    b, k = pred.shape[:2]
    flat_p = pred.reshape(b * k, -1).double()
    flat_t = target.reshape(b * k, -1).double()
    w = target_weight.reshape(b * k)
    grad = torch.zeros_like(flat_p)
    if scope == "batch":
        rows = [r for r in range(b * k) if w[r] > 0]
        if not rows:
            return 0.0, 0.0, 0.0, grad.reshape(pred.shape)
        r_err, s_err, g = rank_sort_set(flat_p[rows].flatten(), flat_t[rows].flatten(), delta)
        if not (flat_t[rows] > 0).any():
            return 0.0, 0.0, 0.0, grad.reshape(pred.shape)
        grad[rows] = g.reshape(len(rows), -1)
        return r_err + s_err, r_err, s_err, grad.reshape(pred.shape)
    rows = [r for r in range(b * k) if w[r] > 0 and (flat_t[r] > 0).any()]
    if not rows:
        return 0.0, 0.0, 0.0, grad.reshape(pred.shape)
    total_r = total_s = 0.0
    for r in rows:
        r_err, s_err, g = rank_sort_set(flat_p[r], flat_t[r], delta)
        total_r += r_err
        total_s += s_err
        grad[r] = g / len(rows)
    n = len(rows)
    return (total_r + total_s) / n, total_r / n, total_s / n, grad.reshape(pred.shape)


def instance_sort(scores: Tensor, quality: Tensor, delta: float = 0.5) -> tuple[float, Tensor]:
    """scores, quality (N,) -> (sort loss, grad (N,)): every element is a positive."""
    r_err, s_err, g = rank_sort_set(scores, quality, delta)
    assert r_err == 0.0
    return s_err, g
