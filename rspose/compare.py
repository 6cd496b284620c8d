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
"metrics"}, ...]}``; rows of earlier invocations are kept, a re-run of the same name and seed replaces its row; each
row's ``args`` are the ones it ran with, ``settings["seeds"]`` the seeds of all rows and ``settings["this_call"]``
the last invocation's ``--seeds`` and extra arguments),
``results.md`` (mean +- std over seeds per variant and the paired difference to its baseline), per-run folders
``NAME/seedS/`` (checkpoints, per-instance tables) and PNG plots of the first seed of each variant.

Decoder rule (``--decoders quarter dark softargmax rankfit``): after training, every run of a variant with an
``MSRAHeatmap`` codec is evaluated with each listed decoder (``data.codec.init_args.decoding``) on a *tuning split*
(the validation split of the same synthetic generator with ``--tuning-seed``, ``--tuning-images`` images, written
once to ``OUT/tuning_data``; never the validation images) and on the validation split. The decoder with the best
tuning AP (ties: the first listed) is the run's decoder: its validation metrics are the row's metrics and its
per-instance tables become ``NAME/seedS/eval.val.*``. The same rule for every loss; the validation AP of no loss
takes part in the choice. ``results.json`` keeps every decoder's tuning and validation metrics (``"decoders"``) and
the choice (``"decoder"``); ``results.md`` shows the chosen decoder per seed and the full decoder x variant table;
``decoders.png`` plots validation AP and AP_oracle per variant over decoders. Variants with ``checkpoint_of`` keep
their own decoder.

``error_quantiles.md`` / ``.json``: per variant, the quantiles (10/25/50/75/90%) of the per-keypoint error
d / sqrt(area) of kept true detections at each run's decoder, per keypoint group (face, arms, legs) and GT
visibility (visible v = 2, occluded v = 1), mean +- std over seeds (:mod:`rspose.metrics.keypoint_errors`).

