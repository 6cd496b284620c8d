"""COCO / CrowdPose keypoint mAP (OKS) as a torchmetrics Metric, with OKS-NMS and score/OKS correlations.

Pipeline of :meth:`OKSMeanAP.compute` (also callable step by step, see :func:`evaluate_predictions`):
1. gather (torchmetrics, ``dist_reduce_fx="cat"``) and deduplicate by instance id (DistributedSampler pads
   each rank with repeated samples; the first copy in gathered order is kept);
2. rescore (mmpose CocoMetric): ``bbox_keypoint``: bbox_score x mean of the keypoint scores > thr (0 if none);
   ``bbox``: bbox_score; ``keypoint``: mean of all keypoint scores;
3. OKS-NMS / soft-OKS-NMS per image (:mod:`rspose.metrics.nms`) with the ``areas`` passed to ``update``
   (the caller's instance area: detection box w x h, or the scale product as mmpose does);
4. COCO results sorted by (-score, instance id), WITHOUT a "bbox" key (pycocotools then takes the detection
   area from the keypoint extent), evaluated by pycocotools with the sigmas set (any K);
5. correlations of score vs OKS with the best-matching non-ignored GT of the image (OKS 0 if none).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from rspose.data.specs import COCO, KEYPOINT_SCORE_THR, DatasetSpec
from rspose.metrics.coco_eval import Backend, GroundTruth, IouType, evaluate_keypoints, load_ground_truth
from rspose.metrics.correlation import kendall, pearson, spearman, spearman_per_column
from rspose.metrics.instances import instance_rows, write_instances
from rspose.metrics.nms import oks_nms, soft_oks_nms
from rspose.metrics.oks import best_gt_oks

ScoreMode = Literal["bbox_keypoint", "bbox", "keypoint"]
NmsMode = Literal["oks", "soft_oks", "none"]
_FIELDS = ("instance_ids", "image_ids", "keypoints", "keypoint_scores", "bbox_scores", "areas")


@dataclass
class KeypointPredictions:
    """N predicted instances as numpy arrays: instance_ids (N,) int64, image_ids (N,) int64,
    keypoints (N, K, 2) float64 image pixels, keypoint_scores (N, K), bbox_scores (N,), areas (N,)."""

    instance_ids: np.ndarray
    image_ids: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    bbox_scores: np.ndarray
    areas: np.ndarray

    def take(self, index: np.ndarray) -> KeypointPredictions:
        return KeypointPredictions(*(getattr(self, f)[index] for f in _FIELDS))


#: copies of one instance id closer than this (keypoints, px; keypoint scores) are distributed padding copies.
DUPLICATE_KEYPOINT_ATOL, DUPLICATE_SCORE_ATOL = 0.5, 0.01


def deduplicate(preds: KeypointPredictions) -> KeypointPredictions:
    """Keep the first copy of each instance id (gathered order), sorted by instance id.

    Repeated ids are expected only from DistributedSampler padding: the same sample predicted twice. Copies that
    differ (another image, box score or area, or keypoints / keypoint scores beyond DUPLICATE_*_ATOL) are two
    different instances under one id, and dropping one would change AP silently: that is an error.
    """
    _, first = np.unique(preds.instance_ids, return_index=True)
    if first.size != preds.instance_ids.size:  # every copy of an id must describe the same prediction
        order = np.argsort(preds.instance_ids, kind="stable")
        a, b = order[:-1], order[1:]
        same = preds.instance_ids[a] == preds.instance_ids[b]
        a, b = a[same], b[same]
        other_image = preds.image_ids[a] != preds.image_ids[b]
        if other_image.any():
            i = int(preds.instance_ids[a][other_image][0])
            raise ValueError(f"OKSMeanAP: instance id {i} was given for two different image ids; ids must be unique")
        differs = (
            (preds.bbox_scores[a] != preds.bbox_scores[b])
            | (preds.areas[a] != preds.areas[b])
            | (np.abs(preds.keypoints[a] - preds.keypoints[b]).reshape(a.size, -1).max(-1, initial=0)
               > DUPLICATE_KEYPOINT_ATOL)
            | (np.abs(preds.keypoint_scores[a] - preds.keypoint_scores[b]).max(-1, initial=0) > DUPLICATE_SCORE_ATOL)
        )
        if differs.any():
            j = int(np.flatnonzero(differs)[0])
            raise ValueError(
                f"OKSMeanAP: instance id {int(preds.instance_ids[a[j]])} was given twice for image "
                f"{int(preds.image_ids[a[j]])} with different predictions; every instance needs its own id "
                "(only identical copies, as distributed padding makes, are merged)"
            )
    return preds.take(first)


def rescore(keypoint_scores: np.ndarray, bbox_scores: np.ndarray, score_mode: ScoreMode, thr: float) -> np.ndarray:
    """(N, K) keypoint scores, (N,) box scores -> (N,) instance scores (mmpose CocoMetric rescoring)."""
    if score_mode == "bbox":
        return bbox_scores.astype(np.float64, copy=True)
    if score_mode == "keypoint":
        return keypoint_scores.mean(axis=1)
    valid = keypoint_scores > thr
    n_valid = valid.sum(axis=1)
    # sequential sum (cumsum), bit-identical to the reference's Python loop; adding 0.0 changes nothing
    total = np.cumsum(np.where(valid, keypoint_scores, 0.0), axis=1)[:, -1] if valid.size else np.zeros(len(valid))
    mean = total / np.maximum(n_valid, 1)
    return np.where(n_valid > 0, mean, 0.0) * bbox_scores


def apply_nms(preds: KeypointPredictions, scores: np.ndarray, sigmas: np.ndarray, nms: NmsMode, thr: float) -> np.ndarray:
    """(N,) bool mask of the predictions kept by per-image OKS-NMS / soft-OKS-NMS (all for "none")."""
    nms_args = dict(image_ids=preds.image_ids, instance_ids=preds.instance_ids)
    if nms == "oks":
        return oks_nms(preds.keypoints, scores, preds.areas, sigmas, thr, **nms_args).numpy()
    if nms == "soft_oks":
        return soft_oks_nms(preds.keypoints, scores, preds.areas, sigmas, thr, **nms_args).numpy()
    return np.ones(scores.shape[0], dtype=bool)


def to_coco_results(preds: KeypointPredictions, scores: np.ndarray, category_id: int) -> list[dict]:
    """COCO keypoint results sorted by (-score, instance id); no "bbox" key."""
    order = np.lexsort((preds.instance_ids, -scores))
    n = order.size
    flat = np.concatenate([preds.keypoints[order], preds.keypoint_scores[order][..., None]], axis=-1)
    flat = flat.reshape(n, flat.shape[1] * 3).tolist()
    img = preds.image_ids[order].tolist()
    sc = scores[order].tolist()
    return [{"image_id": i, "category_id": category_id, "keypoints": k, "score": s} for i, k, s in zip(img, flat, sc)]


def evaluate_predictions(
    preds: KeypointPredictions,
    gt: GroundTruth,
    sigmas: np.ndarray,
    iou_type: IouType = "keypoints",
    score_mode: ScoreMode = "bbox_keypoint",
    keypoint_score_thr: float = KEYPOINT_SCORE_THR,
    nms: NmsMode = "oks",
    nms_thr: float = 0.9,
    report_ap_before_nms: bool = False,
    backend: Backend = "pycocotools",
    timings: dict[str, float] | None = None,
    diagnostics: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Everything after the gather. Returns (metrics dict, per-instance table): the table holds the
    deduplicated predictions' fields plus scores (N,), oks (N,), kept (N,) bool and keypoint_oks (N, K).

    ``timings``, if given, receives the seconds spent in each step (dedup, rescore, nms, correlations,
    results, cocoeval).

    ``diagnostics`` adds the localisation / scoring diagnostics of :func:`scoring_diagnostics`.
    """
    clock = _Clock(timings)
    preds = deduplicate(preds)
    clock.tick("dedup")
    scores = rescore(preds.keypoint_scores, preds.bbox_scores, score_mode, keypoint_score_thr)
    clock.tick("rescore")
    kept = apply_nms(preds, scores, sigmas, nms, nms_thr)
    clock.tick("nms")
    v = gt.valid
    oks, match, kpt_oks = best_gt_oks(preds.keypoints, preds.image_ids, gt.keypoints[v], gt.visible[v],
                                  gt.areas[v], gt.ann_image_ids[v], sigmas)
    oks, kpt_oks = oks.numpy(), kpt_oks.numpy()
    corr = {
        "spearman": spearman(scores[kept], oks[kept]),
        "pearson": pearson(scores[kept], oks[kept]),
        "kendall": kendall(scores[kept], oks[kept]),
        "spearman_keypoint": spearman_per_column(preds.keypoint_scores[kept], kpt_oks[kept])[0],
        "spearman_before_nms": spearman(scores, oks),
    }
    clock.tick("correlations")
    with _gc_paused():  # ~10^5 result dicts: the cyclic GC would rescan them (and the GT) again and again
        results = to_coco_results(preds.take(kept), scores[kept], gt.category_id)
        before = to_coco_results(preds, scores, gt.category_id) if report_ap_before_nms else None
        clock.tick("results")
        metrics = evaluate_keypoints(gt, results, sigmas, iou_type, backend)
        if before is not None:
            metrics["AP_before_nms"] = evaluate_keypoints(gt, before, sigmas, "keypoints", backend)["AP"]
        del results, before
    clock.tick("cocoeval")
    metrics.update(corr)
    if diagnostics:
        metrics.update(scoring_diagnostics(preds, oks, match.numpy(), kept, scores, gt, sigmas, iou_type, nms,
                                           nms_thr, metrics["AP"], backend))
        clock.tick("diagnostics")
    table = {f: getattr(preds, f) for f in _FIELDS}
    table.update(scores=scores, oks=oks, kept=kept, keypoint_oks=kpt_oks)
    return metrics, table


