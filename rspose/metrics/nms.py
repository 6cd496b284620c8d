"""OKS-NMS and soft-OKS-NMS over many images at once (the mmpose / HRNet reference behaviour).

Reference behaviour (``oks_iou`` / ``oks_nms`` / ``soft_oks_nms`` of the HRNet code that mmpose adapts):
- the similarity of two predictions i, j uses all K keypoints (no visibility threshold) and the mean of
  their two areas: e_k = d_k^2 / (2 sigma_k)^2 / ((a_i + a_j) / 2 + eps) / 2, OKS = mean_k exp(-e_k),
  rounded to float32 as the reference does;
- OKS-NMS: greedy, highest score first; a prediction is suppressed by a kept one when OKS > thr;
- soft-OKS-NMS: repeatedly pick the highest current score, multiply every remaining score by
  exp(-OKS^2 / thr) (Gaussian rescoring with thr as the variance), stop after ``max_dets`` picks;
  the kept predictions keep their ORIGINAL scores (only the selection uses the decayed ones).
Deterministic order: score descending, then instance id ascending (the reference's argsort is not
stable, so ties there depend on the sort algorithm).

Vectorisation: images are grouped by their number of predictions n and each group runs as one batch;
the greedy passes loop over the n ranks (at most ``max_dets`` for soft-NMS), never over pairs or images.
At rank t only the images whose rank-t prediction is still kept compute its OKS row against the lower
ranks (suppressed predictions never suppress), so the work is at most half the pairs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rspose.data.oks_formula import oks_exponent
from rspose.metrics.oks import ArrayLike, _f64


def _as_np(x: ArrayLike | None, n: int, dtype: type, default: str) -> np.ndarray:
    if x is None:
        return np.zeros(n, dtype=dtype) if default == "zeros" else np.arange(n, dtype=dtype)
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype).reshape(-1)


def _sorted_groups(image_ids: np.ndarray, scores: np.ndarray, instance_ids: np.ndarray):
    """Order predictions by (image, -score, instance id); yield (n, (B, n) index matrix) per image size."""
    order = np.lexsort((instance_ids, -scores, image_ids))
    img_sorted = image_ids[order]
    bounds = np.flatnonzero(np.diff(img_sorted)) + 1
    starts = np.concatenate([[0], bounds]) if order.size else np.zeros(0, dtype=np.int64)
    counts = np.diff(np.concatenate([starts, [order.size]])) if order.size else np.zeros(0, dtype=np.int64)
    for n in np.unique(counts):
        group_starts = starts[counts == n]
        idx = order[group_starts[:, None] + np.arange(n)[None, :]]  # (B, n) prediction indices, ranked
        yield int(n), idx


def _nms_oks(kp_i: np.ndarray, kp_j: np.ndarray, area_i: np.ndarray, area_j: np.ndarray, sigmas: np.ndarray):
    """Reference oks_iou, broadcasting: kp (..., K', 2), areas (...), sigmas (K',) -> (..., K') terms."""
    diff = kp_j - kp_i
    d2 = diff[..., 0] ** 2 + diff[..., 1] ** 2
    return np.exp(-oks_exponent(d2, sigmas, (area_i + area_j) / 2))


def _prepare(keypoints, scores, areas, sigmas, image_ids, instance_ids) -> tuple[np.ndarray, ...]:
    """NMS inputs as numpy: keypoints (N, K, 2), scores, areas, image ids, instance ids (N,), sigmas (K,)."""
    kpts = _f64(keypoints).numpy()
    n_all = kpts.shape[0]
    return (
        kpts,
        _as_np(scores, n_all, np.float64, ""),
        _f64(areas).reshape(-1).numpy(),
        _as_np(image_ids, n_all, np.int64, "zeros"),
        _as_np(instance_ids, n_all, np.int64, "arange"),
        _f64(sigmas).numpy(),
    )


def oks_nms(
    keypoints: ArrayLike,
    scores: ArrayLike,
    areas: ArrayLike,
    sigmas: ArrayLike,
    thr: float = 0.9,
    image_ids: ArrayLike | None = None,
    instance_ids: ArrayLike | None = None,
) -> Tensor:
    """Greedy OKS-NMS within each image.

    Args:
        keypoints: (N, K, 2) keypoints in image pixels.
        scores: (N,) instance scores (higher first).
        areas: (N,) instance areas (the detection box area, or the scale product).
        sigmas: (K,) OKS sigmas.
        thr: suppress a prediction whose OKS with a kept, higher-ranked one is > thr.
        image_ids: (N,) image of each prediction; None = all in one image.
        instance_ids: (N,) tie-break key for equal scores (lower first); None = position.

    Returns:
        (N,) bool mask of the kept predictions.
    """
    kpts, s, a, img, ids, sigmas = _prepare(keypoints, scores, areas, sigmas, image_ids, instance_ids)
    keep = np.zeros(kpts.shape[0], dtype=bool)
    if kpts.shape[0] == 0:
        return torch.from_numpy(keep)
    # Exact pruning: OKS <= (sum of the terms of a few probe keypoints + the K - P other terms at most 1) / K,
    # so a pair whose bound is below thr can not be suppressed; the full K terms are computed only for the
    # rest (for thr = 0.9 and K = 17 the P = 3 sharpest keypoints suffice). Margin 1e-6 >> rounding.
    k = kpts.shape[1]
    n_probe = int(np.floor(k * (1 - thr))) + 2
    probe = np.argsort(sigmas, kind="stable")[:n_probe] if 0 < n_probe <= k // 2 else None
    kp_probe = np.ascontiguousarray(kpts[:, probe]) if probe is not None else None
    for n, idx in _sorted_groups(img, s, ids):
        suppressed = np.zeros(idx.shape, dtype=bool)
        for t in range(n - 1):  # rank t suppresses lower ranks; only kept rows are ever computed
            live = np.flatnonzero(~suppressed[:, t])
            if live.size == 0:
                continue
            rows, cols = idx[live, t], idx[live, t + 1 :]
            if kp_probe is None:
                over = _nms_oks(kpts[rows][:, None], kpts[cols], a[rows][:, None], a[cols], sigmas)
                over = over.mean(-1).astype(np.float32) > thr
            else:
                terms = _nms_oks(kp_probe[rows][:, None], kp_probe[cols], a[rows][:, None], a[cols], sigmas[probe])
                r, c = np.nonzero((terms.sum(-1) + (k - n_probe)) / k >= thr - 1e-6)
                if r.size == 0:
                    continue
                full = _nms_oks(kpts[rows[r]], kpts[cols[r, c]], a[rows[r]], a[cols[r, c]], sigmas)
                over = np.zeros(cols.shape, dtype=bool)
                over[r, c] = full.mean(-1).astype(np.float32) > thr
            suppressed[live, t + 1 :] |= over
        keep[idx[~suppressed]] = True
    return torch.from_numpy(keep)


def soft_oks_nms(
    keypoints: ArrayLike,
    scores: ArrayLike,
    areas: ArrayLike,
    sigmas: ArrayLike,
    thr: float = 0.9,
    max_dets: int = 20,
    image_ids: ArrayLike | None = None,
    instance_ids: ArrayLike | None = None,
) -> Tensor:
    """Soft-OKS-NMS (Gaussian) within each image: keeps up to ``max_dets`` per image.

    Args: as :func:`oks_nms`, plus ``max_dets`` (picks per image). ``thr`` is the Gaussian's variance:
        each remaining score is multiplied by exp(-OKS^2 / thr) after every pick.

    Returns:
        (N,) bool mask of the kept predictions; their scores are left unchanged (reference behaviour).
    """
    kpts, s, a, img, ids, sigmas = _prepare(keypoints, scores, areas, sigmas, image_ids, instance_ids)
    keep = np.zeros(kpts.shape[0], dtype=bool)
    if kpts.shape[0] == 0:
        return torch.from_numpy(keep)
    for n, idx_all in _sorted_groups(img, s, ids):
        if n <= max_dets:  # every prediction is picked; rescoring only changes the pick order
            keep[idx_all.reshape(-1)] = True
            continue
        cur = s[idx_all]
        tie = ids[idx_all]
        picked = np.zeros(idx_all.shape, dtype=bool)
        rows = np.arange(idx_all.shape[0])
        big = np.iinfo(np.int64).max
        for _ in range(max_dets):
            masked = np.where(picked, -np.inf, cur)
            best = masked.max(axis=1, keepdims=True)
            sel = np.where(masked == best, tie, big).argmin(axis=1)
            picked[rows, sel] = True
            i = idx_all[rows, sel]
            ovr = _nms_oks(kpts[i][:, None], kpts[idx_all], a[i][:, None], a[idx_all], sigmas)
            ovr = ovr.mean(-1).astype(np.float32)
            cur = cur * np.exp(-(ovr**2) / np.float32(thr))  # float32 decay, as the reference's float32 OKS
        keep[idx_all[picked]] = True
    return torch.from_numpy(keep)
