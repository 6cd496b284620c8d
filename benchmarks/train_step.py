"""Training-step time through the LightningModule (Trainer.fit) vs the same model, loss and batch in a plain loop.

Both sides train a freshly initialised :class:`rspose.module.PoseLitModule` (same backbone, head, codec, loss and
optimizer) on the same pre-collated batches held in memory, so data loading is excluded and the difference is the
Lightning machinery (loops, hooks, logging, optimizer wrapping). Rounds alternate (plain, Lightning, ...) and the
table reports the median per-step time of each side.

    python benchmarks/train_step.py                    # the quickstart model, ranking loss, batch 32, CPU
    python benchmarks/train_step.py --model r50 --batch 8 --loss mse
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--loss", choices=["mse", "rs"], default="rs")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round (after 3 warm-up steps)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)
    skip = 3
    batches = make_batches(make_module(args.model, args.loss), args.batch, args.steps + skip)
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
    print(f"training step, model {args.model}, loss {args.loss}, batch {args.batch}, {args.threads} threads, "
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


if __name__ == "__main__":
    raise SystemExit(main())
