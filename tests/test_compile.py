"""``torch.compile``: the losses trace as one graph (no graph break), a model with ``compile=True`` trains like the
eager one, and an epoch's last, smaller batch compiles once, not once per epoch. The graphs run on a counting
backend that executes them eagerly (CPU inductor compiles take minutes; benchmarks/train_step.py times those)."""

from __future__ import annotations

import functools

import lightning.pytorch as pl
import pytest
import torch
from sync_guard import heatmap_codec, make_batch, simcc_codec
from torch.utils.data import DataLoader

from rspose.data.specs import COCO
from rspose.losses import KeypointMSELoss, KLDiscretLoss, RankingLoss
from rspose.models import HeatmapHead, SimCCHead, TinyConvBackbone
from rspose.module import PoseLitModule


class CountingBackend:
    """A torch.compile backend that counts the graphs it is given and runs them as traced."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs += 1
        return gm.forward


def _output(batch: dict, keys: tuple[str, ...], seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    outs = [torch.randn(batch[k].shape, generator=gen, requires_grad=True) for k in keys]
    return outs[0] if len(outs) == 1 else tuple(outs)


@pytest.mark.parametrize(
    "kind, loss",
    [("heatmap", RankingLoss()), ("simcc", RankingLoss()), ("heatmap", RankingLoss(instance_sort_mode="both")),
     ("heatmap", KeypointMSELoss()), ("simcc", KLDiscretLoss())],
    ids=["ranking-heatmap", "ranking-simcc", "ranking-both", "mse", "kl"],
)
def test_losses_have_no_graph_break(kind, loss):
    codec = heatmap_codec() if kind == "heatmap" else simcc_codec()
    loss.bind(codec, COCO)
    batch = make_batch(codec)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(loss)(_output(batch, codec.target_keys), batch)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


@pytest.mark.parametrize("kind", ["heatmap", "simcc"])
def test_compiled_ranking_loss_equals_eager_and_the_last_batch_compiles_once(kind):
    codec = heatmap_codec() if kind == "heatmap" else simcc_codec()
    loss = RankingLoss()
    loss.bind(codec, COCO)
    backend = CountingBackend()
    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, dynamic=False, backend=backend)
    epoch = [make_batch(codec, b=6, seed=0), make_batch(codec, b=6, seed=1), make_batch(codec, b=4, seed=2)]
    graphs_after_epoch = []
    for _ in range(3):
        for batch in epoch:
            eager_out, compiled_out = _output(batch, codec.target_keys), _output(batch, codec.target_keys)
            want, got = loss(eager_out, batch), compiled(compiled_out, batch)
            assert want.keys() == got.keys()
            for key in want:
                torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=0, equal_nan=True)
            want["loss"].backward()
            got["loss"].backward()
            for a, b in zip(_as_list(eager_out), _as_list(compiled_out)):
                torch.testing.assert_close(b.grad, a.grad, atol=1e-7, rtol=0)
        graphs_after_epoch.append(backend.graphs)
    assert graphs_after_epoch == [2, 2, 2]  # the full and the last batch size, then never again


def _as_list(output):
    return [output] if isinstance(output, torch.Tensor) else list(output)


class LossLog(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach().clone())


class CountPerEpoch(pl.Callback):
    def __init__(self, backend: CountingBackend) -> None:
        self.backend = backend
        self.graphs: list[int] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.graphs.append(self.backend.graphs)


@pytest.mark.parametrize("kind", ["heatmap", "simcc"])
def test_model_compile_trains_like_eager_without_recompiling(kind, monkeypatch, tmp_path):
    """PoseLitModule(compile=True) compiles the network and the loss (fullgraph, static shapes); over three epochs
    whose last batch is smaller it gives the eager losses, and the graphs are made in the first epoch only."""
    codec = heatmap_codec() if kind == "heatmap" else simcc_codec()
    batches = [make_batch(codec, b=6, seed=i) for i in range(2)] + [make_batch(codec, b=4, seed=2)]
    backend = CountingBackend()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=backend))
    torch._dynamo.reset()
    runs = {}
    for compile in (False, True):
        torch.manual_seed(0)
        head = HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=()) if kind == "heatmap" else SimCCHead()
        module = PoseLitModule(TinyConvBackbone(8), head, codec=codec, spec=COCO, loss=RankingLoss(), warmup_iters=0,
                               flip_test=False, compile=compile)
        log, counts = LossLog(), CountPerEpoch(backend)
        trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=3, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                             num_sanity_val_steps=0, callbacks=[log, counts], default_root_dir=tmp_path)
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
        runs[compile] = (torch.stack(log.losses), counts.graphs)
    eager, (compiled, graphs) = runs[False][0], runs[True]
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    assert runs[False][1] == [0, 0, 0]
    assert graphs[0] == 4 and graphs == [graphs[0]] * 3  # network and loss at 2 batch sizes, in epoch 1 only
    assert set(module.state_dict()) == set(PoseLitModule(
        TinyConvBackbone(8), HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=()) if kind == "heatmap"
        else SimCCHead(), codec=codec, spec=COCO, loss=RankingLoss()).state_dict())  # checkpoints load either way


def test_the_config_key_model_compile(tmp_path):
    """``model.compile`` is a typed switch of the CLI, off by default; on, ``fit`` compiles the network and the loss
    (at ``setup("fit")``); a module built for inference or export stays eager."""
    from pathlib import Path

    from rspose.cli import run_lightning_cli
    from rspose.data.synthetic import generate_synthetic_coco

    root = Path(__file__).resolve().parents[1]
    generate_synthetic_coco(tmp_path / "synth", num_train=4, num_val=2, seed=1)
    args = ["--config", str(root / "configs/quickstart.yaml"), "--data.dataset.init_args.root", str(tmp_path / "synth"),
            "--data.num_workers", "0", "--trainer.default_root_dir", str(tmp_path)]
    off = run_lightning_cli(args, run=False).model
    on = run_lightning_cli([*args, "--model.compile", "true"], run=False).model
    assert on.model._compiled_call_impl is None  # not before fit
    for module in (off, on):
        module.setup("fit")
    assert off.model._compiled_call_impl is None and off.loss._compiled_call_impl is None
    assert on.model._compiled_call_impl is not None and on.loss._compiled_call_impl is not None
    assert on.hparams.compile is True and off.hparams.compile is False


@pytest.mark.parametrize("decoding", ["dark", "softargmax", "rankfit", "udp"])
def test_ranking_loss_has_no_graph_break_with_any_heatmap_decoder(decoding):
    """Instance-Sort decodes the training maps with the data's decoder: each of them traces as one graph (DARK's
    blur kernel is plain Python, not OpenCV)."""
    from rspose.codecs import MSRAHeatmap, UDPHeatmap

    codec = (UDPHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0) if decoding == "udp" else
             MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0, decoding=decoding))
    loss = RankingLoss()
    loss.bind(codec, COCO)
    batch = make_batch(codec)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(loss)(_output(batch, codec.target_keys), batch)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
