"""Baseline losses: keypoint MSE (vs an explicit loop and the legacy 0.5 x variant) and SimCC KL (vs scipy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import rel_entr, softmax

from rspose.codecs import MSRAHeatmap, SimCCLabel
from rspose.data.specs import COCO
from rspose.losses import KeypointMSELoss, KLDiscretLoss, keypoint_mse, kl_discrete


def test_mse_matches_loop_and_legacy_factor():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 4, 5, 6, generator=gen), torch.rand(3, 4, 5, 6, generator=gen)
    weight = torch.tensor([[1.0, 0, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]])
    total = 0.0
    for b in range(3):
        for k in range(4):
            total += weight[b, k].item() * ((pred[b, k] - target[b, k]) ** 2).sum().item()
    expected = total / pred.numel()
    assert keypoint_mse(pred, target, weight).item() == pytest.approx(expected, rel=1e-5)
    assert _mse_object(pred, target, weight, loss_weight=2.0).item() == pytest.approx(2 * expected, rel=1e-5)
    unweighted = ((pred - target) ** 2).mean().item()
    assert keypoint_mse(pred, target, weight, use_target_weight=False).item() == pytest.approx(unweighted, rel=1e-5)
    # legacy JointsMSELoss: 0.5 * mean over joints of MSE(pred_k * w, gt_k * w)
    legacy = (
        sum(
            0.5
            * torch.nn.functional.mse_loss(
                pred[:, j] * weight[:, j, None, None], target[:, j] * weight[:, j, None, None]
            )
            for j in range(4)
        )
        / 4
    )
    assert legacy.item() == pytest.approx(0.5 * expected, rel=1e-5)


def _mse_object(pred, target, weight, **kwargs):
    """The config-level loss object on a batch dict (K=4 keypoints: a spec stand-in with 4 sigmas)."""
    loss = KeypointMSELoss(**kwargs)
    loss.bind(MSRAHeatmap(input_size=(24, 20), heatmap_size=(6, 5)), COCO)
    parts = loss(pred, {"heatmaps": target, "target_weight": weight})
    assert set(parts) == {"loss"}
    return parts["loss"]


def test_loss_objects_equal_their_functions_and_average_simcc_axes():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 17, 40, generator=gen), torch.randn(2, 17, 48, generator=gen)
    tx, ty = torch.rand(2, 17, 40, generator=gen), torch.rand(2, 17, 48, generator=gen)
    weight = (torch.rand(2, 17, generator=gen) > 0.3).float()
    loss = KLDiscretLoss(beta=2.0, label_softmax=True)
    loss.bind(SimCCLabel(input_size=(20, 24), sigma=2.0, simcc_split_ratio=2.0), COCO)
    got = loss((x, y), {"target_x": tx, "target_y": ty, "target_weight": weight})["loss"]
    expected = 0.5 * (kl_discrete(x, tx, weight, beta=2.0, label_softmax=True)
                      + kl_discrete(y, ty, weight, beta=2.0, label_softmax=True))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="label_beta.*label_softmax"):
        KLDiscretLoss(label_beta=5.0)


def test_baseline_loss_with_the_wrong_codec_fails_naming_both_keys():
    with pytest.raises(ValueError, match="model.loss.*KeypointMSELoss.*data.codec.*SimCCLabel"):
        KeypointMSELoss().bind(SimCCLabel(input_size=(20, 24)), COCO)
    with pytest.raises(ValueError, match="model.loss.*KLDiscretLoss.*data.codec.*MSRAHeatmap"):
        KLDiscretLoss().bind(MSRAHeatmap(input_size=(24, 20), heatmap_size=(6, 5)), COCO)


def test_mse_autocast_float32():
    pred = torch.randn(2, 3, 4, 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = keypoint_mse(pred, torch.rand(2, 3, 4, 4), torch.ones(2, 3))
    assert loss.dtype == torch.float32


def _truncated_labels(b: int, k: int, length: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    mu = rng.uniform(0, length, size=(b, k, 1))
    bins = np.arange(length)[None, None]
    labels = np.exp(-((bins - mu) ** 2) / (2 * sigma**2))
    return np.where(np.abs(bins - mu) <= 3 * sigma, labels, 0.0)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_kl_matches_scipy(beta):
    rng = np.random.default_rng(1)
    b, k, length = 3, 4, 40
    pred = rng.normal(size=(b, k, length))
    labels = _truncated_labels(b, k, length, 3.0, rng)
    weight = (rng.uniform(size=(b, k)) > 0.3).astype(np.float64)
    p = labels / labels.sum(-1, keepdims=True)
    q = softmax(pred * beta, axis=-1)
    expected = (rel_entr(p, q).sum(-1) * weight).mean()
    got = kl_discrete(torch.tensor(pred).float(), torch.tensor(labels).float(), torch.tensor(weight), beta=beta)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # label_softmax: labels replaced by softmax(label_beta * labels)
    p2 = softmax(labels * 10.0, axis=-1)
    expected2 = (rel_entr(p2, q).sum(-1) * weight).mean()
    got2 = kl_discrete(
        torch.tensor(pred).float(), torch.tensor(labels).float(), torch.tensor(weight), beta=beta, label_softmax=True
    )
    assert got2.item() == pytest.approx(expected2, rel=1e-4, abs=1e-6)


def test_kl_zero_label_row_and_autocast():
    pred = torch.randn(1, 2, 10).bfloat16().requires_grad_(True)
    target = torch.zeros(1, 2, 10)
    target[0, 0, 4] = 1.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = kl_discrete(pred, target, torch.ones(1, 2))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    expected = -torch.log_softmax(pred.detach().float()[0, 0], -1)[4].item() / 2  # the empty row adds 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match=r"\(B, K, L\)"):
        kl_discrete(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), torch.ones(2, 3))
