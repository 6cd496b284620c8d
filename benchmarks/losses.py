"""Cost of the ranking losses on CPU against MSE, a ResNet-50 training step and the reference loop.

Run:  PYTHONPATH=. python benchmarks/losses.py [--batch 32] [--threads 2] [--json out.json]

Rows (all forward + backward, best of --repeats runs after a warm-up, milliseconds):
* MSE and Spatial-RS (heatmap scope, with the positives read from the data or bounded by the codec as in
  RankingLoss, and batch scope) on (B, 17, 64, 48) logits with sigma-2 MSRA targets at
  random locations (logits ~ N(0, 1): every pixel interacts with the positives, the worst case);
* Spatial-RS + Instance-Sort (instance confidence from the heatmaps, random OKS quality);
* the reference loop of tests/rs_reference.py (one Python iteration per positive, the way the RS loss of the
  literature is written), timed on a few heatmaps and scaled to the batch;
* SimCC: Spatial-RS and KL on (B, 17, 384) and (B, 17, 512) with sigma-6 truncated labels;
* a SimpleBaseline ResNet-50 256x192 training step (forward, backward, Adam step) at the same batch;
* the peak extra memory of Spatial-RS forward + backward (torch profiler allocation events), in units of
  the size of ``pred``.
Goals: Spatial-RS + Instance-Sort <= 3% of the ResNet-50 step; >= 100x faster than the reference loop;
peak extra memory <= 16x pred.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from rspose.codecs import MSRAHeatmap  # noqa: E402
from rspose.losses import (  # noqa: E402
    InstanceSortLoss,
    SpatialRSLoss,
    instance_confidence,
    keypoint_mse,
    kl_discrete,
    max_positives,
)

K = 17


def msra_targets(b: int, h: int, w: int, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """(B, K, h, w) MSRA heatmaps: integer centres anywhere on the map, square patch of radius 3 sigma."""
    cx = torch.randint(0, w, (b, K, 1, 1), generator=gen)
    cy = torch.randint(0, h, (b, K, 1, 1), generator=gen)
    xs, ys = torch.arange(w).view(1, 1, 1, w), torch.arange(h).view(1, 1, h, 1)
    radius = int(3 * sigma)
    patch = ((xs - cx).abs() <= radius) & ((ys - cy).abs() <= radius)
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2)) * patch


def simcc_targets(b: int, length: int, sigma: float, gen: torch.Generator) -> torch.Tensor:
    mu = torch.rand(b, K, 1, generator=gen) * length
    bins = torch.arange(length).view(1, 1, length)
    return torch.exp(-((bins - mu) ** 2) / (2 * sigma**2)) * ((bins - mu).abs() <= 3 * sigma)


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` wall times in ms, after a warm-up (the machine is shared: the best run is the cost)."""
    fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return min(runs) * 1e3


