"""OKSMeanAP on the real fixtures, against an independent slow pipeline + a plain pycocotools COCOeval."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA
from pycocotools.coco import COCO as PyCOCO
from pycocotools.cocoeval import COCOeval
from scipy import stats

from rspose.data.specs import COCO, CROWDPOSE
from rspose.metrics import OKSMeanAP, rescore

FIXTURES = DATA
COCO_GT = FIXTURES / "coco" / "test_coco.json"
COCO_DET = FIXTURES / "coco" / "test_coco_det_AP_H_56.json"
CROWD_GT = FIXTURES / "crowdpose" / "test_crowdpose.json"
CROWD_DET = FIXTURES / "crowdpose" / "test_crowdpose_det_AP_40.json"
STAT_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def _load(path: Path):
    with path.open() as f:
        return json.load(f)


def _gt_as_predictions(gt: dict) -> dict[str, torch.Tensor]:
    anns = [a for a in gt["annotations"] if not a.get("iscrowd", 0) and any(v > 0 for v in a["keypoints"][2::3])]
    kp = np.asarray([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), -1, 3)
    return dict(
        instance_ids=torch.tensor([a["id"] for a in anns]),
        image_ids=torch.tensor([a["image_id"] for a in anns]),
        keypoints=torch.from_numpy(kp[..., :2]),
        keypoint_scores=torch.full(kp.shape[:2], 0.9),
        bbox_scores=torch.ones(len(anns)),
        areas=torch.tensor([a["bbox"][2] * a["bbox"][3] for a in anns], dtype=torch.float64),
    )


def _perturbed_predictions(gt: dict, dets: list[dict], seed: int) -> dict[str, torch.Tensor]:
    """One prediction per detection box: a noisy copy of the best-overlapping GT's keypoints (random points in
    the box where there is none), plus near-duplicates so that OKS-NMS has something to suppress."""
    rng = np.random.default_rng(seed)
    k = len(gt["categories"][0]["keypoints"])
    by_img: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    kpts, kscores, bscores, areas, imgs = [], [], [], [], []
    for d in dets:
        x, y, w, h = d["bbox"]
        rand = np.stack([rng.uniform(x, x + w, k), rng.uniform(y, y + h, k)], 1)
        best, best_iou = None, 0.3
        for a in by_img.get(d["image_id"], []):
            ax, ay, aw, ah = a["bbox"]
            iw = max(0.0, min(x + w, ax + aw) - max(x, ax))
            ih = max(0.0, min(y + h, ay + ah) - max(y, ay))
            iou = iw * ih / (w * h + aw * ah - iw * ih)
            if iou > best_iou and any(v > 0 for v in a["keypoints"][2::3]):
                best, best_iou = a, iou
        if best is not None:
            g = np.asarray(best["keypoints"], dtype=np.float64).reshape(k, 3)
            kp = np.where(g[:, 2:] > 0, g[:, :2], rand) + rng.normal(0, 0.04 * math.sqrt(w * h), (k, 2))
        else:
            kp = rand
        kpts.append(kp)
        kscores.append(rng.uniform(0, 1, k))
        bscores.append(d["score"])
        areas.append(w * h)
        imgs.append(d["image_id"])
    n = len(kpts)
    for i in rng.choice(n, size=n // 4, replace=False):  # near-duplicates
        kpts.append(kpts[i] + rng.normal(0, 0.5, (k, 2)))
        kscores.append(np.clip(kscores[i] + rng.normal(0, 0.05, k), 0, 1))
        bscores.append(bscores[i] * rng.uniform(0.8, 1.0))
        areas.append(areas[i])
        imgs.append(imgs[i])
    m = len(kpts)
    return dict(
        instance_ids=torch.from_numpy(rng.permutation(m) + 1000),
        image_ids=torch.tensor(imgs),
        keypoints=torch.from_numpy(np.asarray(kpts)),
        keypoint_scores=torch.from_numpy(np.asarray(kscores)),
        bbox_scores=torch.tensor(bscores, dtype=torch.float64),
        areas=torch.tensor(areas, dtype=torch.float64),
    )


# ---------------------------------------------------------------- independent slow reference pipeline
def _ref_score(kscores, bscore, thr=0.2):
    total, count = 0.0, 0
    for s in kscores:
        if s > thr:
            total += s
            count += 1
    return bscore * (total / count if count else 0.0)


def _ref_pair_oks(a, b, area_a, area_b, sigmas):
    e = ((a - b) ** 2).sum(-1) / (2 * sigmas) ** 2 / ((area_a + area_b) / 2 + np.spacing(1)) / 2
    return np.float32(np.exp(-e).sum() / len(sigmas))


def _reference_results(p: dict, sigmas: np.ndarray, nms_thr: float = 0.9) -> tuple[list[dict], list[int]]:
    ids, imgs = p["instance_ids"].numpy(), p["image_ids"].numpy()
    kp, ks = p["keypoints"].numpy(), p["keypoint_scores"].numpy()
    bs, ar = p["bbox_scores"].numpy(), p["areas"].numpy()
    scores = [_ref_score(ks[i], bs[i]) for i in range(len(ids))]
    kept = []
    for image in sorted(set(imgs.tolist())):
        order = sorted([i for i in range(len(ids)) if imgs[i] == image], key=lambda i: (-scores[i], ids[i]))
        while order:
            i = order.pop(0)
            kept.append(i)
            order = [j for j in order if _ref_pair_oks(kp[i], kp[j], ar[i], ar[j], sigmas) <= nms_thr]
    kept.sort(key=lambda i: (-scores[i], ids[i]))
    results = [{"image_id": int(imgs[i]), "category_id": 1, "score": float(scores[i]),
                "keypoints": np.concatenate([kp[i], ks[i][:, None]], 1).reshape(-1).tolist()} for i in kept]
    return results, kept


def _plain_cocoeval(gt: dict, results: list[dict], sigmas, img_ids=None) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = PyCOCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        if img_ids is not None:
            ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


# ---------------------------------------------------------------- tests
def test_gt_as_predictions_coco_is_perfect():
    m = OKSMeanAP(COCO_GT, spec=COCO)
    m.update(**_gt_as_predictions(_load(COCO_GT)))
    out = m.compute()
    assert out["AP"] == 1.0 and out["AR"] == 1.0
    assert set(STAT_KEYS) <= set(out)
    assert all(isinstance(v, float) for v in out.values())


def test_gt_as_predictions_crowdpose():
    m = OKSMeanAP(str(CROWD_GT), spec=CROWDPOSE, iou_type="keypoints_crowd")
    m.update(**_gt_as_predictions(_load(CROWD_GT)))
    out = m.compute()
    assert out["AP"] == 1.0
    assert out["AP_easy"] == -1.0 and out["AP_hard"] == -1.0 and out["AP_medium"] == 1.0


def test_perturbed_coco_matches_plain_cocoeval(tmp_path):
    gt = _load(COCO_GT)
    p = _perturbed_predictions(gt, _load(COCO_DET), seed=0)
    m = OKSMeanAP(gt, spec=COCO, outfile_prefix=str(tmp_path / "res"), report_ap_before_nms=True)
    half = len(p["image_ids"]) // 2  # two update calls
    m.update(**{k: v[:half] for k, v in p.items()})
    m.update(**{k: v[half:] for k, v in p.items()})
    out = m.compute()
    assert not list(tmp_path.iterdir())  # compute() never writes files
    assert {p.name for p in m.write_outputs()} == {"res.keypoints.json", "res.instances.json"}
    sigmas = np.asarray(COCO.sigmas)
    results, kept = _reference_results(p, sigmas)
    assert 0 < len(kept) < len(p["image_ids"])  # NMS removed some
    ref = _plain_cocoeval(gt, results, sigmas)
    for key, value in zip(STAT_KEYS, ref):
        assert out[key] == value, key
    assert 0.0 < out["AP"] < 1.0
    # the results file holds exactly the reference results, without a "bbox" key
    written = _load(tmp_path / "res.keypoints.json")
    assert written == results
    # AP before NMS: every prediction, no NMS
    all_results = []
    scores = [_ref_score(ks, b) for ks, b in zip(p["keypoint_scores"].numpy(), p["bbox_scores"].numpy())]
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], int(p["instance_ids"][i]))):
        kp = np.concatenate([p["keypoints"][i].numpy(), p["keypoint_scores"][i].numpy()[:, None]], 1)
        all_results.append({"image_id": int(p["image_ids"][i]), "category_id": 1, "score": scores[i],
                            "keypoints": kp.reshape(-1).tolist()})
    assert out["AP_before_nms"] == _plain_cocoeval(gt, all_results, sigmas)[0]
    # correlations: kept predictions, OKS with the best non-ignored GT of the image (0 if none), vs scipy
    valid = [a for a in gt["annotations"] if not a["iscrowd"] and any(v > 0 for v in a["keypoints"][2::3])]
    oks = []
    for i in kept:
        best = 0.0
        for a in valid:
            if a["image_id"] != int(p["image_ids"][i]):
                continue
            g = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
            e = ((p["keypoints"][i].numpy() - g[:, :2]) ** 2).sum(-1) / (2 * sigmas) ** 2 / (a["area"] + np.spacing(1)) / 2
            best = max(best, float(np.exp(-e)[g[:, 2] > 0].mean()))
        oks.append(best)
    kept_scores = [r["score"] for r in results]
    assert out["spearman"] == pytest.approx(stats.spearmanr(kept_scores, oks).statistic, abs=1e-9)
    assert out["pearson"] == pytest.approx(stats.pearsonr(kept_scores, oks).statistic, abs=1e-9)
    assert out["kendall"] == pytest.approx(stats.kendalltau(kept_scores, oks).statistic, abs=1e-9)
    assert math.isfinite(out["spearman_keypoint"]) and math.isfinite(out["spearman_before_nms"])
    # per-instance table
    table = _load(tmp_path / "res.instances.json")
    assert table["meta"]["keypoint_names"] == list(COCO.keypoint_names)
    assert table["meta"]["sigmas"] == list(COCO.sigmas)
    assert table["meta"]["metrics"]["AP"] == out["AP"]
    inst = table["instances"]
    assert len(inst) == len(p["image_ids"]) and sum(r["kept"] for r in inst) == len(kept)
    assert set(inst[0]) == {"instance_id", "image_id", "score", "bbox_score", "oks", "kept", "keypoint_scores",
                            "keypoint_oks"}
    by_id = {r["instance_id"]: r for r in inst}
    for i, o in zip(kept, oks):
        assert by_id[int(p["instance_ids"][i])]["oks"] == pytest.approx(o, abs=1e-12)
        assert by_id[int(p["instance_ids"][i])]["kept"]
    assert any(x is None for r in inst for x in r["keypoint_oks"])  # unlabelled GT keypoints / no GT


def test_perturbed_crowdpose_matches_plain_cocoeval():
    gt = _load(CROWD_GT)
    p = _perturbed_predictions(gt, _load(CROWD_DET), seed=1)
    m = OKSMeanAP(CROWD_GT, spec=CROWDPOSE, iou_type="keypoints_crowd")
    m.update(**p)
    out = m.compute()
    sigmas = np.asarray(CROWDPOSE.sigmas)
    results, _ = _reference_results(p, sigmas)
    gt_area = copy.deepcopy(gt)  # the reference CrowdPose evaluator: GT area = 0.53 w h
    for a in gt_area["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3] * 0.53
    ref = _plain_cocoeval(gt_area, results, sigmas)
    for key, value in zip(STAT_KEYS, ref):
        assert out[key] == value, key
    medium = [img["id"] for img in gt["images"] if 0.2 <= img["crowdIndex"] < 0.8]
    assert out["AP_medium"] == _plain_cocoeval(gt_area, results, sigmas, medium)[0]
    assert out["AP_easy"] == -1.0 and out["AP_hard"] == -1.0


def test_rescore_modes_match_loop():
    rng = np.random.default_rng(0)
    ks, bs = rng.uniform(0, 0.4, (30, 6)), rng.uniform(0, 1, 30)
    ks[0] = 0.1  # no keypoint above the threshold -> 0
    ks[1, :3] = 0.2  # exactly the threshold does not count
    expected = [_ref_score(ks[i], bs[i]) for i in range(30)]
    np.testing.assert_allclose(rescore(ks, bs, "bbox_keypoint", 0.2), expected, atol=1e-15)
    np.testing.assert_allclose(rescore(ks, bs, "bbox", 0.2), bs)
    np.testing.assert_allclose(rescore(ks, bs, "keypoint", 0.2), ks.mean(1))
    assert rescore(ks, bs, "bbox_keypoint", 0.2)[0] == 0.0


def test_soft_nms_and_no_nms_run():
    gt = _load(COCO_GT)
    p = _perturbed_predictions(gt, _load(COCO_DET), seed=2)
    outs = {}
    for mode in ("soft_oks", "none"):
        m = OKSMeanAP(COCO_GT, nms=mode)
        m.update(**p)
        outs[mode] = m.compute()
    results = []  # no NMS: every prediction
    sigmas = np.asarray(COCO.sigmas)
    scores = [_ref_score(ks, b) for ks, b in zip(p["keypoint_scores"].numpy(), p["bbox_scores"].numpy())]
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], int(p["instance_ids"][i]))):
        kp = np.concatenate([p["keypoints"][i].numpy(), p["keypoint_scores"][i].numpy()[:, None]], 1)
        results.append({"image_id": int(p["image_ids"][i]), "category_id": 1, "score": scores[i],
                        "keypoints": kp.reshape(-1).tolist()})
    assert outs["none"]["AP"] == _plain_cocoeval(gt, results, sigmas)[0]
    assert 0.0 < outs["soft_oks"]["AP"] <= 1.0


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
@pytest.mark.parametrize("with_empty_update", [False, True])
def test_empty_predictions_give_zero_ap(with_empty_update):
    m = OKSMeanAP(COCO_GT)
    if with_empty_update:
        p = _gt_as_predictions(_load(COCO_GT))
        m.update(**{k: v[:0] for k, v in p.items()})
    out = m.compute()
    assert out["AP"] == 0.0 and out["AR"] == 0.0
    assert all(out[k] in (0.0, -1.0) for k in STAT_KEYS)
    assert math.isnan(out["spearman"])


def test_bad_inputs_raise_clear_errors():
    p = _gt_as_predictions(_load(COCO_GT))
    m = OKSMeanAP(COCO_GT)
    bad = dict(p, keypoints=p["keypoints"].clone())
    bad["keypoints"][2, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        m.update(**bad)
    bad = dict(p, keypoint_scores=p["keypoint_scores"].clone())
    bad["keypoint_scores"][0, 0] = float("inf")
    with pytest.raises(ValueError, match="keypoint_scores has NaN or inf"):
        m.update(**bad)
    with pytest.raises(ValueError, match=r"image ids \[123456\] are not in"):
        m.update(**dict(p, image_ids=torch.full_like(p["image_ids"], 123456)))
    with pytest.raises(ValueError, match=r"expected \(N, 17, 2\)"):
        m.update(**dict(p, keypoints=p["keypoints"][:, :14]))
    with pytest.raises(ValueError, match="sigmas"):
        OKSMeanAP(CROWD_GT, iou_type="keypoints_crowd")  # K = 14 needs sigmas or a spec
    with pytest.raises(ValueError, match="has no 'area'"):
        OKSMeanAP(CROWD_GT, spec=CROWDPOSE)  # CrowdPose GT without iou_type keypoints_crowd
    with pytest.raises(ValueError, match="nms="):
        OKSMeanAP(COCO_GT, nms="greedy")


@pytest.mark.parametrize("dataset", ["coco", "crowdpose"])
def test_faster_coco_eval_backend_gives_identical_numbers(dataset):
    pytest.importorskip("faster_coco_eval")
    gt_path, det_path, spec, iou = (
        (COCO_GT, COCO_DET, COCO, "keypoints") if dataset == "coco"
        else (CROWD_GT, CROWD_DET, CROWDPOSE, "keypoints_crowd")
    )
    p = _perturbed_predictions(_load(gt_path), _load(det_path), seed=4)
    outs = []
    for backend in ("pycocotools", "faster_coco_eval"):
        m = OKSMeanAP(gt_path, spec=spec, iou_type=iou, backend=backend, report_ap_before_nms=True)
        m.update(**p)
        outs.append(m.compute())
    assert outs[0].keys() == outs[1].keys()
    for key in outs[0]:
        assert outs[0][key] == outs[1][key] or (math.isnan(outs[0][key]) and math.isnan(outs[1][key])), key