Runs go ``--jobs`` at a time in separate processes, each on ``--threads`` threads (2 cores: ``--jobs 2
--threads 1``). Any LightningCLI argument after ``--`` is passed to every run (e.g. ``-- --trainer.max_epochs 4``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
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
        # without --decoders: DARK for MSE maps, the codec's default (quarter shift) for ranking maps; with
        # --decoders each run's decoder is chosen on the tuning split (docs/method.md, "each loss at its best decoder")
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
    and the evaluation options included, is the one ``args`` give. The model, data and Trainer come from
    :func:`rspose.builder.build_with_trainer_args` (no LightningCLI): the run folder's config.yaml stays the
    training run's.
    """
    import torch
    from lightning.pytorch import Trainer

    from rspose.builder import build_with_trainer_args

    if threads > 0:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    # args are command-line arguments, "--config FILE" among them
    module, datamodule, trainer_args = build_with_trainer_args((), [*args, "--trainer.logger", "false"])
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    trainer = Trainer(**trainer_args)
    trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics = {
        key[len("val/"):]: float(value)
        for key, value in trainer.callback_metrics.items()
        if key.startswith("val/") and key != "val/loss"
    }
    metrics["eval_wall_s"] = time.perf_counter() - start
    return metrics


@dataclass(frozen=True)
class TuningSplit:
    """The held-out split on which decoders are chosen: the synthetic generator's val split of another seed."""

    root: Path
    seed: int
    images: int

    def args(self) -> list[str]:
        """LightningCLI arguments that point validation at this split (0 training images: only val is read)."""
        return [
            "--data.dataset.init_args.root", str(self.root), "--data.dataset.init_args.seed", str(self.seed),
            "--data.dataset.init_args.val_images", str(self.images), "--data.dataset.init_args.train_images", "0",
        ]

    def ensure(self) -> None:
        """Generate the split once (before any worker starts, so that no two processes write it)."""
        from rspose.data.synthetic import ensure_synthetic_coco

        ensure_synthetic_coco(self.root, 0, self.images, self.seed)


def resolved_data(config: str | Path, args: Sequence[str]) -> Any:
    """The ``data`` section of ``config`` with ``args`` applied, resolved as ``rspose fit`` resolves it (base files,
    dotted keys, the old-spelling check): a jsonargparse Namespace (``.dataset.class_path``, ``.dataset.init_args``,
    ``.codec.class_path``, ...). Raises :class:`rspose.errors.UserError` naming what is wrong."""
    from rspose.builder import parse_config

    return parse_config(config, [str(a) for a in args]).data


def check_decoder_variant(variant: Variant, extra: Sequence[str], tuning: TuningSplit) -> None:
    """The decoder rule needs a synthetic dataset and an MSRAHeatmap codec, and a tuning seed unlike the data's."""
    try:
        data = resolved_data(variant.config, [*variant.args, *extra])
    except UserError as error:
        raise UserError(f"--decoders: variant {variant.name!r}: {error}") from None
    codec = data.codec.class_path if data.codec is not None else ""
    if not str(codec).endswith("MSRAHeatmap"):
        raise UserError(
            f"--decoders: variant {variant.name!r} uses the codec {codec or 'none'!r}; the decoder rule chooses "
            "among the decoding settings of rspose.codecs.MSRAHeatmap (leave this variant out with --only)"
        )
    from rspose.datasets import Synthetic, dataset_class

    class_path, init_args = data.dataset.class_path, data.dataset.init_args
    if not issubclass(dataset_class(class_path), Synthetic):
        raise UserError(
            f"--decoders: variant {variant.name!r} has data.dataset {class_path!r}; the tuning split is drawn from "
            "the synthetic generator, so the decoder rule needs data.dataset: rspose.datasets.Synthetic"
        )
    seed = int(init_args.get("seed", 0))
    if seed == tuning.seed:
        raise UserError(
            f"--tuning-seed {tuning.seed} is the data seed of variant {variant.name!r}: the tuning split would be "
            "the validation split itself; choose another --tuning-seed"
        )


def choose_decoder(tuning_ap: dict[str, float], decoders: Sequence[str]) -> str:
    """The decoder of the best tuning AP (the first listed among equals; NaN counts as worst)."""
    best = None
    for decoder in decoders:
        ap = tuning_ap.get(decoder, math.nan)
        if math.isfinite(ap) and (best is None or ap > tuning_ap[best]):
            best = decoder
    if best is None:
        raise RuntimeError(f"no decoder gave a finite tuning AP: {tuning_ap}")
    return best


def decode_with_rule(
    args: list[str], checkpoint: str, threads: int, run_dir: str, decoders: list[str], tuning: TuningSplit
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` with every decoder on the tuning split, then on validation; pick by tuning AP.

    Returns {"metrics": the chosen decoder's validation metrics, "decoder": its name, "decoders": {decoder:
    {"tune": metrics, "val": metrics}}}; the chosen decoder's validation tables are copied to ``run_dir/eval.val.*``.
    """
    found: dict[str, dict[str, dict[str, float]]] = {}
    folder = Path(run_dir) / "decoders"
    for split in ("tune", "val"):
        for decoder in decoders:
            prefix = ["--model.eval_outfile_prefix", str(folder / f"{split}.{decoder}")]
            split_args = tuning.args() if split == "tune" else []
            metrics = evaluate_one([*args, "--data.codec.init_args.decoding", decoder, *prefix, *split_args],
                                   checkpoint, threads)
            found.setdefault(decoder, {})[split] = metrics
    chosen = choose_decoder({d: found[d]["tune"].get("AP", math.nan) for d in decoders}, decoders)
    for kind in ("instances", "keypoints"):
        source = folder / f"val.{chosen}.val.{kind}.json"
        if source.exists():
            shutil.copyfile(source, Path(run_dir) / f"eval.val.{kind}.json")
    return {"metrics": dict(found[chosen]["val"]), "decoder": chosen, "decoders": found}


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
    chosen: dict[str, dict[int, str]] = {}
    for run in runs:
        by_name.setdefault(run["name"], {})[int(run["seed"])] = run["metrics"]
        if run.get("decoder"):
            chosen.setdefault(run["name"], {})[int(run["seed"])] = run["decoder"]
    baselines = {v.name: v.baseline for v in variants}
    order = [v.name for v in variants if v.name in by_name] + sorted(set(by_name) - {v.name for v in variants})
    rows = []
    for name in order:
        seeds = sorted(by_name[name])
        row: dict[str, Any] = {"name": name, "seeds": seeds, "baseline": baselines.get(name), "mean": {}, "diff": {}}
        row["decoder"] = [chosen.get(name, {}).get(s) for s in seeds]
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


def _decoders_cell(row: dict[str, Any]) -> str:
    """The chosen decoder of each seed, in seed order (``-`` where a run was not decoded by the rule)."""
    names = row.get("decoder") or []
    return ", ".join(d or "-" for d in names) if any(names) else "-"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Two tables: mean +- std over seeds (and the decoder each seed's run chose), and the paired difference."""
    header = "| variant | seeds | decoder | " + " | ".join(COLUMNS) + " | wall (s) |"
    lines = ["Mean +- std over seeds:", "", header, "|" + "---|" * (len(COLUMNS) + 4)]
    for row in rows:
        cells = [_cell(row["mean"].get(c)) for c in COLUMNS]
        wall = row["mean"].get("wall_s")
        lines.append(
            f"| {row['name']} | {len(row['seeds'])} | {_decoders_cell(row)} | " + " | ".join(cells)
            + (f" | {wall[0]:.0f} |" if wall else " | n/a |")
        )
    paired = [row for row in rows if row["diff"]]
    if paired:
        lines += ["", "Paired difference to the baseline (same seeds), mean +- std:", ""]
        lines += ["| variant | baseline | seeds | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 3)]
        for row in paired:
            cells = [_cell(row["diff"].get(c)) for c in COLUMNS]
            lines.append(f"| {row['name']} | {row['baseline']} | {len(row['diff_seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


DECODER_COLUMNS = ("AP", "AP_oracle", "scoring_gap", "oks_median", "spearman")


def decoder_summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{variant: {decoder: {"tune_AP": (mean, std), "val": {column: (mean, std)}, "seeds": n, "chosen": n}}} over
    the runs decoded by the rule (decoders in the order first met)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in dict.fromkeys(r["name"] for r in runs if r.get("decoders")):
        mine = [r for r in runs if r["name"] == name and r.get("decoders")]
        table: dict[str, dict[str, Any]] = {}
        for decoder in dict.fromkeys(d for r in mine for d in r["decoders"]):
            have = [r for r in mine if decoder in r["decoders"]]
            table[decoder] = {
                "seeds": len(have),
                "chosen": sum(r.get("decoder") == decoder for r in have),
                "tune_AP": mean_std([r["decoders"][decoder]["tune"].get("AP", math.nan) for r in have]),
                "val": {c: mean_std([r["decoders"][decoder]["val"].get(c, math.nan) for r in have])
                        for c in DECODER_COLUMNS},
            }
        out[name] = table
    return out


def decoder_markdown(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The decoder x variant table: tuning AP, then validation columns, mean +- std over seeds."""
    if not summary:
        return ""
    lines = ["Every decoder on every run (tuning split AP chooses; validation columns for the record), mean +- std:",
             "", "| variant | decoder | chosen | tuning AP | " + " | ".join(f"val {c}" for c in DECODER_COLUMNS) + " |",
             "|" + "---|" * (len(DECODER_COLUMNS) + 4)]
    for name, table in summary.items():
        for decoder, entry in table.items():
            cells = [_cell(entry["val"][c]) for c in DECODER_COLUMNS]
            lines.append(f"| {name} | {decoder} | {entry['chosen']}/{entry['seeds']} | {_cell(entry['tune_AP'])} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_decoders(summary: dict[str, dict[str, dict[str, Any]]], out: Path) -> Path:
    """Validation AP (solid) and AP_oracle (dashed) per variant over decoders, mean +- std over seeds (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, table) in enumerate(summary.items()):
        decoders = list(table)
        x = list(range(len(decoders)))
        color = f"C{i}"
        for column, style in (("AP", "-o"), ("AP_oracle", "--s")):
            mean = [table[d]["val"][column][0] for d in decoders]
            std = [table[d]["val"][column][1] for d in decoders]
            ax.errorbar(x, mean, yerr=std, fmt=style, color=color, capsize=3, label=f"{name} {column}")
        for j, d in enumerate(decoders):
            if table[d]["chosen"]:
                ax.annotate(f"chosen {table[d]['chosen']}/{table[d]['seeds']}", (j, table[d]["val"]["AP"][0]),
                            textcoords="offset points", xytext=(0, -14), ha="center", fontsize=7, color=color)
        ax.set_xticks(x, decoders)
    ax.set_xlabel("decoder")
    ax.set_ylabel("validation AP / AP_oracle")
    ax.set_title("Each loss over decoders (mean +- std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


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


def val_annotation_file(run: dict[str, Any]) -> Path | None:
    """The validation annotation file of a run on COCO keypoints (its dataset's spec is COCO's), from its config
    and arguments; None for other keypoints or a config that cannot be read."""
    from rspose.data.specs import COCO
    from rspose.datasets import dataset_class

    try:
        dataset = resolved_data(run["config"], run.get("args", [])).dataset
        dataset = dataset_class(dataset.class_path)(**dataset.init_args.as_dict())
        if dataset.spec != COCO:
            return None
        return dataset.paths["val_ann"]
    except (UserError, ValueError, TypeError, OSError, AttributeError):
        return None


def error_quantile_summary(out: Path, runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per variant, the keypoint-error quantiles (:mod:`rspose.metrics.keypoint_errors`) of each run's kept true
    detections (``NAME/seedS/eval.val.keypoints.json``, i.e. at the run's chosen decoder), as mean +- std over
    seeds: {variant: [{group, visibility, seeds, n (mean), q: [(mean, std)] per quantile}]}."""
    from rspose.data.specs import COCO
    from rspose.metrics.keypoint_errors import error_quantiles_of_run

    per_variant: dict[str, list[list[dict[str, Any]]]] = {}
    for run in sorted(runs, key=lambda r: (r["name"], r["seed"])):
        results = out / run["name"] / f"seed{run['seed']}" / "eval.val.keypoints.json"
        ann = val_annotation_file(run)
        if ann is None or not results.exists() or not ann.exists():
            continue
        per_variant.setdefault(run["name"], []).append(error_quantiles_of_run(results, ann, COCO.sigmas))
    summary = {}
    for name, tables in per_variant.items():
        rows = []
        for i, first in enumerate(tables[0]):
            same = [t[i] for t in tables]
            q = [mean_std([r["q"][j] for r in same]) for j in range(len(first["q"]))]
            rows.append({"group": first["group"], "visibility": first["visibility"], "seeds": len(same),
                         "n": statistics.fmean(r["n"] for r in same), "q": q})
        summary[name] = rows
    return summary


def error_quantile_markdown(summary: dict[str, list[dict[str, Any]]]) -> str:
    """The quantile table, errors x 100 (d / sqrt(area) in hundredths), mean +- std over seeds."""
    from rspose.metrics.keypoint_errors import QUANTILES

    head = " | ".join(f"q{round(100 * q)}" for q in QUANTILES)
    lines = ["Per-keypoint error d / sqrt(area) x 100 of kept true detections (OKS >= 0.05), quantiles, "
             "mean +- std over seeds:", "", f"| variant | group | visibility | seeds | n | {head} |",
             "|" + "---|" * (5 + len(QUANTILES))]
    for name, rows in summary.items():
        for row in rows:
            cells = " | ".join("n/a" if not math.isfinite(m) else f"{100 * m:.2f} +- {100 * sd:.2f}"
                               for m, sd in row["q"])
            lines.append(f"| {name} | {row['group']} | {row['visibility']} | {row['seeds']} | {row['n']:.0f} | "
                         f"{cells} |")
    return "\n".join(lines)


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
    decoders = decoder_markdown(decoder_summary(runs))
    if decoders:
        table = f"{table}\n\n{decoders}"
    settings = {"seeds": sorted({int(r["seed"]) for r in runs}), **settings}  # rows of earlier calls included
    (out / "results.json").write_text(json.dumps({"settings": settings, "runs": runs}, indent=2))
    (out / "results.md").write_text(f"{table}\n\nSettings: {json.dumps(settings)}\n")
    return table


def main(argv: list[str] | None = None) -> int:
    from rspose.codecs.msra_heatmap import DECODINGS

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
    parser.add_argument(
        "--decoders", nargs="+", default=None, metavar="DECODER",
        help="decoder rule: evaluate each run with these MSRAHeatmap decodings on the tuning split and report "
        f"validation with the best (choices: {' '.join(DECODINGS)})",
    )
    parser.add_argument("--tuning-seed", type=int, default=1000, help="generator seed of the tuning split")
    parser.add_argument("--tuning-images", type=int, default=200, help="images of the tuning split")
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
    if args.decoders is not None:
        unknown = [d for d in args.decoders if d not in DECODINGS]
        if unknown or len(set(args.decoders)) != len(args.decoders):
            parser.error(f"--decoders {' '.join(args.decoders)}: expected distinct names among {list(DECODINGS)}")
        if args.tuning_images < 1:
            parser.error(f"--tuning-images must be >= 1, got {args.tuning_images}")
    out = Path(args.out)
    tuning = TuningSplit((out / "tuning_data").resolve(), args.tuning_seed, args.tuning_images)
    ruled = [v for v in selected if v.checkpoint_of is None] if args.decoders else []
    for variant in ruled:
        try:
            check_decoder_variant(variant, extra, tuning)
        except UserError as error:
            parser.error(str(error))
    out.mkdir(parents=True, exist_ok=True)
    runs = read_results(out / "results.json")
    done = {(r["name"], int(r["seed"])) for r in runs}
    todo = [(v, s) for v in selected for s in args.seeds if not (args.skip_done and (v.name, s) in done)]
    settings: dict[str, Any] = {"this_call": {"seeds": args.seeds, "extra": extra},
                                "variants": args.variants or args.pairs}
    if args.decoders:
        settings["decoder_rule"] = {"decoders": args.decoders, "tuning_seed": tuning.seed,
                                    "tuning_images": tuning.images, "choose_by": "tuning AP"}

    def record(variant: Variant, seed: int, metrics: dict[str, float], decoded: dict[str, Any] | None = None) -> None:
        runs[:] = [r for r in runs if not (r["name"] == variant.name and int(r["seed"]) == seed)]
        entry = {"name": variant.name, "loss": variant.loss, "seed": seed, "config": variant.config}
        rule = {"decoder": decoded["decoder"], "decoders": decoded["decoders"]} if decoded else {}
        runs.append({**entry, "args": variant.args + extra, "metrics": metrics, **rule})
        write_results(out, runs, variants, settings)  # after every run: an interruption loses nothing finished
        chosen = f" (decoder {decoded['decoder']})" if decoded else ""
        print(f"[compare] {variant.name} seed {seed}: AP {metrics.get('AP', math.nan):.3f}{chosen}", flush=True)

    def job(variant: Variant, seed: int) -> tuple[Any, tuple[Any, ...]]:
        if variant.checkpoint_of is None and not args.evaluate:
            return run_one, (run_args(variant, seed, out, extra), args.threads)
        source = variant.checkpoint_of or variant.name
        checkpoint = str(find_checkpoint(out, source, seed))
        return evaluate_one, (run_args(variant, seed, out, extra, fit=False), checkpoint, args.threads)

    def rule_job(variant: Variant, seed: int) -> tuple[Any, tuple[Any, ...]]:
        checkpoint = str(find_checkpoint(out, variant.name, seed))
        run_dir = str(out / variant.name / f"seed{seed}")
        return decode_with_rule, (run_args(variant, seed, out, extra, fit=False), checkpoint, args.threads, run_dir,
                                  list(args.decoders), tuning)

    def finish(variant: Variant, seed: int, result: dict[str, Any], decoded: bool = False) -> None:
        metrics = result["metrics"] if decoded else result
        if (args.evaluate or decoded) and variant.checkpoint_of is None:  # keep the training wall time of the row
            old = next((r for r in runs if r["name"] == variant.name and int(r["seed"]) == seed), None)
            if old is not None and "wall_s" in old["metrics"]:
                metrics = {**metrics, "wall_s": old["metrics"]["wall_s"]}
        record(variant, seed, metrics, result if decoded else None)

    # evaluations of another variant's checkpoints wait for that variant's training (run after all training);
    # with --decoders, the rule re-evaluates every trained run last (--evaluate: instead of the plain evaluation)
    first = [(v, s) for v, s in todo if v.checkpoint_of is None and not (args.evaluate and args.decoders)]
    later = [(v, s) for v, s in todo if v.checkpoint_of is not None]
    decode = [(v, s) for v, s in todo if v in ruled]
    if decode:
        tuning.ensure()
    for batch, decoded in ((first, False), (later, False), (decode, True)):
        make = rule_job if decoded else job
        if args.jobs == 1:
            for variant, seed in batch:
                fn, fn_args = make(variant, seed)
                finish(variant, seed, fn(*fn_args), decoded)
            continue
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                 initargs=(max(args.threads, 1),)) as pool:
            futures = {}
            for variant, seed in batch:
                fn, fn_args = make(variant, seed)
                futures[pool.submit(fn, *fn_args)] = (variant, seed)
            for future in as_completed(futures):
                finish(*futures[future], future.result(), decoded)
    table = write_results(out, runs, variants, settings)
    plots = write_plots(out, runs)
    summary = decoder_summary(runs)
    if summary:
        plots.append(plot_decoders(summary, out / "decoders.png"))
    quantiles = error_quantile_summary(out, runs)
    if quantiles:
        (out / "error_quantiles.md").write_text(error_quantile_markdown(quantiles) + "\n")
        (out / "error_quantiles.json").write_text(json.dumps(quantiles, indent=1))
    print(table)
    print(f"\nwrote {out / 'results.md'}, {out / 'results.json'} and {len(plots)} plots to {out}")
    return 0


