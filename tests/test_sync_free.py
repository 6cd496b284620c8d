"""The training step never waits for the device: no Python-level tensor-to-host conversion (``bool``, ``item``,
``tolist``, ``int``/``float``, ``numpy``), no ``nonzero`` or other data-dependent size, no boolean-mask indexing,
in the losses (both codec kinds, every RankingLoss switch), the baselines, ``PoseLitModule.training_step`` and
the backward pass. Logging at ``log_every_n_steps`` may synchronise; the steps in between may not."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from sync_guard import DEVICE, HostSync, heatmap_codec, make_batch, no_host_sync, simcc_codec
from torch.utils.data import DataLoader

from rspose.codecs import MSRAHeatmap
from rspose.data.specs import COCO
from rspose.losses import KeypointMSELoss, KLDiscretLoss, RankingLoss
from rspose.models import HeatmapHead, SimCCHead, TinyConvBackbone
from rspose.module import PoseLitModule

RANKING_SWITCHES = {
    "default": {},
    "keypoint": {"instance_sort_mode": "keypoint"},
    "both": {"instance_sort_mode": "both"},
    "max_logit+threshold0": {"confidence": "max_logit", "positive_threshold": 0.0},
    "sigmoid-space+anchor": {"space": "sigmoid", "delta": 0.1, "anchor_weight": 0.5, "confidence": "sigmoid"},
    "batch-scope": {"scope": "batch"},
    "hard-step": {"delta": 0.0},
    "no-instance-sort": {"instance_sort_weight": 0.0},
}


def test_the_guard_catches_every_kind_of_sync():
    t = torch.tensor([0.5, -1.0])
    mask = t > 0
    with no_host_sync(host_data=True):
        with pytest.raises(HostSync):
            torch.as_tensor([1.0, 2.0])
        torch.as_tensor(t)  # a tensor already: no copy
    reads = [lambda: bool(t[0]), lambda: t.sum().item(), lambda: t.tolist(), lambda: int(t[0]), lambda: float(t[1]),
             lambda: t.nonzero(), lambda: torch.nonzero(t), lambda: t[mask], lambda: t.numpy(),
             lambda: [1, 2][torch.tensor(0)], lambda: torch.bincount(mask.long())]
    with no_host_sync():
        for read in reads:
            with pytest.raises(HostSync):
                read()
        torch.nonzero_static(mask, size=2)  # a static size is fine
        torch.where(mask, t, 0.0).sum()
    assert bool(t[0]) and t[mask].numel() == 1  # restored


def _loss_step(loss, codec, output_shape_of, host_data: bool = True) -> dict[str, torch.Tensor]:
    loss.bind(codec, COCO)
    loss.to(DEVICE)
    batch = make_batch(codec, device=DEVICE)
    gen = torch.Generator().manual_seed(1)
    outputs = [torch.randn(*shape, generator=gen).to(DEVICE).requires_grad_(True) for shape in output_shape_of(batch)]
    output = outputs[0] if len(outputs) == 1 else tuple(outputs)
    with no_host_sync(host_data=host_data):
        parts = loss(output, batch)
        parts["loss"].backward()
    assert all(o.grad is not None for o in outputs)
    return parts


def _heatmap_shapes(batch):
    return [batch["heatmaps"].shape]


def _simcc_shapes(batch):
    return [batch["target_x"].shape, batch["target_y"].shape]


@pytest.mark.parametrize("switches", RANKING_SWITCHES.values(), ids=RANKING_SWITCHES.keys())
@pytest.mark.parametrize("kind", ["heatmap", "simcc"])
def test_ranking_loss_forward_backward_never_syncs(kind, switches):
    codec, shapes = (heatmap_codec(), _heatmap_shapes) if kind == "heatmap" else (simcc_codec(), _simcc_shapes)
    parts = _loss_step(RankingLoss(**switches), codec, shapes, host_data=True)
    assert torch.isfinite(parts["loss"])


@pytest.mark.parametrize("decoding", ["quarter", "dark", "softargmax", "rankfit"])
def test_heatmap_decoding_in_instance_sort_copies_no_host_data(decoding):
    """The codec's scale and DARK's blur matrices are built from Python floats on the device."""
    codec = MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0, decoding=decoding)
    _loss_step(RankingLoss(), codec, _heatmap_shapes, host_data=True)


def test_baselines_never_sync():
    _loss_step(KeypointMSELoss(), heatmap_codec(), _heatmap_shapes)
    _loss_step(KLDiscretLoss(), simcc_codec(), _simcc_shapes)


class GuardedModule(PoseLitModule):
    """The training step and the backward pass run under :func:`no_host_sync`."""

    guarded_steps = 0

    def training_step(self, batch, batch_idx):
        with no_host_sync():
            out = super().training_step(batch, batch_idx)
        GuardedModule.guarded_steps += 1
        return out

    def backward(self, loss, *args, **kwargs):
        with no_host_sync():
            super().backward(loss, *args, **kwargs)


@pytest.mark.parametrize("loss_name", ["ranking", "baseline"])
@pytest.mark.parametrize("kind", ["heatmap", "simcc"])
def test_lightning_training_steps_never_sync(kind, loss_name, tmp_path):
    """Three steps of Trainer.fit; steps 1-3 are no logging step (log_every_n_steps=50) nor an epoch's last."""
    codec = heatmap_codec() if kind == "heatmap" else simcc_codec()
    head = HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=()) if kind == "heatmap" else SimCCHead()
    loss = RankingLoss() if loss_name == "ranking" else KeypointMSELoss() if kind == "heatmap" else KLDiscretLoss()
    module = GuardedModule(TinyConvBackbone(8), head, codec=codec, spec=COCO, loss=loss, warmup_iters=0,
                           flip_test=False)
    batches = [make_batch(codec, seed=i) for i in range(4)]
    trainer = pl.Trainer(accelerator="gpu" if DEVICE == "cuda" else "cpu", devices=1, max_steps=3, log_every_n_steps=50, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path)
    GuardedModule.guarded_steps = 0
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert GuardedModule.guarded_steps == 3 and trainer.global_step == 3


