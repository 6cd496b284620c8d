"""The Rank & Sort error of many sets at once, exact and vectorised, with its identity-update gradient.

docs/method.md is the definition of record. A *set* is a row of logits ``s`` with labels ``y`` in [0, 1]:
positives P = {y > 0}, negatives N = {y = 0}. With the smoothed step
``H(x) = clamp(x / (2 delta) + 0.5, 0, 1)`` (``delta = 0``: the hard step ``x >= 0``) and
``x_ij = s_j - s_i``, every positive i has

    rank_pos(i) = sum_{j in P} H(x_ij)        fp(i) = sum_{j in N} H(x_ij)
    lR(i) = fp(i) / (rank_pos(i) + fp(i))
    lS(i) = sum_{j in P} H(x_ij) (1 - y_j) / rank_pos(i)
    lS*(i) = sum_{j in P, y_j >= y_i} H(x_ij) (1 - y_j) / sum_{j in P, y_j >= y_i} H(x_ij)

and the set's Rank error is mean_i lR(i), its Sort error mean_i (lS(i) - lS*(i)). The gradient is the
identity update of docs/method.md (not autograd through H), divided by |P|.

How it is computed (no positives x pixels tensor is ever built):

* Window sums against the positives (fp(i), rank_pos(i), the current sorting numerator, and the gradient
  of every negative). H(v - t_i) is 0, linear or 1 depending on where v lies among t_i - delta and
  t_i + delta, so the 2P thresholds of a set are sorted once and every element is located among them
  with ONE ``searchsorted`` (k = number of thresholds <= v). Counts and sums of v per k (``index_add_``)
  and their prefix sums give, for every positive, the number of elements above its window and the
  count and sum of those inside it: fp(i) and rank_pos(i) exactly, in O(M log P) per set. The gradient
  of a negative, sum_i w_i H(v - t_i), is three look-ups in prefix-sum tables indexed by the same k.
  Done in float64 relative to the largest positive logit of each set (cancellation), by chunks of sets.
* The target sums need the label order: Z(i) = sum_{j in P, y_j < y_i} H(x_ij) (and the same weighted by
  1 - y_j, and the sorting gradient among positives) come from the (P x P) pairs of a chunk of sets,
  built in reused float32 buffers and reduced with ``bmm``; then the target sums are rank_pos - Z.
  Very large sets (the pooled ``"batch"`` scope, ~10^5 positives) use an exact merge-sort tree instead
  (2-D dominance sums, O(P log^2 P), float64).
* Static shapes: the positives of a set sit in P padded slots, P = ``max_pos`` when the caller knows a bound
  (Spatial-RS: the codec's positive disc; Instance-Sort: the set size), so that nothing waits for the device
  and ``torch.compile`` sees one graph; without a bound P is read from the data (one host synchronisation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

#: The smoothing of the step function H used when none is given (docs/method.md).
DEFAULT_DELTA = 0.5
#: Threshold below which fp(i) or the sorting normaliser counts as zero (as in the reference RS loss).
EPS = 1e-10
#: Most elements (sets x columns) processed at once; a chunk also holds at most a quarter of the input, so
#: that the temporaries stay a small multiple of ``logits`` (~48 bytes per element of a chunk).
CHUNK_ELEMENTS = 1 << 20
#: Most positive pairs (sets x P x P) built at once (two float32 buffers), and at most 3 per input element;
#: with ``pairs="auto"`` a set with more pairs than this uses the tree.
CHUNK_PAIRS = 1 << 24

PairsMode = Literal["auto", "dense", "tree"]


@dataclass
class RankSortOutput:
    """Result of :func:`rank_sort` for R evaluated sets out of G.

    Attributes:
        rank: (R,) float64 Rank error of each evaluated set (0 for a set without positives; NaN, like its sort
            error and gradient row, for a set with more positives than ``max_pos``).
        sort: (R,) float64 Sort error of each evaluated set.
        num_pos: (R,) int64 number of positives of each evaluated set.
        grad: (G, M) float32 identity-update gradient of each evaluated set divided by its number of
            positives (the gradient of ``rank + sort`` of that set); zero rows for sets not evaluated.
    """

    rank: Tensor
    sort: Tensor
    num_pos: Tensor
    grad: Tensor


def smoothed_step(x: Tensor, delta: float) -> Tensor:
    """H(x) of docs/method.md: clamp(x / (2 delta) + 0.5, 0, 1); the hard step ``x >= 0`` when delta = 0."""
    if delta == 0:
        return (x >= 0).to(x.dtype)
    return (x / (2 * delta) + 0.5).clamp(0, 1)


def rank_sort(
    logits: Tensor,
    labels: Tensor,
    delta: float = DEFAULT_DELTA,
    rows: Tensor | None = None,
    mask: Tensor | None = None,
    pairs: PairsMode = "auto",
    chunk_elements: int | None = None,
    chunk_pairs: int | None = None,
    max_pos: int | None = None,
) -> RankSortOutput:
    """Rank and Sort errors of G sets of M elements, with their identity-update gradients.

    Args:
        logits: (G, M) raw scores (any float dtype; computed in float32 / float64).
        labels: (G, M) labels in [0, 1]; > 0 marks a positive, 0 a negative.
        delta: smoothing of the step function (>= 0).
        rows: (R,) int64 indices of the sets to evaluate (default: all G).
        mask: optional (G, M) bool; False removes an element from its set (neither positive nor negative).
        pairs: how the label-ordered sums over positive pairs are formed: ``"dense"`` (P x P pairs,
            float32), ``"tree"`` (merge-sort tree per set, float64) or ``"auto"`` (dense unless the pairs of
            one set exceed ``CHUNK_PAIRS`` or 3 per input element, as in the pooled ``"batch"`` scope).
        chunk_elements / chunk_pairs: memory bounds of one chunk (elements, and sets x P x P pairs); by
            default ``CHUNK_ELEMENTS`` and ``CHUNK_PAIRS`` capped relative to the input size (see there).
        max_pos: P, a bound on the number of positives of one set known in advance (e.g. the size of a
            codec's positive disc). Given, every shape is static and nothing waits for the device (no
            host synchronisation, no graph break under ``torch.compile``); a set with more positives gets a
            NaN rank, sort and gradient, never a silently truncated set. None: P is read from the data (one
            host synchronisation).

    Returns:
        :class:`RankSortOutput`.
    """
    if logits.dim() != 2 or logits.shape != labels.shape:
        raise ValueError(
            f"rank_sort: logits and labels must both be (G, M), got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if mask is not None and mask.shape != logits.shape:
        raise ValueError(f"rank_sort: mask must be (G, M) = {tuple(logits.shape)}, got {tuple(mask.shape)}")
    if not delta >= 0:
        raise ValueError(f"rank_sort: delta must be >= 0, got {delta}")
    if pairs not in ("auto", "dense", "tree"):
        raise ValueError(f"rank_sort: pairs must be 'auto', 'dense' or 'tree', got {pairs!r}")
    if max_pos is not None and max_pos < 1:
        raise ValueError(f"rank_sort: max_pos must be >= 1 (or None), got {max_pos}")
    num_sets, num_el = logits.shape
    device = logits.device
    num_rows = num_sets if rows is None else rows.numel()
    if rows is not None:
        rows = rows.to(device=device, dtype=torch.long)
    grad = torch.zeros(num_sets, num_el, dtype=torch.float32, device=device)
    rank = torch.zeros(num_rows, dtype=torch.float64, device=device)
    sort = torch.zeros_like(rank)
    if num_rows == 0 or num_el == 0:
        return RankSortOutput(rank, sort, torch.zeros(num_rows, dtype=torch.long, device=device), grad)

    def select(x: Tensor, chunk: slice) -> Tensor:
        if rows is None:
            return x if chunk.start == 0 and chunk.stop >= num_sets else x[chunk]
        return x.index_select(0, rows[chunk])

    if max_pos is None:
        positive = select(labels, slice(0, num_rows)) > 0
        if mask is not None:
            positive &= select(mask, slice(0, num_rows))
        num_pos = positive.sum(1)
        del positive
        max_pos = int(num_pos.max())  # the one host synchronisation of the data-dependent path
        if max_pos == 0:
            return RankSortOutput(rank, sort, num_pos, grad)
    max_pos = min(max_pos, num_el)
    total = num_rows * num_el
    if chunk_elements is None:
        chunk_elements = min(CHUNK_ELEMENTS, max(num_el, total // 4))
    if chunk_pairs is None:
        chunk_pairs = min(CHUNK_PAIRS, max(max_pos * max_pos, 3 * total))
    dense = pairs == "dense" or (pairs == "auto" and max_pos * max_pos <= min(CHUNK_PAIRS, max(3 * total, 1 << 18)))
    per_chunk = max(1, chunk_elements // num_el)
    if dense:
        per_chunk = max(1, min(per_chunk, chunk_pairs // (max_pos * max_pos)))
    per_chunk = min(per_chunk, num_rows)
    shape = (per_chunk, max_pos, max_pos) if dense else (0,)
    buffers = (torch.empty(shape, dtype=torch.float32, device=device),
               torch.empty(shape, dtype=torch.float32, device=device))
    counts = []
    for start in range(0, num_rows, per_chunk):
        chunk = slice(start, min(start + per_chunk, num_rows))
        out_rank, out_sort, out_grad, out_num = _rank_sort_chunk(
            select(logits, chunk),
            select(labels, chunk),
            None if mask is None else select(mask, chunk),
            float(delta),
            dense,
            chunk_elements,
            max_pos,
            buffers,
        )
        counts.append(out_num)
        if per_chunk >= num_rows:
            rank, sort = out_rank, out_sort
        else:
            rank[chunk] = out_rank
            sort[chunk] = out_sort
        if rows is None and per_chunk >= num_sets:
            grad = out_grad
        elif rows is None:
            grad[chunk] = out_grad
        else:
            grad.index_copy_(0, rows[chunk], out_grad)
    return RankSortOutput(rank, sort, torch.cat(counts) if len(counts) > 1 else counts[0], grad)


def _rank_sort_chunk(
    s: Tensor,
    y: Tensor,
    mask: Tensor | None,
    delta: float,
    dense: bool,
    chunk_elements: int,
    max_pos: int,
    buffers: tuple[Tensor, Tensor],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One chunk of g sets: s, y (g, M). Returns rank (g,), sort (g,) float64, grad (g, M) float32 and the
    number of positives (g,) int64. Static shapes: the positives sit in ``max_pos`` padded slots."""
    g, num_el = s.shape
    device = s.device
    s = s.float()
    y = y.float()
    positive = y > 0
    if mask is not None:
        positive &= mask
    num_pos = positive.sum(1)
    overflow = num_pos > max_pos
    # The positives of each set in slots 0..P_g-1 (in column order, as nonzero would give), padded to max_pos.
    columns = torch.arange(num_el, device=device)
    order = torch.where(positive, num_el - columns, 0).topk(max_pos, dim=1).indices  # (g, P)
    slot_of = positive.long().cumsum(1) - 1  # (g, M): the slot of each positive
    in_slot = positive & (slot_of < max_pos)
    slot_of = slot_of.clamp(0, max_pos - 1)
    valid = torch.arange(max_pos, device=device) < num_pos[:, None]
    has_pos = num_pos > 0
    denom = num_pos.clamp(min=1).double()

    sp = torch.where(valid, s.gather(1, order), 0.0)
    yp = torch.where(valid, y.gather(1, order), float("nan"))

    # Float64, relative to the largest positive logit of each set.
    ref = torch.where(valid, sp, torch.finfo(torch.float32).min).amax(1).double()
    ref = torch.where(has_pos, ref, torch.zeros_like(ref))
    zero64 = torch.zeros((), dtype=torch.float64, device=device)
    t = torch.where(valid, sp.double() - ref[:, None], zero64)
    inf = torch.full((), float("inf"), dtype=torch.float64, device=device)
    if delta > 0:
        thresholds = torch.cat([torch.where(valid, t - delta, inf), torch.where(valid, t + delta, inf)], 1)
    else:
        thresholds = torch.where(valid, t, inf)
    thresholds, sorted_by = thresholds.sort(1)
    where = torch.empty_like(sorted_by).scatter_(
        1, sorted_by, torch.arange(sorted_by.shape[1], device=device).expand_as(sorted_by)
    )
    # For positive i: elements with k > upper[i] see H = 1; lower[i] < k <= upper[i] the linear part.
    upper = where[:, max_pos:] if delta > 0 else where
    lower = where[:, :max_pos] if delta > 0 else where
    bins = thresholds.shape[1] + 1
    inv = 1.0 / (2 * delta) if delta > 0 else 0.0

    # Element pass 1: bins of every element (positives included) and of the positives alone.
    col_chunk = max(1, min(num_el, chunk_elements // g))
    keep = col_chunk >= num_el
    cached: list[tuple[Tensor, Tensor]] = []
    hist_n = torch.zeros(g * bins, dtype=torch.float64, device=device)
    hist_v = torch.zeros_like(hist_n)
    row_offset = (torch.arange(g, device=device) * bins)[:, None]
    low = -torch.finfo(torch.float64).max
    for c0 in range(0, num_el, col_chunk):
        flat, v = _locate(s[:, c0 : c0 + col_chunk], ref, thresholds, row_offset, mask, c0, low)
        hist_n.index_add_(0, flat.view(-1), torch.ones_like(v).view(-1))
        hist_v.index_add_(0, flat.view(-1), v.view(-1))
        if keep:
            cached.append((flat, v))
    # padded slots go to bin 0 of their set (never counted) with zero weights
    k_pos = torch.where(valid, torch.searchsorted(thresholds, t, right=True), 0) + row_offset
    one_minus_y = torch.where(valid, 1 - yp.double(), zero64)
    w_pos = torch.stack([valid.double(), t, one_minus_y, one_minus_y * t], 0).view(4, -1)
    pos_hist = torch.zeros(4, g * bins, dtype=torch.float64, device=device).index_add_(1, k_pos.view(-1), w_pos)
    pos_hist = pos_hist.view(4, g, bins)
    all_n, all_v = hist_n.view(g, bins), hist_v.view(g, bins)

    def window(h_n: Tensor, h_v: Tensor) -> Tensor:
        """sum over the binned elements of weight * H(v - t_i), for every positive slot i: (g, P)."""
        c_n = _prefix(h_n)
        top = c_n[:, -1:] - c_n.gather(1, upper)
        if delta == 0:
            return top
        c_v = _prefix(h_v)
        n_lin = c_n.gather(1, upper) - c_n.gather(1, lower)
        v_lin = c_v.gather(1, upper) - c_v.gather(1, lower)
        return top + (v_lin - n_lin * t) * inv + 0.5 * n_lin

    fp = window(all_n - pos_hist[0], all_v - pos_hist[1])
    rank_pos = window(pos_hist[0], pos_hist[1])
    cur_num = window(pos_hist[2], pos_hist[3])

    # Label-ordered sums over positive pairs: Z(i) = sum_{y_j < y_i} H(x_ij) and the same times (1 - y_j).
    pair_fn = _dense_pairs if dense else _tree_pairs
    z_sum, z_num, col_sums = pair_fn(sp, yp, valid, t, delta, buffers)
    fp = torch.where(valid, fp, zero64)
    rank_pos = torch.where(valid, rank_pos, torch.ones_like(rank_pos))
    tgt_den = torch.where(valid, rank_pos - z_sum, torch.ones_like(rank_pos))  # >= H(0), the self term
    l_rank = torch.where(valid, fp / (fp + rank_pos), zero64)
    err = torch.where(valid, cur_num / rank_pos - (cur_num - z_num) / tgt_den, zero64)
    sort_on = valid & (z_sum > EPS)
    rank_on = valid & (fp > EPS)
    coef = torch.where(sort_on, err / torch.where(sort_on, z_sum, torch.ones_like(z_sum)), zero64)
    grad_pos = col_sums(coef) - torch.where(rank_on, l_rank, zero64) - torch.where(sort_on, err, zero64)
    nan64 = torch.full((), float("nan"), dtype=torch.float64, device=device)
    rank = torch.where(overflow, nan64, l_rank.sum(1) / denom)
    sort = torch.where(overflow, nan64, err.sum(1) / denom)

    # Element pass 2: gradient of every negative, sum_i w_i H(v - t_i) with w_i = lR(i) / fp(i) / |P|.
    w = torch.where(rank_on, l_rank / torch.where(rank_on, fp, torch.ones_like(fp)), zero64) / denom[:, None]
    full_w = torch.zeros(g, bins, dtype=torch.float64, device=device).scatter_add_(1, upper + 1, w).cumsum(1)
    if delta > 0:
        lin = torch.zeros(g, bins, 2, dtype=torch.float64, device=device)
        wt = torch.stack([w, w * t], 2)
        lin.scatter_add_(1, (lower + 1)[..., None].expand(-1, -1, 2), wt)
        lin.scatter_add_(1, (upper + 1)[..., None].expand(-1, -1, 2), -wt)
        lin = lin.cumsum(1)
        lin_w, lin_wt = lin[..., 0].reshape(-1), lin[..., 1].reshape(-1)
    full_w = full_w.view(-1)
    grad = torch.empty(g, num_el, dtype=torch.float32, device=device)
    for i, c0 in enumerate(range(0, num_el, col_chunk)):
        flat, v = cached[i] if keep else _locate(s[:, c0 : c0 + col_chunk], ref, thresholds, row_offset, mask, c0, low)
        out = full_w.index_select(0, flat.view(-1)).view_as(v)
        if delta > 0:
            # v <- lin_w[k] (v / (2 delta) + 0.5) - lin_wt[k] / (2 delta)
            if inv != 1.0:
                v.mul_(inv)
            v.add_(0.5).mul_(lin_w.index_select(0, flat.view(-1)).view_as(v))
            v.sub_(lin_wt.index_select(0, flat.view(-1)).view_as(v), alpha=inv)
            out.add_(v)
        grad[:, c0 : c0 + col_chunk] = out
    if mask is not None:
        grad.masked_fill_(~mask, 0.0)
    pos_grad = (grad_pos / denom[:, None]).float().gather(1, slot_of)
    grad = torch.where(in_slot, pos_grad, grad)
    grad = torch.where(overflow[:, None], float("nan"), grad)
    return rank, sort, grad, num_pos


def _prefix(h: Tensor) -> Tensor:
    """C[:, k] = sum_{1 <= m <= k} h[:, m] (bin 0, the elements below every threshold, never counts)."""
    out = torch.zeros_like(h)
    out[:, 1:] = h[:, 1:].cumsum(1)
    return out


def _locate(
    s: Tensor, ref: Tensor, thresholds: Tensor, row_offset: Tensor, mask: Tensor | None, c0: int, low: float
) -> tuple[Tensor, Tensor]:
    """Elements s (g, m) -> (flat bin index k + row offset (g, m) int64, v = s - ref (g, m) float64).

    k = number of thresholds <= v. Masked-out elements get v = ``low`` (k = 0, a bin that never counts).
    """
    v = torch.empty(s.shape, dtype=torch.float64, device=s.device)
    v.copy_(s)
    v.sub_(ref[:, None])
    if mask is not None:
        v.masked_fill_(~mask[:, c0 : c0 + s.shape[1]], low)
    k = torch.searchsorted(thresholds, v, right=True)
    k.add_(row_offset)
    if mask is not None:
        v.masked_fill_(~mask[:, c0 : c0 + s.shape[1]], 0.0)
    return k, v


# ---------------------------------------------------------------------------------------------------- dense pairs
def _dense_pairs(
    sp: Tensor, yp: Tensor, valid: Tensor, t: Tensor, delta: float, buffers: tuple[Tensor, Tensor]
) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
    """Label-ordered sums from the (g, P, P) pairs B_ij = H(s_j - s_i) [y_j < y_i] of a chunk of sets.

    Args:
        sp: (g, P) float32 positive logits; yp: (g, P) labels, NaN in the padding slots.

    Returns:
        Z (g, P) = sum_j B_ij, Z_num (g, P) = sum_j B_ij (1 - y_j) (float64), and a function mapping
        per-positive coefficients c (g, P) to sum_i c_i B_ij for every positive j.
    """
    g, p = sp.shape
    # pair buffers reused across chunks (fresh multi-MB allocations cost page faults on every chunk)
    below, lower = (b.view(-1)[: g * p * p].view(g, p, p) for b in buffers)
    torch.lt(yp[:, None, :], yp[:, :, None], out=lower)  # y_j < y_i; False in padded rows and columns
    if delta == 0:
        torch.ge(sp[:, None, :], sp[:, :, None], out=below)
        below.mul_(lower)
    else:
        # (s_j - s_i) / (2 delta) + 0.5: the float32 difference first (exact for close logits, even at 1e4)
        torch.sub(sp[:, None, :], sp[:, :, None], out=below)
        if delta != 0.5:
            below.mul_(1.0 / (2 * delta))
        below.add_(0.5)
        below.clamp_(min=torch.zeros((), device=sp.device), max=lower)  # to [0, 1], and 0 where y_j >= y_i
    vec = torch.stack([valid.float(), torch.where(valid, 1 - yp, 0.0)], 2)  # (g, P, 2)
    sums = torch.bmm(below, vec).double()

    def col_sums(coef: Tensor) -> Tensor:
        return torch.bmm(coef.float()[:, None, :], below)[:, 0].double()

    return sums[..., 0], sums[..., 1], col_sums


# ---------------------------------------------------------------------------------------------------- tree pairs
def _tree_pairs(
    sp: Tensor, yp: Tensor, valid: Tensor, t: Tensor, delta: float, buffers: tuple[Tensor, Tensor]
) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
    """Same contract as :func:`_dense_pairs`, one set at a time with a merge-sort tree (float64, exact).

    The padded slots of a set take part with zero weights, sorted after every positive in both label orders.
    """
    g, max_pos = sp.shape
    z_sum = torch.zeros(g, max_pos, dtype=torch.float64, device=sp.device)
    z_num = torch.zeros_like(z_sum)
    inf = torch.full((), float("inf"), dtype=torch.float64, device=sp.device)
    zero = torch.zeros((), dtype=torch.float64, device=sp.device)
    per_set: list[tuple[int, Tensor, Tensor, Tensor, Tensor]] = []
    for r in range(g):
        ok, x, y = valid[r], t[r], yp[r].double()
        up = torch.where(ok, y, inf)  # ascending label order, padding last
        down = torch.where(ok, -y, inf)  # descending label order, padding last
        n_lt = torch.searchsorted(up.sort().values, up)  # #{y_j < y_i}: a prefix of the ascending label order
        n_gt = torch.searchsorted(down.sort().values, down)  # #{y_j > y_i}: a prefix of the descending order
        weights = torch.stack([ok.double(), torch.where(ok, 1 - y, zero)], 1)
        below = _prefix_window_sums(x, _positions(torch.argsort(up, stable=True)), n_lt, x, weights, delta)
        z_sum[r], z_num[r] = torch.where(ok, below[:, 0], zero), torch.where(ok, below[:, 1], zero)
        per_set.append((r, ok, x, _positions(torch.argsort(down, stable=True)), n_gt))

    def col_sums(coef: Tensor) -> Tensor:
        out = torch.zeros_like(z_sum)
        for r, ok, x, pos_desc, n_gt in per_set:
            # sum_{i: y_i > y_j} c_i H(s_j - s_i): a descending-label prefix, with H(s_j - s_i) = H((-s_i) - (-s_j))
            c = torch.where(ok, coef[r].double(), zero)[:, None]
            out[r] = torch.where(ok, _prefix_window_sums(-x, pos_desc, n_gt, -x, c, delta)[:, 0], zero)
        return out

    return z_sum, z_num, col_sums


def _positions(order: Tensor) -> Tensor:
    """Inverse permutation: pos[order[k]] = k."""
    pos = torch.empty_like(order)
    pos[order] = torch.arange(order.numel(), device=order.device)
    return pos


def _prefix_window_sums(x: Tensor, pos: Tensor, r: Tensor, q: Tensor, w: Tensor, delta: float) -> Tensor:
    """sum_{j: pos_j < r_i} w_j H(x_j - q_i) for every query i, exactly, in O((P + Q) log^2 P).

    Args:
        x: (P,) float64 data logits; pos: (P,) a permutation of 0..P-1 (the order defining the prefixes);
        r: (Q,) prefix lengths in [0, P]; q: (Q,) float64 query logits; w: (P, C) float64 weights.

    Returns:
        (Q, C) float64.

    With x ranked ascending (rank_j), H(x_j - q) is 1 for rank_j >= hi, linear for lo <= rank_j < hi and 0
    below lo, so everything is a sum of f_j over {pos_j < r, rank_j >= threshold} (2-D dominance). The prefix
    [0, r) is the union of one aligned block of size 2^l for every set bit l of r; at level l the elements
    are sorted by (block, rank) and a prefix sum plus one searchsorted answers every query.
    """
    n = x.numel()
    x_sorted, order = x.sort()
    rank = _positions(order)
    if delta == 0:
        lo = hi = torch.searchsorted(x_sorted, q)  # H = 1 exactly for x >= q
        inv = 0.0
    else:
        lo = torch.searchsorted(x_sorted, q - delta)
        hi = torch.searchsorted(x_sorted, q + delta, right=True)
        inv = 1.0 / (2 * delta)
    thresholds = torch.stack([lo, hi])  # (2, Q)
    f = torch.cat([w, w * x[:, None]], 1)  # (P, 2C)
    total = torch.zeros(2, q.numel(), f.shape[1], dtype=torch.float64, device=x.device)
    for level in range(max(n.bit_length(), 1)):
        keys, idx = ((pos >> level) * n + rank).sort()
        cum = torch.cat([f.new_zeros(1, f.shape[1]), f[idx].cumsum(0)])
        has = ((r >> level) & 1).bool()
        block = ((r >> level) - 1).clamp(min=0)
        end = ((block + 1) << level).clamp(max=n)
        first = torch.searchsorted(keys, block * n + thresholds)  # (2, Q): first element with rank >= threshold
        total += torch.where(has[None, :, None], cum[end][None] - cum[first], 0.0)
    c = w.shape[1]
    d_lo_w, d_hi_w = total[0, :, :c], total[1, :, :c]
    if delta == 0:
        return d_hi_w
    d_lo_wx, d_hi_wx = total[0, :, c:], total[1, :, c:]
    return d_hi_w + (d_lo_wx - d_hi_wx) * inv + (d_lo_w - d_hi_w) * (0.5 - q[:, None] * inv)
