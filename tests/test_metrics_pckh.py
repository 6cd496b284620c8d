"""PCKh against a slow loop written from the MPII evaluation (SC_BIAS 0.6, pelvis and thorax out of the mean)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import DATA
from scipy.io import savemat

from rspose.metrics import PCKhAccuracy

MPII_JSON = DATA / "mpii" / "test_mpii.json"
# MPII order: 0 r_ankle 1 r_knee 2 r_hip 3 l_hip 4 l_knee 5 l_ankle 6 pelvis 7 thorax 8 upper_neck 9 head_top
# 10 r_wrist 11 r_elbow 12 r_shoulder 13 l_shoulder 14 l_elbow 15 l_wrist
GROUPS = {"Head": [9], "Shoulder": [13, 12], "Elbow": [14, 11], "Wrist": [15, 10], "Hip": [3, 2], "Knee": [4, 1],
          "Ankle": [5, 0]}


def slow_pckh(pred, gt, vis, head_sizes, thr):
    n, k = vis.shape
    correct, count = np.zeros(k), np.zeros(k)
    for i in range(n):
        for j in range(k):
            if vis[i, j] > 0:
                count[j] += 1
                d = math.hypot(pred[i, j, 0] - gt[i, j, 0], pred[i, j, 1] - gt[i, j, 1])
                correct[j] += d / head_sizes[i] <= thr
    rate = correct / count
    out = {name: float(np.mean([rate[j] for j in idx])) for name, idx in GROUPS.items()}
    used = [j for j in range(k) if j not in (6, 7)]
    out["Mean"] = correct[used].sum() / count[used].sum()
    return out


def _random(n, seed):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 300, (n, 16, 2))
    pred = gt + rng.normal(0, 10, (n, 16, 2))
    vis = (rng.uniform(size=(n, 16)) > 0.15).astype(float)
    sizes = rng.uniform(20, 60, n)
    return pred, gt, vis, sizes


def test_pckh_with_head_sizes_matches_slow_loop():
    pred, gt, vis, sizes = _random(60, 0)
    m = PCKhAccuracy()
    m.update(torch.arange(30), torch.tensor(pred[:30]), torch.tensor(gt[:30]), torch.tensor(vis[:30]),
             torch.tensor(sizes[:30]))
    m.update(torch.arange(30, 60), torch.tensor(pred[30:]), torch.tensor(gt[30:]), torch.tensor(vis[30:]),
             torch.tensor(sizes[30:]))
    m.update(torch.arange(5), torch.tensor(pred[:5]), torch.tensor(gt[:5]), torch.tensor(vis[:5]),
             torch.tensor(sizes[:5]))  # duplicates (DistributedSampler padding) are dropped
    out = m.compute()
    ref = slow_pckh(pred, gt, vis, sizes, 0.5)
    for key, value in ref.items():
        assert out[key] == pytest.approx(value, abs=1e-12), key
    assert out["Mean@0.1"] == pytest.approx(slow_pckh(pred, gt, vis, sizes, 0.1)["Mean"], abs=1e-12)
    assert 0.0 < out["Mean@0.1"] < out["Mean"] < 1.0


def test_pckh_from_head_boxes_mat(tmp_path):
    pred, gt, vis, _ = _random(20, 1)
    rng = np.random.default_rng(2)
    top_left = rng.uniform(0, 100, (20, 2))
    boxes = np.stack([top_left, top_left + rng.uniform(20, 50, (20, 2))], 1)  # (M, 2, 2)
    path = tmp_path / "mpii_gt_val.mat"
    savemat(path, {"headboxes_src": boxes.transpose(1, 2, 0)})  # the MPII layout: (2, 2, M)
    sizes = 0.6 * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1)
    order = rng.permutation(20)
    m = PCKhAccuracy(head_boxes=path)
    m.update(torch.tensor(order), torch.tensor(pred[order]), torch.tensor(gt[order]), torch.tensor(vis[order]))
    out = m.compute()
    for key, value in slow_pckh(pred, gt, vis, sizes, 0.5).items():
        assert out[key] == pytest.approx(value, abs=1e-12), key
    with pytest.raises(ValueError, match="outside the 20 head boxes"):
        m.update(torch.tensor([20]), torch.tensor(pred[:1]), torch.tensor(gt[:1]), torch.tensor(vis[:1]))


def test_pckh_fixture_without_head_boxes_uses_head_segment():
    with MPII_JSON.open() as f:
        anns = json.load(f)
    gt = np.asarray([a["joints"] for a in anns], dtype=np.float64)
    vis = np.asarray([a["joints_vis"] for a in anns], dtype=np.float64)
    seg = np.linalg.norm(gt[:, 9] - gt[:, 8], axis=1)  # documented approximation: ||head_top - upper_neck||
    m = PCKhAccuracy()
    m.update(torch.arange(5), torch.tensor(gt), torch.tensor(gt), torch.tensor(vis))
    assert all(v == 1.0 for v in m.compute().values())
    shift = np.zeros_like(gt)
    shift[..., 0] = 0.3 * seg[:, None]  # inside 0.5 head size, outside 0.1
    shift[2, :, 0] = 0.7 * seg[2]  # person 2 fails everywhere
    m = PCKhAccuracy()
    m.update(torch.arange(5), torch.tensor(gt + shift), torch.tensor(gt), torch.tensor(vis))
    out = m.compute()
    for key, value in slow_pckh(gt + shift, gt, vis, seg, 0.5).items():
        assert out[key] == pytest.approx(value, abs=1e-12), key
    assert out["Mean@0.1"] == 0.0 and 0.0 < out["Mean"] < 1.0


def test_pckh_bad_shapes():
    m = PCKhAccuracy()
    with pytest.raises(ValueError, match=r"expected \(2, 16, 2\)"):
        m.update(torch.arange(2), torch.zeros(2, 17, 2), torch.zeros(2, 16, 2), torch.ones(2, 16))