def fwd_bwd(loss_fn: Callable[[torch.Tensor], torch.Tensor], pred: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        p = pred.detach().requires_grad_(True)
        loss_fn(p).backward()

    return run


def peak_extra_bytes(fn: Callable[[], None]) -> int:
    """Peak of allocated-minus-freed bytes while fn runs (torch profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


class SimpleBaseline(nn.Module):
    """ResNet-50 + three 4x4 deconvolutions (256 channels) + 1x1 conv: 256x192 input -> 64x48 heatmaps."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.backbone = timm.create_model("resnet50", pretrained=False, num_classes=0, global_pool="")
        layers: list[nn.Module] = []
        channels = 2048
        for _ in range(3):
            layers += [nn.ConvTranspose2d(channels, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(True)]
            channels = 256
        self.head = nn.Sequential(*layers, nn.Conv2d(256, K, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ref-heatmaps", type=int, default=4, help="heatmaps timed with the reference loop")
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    b = args.batch
    pred = torch.randn(b, K, 64, 48, generator=gen)
    target = msra_targets(b, 64, 48, 2.0, gen)
    weight = torch.ones(b, K)
    quality = torch.rand(b, generator=gen).clamp(min=1e-6)
    rows: list[tuple[str, float, str]] = []
    res: dict[str, float] = {"batch": b, "threads": args.threads}

    rs_module, instance = SpatialRSLoss(), InstanceSortLoss()

    def spatial(p: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return rs_module(p, t, w)["loss"]

    mse = keypoint_mse
    res["mse_ms"] = timed(fwd_bwd(lambda p: mse(p, target, weight), pred), args.repeats)
    res["rs_ms"] = timed(fwd_bwd(lambda p: spatial(p, target, weight), pred), args.repeats)
    # the static path RankingLoss takes: the positives bounded by the codec's Gaussian (sigma 2: a 13 x 13 window)
    bound = max_positives(MSRAHeatmap(sigma=2.0), 0.0)[0]
    res["rs_static_ms"] = timed(
        fwd_bwd(lambda p: rs_module(p, target, weight, max_positives=bound)["loss"], pred), args.repeats
    )
    res["rs_is_ms"] = timed(
        fwd_bwd(lambda p: spatial(p, target, weight) + instance(instance_confidence(p, weight), quality), pred),
        args.repeats,
    )
    res["rs_batch_scope_ms"] = timed(
        fwd_bwd(lambda p: SpatialRSLoss(scope="batch")(p, target, weight)["loss"], pred), max(1, args.repeats // 2)
    )

    import rs_reference

    flat_p, flat_t = pred.reshape(b * K, -1), target.reshape(b * K, -1)
    n_ref = min(args.ref_heatmaps, b * K)

    def reference() -> None:
        for i in range(n_ref):
            rs_reference.rank_sort_set(flat_p[i], flat_t[i], 0.5)

    res["reference_ms_per_heatmap"] = timed(reference, 2) / n_ref
    res["reference_ms_scaled"] = res["reference_ms_per_heatmap"] * b * K

    kl = kl_discrete
    for length in (384, 512):
        p1 = torch.randn(b, K, length, generator=gen)
        t1 = simcc_targets(b, length, 6.0, gen)
        res[f"simcc{length}_rs_ms"] = timed(fwd_bwd(lambda p, t1=t1: spatial(p, t1, weight), p1), args.repeats)
        res[f"simcc{length}_kl_ms"] = timed(fwd_bwd(lambda p, t1=t1: kl(p, t1, weight), p1), args.repeats)

    pred_bytes = pred.numel() * pred.element_size()
    res["rs_peak_extra_x_pred"] = peak_extra_bytes(fwd_bwd(lambda p: spatial(p, target, weight), pred)) / pred_bytes
    res["mse_peak_extra_x_pred"] = peak_extra_bytes(fwd_bwd(lambda p: mse(p, target, weight), pred)) / pred_bytes

    if not args.skip_resnet:
        model = SimpleBaseline()
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
        images = torch.randn(b, 3, 256, 192, generator=gen)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            mse(model(images), target, weight).backward()
            optimizer.step()

        res["resnet50_step_ms"] = timed(step, max(1, args.repeats // 2))

    ms = res
    rows += [
        ("MSE (B,17,64,48)", ms["mse_ms"], ""),
        ("Spatial-RS heatmap scope (B,17,64,48)", ms["rs_ms"], f"{ms['rs_ms'] / ms['mse_ms']:.0f}x MSE"),
        (f"  the same, static bound ({bound} positives)", ms["rs_static_ms"], "no host synchronisation"),
        ("Spatial-RS + Instance-Sort", ms["rs_is_ms"], ""),
        ("Spatial-RS batch scope (ablation)", ms["rs_batch_scope_ms"], ""),
        (
            f"reference loop ({n_ref} heatmaps, scaled to {b * K})",
            ms["reference_ms_scaled"],
            f"{ms['reference_ms_per_heatmap']:.1f} ms/heatmap; RS is {ms['reference_ms_scaled'] / ms['rs_ms']:.0f}x "
            "faster (goal >= 100x)",
        ),
    ]
    for length in (384, 512):
        rows.append((f"SimCC Spatial-RS (B,17,{length})", ms[f"simcc{length}_rs_ms"], ""))
        rows.append((f"SimCC KL (B,17,{length})", ms[f"simcc{length}_kl_ms"], ""))
    if "resnet50_step_ms" in ms:
        share = 100 * ms["rs_is_ms"] / ms["resnet50_step_ms"]
        res["rs_is_share_of_step_pct"] = share
        rows.append(
            ("ResNet-50 256x192 train step", ms["resnet50_step_ms"], f"RS+IS = {share:.2f}% of it (goal <= 3%)")
        )
    print(f"CPU, {args.threads} threads, batch {b}, torch {torch.__version__}")
    print(f"{'case (forward + backward)':45s} {'ms':>10s}  note")
    for name, value, note in rows:
        print(f"{name:45s} {value:10.1f}  {note}")
    print(
        f"peak extra memory: Spatial-RS {ms['rs_peak_extra_x_pred']:.1f}x pred (goal <= 16x), "
        f"MSE {ms['mse_peak_extra_x_pred']:.1f}x pred; pred = {pred_bytes / 2**20:.1f} MiB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
