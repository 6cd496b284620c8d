"""The vectorised Rank & Sort core and Spatial-RS against the slow reference loop of METHOD.md."""

from __future__ import annotations

import pytest
import rs_reference as ref
import torch

from rspose.losses import SpatialRSLoss, rank_sort

LOSS_TOL = 1e-5
GRAD_TOL = 1e-6


def gaussian_targets(b: int, k: int, spatial: tuple[int, ...], sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Peak-1 Gaussians truncated at 3 sigma at random (sub-pixel) centres, some partly off the map."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in spatial], indexing="ij")
    out = torch.ones(b, k, *spatial, dtype=torch.float64)
    inside = torch.ones(b, k, *spatial, dtype=torch.bool)
    for axis, n in enumerate(spatial):
        mu = torch.rand(b, k, generator=gen, dtype=torch.float64) * (n + 2) - 1
        d = grids[axis][None, None] - mu.view(b, k, *([1] * len(spatial)))
        out *= torch.exp(-(d**2) / (2 * sigma**2))
        inside &= d.abs() <= 3 * sigma
    return (out * inside).float()


def make_case(shape: tuple[int, ...], seed: int, scale: float = 2.0, sigma: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    b, k, *spatial = shape
    pred = torch.randn(*shape, generator=gen) * scale
    target = gaussian_targets(b, k, tuple(spatial), sigma, gen)
    weight = (torch.rand(b, k, generator=gen) > 0.2).float()
    return pred, target, weight


def run_loss(loss_fn: SpatialRSLoss, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor):
    p = pred.clone().requires_grad_(True)
    parts = loss_fn(p, target, weight)
    assert set(parts) == {"loss", "rank", "sort"}
    loss = parts["loss"]
    loss.backward()
    return loss, p.grad


def assert_matches_reference(pred, target, weight, delta: float, scope: str) -> None:
    loss, grad = run_loss(SpatialRSLoss(delta=delta, scope=scope), pred, target, weight)
    r_loss, r_rank, r_sort, r_grad = ref.spatial_rs(pred, target, weight, delta, scope)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - r_loss) < LOSS_TOL
    torch.testing.assert_close(grad.double(), r_grad, atol=GRAD_TOL, rtol=0)


@pytest.mark.parametrize("scope", ["heatmap", "batch"])
@pytest.mark.parametrize("delta", [0.5, 0.0, 0.2, 2.0])
@pytest.mark.parametrize("shape", [(2, 3, 7, 6), (3, 2, 24)], ids=["2d", "1d"])
def test_spatial_rs_matches_reference(shape, delta, scope):
    pred, target, weight = make_case(shape, seed=int(10 * delta) + len(shape))
    assert_matches_reference(pred, target, weight, delta, scope)


@pytest.mark.parametrize("scope", ["heatmap", "batch"])
def test_ties_in_logits_and_labels(scope):
    pred, target, weight = make_case((2, 2, 6, 6), seed=3)
    pred = torch.round(pred * 2) / 2  # many exact ties, and differences of exactly delta
    target = torch.round(target * 4) / 4  # tied labels, some positives become negatives
    for delta in (0.5, 0.25, 0.0):
        assert_matches_reference(pred, target, weight, delta, scope)


def test_all_equal_logits():
    _, target, weight = make_case((2, 3, 5, 5), seed=4)
    pred = torch.full(target.shape, 0.7)
    assert_matches_reference(pred, target, weight, 0.5, "heatmap")
    assert_matches_reference(pred, target, weight, 0.0, "heatmap")


def test_one_positive_and_no_negatives():
    gen = torch.Generator().manual_seed(5)
    pred = torch.randn(2, 2, 4, 4, generator=gen)
    target = torch.zeros(2, 2, 4, 4)
    target[0, 0, 1, 2] = 1.0  # one positive
    target[0, 1] = torch.rand(4, 4, generator=gen) * 0.9 + 0.1  # every pixel positive: no negatives
    target[1, 0, 0, 0] = 0.3
    target[1, 0, 3, 3] = 0.8
    weight = torch.ones(2, 2)
    for delta in (0.5, 0.0):
        assert_matches_reference(pred, target, weight, delta, "heatmap")
    loss, grad = run_loss(SpatialRSLoss(), pred[:1, 1:], target[:1, 1:], weight[:1, 1:])
    assert SpatialRSLoss()(pred[:1, 1:], target[:1, 1:], weight[:1, 1:])["rank"] == 0


@pytest.mark.parametrize("scope", ["heatmap", "batch"])
def test_no_valid_heatmap_gives_zero(scope):
    pred = torch.randn(2, 3, 5, 4)
    for target, weight in [
        (torch.zeros(2, 3, 5, 4), torch.ones(2, 3)),  # no positives
        (torch.rand(2, 3, 5, 4), torch.zeros(2, 3)),  # no weight
    ]:
        loss, grad = run_loss(SpatialRSLoss(scope=scope), pred, target, weight)
        assert loss.item() == 0.0 and torch.isfinite(loss)
        assert torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("scope", ["heatmap", "batch"])
def test_extreme_logits(scope):
    pred, target, weight = make_case((2, 2, 6, 5), seed=6)
    pred = torch.sign(pred) * 1e4 + pred  # +-1e4
    for delta in (0.5, 0.3):
        assert_matches_reference(pred, target, weight, delta, scope)
        loss, grad = run_loss(SpatialRSLoss(delta=delta, scope=scope), pred, target, weight)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_weight_only_selects_heatmaps():
    pred, target, weight = make_case((2, 3, 5, 5), seed=7)
    loss_a, grad_a = run_loss(SpatialRSLoss(), pred, target, weight)
    loss_b, grad_b = run_loss(SpatialRSLoss(), pred, target, weight * 2.5 + (weight == 0) * -1.0)
    assert loss_a.item() == loss_b.item() and torch.equal(grad_a, grad_b)


def test_gradient_mass_balances():
    pred, target, weight = make_case((3, 4, 8, 6), seed=8)
    weight = (weight > 0).float()
    loss_fn = SpatialRSLoss()
    loss, grad = run_loss(loss_fn, pred, target, weight)
    parts = loss_fn(pred, target, weight)
    positive = target > 0
    # every update moves equal mass from positives to negatives (rank) or among positives (sort)
    per_map = grad.sum(dim=(2, 3))
    torch.testing.assert_close(per_map, torch.zeros_like(per_map), atol=1e-6, rtol=0)
    negative_mass = grad[~positive].sum().item()
    assert negative_mass > 0
    assert abs(negative_mass - parts["rank"].item()) < 1e-5  # every fp(i) > 0 here
    assert abs(loss.item() - (parts["rank"] + parts["sort"]).item()) < 1e-6


@pytest.mark.parametrize("scope", ["heatmap", "batch"])
def test_shift_invariance(scope):
    pred, target, weight = make_case((2, 3, 6, 6), seed=9)
    pred = torch.round(pred * 1024) / 1024  # so that pred + shift is exact in float32
    loss_a, grad_a = run_loss(SpatialRSLoss(scope=scope), pred, target, weight)
    for shift in (3.0, -250.0):
        loss_b, grad_b = run_loss(SpatialRSLoss(scope=scope), pred + shift, target, weight)
        assert abs(loss_a.item() - loss_b.item()) < 1e-6
        torch.testing.assert_close(grad_a, grad_b, atol=1e-7, rtol=0)


def test_loss_bounds_and_components():
    pred, target, weight = make_case((3, 3, 6, 6), seed=10)
    loss_fn = SpatialRSLoss()
    parts = loss_fn(pred, target, weight)
    loss = parts["loss"]
    assert 0 <= parts["rank"].item() <= 1 and -1 <= parts["sort"].item() <= 1
    assert abs(parts["rank"].item() + parts["sort"].item() - loss.item()) < 1e-6
    _, r_rank, r_sort, _ = ref.spatial_rs(pred, target, weight)
    assert abs(parts["rank"].item() - r_rank) < LOSS_TOL and abs(parts["sort"].item() - r_sort) < LOSS_TOL


def test_autocast_bfloat16_runs_in_float32():
    pred, target, weight = make_case((2, 3, 6, 5), seed=11)
    conv = torch.nn.Conv2d(3, 3, 1)
    x = pred.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
        assert out.dtype == torch.bfloat16
        loss = SpatialRSLoss()(out, target.bfloat16(), weight)["loss"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(conv.weight.grad).all()
    r_loss, *_ = ref.spatial_rs(out.detach().float(), target.bfloat16().float(), weight)
    assert abs(loss.item() - r_loss) < LOSS_TOL


def test_grad_output_scaling():
    pred, target, weight = make_case((2, 2, 5, 5), seed=12)
    _, grad = run_loss(SpatialRSLoss(), pred, target, weight)
    p = pred.clone().requires_grad_(True)
    (3.0 * SpatialRSLoss()(p, target, weight)["loss"]).backward()
    torch.testing.assert_close(p.grad, 3.0 * grad)


def test_bad_inputs_raise():
    loss_fn = SpatialRSLoss()
    with pytest.raises(ValueError, match="target shape"):
        loss_fn(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5), torch.ones(2, 3))
    with pytest.raises(ValueError, match="target_weight"):
        loss_fn(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), torch.ones(3, 2))
    with pytest.raises(ValueError, match="scope"):
        SpatialRSLoss(scope="image")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delta"):
        SpatialRSLoss(delta=-0.1)


