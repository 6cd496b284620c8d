"""OKS against pycocotools' own computeOks, and the best-GT matching against a slow loop."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from conftest import DATA
from pycocotools.coco import COCO as PyCOCO
from pycocotools.cocoeval import COCOeval

from rspose.data.specs import COCO
from rspose.metrics import best_gt_oks, oks_matrix, oks_terms

COCO_GT = DATA / "coco" / "test_coco.json"


@pytest.fixture(scope="module")
def coco_gt():
    with COCO_GT.open() as f:
        return json.load(f)


def _random_dets(gt: dict, rng: np.random.Generator, per_image: int = 4) -> list[dict]:
    dets = []
    for img in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == img["id"]]
        for j in range(per_image):
            if anns:
                base = np.asarray(anns[j % len(anns)]["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
                base = np.where(base == 0, rng.uniform(0, 400, base.shape), base)
            else:
                base = rng.uniform(0, 400, (17, 2))
            kp = base + rng.normal(0, 8, base.shape)
            flat = np.concatenate([kp, rng.uniform(0, 1, (17, 1))], 1).reshape(-1).tolist()
            dets.append({"image_id": img["id"], "category_id": 1, "keypoints": flat, "score": float(rng.uniform())})
    return dets


def test_oks_matrix_matches_pycocotools_computeoks(coco_gt):
    rng = np.random.default_rng(0)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = PyCOCO()
        gt.dataset = json.loads(json.dumps(coco_gt))
        gt.createIndex()
        dt = gt.loadRes(_random_dets(coco_gt, rng))
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(COCO.sigmas)
        ev._prepare()
    checked_unlabelled = 0
    for img_id in gt.getImgIds():
        ref = np.asarray(ev.computeOks(img_id, 1))
        gts, dts = ev._gts[img_id, 1], ev._dts[img_id, 1]
        dts = [dts[i] for i in np.argsort([-d["score"] for d in dts], kind="mergesort")]
        g = np.asarray([a["keypoints"] for a in gts], dtype=np.float64).reshape(len(gts), 17, 3)
        d = np.asarray([a["keypoints"] for a in dts], dtype=np.float64).reshape(len(dts), 17, 3)
        ours = oks_matrix(d[..., :2], g[..., :2], g[..., 2], [a["area"] for a in gts], COCO.sigmas,
                          gt_boxes=[a["bbox"] for a in gts]).numpy()
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
        checked_unlabelled += int((g[..., 2] > 0).sum(-1).__eq__(0).sum())
    assert checked_unlabelled >= 1  # the fixture has GTs without keypoints: the 3x-box branch was exercised


def test_oks_terms_hand_value():
    # one keypoint, distance 5 px, sigma 0.1, area 100: e = 25 / 0.04 / 100 / 2 = 3.125
    t = oks_terms(torch.tensor([[[3.0, 4.0]]]), torch.zeros(1, 1, 2), torch.tensor([100.0]), [0.1])
    assert t.item() == pytest.approx(np.exp(-3.125), abs=1e-12)


def test_best_gt_oks_matches_slow_loop():
    rng = np.random.default_rng(1)
    k, sig = 5, np.array([0.05, 0.07, 0.1, 0.08, 0.06])
    n_gt, n_pred = 12, 40
    gt = rng.uniform(0, 100, (n_gt, k, 2))
    vis = (rng.uniform(size=(n_gt, k)) > 0.3).astype(float)
    vis[0] = 1
    area = rng.uniform(500, 5000, n_gt)
    g_img = rng.integers(0, 4, n_gt)
    pred = gt[rng.integers(0, n_gt, n_pred)] + rng.normal(0, 5, (n_pred, k, 2))
    p_img = rng.integers(0, 6, n_pred)  # images 4 and 5 have no GT
    pred[1] = gt[3] + 0.0
    p_img[1] = g_img[3]
    oks, match, terms = best_gt_oks(pred, p_img, gt, vis, area, g_img, sig)
    for i in range(n_pred):
        best, best_j = 0.0, -1
        for j in range(n_gt):
            if g_img[j] != p_img[i] or vis[j].sum() == 0:
                continue
            e = ((pred[i] - gt[j]) ** 2).sum(-1) / (2 * sig) ** 2 / (area[j] + np.spacing(1)) / 2
            o = np.exp(-e)[vis[j] > 0].mean()
            if best_j < 0 or o > best:
                best, best_j = o, j
        assert oks[i].item() == pytest.approx(best, abs=1e-12)
        assert match[i].item() == best_j
        if best_j >= 0:
            e = ((pred[i] - gt[best_j]) ** 2).sum(-1) / (2 * sig) ** 2 / (area[best_j] + np.spacing(1)) / 2
            expected = np.where(vis[best_j] > 0, np.exp(-e), np.nan)
            np.testing.assert_allclose(terms[i].numpy(), expected, atol=1e-12)
        else:
            assert torch.isnan(terms[i]).all()
    assert match[1].item() == 3 and oks[1].item() == pytest.approx(1.0)
