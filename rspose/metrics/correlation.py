"""Rank and linear correlations between confidence and localisation quality (OKS).

Spearman = Pearson correlation of the average ranks (ties share the mean of their ranks), as in
``scipy.stats.spearmanr``; Kendall is tau-b (``scipy.stats.kendalltau``, O(n log n)). A correlation is NaN
when it is undefined: fewer than 2 values or a constant input.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

from rspose.metrics.oks import ArrayLike


def _vec(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def average_ranks(x: ArrayLike) -> np.ndarray:
    """(n,) values -> (n,) 1-based ranks; tied values get the mean of their ranks."""
    v = _vec(x)
    n = v.size
    if n == 0:
        return v
    order = np.argsort(v)  # tie order does not matter: ties get one shared rank
    sv = v[order]
    first = np.concatenate([[True], sv[1:] != sv[:-1]])
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.concatenate([starts[1:], [n]])
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation of two (n,) vectors (NaN if undefined)."""
    a, b = _vec(x), _vec(y)
    if a.size != b.size:
        raise ValueError(f"pearson: x has {a.size} values and y has {b.size}; expected the same length")
    if a.size < 2:
        return math.nan
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))  # no BLAS call: no thread start-up
    if den == 0.0:
        return math.nan
    return float(np.clip(float((a * b).sum()) / den, -1.0, 1.0))


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation of two (n,) vectors (NaN if undefined)."""
    return pearson(average_ranks(x), average_ranks(y))


def kendall(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall tau-b of two (n,) vectors (NaN if undefined)."""
    a, b = _vec(x), _vec(y)
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(a, b).statistic)


def spearman_per_column(x: ArrayLike, y: ArrayLike) -> tuple[float, np.ndarray]:
    """Spearman of each column of (n, K) x and y, skipping NaN entries of y; returns (mean over defined, (K,))."""
    xs = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    ys = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y, dtype=np.float64)
    if xs.ndim != 2 or xs.shape != ys.shape:
        raise ValueError(f"spearman_per_column: expected two (n, K) arrays of one shape, got {xs.shape} and {ys.shape}")
    per = np.full(xs.shape[1], np.nan)
    for k in range(xs.shape[1]):  # K columns (17), each vectorised
        ok = np.isfinite(ys[:, k])
        per[k] = spearman(xs[ok, k], ys[ok, k])
    defined = per[np.isfinite(per)]
    return (float(defined.mean()) if defined.size else math.nan), per