# ---------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("pairs", ["dense", "tree"])
@pytest.mark.parametrize("delta", [0.5, 0.0, 0.3])
def test_core_pair_modes_and_chunks_match_reference(pairs, delta):
    gen = torch.Generator().manual_seed(13)
    logits = torch.randn(5, 60, generator=gen)
    logits[1] = torch.round(logits[1])  # ties
    labels = torch.rand(5, 60, generator=gen) * (torch.rand(5, 60, generator=gen) < 0.4)
    labels[2] = torch.round(labels[2] * 3) / 3  # tied labels
    labels[3] = 0.0  # no positive
    mask = torch.rand(5, 60, generator=gen) > 0.1
    rows = torch.tensor([4, 0, 1, 2, 3])
    for m in (None, mask):
        # tiny chunks: several sets per chunk, and several column chunks per set
        for chunk_elements in (1 << 18, 50):
            out = rank_sort(logits, labels, delta, rows=rows, mask=m, pairs=pairs, chunk_elements=chunk_elements)
            for i, r in enumerate(rows.tolist()):
                keep = torch.ones(60, dtype=torch.bool) if m is None else m[r]
                r_rank, r_sort, r_grad = ref.rank_sort_set(logits[r][keep], labels[r][keep], delta)
                assert abs(out.rank[i].item() - r_rank) < LOSS_TOL and abs(out.sort[i].item() - r_sort) < LOSS_TOL
                full = torch.zeros(60, dtype=torch.float64)
                full[keep] = r_grad
                torch.testing.assert_close(out.grad[r].double(), full, atol=GRAD_TOL, rtol=0)


def test_core_rows_subset_leaves_other_rows_zero():
    logits = torch.randn(4, 30)
    labels = torch.rand(4, 30) * (torch.rand(4, 30) < 0.5)
    out = rank_sort(logits, labels, rows=torch.tensor([2]))
    assert torch.count_nonzero(out.grad[[0, 1, 3]]) == 0 and out.rank.shape == (1,)
