"""``rspose compare``: the CPU-scale reproduction of the RSPose claim.

Trains the quickstart model on the same synthetic data, seed and budget once with the baseline loss and once
with Spatial-RS + Instance-Sort (heatmaps: MSE vs RS; SimCC: KL vs RS), evaluates each with detection boxes and
flip test, and writes to ``--out``: ``results.md`` and ``results.json`` (AP, AP50, AP75, AR, spearman,
spearman_keypoint, spearman_before_nms, wall time), the per-instance tables, and PNG plots
(score vs OKS, calibration, per-keypoint correlations, AP before/after NMS, side by side).

Ablations from the command line: ``--delta``, ``--lam`` (Instance-Sort weight), ``--scope``; any other
LightningCLI argument goes after ``--`` and is passed to every run (e.g. ``-- --trainer.max_epochs 4``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

COLUMNS = ("AP", "AP50", "AP75", "AR", "spearman", "spearman_keypoint", "spearman_before_nms", "AP_before_nms")

PAIRS = {
    "heatmap": ("configs/quickstart.yaml", (("heatmap_mse", "mse"), ("heatmap_rs", "rs"))),
    "simcc": ("configs/quickstart_simcc.yaml", (("simcc_kl", "kl"), ("simcc_rs", "rs"))),
}


def run_variant(
    name: str, config: str, loss: str, out: Path, delta: float, lam: float, scope: str, extra: list[str]
) -> dict[str, float]:
    """Fit one variant with the LightningCLI; returns its final validation metrics and wall time (s)."""
    from rspose.cli import run_lightning_cli

    run_dir = out / name
    args = [
        "fit",
        "--config", config,
        "--model.loss", loss,
        "--model.rs_delta", str(delta),
        "--model.instance_sort_weight", str(lam),
        "--model.rs_scope", scope,
        "--model.eval_outfile_prefix", str(out / name),
        "--model.eval_ap_before_nms", "true",
        "--trainer.default_root_dir", str(run_dir),
        *extra,
    ]
    start = time.perf_counter()
    cli = run_lightning_cli(args)
    wall = time.perf_counter() - start
    metrics = {
        key[len("val/"):]: float(value)
        for key, value in cli.trainer.callback_metrics.items()
        if key.startswith("val/") and key != "val/loss"
    }
    metrics["wall_s"] = wall
    return metrics


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    header = "| run | " + " | ".join(COLUMNS) + " | wall (s) |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, metrics in results.items():
        cells = [f"{metrics[c]:.3f}" if c in metrics else "n/a" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {metrics['wall_s']:.0f} |")
    return "\n".join(lines)


def write_plots(out: Path, names: list[str]) -> list[Path]:
    """Plots from the per-instance tables the metric wrote for each run."""
    from rspose.viz import (
        load_instances,
        plot_ap_before_after_nms,
        plot_calibration,
        plot_keypoint_correlations,
        plot_runs_side_by_side,
        plot_score_vs_oks,
    )

    runs = {}
    for name in names:
        path = out / f"{name}.val.instances.json"
        if path.exists():
            runs[name] = load_instances(path)
    if not runs:
        return []
    written = []
    for stem, fn in (
        ("score_vs_oks", plot_score_vs_oks),
        ("calibration", plot_calibration),
        ("keypoint_correlations", plot_keypoint_correlations),
        ("ap_nms", plot_ap_before_after_nms),
        ("side_by_side", plot_runs_side_by_side),
    ):
        path = out / f"{stem}.png"
        fn(runs, out=path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rspose compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/compare", help="output folder")
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=["heatmap", "simcc"])
    parser.add_argument("--delta", type=float, default=0.5, help="delta of the ranking losses' smoothed step")
    parser.add_argument("--lam", type=float, default=1.0, help="Instance-Sort weight lambda (0 disables it)")
    parser.add_argument("--scope", choices=["heatmap", "batch"], default="heatmap", help="Spatial-RS set scope")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: LightningCLI arguments for every run")
    args = parser.parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    for pair in args.pairs:
        config, variants = PAIRS[pair]
        for name, loss in variants:
            results[name] = run_variant(name, config, loss, out, args.delta, args.lam, args.scope, extra)
    table = markdown_table(results)
    settings = {"delta": args.delta, "lambda": args.lam, "scope": args.scope, "extra": extra}
    (out / "results.md").write_text(f"{table}\n\nSettings: {json.dumps(settings)}\n")
    (out / "results.json").write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    plots = write_plots(out, list(results))
    print(table)
    print(f"\nwrote {out / 'results.md'}, {out / 'results.json'} and {len(plots)} plots to {out}")
    return 0
