"""OKS-NMS and soft-OKS-NMS against slow per-pair references written from the HRNet/mmpose algorithm."""

from __future__ import annotations

import numpy as np
import pytest

from rspose.metrics import oks_nms, soft_oks_nms


def _pair_oks(a, b, area_a, area_b, sigmas):
    """Reference oks_iou of two instances: all keypoints, mean area, float32 result."""
    total = 0.0
    for k in range(len(sigmas)):
        d2 = (a[k, 0] - b[k, 0]) ** 2 + (a[k, 1] - b[k, 1]) ** 2
        total += np.exp(-d2 / (2 * sigmas[k]) ** 2 / ((area_a + area_b) / 2 + np.spacing(1)) / 2)
    return np.float32(total / len(sigmas))


def _ranked(scores, ids, members):
    return sorted(members, key=lambda i: (-scores[i], ids[i]))


def slow_oks_nms(kpts, scores, areas, sigmas, thr, img, ids):
    keep = set()
    for image in np.unique(img):
        order = _ranked(scores, ids, [i for i in range(len(img)) if img[i] == image])
        while order:
            i = order.pop(0)
            keep.add(i)
            order = [j for j in order if _pair_oks(kpts[i], kpts[j], areas[i], areas[j], sigmas) <= thr]
    return keep


def slow_soft_oks_nms(kpts, scores, areas, sigmas, thr, img, ids, max_dets=20):
    keep = set()
    for image in np.unique(img):
        remaining = [i for i in range(len(img)) if img[i] == image]
        cur = {i: scores[i] for i in remaining}
        picked = 0
        while remaining and picked < max_dets:
            remaining = sorted(remaining, key=lambda i: (-cur[i], ids[i]))
            i = remaining.pop(0)
            keep.add(i)
            picked += 1
            for j in remaining:
                o = _pair_oks(kpts[i], kpts[j], areas[i], areas[j], sigmas)
                cur[j] = cur[j] * np.exp(-(o**2) / np.float32(thr))
    return keep


def _clustered(rng, n_img=6, k=5):
    """Predictions in tight clusters (duplicates of one person) so that NMS has work to do."""
    kpts, img = [], []
    for image in range(n_img):
        for _ in range(rng.integers(1, 6)):
            centre = rng.uniform(0, 200, (k, 2))
            for _ in range(rng.integers(1, 9)):
                kpts.append(centre + rng.normal(0, rng.choice([0.5, 3, 10]), (k, 2)))
                img.append(image)
    n = len(img)
    return (np.asarray(kpts), rng.uniform(0, 1, n), rng.uniform(400, 4000, n), np.asarray(img),
            rng.permutation(n) + 100)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oks_nms_matches_reference(seed):
    rng = np.random.default_rng(seed)
    kpts, scores, areas, img, ids = _clustered(rng)
    sigmas = np.array([0.026, 0.079, 0.107, 0.087, 0.062])
    for thr in (0.5, 0.9):
        ours = oks_nms(kpts, scores, areas, sigmas, thr, image_ids=img, instance_ids=ids).numpy()
        ref = slow_oks_nms(kpts, scores, areas, sigmas, thr, img, ids)
        assert set(np.flatnonzero(ours).tolist()) == ref
        assert 0 < len(ref) < len(img)


def test_oks_nms_ties_broken_by_instance_id():
    kpts = np.zeros((3, 2, 2))
    scores = np.array([0.5, 0.5, 0.5])
    keep = oks_nms(kpts, scores, np.ones(3) * 100, [0.1, 0.1], 0.9, instance_ids=[7, 3, 9]).numpy()
    assert keep.tolist() == [False, True, False]


@pytest.mark.parametrize("seed", [0, 1])
def test_soft_oks_nms_matches_reference(seed):
    rng = np.random.default_rng(seed)
    kpts, scores, areas, img, ids = _clustered(rng, n_img=3)
    # one crowded image with more than 20 predictions, so that the 20-per-image cap applies
    extra = 30
    kpts = np.concatenate([kpts, rng.uniform(0, 60, (1, 5, 2)) + rng.normal(0, 4, (extra, 5, 2))])
    scores = np.concatenate([scores, rng.uniform(0, 1, extra)])
    areas = np.concatenate([areas, rng.uniform(400, 4000, extra)])
    img = np.concatenate([img, np.full(extra, 99)])
    ids = np.concatenate([ids, np.arange(extra) + 10_000])
    sigmas = np.array([0.026, 0.079, 0.107, 0.087, 0.062])
    ours = soft_oks_nms(kpts, scores, areas, sigmas, 0.3, image_ids=img, instance_ids=ids).numpy()
    ref = slow_soft_oks_nms(kpts, scores, areas, sigmas, 0.3, img, ids)
    assert set(np.flatnonzero(ours).tolist()) == ref
    assert ours[img == 99].sum() == 20
    crowded = np.flatnonzero(img == 99)
    top20 = set(crowded[np.argsort(-scores[crowded])[:20]].tolist())
    assert set(np.flatnonzero(ours & (img == 99)).tolist()) != top20  # the decay changed the selection


def test_nms_empty_input():
    assert oks_nms(np.zeros((0, 17, 2)), np.zeros(0), np.zeros(0), np.ones(17) * 0.1).numel() == 0
    assert soft_oks_nms(np.zeros((0, 17, 2)), np.zeros(0), np.zeros(0), np.ones(17) * 0.1).numel() == 0