def test_a_non_finite_loss_still_stops_training_at_the_next_check(tmp_path):
    """The device-side record is read at a logging step: training stops there, naming the first bad batch."""
    codec = heatmap_codec()
    module = PoseLitModule(TinyConvBackbone(8), HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=()),
                           codec=codec, spec=COCO, loss=RankingLoss(), warmup_iters=0, flip_test=False)
    batches = [make_batch(codec, seed=i) for i in range(8)]
    batches[2]["image"][0, 0, 5, 5] = float("nan")  # the network spreads it: a NaN loss from batch 3 on
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=8, log_every_n_steps=5, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss at epoch 0, step 4 \(first at "
                                                 r"training batch 3 of this run, 2 batch\(es\) before this check"):
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))


# ---------------------------------------------------------------------------------------------- static shapes
def test_padded_positive_slots_give_the_same_errors_and_gradients():
    """A static bound larger than the positives (padding) changes nothing: equal to the reference loop."""
    import rs_reference as ref

    from rspose.losses import rank_sort

    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 40, generator=gen)
    labels = torch.rand(5, 40, generator=gen) * (torch.rand(5, 40, generator=gen) < 0.3)
    labels[2] = 0.0
    mask = torch.rand(5, 40, generator=gen) > 0.1
    for pairs in ("dense", "tree"):
        for delta in (0.5, 0.0):
            out = rank_sort(logits, labels, delta, mask=mask, pairs=pairs, max_pos=31)
            for r in range(5):
                r_rank, r_sort, r_grad = ref.rank_sort_set(logits[r][mask[r]], labels[r][mask[r]], delta)
                assert abs(out.rank[r].item() - r_rank) < 1e-5 and abs(out.sort[r].item() - r_sort) < 1e-5
                full = torch.zeros(40, dtype=torch.float64)
                full[mask[r]] = r_grad
                torch.testing.assert_close(out.grad[r].double(), full, atol=1e-6, rtol=0)


def test_a_set_over_the_bound_is_nan_never_truncated():
    from rspose.losses import rank_sort

    logits, labels = torch.randn(3, 20), torch.zeros(3, 20)
    labels[0, :4] = 0.5  # 4 positives, bound 3
    labels[1, :3] = 0.5
    out = rank_sort(logits, labels, max_pos=3)
    assert torch.isnan(out.rank[0]) and torch.isnan(out.grad[0]).all()
    assert torch.isfinite(out.rank[1:]).all() and torch.isfinite(out.grad[1:]).all()


@pytest.mark.parametrize("threshold", [0.1, 0.0, 0.135, 0.5])
def test_codec_positive_bound_holds_and_is_tight(threshold):
    """max_positives bounds the positives of every target the codecs make (sub-pixel positions included)."""
    import numpy as np

    from rspose.codecs import MSRAHeatmap, SimCCLabel, UDPHeatmap
    from rspose.losses import max_positives

    rng = np.random.default_rng(0)
    codecs = [MSRAHeatmap((48, 64), (12, 16), sigma=1.0), MSRAHeatmap((192, 256), (48, 64), sigma=2.0, unbiased=True),
              UDPHeatmap((48, 64), (12, 16), sigma=1.5), SimCCLabel((48, 64), sigma=(2.0, 3.0)),
              SimCCLabel((96, 128), sigma=6.0, simcc_split_ratio=1.5)]
    for codec in codecs:
        bounds = max_positives(codec, threshold)
        w, h = codec.input_size
        kp = (rng.random((400, 2)) * [w - 1, h - 1]).astype(np.float32)
        enc = codec.encode(kp, np.ones(400, dtype=np.float32))
        counts = [(torch.from_numpy(enc[key]) > threshold).flatten(1).sum(1).max().item() for key in codec.target_keys]
        for count, bound in zip(counts, bounds):
            assert bound is not None and count <= bound, (type(codec).__name__, count, bound)
            assert bound <= 2 * count + 8, (type(codec).__name__, count, bound)  # not a loose bound


@pytest.mark.parametrize("kind", ["heatmap", "simcc"])
@pytest.mark.parametrize("switches", [{}, {"scope": "batch"}, {"instance_sort_mode": "both", "delta": 0.0}],
                         ids=["default", "batch", "both-hard"])
def test_ranking_loss_with_the_codec_bound_equals_the_data_read_bound(kind, switches):
    """The static path (bound from the codec) and the data-dependent one (bound read from the data) agree."""
    codec, shapes = (heatmap_codec(), _heatmap_shapes) if kind == "heatmap" else (simcc_codec(), _simcc_shapes)
    results = []
    for bound in ("codec", "data"):
        loss = RankingLoss(**switches)
        loss.bind(codec, COCO)
        if bound == "data":
            loss.max_positives = [None] * len(codec.target_keys)
        batch = make_batch(codec, seed=5)
        gen = torch.Generator().manual_seed(2)
        outputs = [torch.randn(*shape, generator=gen, requires_grad=True) for shape in shapes(batch)]
        parts = loss(outputs[0] if len(outputs) == 1 else tuple(outputs), batch)
        parts["loss"].backward()
        results.append((parts, [o.grad for o in outputs]))
    (a, grads_a), (b, grads_b) = results
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, equal_nan=True)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, atol=1e-7, rtol=0)