LOW_OKS = 0.05


def scoring_diagnostics(
    preds: KeypointPredictions,
    oks: np.ndarray,
    match: np.ndarray,
    kept: np.ndarray,
    scores: np.ndarray,
    gt: GroundTruth,
    sigmas: np.ndarray,
    iou_type: IouType,
    nms: NmsMode,
    nms_thr: float,
    ap: float,
    backend: Backend = "pycocotools",
) -> dict[str, float]:
    """Localisation / scoring diagnostics of the deduplicated predictions (N of them).

    Args:
        preds: the N deduplicated predictions; oks: (N,) OKS with the best-matching non-ignored GT of the
            image (0 if none); match: (N,) index into ``gt``'s valid GTs (-1 if none); kept: (N,) bool, the
            normal path's NMS mask; scores: (N,) rescored instance scores; ap: the normal path's AP.

    Returns (python floats; NaN where a mean is over nothing):
        AP_oracle: the rescoring step's output is replaced by ``oks`` (the score of every deduplicated,
            pre-NMS prediction becomes its best-match OKS), then the SAME NMS (mode, threshold) and COCOeval
            run as in the normal path; scoring_gap = AP_oracle - AP;
        oks_median, oks_mean: over the normal path's kept predictions;
        kpt_error: mean over (kept, matched prediction, labelled GT keypoint) of ||pred - gt|| / sqrt(GT area);
        score_low_oks / n_low_oks: mean score / count of kept predictions with oks < 0.05;
        score_rest / n_rest: the same for the other kept predictions.
    """
    oracle_kept = apply_nms(preds, oks, sigmas, nms, nms_thr)
    with _gc_paused():
        results = to_coco_results(preds.take(oracle_kept), oks[oracle_kept], gt.category_id)
        ap_oracle = evaluate_keypoints(gt, results, sigmas, iou_type, backend)["AP"]
    k_oks, k_scores = oks[kept], scores[kept]
    out = {"AP_oracle": float(ap_oracle), "scoring_gap": float(ap_oracle - ap)}
    out["oks_median"] = float(np.median(k_oks)) if k_oks.size else math.nan
    out["oks_mean"] = float(k_oks.mean()) if k_oks.size else math.nan
    v = gt.valid
    sel = kept & (match >= 0)
    m = match[sel]
    g_kp, g_vis, g_area = gt.keypoints[v][m], gt.visible[v][m], gt.areas[v][m]
    err = np.linalg.norm(preds.keypoints[sel] - g_kp, axis=-1) / np.sqrt(np.maximum(g_area, 1e-12))[:, None]
    lab = g_vis > 0
    out["kpt_error"] = float(err[lab].mean()) if lab.any() else math.nan
    low = k_oks < LOW_OKS
    out["score_low_oks"] = float(k_scores[low].mean()) if low.any() else math.nan
    out["n_low_oks"] = float(low.sum())
    out["score_rest"] = float(k_scores[~low].mean()) if (~low).any() else math.nan
    out["n_rest"] = float((~low).sum())
    return out


