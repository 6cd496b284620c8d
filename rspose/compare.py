"""``rspose compare``: seeded comparisons of losses on the CPU quickstart (the RSPose claim at small scale).

Each *variant* is a config plus a loss object (and optional extra LightningCLI arguments); every variant is
trained once per ``--seeds`` value (the training seed, ``seed_everything``; the synthetic data's own seed stays
fixed), evaluated with detection boxes, flip test and the localisation/scoring diagnostics, and recorded.

Built-in variant sets (``--pairs``): ``heatmap`` (MSE, decoded with DARK, vs RankingLoss on
configs/quickstart.yaml) and ``simcc`` (KL vs RankingLoss on configs/quickstart_simcc.yaml). ``--variants FILE`` takes a YAML list instead (see
configs/compare/study.yaml)::

    - {name: heatmap_mse, config: configs/quickstart.yaml, loss: {class_path: rspose.losses.KeypointMSELoss}}
    - name: heatmap_rs_sigmoid
      config: configs/quickstart.yaml
      baseline: heatmap_mse            # the paired difference is taken against this variant
      loss: {class_path: rspose.losses.RankingLoss, init_args: {confidence: sigmoid}}
      args: [--trainer.max_epochs, "24"]

Written to ``--out``: ``results.json`` (``{"settings": ..., "runs": [{"name", "loss", "seed", "config", "args",
"metrics"}, ...]}``; rows of earlier invocations are kept, a re-run of the same name and seed replaces its row),
``results.md`` (mean +- std over seeds per variant and the paired difference to its baseline), per-run folders
``NAME/seedS/`` (checkpoints, per-instance tables) and PNG plots of the first seed of each variant.

Runs go ``--jobs`` at a time in separate processes, each on ``--threads`` threads (2 cores: ``--jobs 2
--threads 1``). Any LightningCLI argument after ``--`` is passed to every run (e.g. ``-- --trainer.max_epochs 4``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from rspose.errors import ArgumentParser, UserError

#: Columns of results.md, in order (a column a run did not report is shown as n/a).
COLUMNS = (
    "AP",
    "AP75",
    "spearman",
    "spearman_keypoint",
    "AP_oracle",
    "scoring_gap",
    "oks_median",
    "kpt_error",
    "score_low_oks",
    "score_rest",
)
MSE = {"class_path": "rspose.losses.KeypointMSELoss"}
KL = {"class_path": "rspose.losses.KLDiscretLoss"}
RS = {"class_path": "rspose.losses.RankingLoss"}


@dataclass
class Variant:
    """One configuration: ``config`` + ``loss`` (a class_path/init_args dict) + extra CLI ``args``.

    ``checkpoint_of``: do not train; evaluate that variant's checkpoint of the same seed with this variant's
    ``args`` (e.g. another decoder: ``[--data.codec.init_args.decoding, centroid]``).
    """

    name: str
    config: str
    loss: dict[str, Any]
    args: list[str] = field(default_factory=list)
    baseline: str | None = None
    checkpoint_of: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.loss, dict) or "class_path" not in self.loss:
            raise UserError(f"variant {self.name!r}: loss must be a mapping with class_path, got {self.loss!r}")
        unknown = set(self.loss) - {"class_path", "init_args"}
        if unknown:
            raise UserError(f"variant {self.name!r}: unknown loss keys {sorted(unknown)} (class_path, init_args)")
        self.args = [str(a) for a in self.args]


PAIRS: dict[str, list[Variant]] = {
    "heatmap": [
        # each loss with its best decoder (the study): DARK for MSE maps, the quarter shift for ranking maps
        Variant("heatmap_mse", "configs/quickstart.yaml", MSE, args=["--data.codec.init_args.decoding", "dark"]),
        Variant("heatmap_rs", "configs/quickstart.yaml", RS, baseline="heatmap_mse"),
    ],
    "simcc": [
        Variant("simcc_kl", "configs/quickstart_simcc.yaml", KL),
        Variant("simcc_rs", "configs/quickstart_simcc.yaml", RS, baseline="simcc_kl"),
    ],
}


def load_variants(path: str | Path) -> list[Variant]:
    """A YAML list of variants (mappings with name, config, loss, optional args and baseline)."""
    path = Path(path)
    try:
        entries = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"--variants {path}: cannot read it as YAML ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"--variants {path}: expected a non-empty YAML list of variants")
    variants = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise UserError(f"--variants {path}: entry {i} is not a mapping")
        unknown = set(entry) - {"name", "config", "loss", "args", "baseline", "checkpoint_of"}
        if unknown or not {"name", "config", "loss"} <= set(entry):
            raise UserError(
                f"--variants {path}: entry {i} needs name, config, loss (optional args, baseline, checkpoint_of); "
                f"unknown keys: {sorted(unknown)}"
            )
        variants.append(Variant(**entry))
    names = [v.name for v in variants]
    for v in variants:
        if names.count(v.name) > 1:
            raise UserError(f"--variants {path}: variant name {v.name!r} appears twice")
        for key in ("baseline", "checkpoint_of"):
            other = getattr(v, key)
            if other is not None and other not in names:
                raise UserError(f"--variants {path}: variant {v.name!r} has {key} {other!r}, not in the file")
    return variants


def run_args(variant: Variant, seed: int, out: Path, extra: Sequence[str], fit: bool = True) -> list[str]:
    """The LightningCLI arguments of one run (``fit`` first when ``fit``)."""
    run_dir = out / variant.name / f"seed{seed}"
    return [
        *(["fit"] if fit else []),
        "--config", variant.config,
        "--model.loss", json.dumps(variant.loss),
        "--seed_everything", str(seed),
        "--model.eval_outfile_prefix", str(run_dir / "eval"),
        "--model.eval_diagnostics", "true",
        "--trainer.default_root_dir", str(run_dir),
        *variant.args,
        *extra,
    ]


def run_one(args: list[str], threads: int) -> dict[str, float]:
    """Fit one run (in this process) and return its last validation metrics plus ``wall_s``."""
    import torch

    from rspose.cli import run_lightning_cli

    if threads > 0:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    cli = run_lightning_cli(args)
    wall = time.perf_counter() - start
    metrics = {
        key[len("val/"):]: float(value)
        for key, value in cli.trainer.callback_metrics.items()
        if key.startswith("val/") and key != "val/loss"
    }
    if not metrics:
        raise RuntimeError(f"run {' '.join(args)} reported no validation metrics (did validation run?)")
    metrics["wall_s"] = wall
    return metrics


def find_checkpoint(out: Path, name: str, seed: int) -> Path:
    """The newest ``last.ckpt`` under ``out/name/seedS``."""
    found = sorted((out / name / f"seed{seed}").rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no last.ckpt under {out / name / f'seed{seed}'}: train {name!r} seed {seed} first")
    return found[-1]


def evaluate_one(args: list[str], checkpoint: str, threads: int) -> dict[str, float]:
    """Validate the weights of ``checkpoint`` under the config and arguments ``args`` (no ``fit``).

    Only the weights come from the checkpoint (loaded with ``weights_only=True``): every setting, the decoder
    and the evaluation options included, is the one ``args`` give.
    """
    import torch

    from rspose.cli import run_lightning_cli

    if threads > 0:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    cli = run_lightning_cli([*args, "--trainer.logger", "false"], run=False)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    cli.model.load_state_dict(state)
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    metrics = {
        key[len("val/"):]: float(value)
        for key, value in cli.trainer.callback_metrics.items()
        if key.startswith("val/") and key != "val/loss"
    }
    metrics["eval_wall_s"] = time.perf_counter() - start
    return metrics


def _worker_init(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of the finite values (NaN if none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else 0.0)


def summarise(runs: list[dict[str, Any]], variants: list[Variant]) -> list[dict[str, Any]]:
    """Per variant (in ``variants`` order, then any other names in ``runs``): seeds, mean/std per column, and
    the paired difference to its baseline over the seeds both have (mean/std of per-seed differences)."""
    by_name: dict[str, dict[int, dict[str, float]]] = {}
    for run in runs:
        by_name.setdefault(run["name"], {})[int(run["seed"])] = run["metrics"]
    baselines = {v.name: v.baseline for v in variants}
    order = [v.name for v in variants if v.name in by_name] + sorted(set(by_name) - {v.name for v in variants})
    rows = []
    for name in order:
        seeds = sorted(by_name[name])
        row: dict[str, Any] = {"name": name, "seeds": seeds, "baseline": baselines.get(name), "mean": {}, "diff": {}}
        for column in (*COLUMNS, "wall_s"):
            values = [by_name[name][s].get(column) for s in seeds]
            if any(v is not None for v in values):
                row["mean"][column] = mean_std([v for v in values if v is not None])
        base = baselines.get(name)
        if base in by_name:
            common = sorted(set(seeds) & set(by_name[base]))
            row["diff_seeds"] = common
            for column in COLUMNS:
                diffs = [
                    by_name[name][s][column] - by_name[base][s][column]
                    for s in common
                    if column in by_name[name][s] and column in by_name[base][s]
                ]
                if diffs:
                    row["diff"][column] = mean_std(diffs)
        rows.append(row)
    return rows


def _cell(pair: tuple[float, float] | None) -> str:
    if pair is None or not math.isfinite(pair[0]):
        return "n/a"
    return f"{pair[0]:.3f} +- {pair[1]:.3f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Two tables: mean +- std over seeds, and the paired difference to the baseline."""
    header = "| variant | seeds | " + " | ".join(COLUMNS) + " | wall (s) |"
    lines = ["Mean +- std over seeds:", "", header, "|" + "---|" * (len(COLUMNS) + 3)]
    for row in rows:
        cells = [_cell(row["mean"].get(c)) for c in COLUMNS]
        wall = row["mean"].get("wall_s")
        lines.append(
            f"| {row['name']} | {len(row['seeds'])} | " + " | ".join(cells) + f" | {wall[0]:.0f} |"
            if wall
            else f"| {row['name']} | {len(row['seeds'])} | " + " | ".join(cells) + " | n/a |"
        )
    paired = [row for row in rows if row["diff"]]
    if paired:
        lines += ["", "Paired difference to the baseline (same seeds), mean +- std:", ""]
        lines += ["| variant | baseline | seeds | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 3)]
        for row in paired:
            cells = [_cell(row["diff"].get(c)) for c in COLUMNS]
            lines.append(f"| {row['name']} | {row['baseline']} | {len(row['diff_seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_plots(out: Path, runs: list[dict[str, Any]]) -> list[Path]:
    """Plots from the per-instance tables of the first seed of each variant."""
    from rspose.viz import (
        load_instances,
        plot_ap_before_after_nms,
        plot_calibration,
        plot_keypoint_correlations,
        plot_runs_side_by_side,
        plot_score_vs_oks,
    )

    tables = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        path = out / run["name"] / f"seed{run['seed']}" / "eval.val.instances.json"
        if run["name"] not in tables and path.exists():
            tables[run["name"]] = load_instances(path)
    if not tables:
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
        fn(tables, out=path)
        written.append(path)
    return written


def read_results(path: Path) -> list[dict[str, Any]]:
    """The runs of an earlier results.json (empty if none)."""
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        runs = data["runs"]
        assert isinstance(runs, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UserError(
            f"{path}: exists but is not an rspose compare results file ({{\"runs\": [...]}}); "
            "choose another --out or move it away"
        ) from None
    return runs


def write_results(out: Path, runs: list[dict[str, Any]], variants: list[Variant], settings: dict[str, Any]) -> str:
    rows = summarise(runs, variants)
    table = markdown_table(rows)
    (out / "results.json").write_text(json.dumps({"settings": settings, "runs": runs}, indent=2))
    (out / "results.md").write_text(f"{table}\n\nSettings: {json.dumps(settings)}\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="rspose compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/compare", help="output folder")
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=["heatmap", "simcc"])
    parser.add_argument("--variants", default=None, help="YAML list of variants (instead of --pairs)")
    parser.add_argument("--only", nargs="+", default=None, help="run only these variant names")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (data seed is fixed)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--skip-done", action="store_true", help="skip (name, seed) already in results.json")
    parser.add_argument(
        "--evaluate", action="store_true",
        help="do not train: re-evaluate the selected variants' last.ckpt (after adding metrics or decoders)",
    )
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: LightningCLI arguments for every run")
    args = parser.parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    variants = load_variants(args.variants) if args.variants else [v for p in args.pairs for v in PAIRS[p]]
    if args.only:
        missing = set(args.only) - {v.name for v in variants}
        if missing:
            parser.error(f"--only: unknown variants {sorted(missing)}; known: {[v.name for v in variants]}")
    selected = [v for v in variants if not args.only or v.name in args.only]
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = read_results(out / "results.json")
    done = {(r["name"], int(r["seed"])) for r in runs}
    todo = [(v, s) for v in selected for s in args.seeds if not (args.skip_done and (v.name, s) in done)]
    settings = {"seeds": args.seeds, "extra": extra, "variants": args.variants or args.pairs}

    def record(variant: Variant, seed: int, metrics: dict[str, float]) -> None:
        runs[:] = [r for r in runs if not (r["name"] == variant.name and int(r["seed"]) == seed)]
        entry = {"name": variant.name, "loss": variant.loss, "seed": seed, "config": variant.config}
        runs.append({**entry, "args": variant.args + extra, "metrics": metrics})
        write_results(out, runs, variants, settings)  # after every run: an interruption loses nothing finished
        print(f"[compare] {variant.name} seed {seed}: AP {metrics.get('AP', math.nan):.3f}", flush=True)

    def job(variant: Variant, seed: int) -> tuple[Any, tuple[Any, ...]]:
        if variant.checkpoint_of is None and not args.evaluate:
            return run_one, (run_args(variant, seed, out, extra), args.threads)
        source = variant.checkpoint_of or variant.name
        checkpoint = str(find_checkpoint(out, source, seed))
        return evaluate_one, (run_args(variant, seed, out, extra, fit=False), checkpoint, args.threads)

    def finish(variant: Variant, seed: int, metrics: dict[str, float]) -> None:
        if args.evaluate and variant.checkpoint_of is None:  # keep the training wall time of the row
            old = next((r for r in runs if r["name"] == variant.name and int(r["seed"]) == seed), None)
            if old is not None and "wall_s" in old["metrics"]:
                metrics = {**metrics, "wall_s": old["metrics"]["wall_s"]}
        record(variant, seed, metrics)

    # evaluations of another variant's checkpoints wait for that variant's training (run after all training)
    first = [(v, s) for v, s in todo if v.checkpoint_of is None]
    later = [(v, s) for v, s in todo if v.checkpoint_of is not None]
    for batch in (first, later):
        if args.jobs == 1:
            for variant, seed in batch:
                fn, fn_args = job(variant, seed)
                finish(variant, seed, fn(*fn_args))
            continue
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                 initargs=(max(args.threads, 1),)) as pool:
            futures = {}
            for variant, seed in batch:
                fn, fn_args = job(variant, seed)
                futures[pool.submit(fn, *fn_args)] = (variant, seed)
            for future in as_completed(futures):
                finish(*futures[future], future.result())
    table = write_results(out, runs, variants, settings)
    plots = write_plots(out, runs)
    print(table)
    print(f"\nwrote {out / 'results.md'}, {out / 'results.json'} and {len(plots)} plots to {out}")
    return 0


