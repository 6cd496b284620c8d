"""OKSMeanAP(diagnostics=True) against a direct pycocotools run and hand-built cases."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import torch
from pycocotools.coco import COCO as PyCOCO
from pycocotools.cocoeval import COCOeval
from test_metrics_coco_ap import COCO_DET, COCO_GT, _load, _perturbed_predictions

from rspose.data.specs import COCO
from rspose.metrics import OKSMeanAP


def _slow_best_oks(p: dict, gt: dict, sigmas: np.ndarray) -> np.ndarray:
    """COCOeval's OKS (labelled GT keypoints only) with the best non-crowd, labelled GT of the image; 0 if none."""
    out = []
    var = (2 * sigmas) ** 2
    for kp, img in zip(p["keypoints"].numpy(), p["image_ids"].tolist()):
        best = 0.0
        for a in gt["annotations"]:
            g = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
            if a["image_id"] != img or a.get("iscrowd", 0) or not (g[:, 2] > 0).any():
                continue
            vis = g[:, 2] > 0
            e = ((kp - g[:, :2]) ** 2).sum(-1) / var / (a["area"] + np.spacing(1)) / 2
            best = max(best, float(np.exp(-e[vis]).sum() / vis.sum()))
        out.append(best)
    return np.asarray(out)


def _direct_ap(gt_path, p: dict, scores: np.ndarray) -> float:
    results = [
        {"image_id": int(i), "category_id": 1, "score": float(s),
         "keypoints": np.concatenate([k, np.ones((k.shape[0], 1))], 1).reshape(-1).tolist()}
        for i, k, s in zip(p["image_ids"].tolist(), p["keypoints"].numpy(), scores)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = PyCOCO(str(gt_path))
        ev = COCOeval(coco, coco.loadRes(results), "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(COCO.sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def _metric(p: dict, **kw) -> dict[str, float]:
    m = OKSMeanAP(COCO_GT, diagnostics=True, **kw)
    m.update(**p)
    return m.compute()


def test_oracle_matches_direct_pycocotools_without_nms():
    gt = _load(COCO_GT)
    p = _perturbed_predictions(gt, _load(COCO_DET), seed=3)
    sigmas = np.asarray(COCO.sigmas)
    oks = _slow_best_oks(p, gt, sigmas)
    out = _metric(p, nms="none")
    assert math.isclose(out["AP_oracle"], _direct_ap(COCO_GT, p, oks), abs_tol=1e-9)
    assert math.isclose(out["scoring_gap"], out["AP_oracle"] - out["AP"], abs_tol=1e-12)
    assert math.isclose(out["oks_median"], float(np.median(oks)), abs_tol=1e-9)
    assert math.isclose(out["oks_mean"], float(oks.mean()), abs_tol=1e-9)
    assert out["n_low_oks"] == float((oks < 0.05).sum())
    assert out["n_low_oks"] + out["n_rest"] == len(oks)


def test_normal_numbers_unchanged_with_diagnostics():
    gt = _load(COCO_GT)
    p = _perturbed_predictions(gt, _load(COCO_DET), seed=5)
    out = _metric(p)
    plain = OKSMeanAP(COCO_GT)
    plain.update(**p)
    base = plain.compute()
    for key, value in base.items():
        assert out[key] == value or (math.isnan(value) and math.isnan(out[key])), key
    assert "AP_oracle" not in base
    assert math.isclose(out["scoring_gap"], out["AP_oracle"] - out["AP"], abs_tol=1e-12)


def _hand_gt() -> dict:
    k = 17
    kps = []
    for j in range(k):
        kps += [10.0 + j, 20.0 + 2 * j, 2]
    return {
        "images": [{"id": 1, "width": 200, "height": 200}],
        "categories": [{"id": 1, "name": "person", "keypoints": [f"k{j}" for j in range(k)]}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": kps, "num_keypoints": k,
                         "area": 400.0, "bbox": [10, 20, 20, 40], "iscrowd": 0}],
    }


def _hand_predictions(gt: dict, far_bbox: float, far_kpt: float) -> dict[str, torch.Tensor]:
    g = np.asarray(gt["annotations"][0]["keypoints"], dtype=np.float64).reshape(17, 3)[:, :2]
    kp = np.stack([g + np.array([2.0, 0.0]), g + 150.0])
    return dict(instance_ids=torch.tensor([1, 2]), image_ids=torch.tensor([1, 1]), keypoints=torch.from_numpy(kp),
                keypoint_scores=torch.tensor([[0.8] * 17, [far_kpt] * 17], dtype=torch.float64),
                bbox_scores=torch.tensor([1.0, far_bbox], dtype=torch.float64), areas=torch.tensor([400.0, 400.0]))


def test_oracle_beats_ap_when_the_score_prefers_the_bad_prediction():
    gt = _hand_gt()
    m = OKSMeanAP(gt, diagnostics=True)
    m.update(**_hand_predictions(gt, far_bbox=1.0, far_kpt=0.95))  # far one: 0.95 > 0.8
    out = m.compute()
    assert out["AP_oracle"] > out["AP"] > 0
    assert out["scoring_gap"] > 0
    assert out["n_low_oks"] == 1.0 and math.isclose(out["score_low_oks"], 0.95)


def test_low_oks_split_and_kpt_error_hand_built():
    gt = _hand_gt()
    # prediction 0: GT + 2 px in x (error 2 / sqrt(400) = 0.1); prediction 1: GT + 150 px (OKS ~ 0)
    p = _hand_predictions(gt, far_bbox=0.6, far_kpt=0.5)
    m = OKSMeanAP(gt, diagnostics=True, nms="none")
    m.update(**p)
    out = m.compute()
    assert out["n_low_oks"] == 1.0 and out["n_rest"] == 1.0
    assert math.isclose(out["score_low_oks"], 0.5 * 0.6)
    assert math.isclose(out["score_rest"], 0.8)
    # both predictions match the only GT: errors 0.1 (x17) and 150*sqrt(2)/20 (x17)
    assert math.isclose(out["kpt_error"], (0.1 + 150 * math.sqrt(2) / 20) / 2, rel_tol=1e-9)
    assert math.isclose(out["AP_oracle"], out["AP"])  # the OKS order equals the score order here