@contextlib.contextmanager
def _gc_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Clock:
    def __init__(self, out: dict[str, float] | None) -> None:
        self.out, self.t = out, time.perf_counter()

    def tick(self, name: str) -> None:
        now = time.perf_counter()
        if self.out is not None:
            self.out[name] = self.out.get(name, 0.0) + now - self.t
        self.t = now


class OKSMeanAP(Metric):
    """COCO keypoint mAP (OKS) with rescoring, OKS-NMS, CrowdPose splits and score/OKS correlations.

    Args:
        ann_file: COCO-format GT keypoint file, or the same as an in-memory dict.
        sigmas: K OKS sigmas; default: ``spec.sigmas``; without both, the COCO sigmas when K = 17.
        spec: dataset spec (sigmas and keypoint names).
        iou_type: "keypoints" (COCO) or "keypoints_crowd" (CrowdPose: GT area = 0.53 w h, AP_easy/medium/hard).
        score_mode: instance score: "bbox_keypoint" (box score x mean keypoint score > thr), "bbox", "keypoint".
        keypoint_score_thr: keypoint score threshold of the rescoring.
        nms: "oks" (greedy, OKS > nms_thr suppressed), "soft_oks" (Gaussian, 20 per image) or "none".
        nms_thr: OKS-NMS threshold (soft-OKS-NMS: the Gaussian's variance).
        outfile_prefix: default prefix of :meth:`write_outputs` ({prefix}.keypoints.json, the COCO results, and
            {prefix}.instances.json, the per-instance table); compute() itself never writes files.
        report_ap_before_nms: also evaluate every deduplicated prediction without NMS ("AP_before_nms").
        backend: "pycocotools" (default, the evaluator of record) or "faster_coco_eval" (optional package).
        diagnostics: also return AP_oracle, scoring_gap, oks_median, oks_mean, kpt_error, score_low_oks,
            n_low_oks, score_rest, n_rest (see :func:`scoring_diagnostics`).

    update(instance_ids (N,), image_ids (N,), keypoints (N, K, 2) image pixels, keypoint_scores (N, K),
    bbox_scores (N,), areas (N,)); compute() -> {AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl,
    [AP_easy, AP_medium, AP_hard], spearman, pearson, kendall, spearman_keypoint, spearman_before_nms,
    [AP_before_nms]} as python floats (AP -1 where pycocotools has no GT; correlations NaN if undefined).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        ann_file: str | Path | dict,
        sigmas: Sequence[float] | None = None,
        spec: DatasetSpec | None = None,
        iou_type: Literal["keypoints", "keypoints_crowd"] = "keypoints",
        score_mode: Literal["bbox_keypoint", "bbox", "keypoint"] = "bbox_keypoint",
        keypoint_score_thr: float = KEYPOINT_SCORE_THR,
        nms: Literal["oks", "soft_oks", "none"] = "oks",
        nms_thr: float = 0.9,
        outfile_prefix: str | None = None,
        report_ap_before_nms: bool = False,
        backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools",
        diagnostics: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        for name, value, allowed in (
            ("iou_type", iou_type, ("keypoints", "keypoints_crowd")),
            ("score_mode", score_mode, ("bbox_keypoint", "bbox", "keypoint")),
            ("nms", nms, ("oks", "soft_oks", "none")),
            ("backend", backend, ("pycocotools", "faster_coco_eval")),
        ):
            if value not in allowed:
                raise ValueError(f"OKSMeanAP: {name}={value!r}; expected one of {list(allowed)}")
        self.gt = load_ground_truth(ann_file, iou_type)
        k = self.gt.num_keypoints
        if sigmas is None and spec is not None:
            sigmas = spec.sigmas
        if sigmas is None:
            if k != COCO.num_keypoints:
                raise ValueError(f"OKSMeanAP: {self.gt.source} has K = {k} keypoints; pass sigmas or spec (K values)")
            sigmas = COCO.sigmas
        if len(sigmas) != k:
            raise ValueError(f"OKSMeanAP: {len(sigmas)} sigmas given but {self.gt.source} has K = {k} keypoints")
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.keypoint_names = list(spec.keypoint_names) if spec is not None else self.gt.keypoint_names
        self.iou_type, self.score_mode, self.nms = iou_type, score_mode, nms
        self.keypoint_score_thr, self.nms_thr = float(keypoint_score_thr), float(nms_thr)
        self.outfile_prefix, self.report_ap_before_nms, self.backend = outfile_prefix, report_ap_before_nms, backend
        self.diagnostics = bool(diagnostics)
        if backend == "faster_coco_eval":
            try:
                import faster_coco_eval  # noqa: F401
            except ImportError as e:
                raise ImportError("OKSMeanAP: backend='faster_coco_eval' needs `pip install faster-coco-eval`") from e
        for name in _FIELDS:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        instance_ids: Tensor,
        image_ids: Tensor,
        keypoints: Tensor,
        keypoint_scores: Tensor,
        bbox_scores: Tensor,
        areas: Tensor,
    ) -> None:
        """Add N predicted instances (shapes in the class docstring)."""
        k = self.sigmas.shape[0]
        kp = torch.as_tensor(keypoints).detach()
        if kp.ndim != 3 or kp.shape[1:] != (k, 2):
            raise ValueError(f"OKSMeanAP.update: keypoints has shape {tuple(kp.shape)}, expected (N, {k}, 2)")
        n = kp.shape[0]
        values = {}
        for name, x, shape, dtype in (
            ("instance_ids", instance_ids, (n,), torch.int64),
            ("image_ids", image_ids, (n,), torch.int64),
            ("keypoints", kp, (n, k, 2), torch.float64),
            ("keypoint_scores", keypoint_scores, (n, k), torch.float64),
            ("bbox_scores", bbox_scores, (n,), torch.float64),
            ("areas", areas, (n,), torch.float64),
        ):
            t = torch.as_tensor(x).detach()
            if tuple(t.shape) != shape:
                raise ValueError(f"OKSMeanAP.update: {name} has shape {tuple(t.shape)}, expected {shape} (K = {k})")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).reshape(n, -1).any(-1).nonzero()[0, 0])
                raise ValueError(f"OKSMeanAP.update: {name} has NaN or inf values (first at instance {bad} of the batch)")
            values[name] = t.to(device=self.device, dtype=dtype)
        img = values["image_ids"].cpu().numpy()
        unknown = ~np.isin(img, self.gt.image_ids)
        if unknown.any():
            raise ValueError(
                f"OKSMeanAP.update: image ids {np.unique(img[unknown])[:5].tolist()} are not in {self.gt.source}"
            )
        for name, t in values.items():
            getattr(self, name).append(t)

    def _gathered(self) -> KeypointPredictions:
        k = self.sigmas.shape[0]
        arrays = []
        for name in _FIELDS:
            state = getattr(self, name)
            if isinstance(state, list) and len(state) == 0:
                shape = {"keypoints": (0, k, 2), "keypoint_scores": (0, k)}.get(name, (0,))
                dtype = np.int64 if name in ("instance_ids", "image_ids") else np.float64
                arrays.append(np.zeros(shape, dtype=dtype))
            else:
                arrays.append(dim_zero_cat(state).cpu().numpy())
        return KeypointPredictions(*arrays)

    def compute(self) -> dict[str, float]:
        """The metrics dict (class docstring). Writes no file: the per-instance table of this evaluation is kept
        in ``self.last_table`` and the metrics in ``self.last_metrics`` for :meth:`write_outputs`."""
        metrics, table = evaluate_predictions(
            self._gathered(), self.gt, self.sigmas, self.iou_type, self.score_mode, self.keypoint_score_thr,
            self.nms, self.nms_thr, self.report_ap_before_nms, self.backend, diagnostics=self.diagnostics,
        )
        self.last_metrics, self.last_table = metrics, table
        return metrics

    def write_outputs(self, prefix: str | None = None) -> list[Path]:
        """Write the last compute()'s {prefix}.keypoints.json and {prefix}.instances.json (prefix: the argument,
        else ``outfile_prefix``; nothing without both). Call it on ONE process (global rank zero): every rank's
        compute() holds the same gathered table."""
        prefix = prefix if prefix is not None else self.outfile_prefix
        if prefix is None:
            return []
        if getattr(self, "last_table", None) is None:
            raise RuntimeError("OKSMeanAP.write_outputs: call compute() first (there is no evaluation to write)")
        return [self.write_results(prefix, self.last_table),
                self.write_instances(prefix, self.last_metrics, self.last_table)]

    def write_results(self, prefix: str, table: dict[str, np.ndarray]) -> Path:
        """{prefix}.keypoints.json: the COCO results of the kept predictions (what COCOeval saw)."""
        kept = table["kept"]
        preds = KeypointPredictions(*(table[f][kept] for f in _FIELDS))
        path = Path(f"{prefix}.keypoints.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            json.dump(to_coco_results(preds, table["scores"][kept], self.gt.category_id), f)
        return path

    def write_instances(self, prefix: str, metrics: dict[str, float], table: dict[str, np.ndarray]) -> Path:
        """{prefix}.instances.json in the format of :mod:`rspose.metrics.instances`."""
        return write_instances(f"{prefix}.instances.json", instance_rows(table), self.sigmas.tolist(),
                               self.keypoint_names, metrics)
