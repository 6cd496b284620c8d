"""Object Keypoint Similarity (OKS), vectorised, with the exact conventions of pycocotools' ``computeOks``.

Per keypoint k of a prediction against a ground truth (GT) of area ``a``:

    e_k = (dx_k^2 + dy_k^2) / (2 sigma_k)^2 / (a + eps) / 2,   term_k = exp(-e_k),   eps = np.spacing(1)

(the formula itself is :func:`rspose.data.oks_formula.oks_exponent`, shared with OKS-NMS and the losses)

and OKS = mean of term_k over the GT's labelled keypoints (visibility v > 0). A GT with no labelled keypoint
(pycocotools) measures each predicted keypoint's distance to the GT box enlarged to 3 x its size and averages
over all K keypoints. Everything is computed in float64 (pycocotools works in float64 numpy).

Shapes: N predictions, M ground truths, K keypoints, P (prediction, GT) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from rspose.data.oks_formula import oks_exponent

ArrayLike = Tensor | np.ndarray | Sequence


def _f64(x: ArrayLike) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach().to(dtype=torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def oks_terms(pred: ArrayLike, gt: ArrayLike, areas: ArrayLike, sigmas: ArrayLike) -> Tensor:
    """Per-keypoint OKS terms exp(-e_k), broadcasting over leading dimensions.

    Args:
        pred: (..., K, 2) predicted keypoints (x, y) in image pixels.
        gt: (..., K, 2) ground-truth keypoints, broadcastable against ``pred``.
        areas: (...) object area used for the scale (GT area; the mean of both areas for OKS-NMS).
        sigmas: (K,) per-keypoint falloff.

    Returns:
        (..., K) float64 terms in (0, 1]; the visibility mask is NOT applied.
    """
    pred, gt, areas, sigmas = _f64(pred), _f64(gt), _f64(areas), _f64(sigmas)
    diff = pred - gt
    d2 = diff[..., 0] ** 2 + diff[..., 1] ** 2
    return torch.exp(-oks_exponent(d2, sigmas, areas))


def oks_pairs(
    pred: ArrayLike,
    gt: ArrayLike,
    gt_visible: ArrayLike,
    gt_areas: ArrayLike,
    sigmas: ArrayLike,
    gt_boxes: ArrayLike | None = None,
) -> tuple[Tensor, Tensor]:
    """OKS of P (prediction, GT) pairs, pycocotools ``computeOks`` semantics.

    Args:
        pred: (P, K, 2) predicted keypoints.
        gt: (P, K, 2) GT keypoints of the paired GT.
        gt_visible: (P, K) GT visibility flags (labelled where > 0).
        gt_areas: (P,) GT areas.
        sigmas: (K,) OKS sigmas.
        gt_boxes: (P, 4) GT boxes [x, y, w, h], used only for GTs without labelled keypoints
            (pycocotools' distance to the 3x box); without boxes such pairs get OKS 0.

    Returns:
        oks: (P,) float64 OKS; terms: (P, K) float64 per-keypoint terms exp(-e_k) (unmasked).
    """
    pred, gt, sigmas = _f64(pred), _f64(gt), _f64(sigmas)
    vis = _f64(gt_visible) > 0
    areas = _f64(gt_areas)
    terms = oks_terms(pred, gt, areas, sigmas)
    n_vis = vis.sum(-1)
    oks = (terms * vis).sum(-1) / n_vis.clamp(min=1)
    no_label = n_vis == 0
    if bool(no_label.any()):
        if gt_boxes is None:
            oks = torch.where(no_label, torch.zeros_like(oks), oks)
        else:
            bb = _f64(gt_boxes)[no_label]
            x0, x1 = bb[:, 0] - bb[:, 2], bb[:, 0] + bb[:, 2] * 2
            y0, y1 = bb[:, 1] - bb[:, 3], bb[:, 1] + bb[:, 3] * 2
            xd, yd = pred[no_label, :, 0], pred[no_label, :, 1]
            dx = (x0[:, None] - xd).clamp(min=0) + (xd - x1[:, None]).clamp(min=0)
            dy = (y0[:, None] - yd).clamp(min=0) + (yd - y1[:, None]).clamp(min=0)
            e = oks_exponent(dx**2 + dy**2, sigmas, areas[no_label])
            oks = oks.clone()
            oks[no_label] = torch.exp(-e).mean(-1)
    return oks, terms


def oks_matrix(
    pred: ArrayLike,
    gt: ArrayLike,
    gt_visible: ArrayLike,
    gt_areas: ArrayLike,
    sigmas: ArrayLike,
    gt_boxes: ArrayLike | None = None,
) -> Tensor:
    """OKS of every prediction against every GT of one image (pycocotools ``computeOks``).

    Args:
        pred: (N, K, 2) predicted keypoints; gt: (M, K, 2); gt_visible: (M, K); gt_areas: (M,);
        sigmas: (K,); gt_boxes: (M, 4) [x, y, w, h] or None (see :func:`oks_pairs`).

    Returns:
        (N, M) float64 OKS matrix.
    """
    pred, gt = _f64(pred), _f64(gt)
    n, m = pred.shape[0], gt.shape[0]
    if n == 0 or m == 0:
        return torch.zeros(n, m, dtype=torch.float64)
    k = pred.shape[1]
    pi = pred[:, None].expand(n, m, k, 2).reshape(n * m, k, 2)
    gi = gt[None].expand(n, m, k, 2).reshape(n * m, k, 2)
    vis = _f64(gt_visible)[None].expand(n, m, k).reshape(n * m, k)
    areas = _f64(gt_areas)[None].expand(n, m).reshape(n * m)
    boxes = None if gt_boxes is None else _f64(gt_boxes)[None].expand(n, m, 4).reshape(n * m, 4)
    oks, _ = oks_pairs(pi, gi, vis, areas, sigmas, boxes)
    return oks.reshape(n, m)


def best_gt_oks(
    pred: ArrayLike,
    pred_image_ids: ArrayLike,
    gt: ArrayLike,
    gt_visible: ArrayLike,
    gt_areas: ArrayLike,
    gt_image_ids: ArrayLike,
    sigmas: ArrayLike,
) -> tuple[Tensor, Tensor, Tensor]:
    """OKS of each prediction with the best-matching GT of its own image, for all images at once.

    The caller passes only the GTs that count (pycocotools' non-ignored ones: not crowd, >= 1 labelled
    keypoint). A prediction whose image has no GT gets OKS 0 and no match. Ties pick the first GT given.

    Args:
        pred: (N, K, 2); pred_image_ids: (N,); gt: (M, K, 2); gt_visible: (M, K); gt_areas: (M,);
        gt_image_ids: (M,); sigmas: (K,).

    Returns:
        oks: (N,) float64; match: (N,) int64 index into the GTs (-1 if none);
        terms: (N, K) float64 per-keypoint terms with the matched GT, NaN where that GT keypoint is
        unlabelled or there is no match.
    """
    pred = _f64(pred)
    n, k = pred.shape[0], pred.shape[1]
    p_img = np.asarray(torch.as_tensor(pred_image_ids).cpu(), dtype=np.int64).reshape(-1)
    g_img = np.asarray(torch.as_tensor(gt_image_ids).cpu(), dtype=np.int64).reshape(-1)
    oks = torch.zeros(n, dtype=torch.float64)
    match = torch.full((n,), -1, dtype=torch.int64)
    terms_out = torch.full((n, k), float("nan"), dtype=torch.float64)
    if n == 0 or g_img.size == 0:
        return oks, match, terms_out
    # GTs grouped by image: prediction i pairs with gt_order[start[i] : start[i] + count[i]]
    gt_order = np.argsort(g_img, kind="stable")
    g_sorted = g_img[gt_order]
    start = np.searchsorted(g_sorted, p_img, side="left")
    count = np.searchsorted(g_sorted, p_img, side="right") - start
    pair_pred = np.repeat(np.arange(n), count)
    if pair_pred.size == 0:
        return oks, match, terms_out
    offsets = np.arange(pair_pred.size) - np.repeat(np.cumsum(count) - count, count)
    pair_gt = gt_order[np.repeat(start, count) + offsets]
    gt_t, vis_t, area_t = _f64(gt), _f64(gt_visible), _f64(gt_areas)
    pp, pg = torch.from_numpy(pair_pred), torch.from_numpy(pair_gt)
    pair_oks, pair_terms = oks_pairs(pred[pp], gt_t[pg], vis_t[pg], area_t[pg], sigmas)
    # best pair per prediction: max OKS, first GT on ties (pairs are in GT order within a prediction)
    has = count > 0
    seg_start = (np.cumsum(count) - count)[has]
    best_val = np.maximum.reduceat(pair_oks.numpy(), seg_start)
    owners = np.flatnonzero(has)
    is_best = pair_oks.numpy() == np.repeat(best_val, count[has])
    cand = np.flatnonzero(is_best)
    _, first = np.unique(pair_pred[cand], return_index=True)
    best_pair = cand[first]
    oks[owners] = torch.from_numpy(best_val)
    match[owners] = torch.from_numpy(pair_gt[best_pair])
    bp = torch.from_numpy(best_pair)
    t = pair_terms[bp]
    terms_out[owners] = torch.where(vis_t[pg[bp]] > 0, t, torch.full_like(t, float("nan")))
    return oks, match, terms_out
