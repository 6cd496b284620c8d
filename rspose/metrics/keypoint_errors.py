"""Quantiles of the per-keypoint error of kept true detections, per keypoint group and visibility.

The error of one keypoint is ``d / sqrt(area)``: the distance between the predicted and the GT keypoint over the
square root of the GT's area (the scale OKS uses). Taken over the *kept* predictions of an evaluation (the
COCO results file ``{prefix}.val.keypoints.json`` that COCOeval saw) that are *true detections*: OKS with the
best-matching non-ignored GT of their image >= ``min_oks`` (0.05, the metric's boundary of ``score_low_oks``);
each prediction is compared with that GT, on its labelled keypoints only.

Rows: every (group, visibility) pair of ``groups`` (COCO: face = nose, eyes, ears; arms = shoulders, elbows,
wrists; legs = hips, knees, ankles) and ``all``, with visibility ``all``, ``visible`` (GT flag v = 2) or
``occluded`` (v = 1). Each row gives the count n and the error at each quantile (numpy's linear interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rspose.json_file import load_json
from rspose.metrics.coco_eval import GroundTruth, load_ground_truth
from rspose.metrics.oks import best_gt_oks

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
#: Keypoint groups of the COCO 17-keypoint order.
COCO_GROUPS: dict[str, tuple[int, ...]] = {
    "face": (0, 1, 2, 3, 4),
    "arms": (5, 6, 7, 8, 9, 10),
    "legs": (11, 12, 13, 14, 15, 16),
}
VISIBILITY = ("all", "visible", "occluded")


def keypoint_errors(
    results: Sequence[Mapping], gt: GroundTruth, sigmas: Sequence[float], min_oks: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Errors d / sqrt(area) of the true detections among COCO ``results``.

    Args:
        results: COCO keypoint results (``image_id``, ``keypoints`` [x, y, s] * K); gt: the ground truth;
        sigmas: (K,) OKS sigmas; min_oks: a result is a true detection when its best-match OKS >= this.

    Returns:
        errors: (T, K) float64, NaN where the matched GT keypoint is unlabelled; flags: (T, K) the GT's
        visibility flags (0, 1 or 2), T the number of true detections.
    """
    k = gt.num_keypoints
    if len(sigmas) != k:
        raise ValueError(f"keypoint_errors: {len(sigmas)} sigmas for a ground truth of {k} keypoints")
    if not results:
        return np.zeros((0, k)), np.zeros((0, k))
    pred = np.asarray([r["keypoints"] for r in results], dtype=np.float64).reshape(len(results), k, 3)[..., :2]
    image_ids = np.asarray([r["image_id"] for r in results], dtype=np.int64)
    v = gt.valid
    oks, match, _ = best_gt_oks(pred, image_ids, gt.keypoints[v], gt.visible[v], gt.areas[v], gt.ann_image_ids[v],
                                np.asarray(sigmas, dtype=np.float64))
    oks, match = oks.numpy(), match.numpy()
    true = (match >= 0) & (oks >= min_oks)
    m = match[true]
    g_kp, g_vis, g_area = gt.keypoints[v][m], gt.visible[v][m], gt.areas[v][m]
    err = np.linalg.norm(pred[true] - g_kp, axis=-1) / np.sqrt(np.maximum(g_area, 1e-12))[:, None]
    return np.where(g_vis > 0, err, np.nan), g_vis


def error_quantile_rows(
    errors: np.ndarray,
    flags: np.ndarray,
    groups: Mapping[str, Sequence[int]] = COCO_GROUPS,
    quantiles: Sequence[float] = QUANTILES,
) -> list[dict]:
    """Rows {group, visibility, n, q: [errors at ``quantiles``] (NaN if n == 0)} for every group x visibility."""
    k = errors.shape[1]
    all_groups = {"all": tuple(range(k)), **{name: tuple(idx) for name, idx in groups.items()}}
    rows = []
    for name, idx in all_groups.items():
        e, f = errors[:, list(idx)], flags[:, list(idx)]
        for vis in VISIBILITY:
            sel = np.isfinite(e) & {"all": f > 0, "visible": f == 2, "occluded": f == 1}[vis]
            values = e[sel]
            q = np.quantile(values, quantiles).tolist() if values.size else [math.nan] * len(quantiles)
            rows.append({"group": name, "visibility": vis, "n": int(values.size), "q": q})
    return rows


def error_quantiles_of_run(
    keypoints_file: str | Path, ann_file: str | Path, sigmas: Sequence[float], min_oks: float = 0.05,
    groups: Mapping[str, Sequence[int]] = COCO_GROUPS, quantiles: Sequence[float] = QUANTILES,
) -> list[dict]:
    """:func:`error_quantile_rows` of one evaluation's COCO results file against its annotation file."""
    results = load_json(keypoints_file, "COCO results file")
    errors, flags = keypoint_errors(results, load_ground_truth(ann_file), sigmas, min_oks)
    return error_quantile_rows(errors, flags, groups, quantiles)
