"""Training-step time: eager vs ``torch.compile`` (``model.compile``), and the LightningModule's overhead.

Default: for MSE and RankingLoss at the quickstart size (tiny network, 96x128 input, 24x32 heatmaps, sigma 1, batch
32) and at SimpleBaseline R50 256x192 (48x64 heatmaps, sigma 2, a small batch for the CPU), measured in one run:

* the loss alone, forward + backward, on fixed random logits: eager vs ``torch.compile(loss, fullgraph=True,
  dynamic=False)``;
* a training step of a plain loop (forward, loss, backward, Adam step) of a ``PoseLitModule`` with
  ``compile=False`` vs ``compile=True``;

median over the timed repeats after warm-up; the first compiled call's time (the compile) is reported apart.

    python benchmarks/train_step.py [--sizes quickstart r50] [--losses mse rs] [--json out.json]
    python benchmarks/train_step.py --loss-only --no-compile        # also runs on older checkouts

``--lightning-overhead``: the LightningModule (Trainer.fit) vs the same model, loss and batch in a plain loop.
Both sides train a freshly initialised :class:`rspose.module.PoseLitModule` (same backbone, head, codec, loss and
optimizer) on the same pre-collated batches held in memory, so data loading is excluded and the difference is the
Lightning machinery (loops, hooks, logging, optimizer wrapping). Rounds alternate (plain, Lightning, ...) and the
table reports the median per-step time of each side.

    python benchmarks/train_step.py --lightning-overhead                 # quickstart model, ranking loss, batch 32
    python benchmarks/train_step.py --lightning-overhead --model r50 --batch 8 --loss mse
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from torch.utils.data import DataLoader

from rspose.codecs import MSRAHeatmap
from rspose.data.specs import COCO
from rspose.losses import KeypointMSELoss, RankingLoss
from rspose.models import HeatmapHead, ResNetBackbone, TinyConvBackbone
from rspose.module import PoseLitModule
from rspose.optim import build_optimizer, build_param_groups

MODELS = {
    "tiny": ((96, 128), (24, 32), lambda: TinyConvBackbone(32), lambda: HeatmapHead(deconv_out_channels=(),
                                                                                  deconv_kernel_sizes=())),
    "r18": ((192, 256), (48, 64), lambda: ResNetBackbone(18), lambda: HeatmapHead()),
    "r50": ((192, 256), (48, 64), lambda: ResNetBackbone(50), lambda: HeatmapHead()),
}


def make_module(model: str, loss: str) -> PoseLitModule:
    input_size, heatmap_size, backbone, head = MODELS[model]
    codec = MSRAHeatmap(input_size=input_size, heatmap_size=heatmap_size, sigma=2.0)
    loss_object = RankingLoss() if loss == "rs" else KeypointMSELoss()
    return PoseLitModule(backbone(), head(), codec=codec, spec=COCO, loss=loss_object, warmup_iters=0, flip_test=False)


def make_batches(module: PoseLitModule, batch: int, count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Random crops with the codec's real targets for random keypoints."""
    gen = torch.Generator().manual_seed(seed)
    codec = module.codec
    w, h = codec.input_size
    batches = []
    for _ in range(count):
        kps = torch.rand(batch, 17, 2, generator=gen) * torch.tensor([w - 1, h - 1])
        vis = (torch.rand(batch, 17, generator=gen) > 0.2).float()
        enc = [codec.encode(k.numpy(), v.numpy()) for k, v in zip(kps, vis)]
        batches.append(
            {
                "image": torch.randn(batch, 3, h, w, generator=gen),
                "heatmaps": torch.stack([torch.from_numpy(e["heatmaps"]) for e in enc]),
                "target_weight": torch.stack([torch.from_numpy(e["target_weight"]) for e in enc]),
                "keypoints_input": kps,
                "keypoints_visible": vis,
                "area_input": torch.full((batch,), 0.5 * w * h),
            }
        )
    return batches


