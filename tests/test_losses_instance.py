"""Instance-Sort and its inputs (instance confidence, OKS quality) against independent references."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import rs_reference as ref
import torch

from rspose.losses import InstanceSortLoss, instance_confidence, oks_quality

COCO_SIGMAS = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087,
               0.087, 0.089, 0.089]  # fmt: skip


def run(loss_fn, scores, quality, weight=None):
    p = scores.clone().requires_grad_(True)
    loss = loss_fn(p, quality, weight) if weight is not None else loss_fn(p, quality)
    loss.backward()
    return loss, p.grad


@pytest.mark.parametrize("delta", [0.5, 0.0, 1.5])
def test_instance_sort_matches_reference(delta):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(23, generator=gen)
    scores[:5] = scores[5]  # ties in confidence
    quality = torch.rand(23, generator=gen).clamp(min=1e-6)
    quality[10:13] = quality[13]  # ties in quality
    loss, grad = run(InstanceSortLoss(delta=delta), scores, quality)
    r_loss, r_grad = ref.instance_sort(scores, quality, delta)
    assert abs(loss.item() - r_loss) < 1e-5
    torch.testing.assert_close(grad.double(), r_grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad.sum(), torch.tensor(0.0), atol=1e-6, rtol=0)  # mass moves among positives


def test_instance_sort_weight_leaves_elements_out():
    gen = torch.Generator().manual_seed(1)
    scores, quality = torch.randn(12, generator=gen), torch.rand(12, generator=gen) + 0.01
    keep = torch.rand(12, generator=gen) > 0.3
    loss, grad = run(InstanceSortLoss(), scores, quality, keep.float())
    r_loss, r_grad = ref.instance_sort(scores[keep], quality[keep])
    assert abs(loss.item() - r_loss) < 1e-5
    torch.testing.assert_close(grad[keep].double(), r_grad, atol=1e-6, rtol=0)
    assert torch.count_nonzero(grad[~keep]) == 0


def test_per_keypoint_instance_sort_matches_reference():
    gen = torch.Generator().manual_seed(2)
    n, k = 9, 4
    scores = torch.randn(n, k, generator=gen)
    quality = torch.rand(n, k, generator=gen) + 1e-3
    weight = (torch.rand(n, k, generator=gen) > 0.25).float()
    weight[:, 3] = 0  # a keypoint type nobody has: not a set
    loss, grad = run(InstanceSortLoss(per_keypoint=True), scores, quality, weight)
    losses, expected = [], torch.zeros(n, k, dtype=torch.float64)
    sets = [j for j in range(k) if weight[:, j].sum() > 0]
    for j in sets:
        keep = weight[:, j] > 0
        r_loss, r_grad = ref.instance_sort(scores[keep, j], quality[keep, j])
        losses.append(r_loss)
        expected[keep, j] = r_grad / len(sets)
    assert abs(loss.item() - sum(losses) / len(sets)) < 1e-5
    torch.testing.assert_close(grad.double(), expected, atol=1e-6, rtol=0)


def test_instance_sort_edge_cases():
    loss, grad = run(InstanceSortLoss(), torch.randn(3), torch.rand(3) + 0.1, torch.zeros(3))
    assert loss.item() == 0 and torch.count_nonzero(grad) == 0
    loss, grad = run(InstanceSortLoss(), torch.randn(1), torch.rand(1) + 0.1)  # one element: nothing to sort
    assert loss.item() == 0 and torch.count_nonzero(grad) == 0
    with pytest.raises(ValueError, match="quality must be > 0"):
        InstanceSortLoss()(torch.randn(3), torch.tensor([0.5, 0.0, 0.2]))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        InstanceSortLoss(per_keypoint=True)(torch.randn(3), torch.rand(3))


def test_instance_sort_autocast():
    scores = torch.randn(8).bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = InstanceSortLoss()(scores, torch.rand(8) + 0.1)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert scores.grad.dtype == torch.bfloat16 and torch.isfinite(scores.grad).all()


def test_instance_confidence_heatmaps():
    gen = torch.Generator().manual_seed(3)
    heatmaps = torch.randn(3, 4, 5, 6, generator=gen).requires_grad_(True)
    weight = torch.tensor([[1.0, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]])
    conf = instance_confidence(heatmaps, weight)
    for b in range(3):
        maxima = [heatmaps[b, k].max().item() for k in range(4) if weight[b, k] > 0]
        assert conf[b].item() == pytest.approx(sum(maxima) / len(maxima) if maxima else 0.0, abs=1e-6)
    conf.sum().backward()
    # gradient: 1 / (#valid keypoints) at the arg-max pixel of every valid heatmap, 0 elsewhere
    for b in range(3):
        for k in range(4):
            g = heatmaps.grad[b, k]
            if weight[b, k] > 0:
                idx = heatmaps[b, k].argmax()
                assert g.flatten()[idx].item() == pytest.approx(1 / weight[b].sum().item())
                assert torch.count_nonzero(g) == 1
            else:
                assert torch.count_nonzero(g) == 0
    per_kp = instance_confidence(heatmaps, weight, per_keypoint=True)
    torch.testing.assert_close(per_kp, heatmaps.detach().amax(dim=(2, 3)))


def test_instance_confidence_simcc_takes_min_of_axes():
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(2, 3, 10, generator=gen), torch.randn(2, 3, 14, generator=gen)
    weight = torch.ones(2, 3)
    per_kp = instance_confidence((x, y), weight, per_keypoint=True)
    for b in range(2):
        for k in range(3):
            assert per_kp[b, k].item() == min(x[b, k].max().item(), y[b, k].max().item())
    torch.testing.assert_close(instance_confidence((x, y), weight), per_kp.mean(1))


def _pycocotools_oks(pred, gt, visible, area, sigmas) -> np.ndarray:
    """OKS of prediction b against GT b via pycocotools' COCOeval.computeOks (one image per instance)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    b, k = visible.shape
    anns, dets = [], []
    for i in range(b):
        kps = np.concatenate([gt[i], visible[i][:, None]], 1).reshape(-1).tolist()
        x0, y0 = gt[i].min(0)
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "area": float(area[i]),
                     "bbox": [float(x0), float(y0), 10.0, 10.0], "keypoints": kps,
                     "num_keypoints": int((visible[i] > 0).sum())})  # fmt: skip
        det = np.concatenate([pred[i], np.ones((k, 1))], 1).reshape(-1).tolist()
        dets.append({"image_id": i + 1, "category_id": 1, "keypoints": det, "score": 1.0})
    coco_gt = COCO()
    coco_gt.dataset = {"images": [{"id": i + 1} for i in range(b)], "annotations": anns,
                       "categories": [{"id": 1, "name": "person"}]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas)
        evaluator.evaluate()
    return np.array([float(evaluator.ious[(i + 1, 1)][0, 0]) for i in range(b)])