class StepTimes(Callback):
    """Wall time between consecutive train-batch starts (everything Lightning does per step)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.starts.append(time.perf_counter())

    def per_step(self, skip: int) -> list[float]:
        return [b - a for a, b in zip(self.starts[skip:], self.starts[skip + 1:])]


def time_lightning(model: str, loss: str, batches: list[dict], skip: int) -> list[float]:
    module = make_module(model, loss)
    timer = StepTimes()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=len(batches), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer],
        num_sanity_val_steps=0,
    )
    # batch_size=None: the loader yields the pre-collated batches as they are
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
    return timer.per_step(skip)


def time_plain(model: str, loss: str, batches: list[dict], skip: int) -> list[float]:
    module = make_module(model, loss)
    module.train()
    # the optimizer configure_optimizers builds, without the Trainer-dependent schedule (warm-up is 0 here)
    hp = module.hparams
    optimizer = build_optimizer(build_param_groups(module.model, hp.weight_decay, hp.layer_decay), hp.optimizer, hp.lr)
    times = []
    for batch in DataLoader(batches, batch_size=None, shuffle=False):
        start = time.perf_counter()
        out = module(batch["image"])
        value = module.compute_loss(out, batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[skip:]


SIZES = {
    # name: (model, codec sigma, batch)
    "quickstart": ("tiny", 1.0, 32),
    "r50": ("r50", 2.0, 4),
}


def make_sized_module(size: str, loss: str, compile: bool = False) -> PoseLitModule:
    model, sigma, _ = SIZES[size]
    input_size, heatmap_size, backbone, head = MODELS[model]
    codec = MSRAHeatmap(input_size=input_size, heatmap_size=heatmap_size, sigma=sigma)
    loss_object = RankingLoss() if loss == "rs" else KeypointMSELoss()
    extra = {"compile": True} if compile else {}  # older checkouts have no compile switch
    return PoseLitModule(backbone(), head(), codec=codec, spec=COCO, loss=loss_object, warmup_iters=0, flip_test=False,
                         **extra)


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(runs: dict[str, Any], warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """{name: (first call in s, median ms)}: each callable's first call (a compile), ``warmup`` more calls, then
    ``repeats`` rounds that call them in turn (so that a load change on the shared machine hits both alike)."""
    first = {name: timed(fn) for name, fn in runs.items()}
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    return {name: (first[name], statistics.median(times[name]) * 1e3) for name in runs}


def loss_run(module: PoseLitModule, batch: dict, compile: bool) -> Any:
    """Forward + backward of the loss alone on fixed random logits."""
    loss = torch.compile(module.loss, fullgraph=True, dynamic=False) if compile else module.loss
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(batch["heatmaps"].shape, generator=gen)

    def run() -> None:
        p = logits.detach().requires_grad_(True)
        loss(p, batch)["loss"].backward()

    return run


def step_run(module: PoseLitModule, batches: list[dict]) -> Any:
    """One training step of a plain loop: forward, loss, backward, Adam step."""
    module.train()
    if module.hparams.get("compile"):
        module.setup("fit")
    hp = module.hparams
    optimizer = build_optimizer(build_param_groups(module.model, hp.weight_decay, hp.layer_decay), hp.optimizer, hp.lr)
    state = {"i": 0}

    def run() -> None:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        value = module.compute_loss(module(batch["image"]), batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    return run


def compile_table(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    modes = [False] if args.no_compile else [False, True]
    for size in args.sizes:
        batch_size = args.batch or SIZES[size][2]
        batches = make_batches(make_sized_module(size, "mse"), batch_size, 3)
        for loss in args.losses:
            parts = ["loss fwd+bwd"] + ([] if args.loss_only else ["train step"])
            for what in parts:
                runs = {}
                for compile in modes:
                    torch.manual_seed(0)
                    key = "compiled" if compile else "eager"
                    if what == "loss fwd+bwd":
                        runs[key] = loss_run(make_sized_module(size, loss), batches[0], compile)
                    else:
                        runs[key] = step_run(make_sized_module(size, loss, compile=compile), batches)
                repeats = args.repeats if what == "loss fwd+bwd" else args.step_repeats
                row: dict[str, Any] = {"size": size, "batch": batch_size, "loss": loss, "what": what}
                for key, (first, ms) in interleaved(runs, args.warmup, repeats).items():
                    row[f"{key}_ms"], row[f"{key}_first_s"] = ms, first
                    print(f"  {size} {loss} {what} {key}: {ms:.1f} ms (first call {first:.1f} s)", flush=True)
                rows.append(row)
    print(f"\n{args.threads} thread(s), CPU, median ms; compile = the first compiled call, s")
    print(f"{'size':<11}{'batch':>6} {'loss':<5}{'what':<14}{'eager':>9}{'compiled':>10}{'ratio':>7}{'compile':>9}")
    for r in rows:
        compiled = r.get("compiled_ms")
        extra = (f"{compiled:>10.1f}{compiled / r['eager_ms']:>7.2f}{r['compiled_first_s']:>8.0f}s" if compiled
                 else f"{'-':>10}{'-':>7}{'-':>9}")
        print(f"{r['size']:<11}{r['batch']:>6} {r['loss']:<5}{r['what']:<14}{r['eager_ms']:>9.1f}{extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    return 0


def lightning_overhead(args: argparse.Namespace) -> int:
    pl.seed_everything(0, verbose=False)
    skip = 3
    batch = args.batch or 32
    batches = make_batches(make_module(args.model, args.loss), batch, args.steps + skip)
    plain: list[float] = []
    lightning: list[float] = []
    for _ in range(args.rounds):
        plain += time_plain(args.model, args.loss, batches, skip)
        lightning += time_lightning(args.model, args.loss, batches, skip)
    p, lt = statistics.median(plain), statistics.median(lightning)
    rows = [
        ("plain PyTorch loop", p),
        ("LightningModule + Trainer", lt),
    ]
    print(f"training step, model {args.model}, loss {args.loss}, batch {batch}, {args.threads} threads, "
          f"{args.rounds} x {args.steps} steps, median")
    print(f"{'what':<30}{'ms/step':>10}")
    for name, value in rows:
        print(f"{name:<30}{value * 1e3:>10.1f}")
    overhead = lt / p - 1.0
    print(f"{'Lightning overhead (goal <= 10%)':<30}{overhead * 100:>9.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "plain_s": p, "lightning_s": lt, "overhead": overhead}, f, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["quickstart", "r50"])
    parser.add_argument("--losses", nargs="+", choices=["mse", "rs"], default=["mse", "rs"])
    parser.add_argument("--loss-only", action="store_true", help="time the loss forward+backward only")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20, help="timed loss calls")
    parser.add_argument("--step-repeats", type=int, default=5, help="timed training steps")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: per size, 32 and 4)")
    parser.add_argument("--lightning-overhead", action="store_true", help="Trainer.fit vs a plain loop instead")
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny", help="--lightning-overhead only")
    parser.add_argument("--loss", choices=["mse", "rs"], default="rs", help="--lightning-overhead only")
    parser.add_argument("--steps", type=int, default=20, help="--lightning-overhead: timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="--lightning-overhead only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return lightning_overhead(args) if args.lightning_overhead else compile_table(args)


if __name__ == "__main__":
    raise SystemExit(main())