def test_oks_quality_matches_pycocotools():
    rng = np.random.default_rng(5)
    b, k = 6, 17
    gt = rng.uniform(0, 192, size=(b, k, 2))
    pred = gt + rng.normal(0, 6, size=(b, k, 2))
    visible = (rng.uniform(size=(b, k)) > 0.3).astype(np.float64) * 2
    visible[:, 0] = 1
    area = rng.uniform(2000, 20000, size=b)
    expected = _pycocotools_oks(pred, gt, visible, area, COCO_SIGMAS)
    got = oks_quality(
        torch.tensor(pred).float(), torch.tensor(gt).float(), torch.tensor(visible).float(),
        torch.tensor(area).float(), torch.tensor(COCO_SIGMAS),
    )  # fmt: skip
    assert got.dtype == torch.float32 and not got.requires_grad
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-5)


def test_oks_quality_per_keypoint_and_clamp():
    pred = torch.tensor([[[0.0, 0.0], [10.0, 0.0]], [[0.0, 0.0], [1e4, 1e4]]])
    gt = torch.zeros(2, 2, 2)
    visible = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    area = torch.tensor([100.0, 100.0])
    sigmas = torch.tensor([0.1, 0.2])
    terms = oks_quality(pred, gt, visible, area, sigmas, per_keypoint=True)
    e = 100.0 / (2 * 0.2) ** 2 / 100.0 / 2  # hand-computed for keypoint 1 of instance 0
    torch.testing.assert_close(terms[0], torch.tensor([1.0, float(np.exp(-e))]))
    assert terms[1, 1].item() == pytest.approx(1e-6)  # far away: clamped
    oks = oks_quality(pred, gt, visible, area, sigmas)
    assert oks[0].item() == pytest.approx((1 + np.exp(-e)) / 2, abs=1e-6)
    assert oks[1].item() == pytest.approx(1e-6)  # no labelled keypoint
