"""Plots of the confidence / localisation-quality correlation read from per-instance tables.

``rspose validate`` writes ``{prefix}.instances.json`` through the metric; one file is one *run*::

    {"meta": {"keypoint_names": [K names] | null, "sigmas": [K floats],
              "metrics": {"AP": float, "AP50": float, "spearman": float, "spearman_before_nms": float,
                          "AP_before_nms": float (optional), ...}},
     "instances": [{"instance_id": int, "image_id": int, "score": float, "bbox_score": float, "oks": float,
                    "kept": bool, "keypoint_scores": [K floats], "keypoint_oks": [K floats | null] | null}, ...]}

``kept`` says whether the prediction survived OKS-NMS; ``oks`` is its OKS with the best-matching ground truth
of its image and ``keypoint_oks[k]`` the per-keypoint term exp(-e_k) (null where the ground truth keypoint is
not labelled). Every plot takes one or several runs, ``{label: table}`` (a single table is accepted too), and
returns a :class:`matplotlib.figure.Figure` (built without pyplot, so it works under Agg, in scripts and in
notebooks), saved as a PNG when ``out`` is given. Correlations are those of the *kept* predictions unless
said otherwise, computed here from the table with scipy (they should match ``meta.metrics``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rspose.json_file import load_json
from rspose.metrics.correlation import kendall, pearson, spearman
from rspose.metrics.instances import INSTANCE_KEYS, META_KEYS, validate_instances  # noqa: F401 (re-exported)
from rspose.metrics.instances import read_instances as load_instances  # noqa: F401 (re-exported)

Table = dict[str, Any]
Runs = Mapping[str, Table] | Table

MAX_SCATTER_POINTS = 20000


def run_label(path: str | Path) -> str:
    """Label of a run from its file name: ``out/val.instances.json`` -> ``val``."""
    name = Path(path).name
    for suffix in (".instances.json", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_runs(paths: Sequence[str | Path]) -> dict[str, Table]:
    """Load several tables into ``{label: table}``; labels are file stems, prefixed by the folder when they clash."""
    labels = [run_label(p) for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{Path(p).parent.name}/{lab}" for p, lab in zip(paths, labels)]
    if len(set(labels)) < len(labels):
        labels = [str(p) for p in paths]
    return {lab: load_instances(p) for lab, p in zip(labels, paths)}


@dataclass(frozen=True)
class InstanceArrays:
    """A table as arrays. N instances, K keypoints; missing OKS values are NaN.

    score, bbox_score, oks: (N,) float64; kept: (N,) bool; keypoint_scores, keypoint_oks: (N, K) float64.
    """

    score: np.ndarray
    bbox_score: np.ndarray
    oks: np.ndarray
    kept: np.ndarray
    keypoint_scores: np.ndarray
    keypoint_oks: np.ndarray
    keypoint_names: tuple[str, ...]


def instance_arrays(table: Table) -> InstanceArrays:
    """Convert a loaded table to :class:`InstanceArrays`."""
    k = len(table["meta"]["sigmas"])
    insts = table["instances"]
    nan_row = [math.nan] * k
    names = table["meta"]["keypoint_names"] or [f"kpt{j}" for j in range(k)]
    return InstanceArrays(
        score=np.array([d["score"] for d in insts], dtype=np.float64),
        bbox_score=np.array([d["bbox_score"] for d in insts], dtype=np.float64),
        oks=np.array([math.nan if d["oks"] is None else d["oks"] for d in insts], dtype=np.float64),
        kept=np.array([bool(d["kept"]) for d in insts], dtype=bool),
        keypoint_scores=np.array([d["keypoint_scores"] for d in insts], dtype=np.float64).reshape(len(insts), k),
        keypoint_oks=np.array(
            [nan_row if d["keypoint_oks"] is None else d["keypoint_oks"] for d in insts], dtype=np.float64
        ).reshape(len(insts), k),
        keypoint_names=tuple(names),
    )


def correlation(x: np.ndarray, y: np.ndarray, kind: Literal["spearman", "pearson", "kendall"] = "spearman") -> float:
    """Correlation of the finite pairs of x and y with :mod:`rspose.metrics.correlation` (the metric's own
    functions); NaN with fewer than 2 pairs or a constant side."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float({"spearman": spearman, "pearson": pearson, "kendall": kendall}[kind](x, y))


def keypoint_correlations(table: Table, kept_only: bool = True) -> np.ndarray:
    """(K,) Spearman of keypoint score vs keypoint OKS term per keypoint type (labelled keypoints only)."""
    a = instance_arrays(table)
    rows = a.kept if kept_only else np.ones_like(a.kept)
    return np.array(
        [correlation(a.keypoint_scores[rows, j], a.keypoint_oks[rows, j]) for j in range(a.keypoint_scores.shape[1])]
    )


def calibration_curve(table: Table, bins: int = 10, kept_only: bool = True) -> dict[str, Any]:
    """Mean OKS per score bin of the (kept) predictions.

    Bins are ``bins`` equal intervals of [min(0, min score), max(1, max score)]; the last one is closed.
    Returns edges (bins + 1,), count (bins,), mean_score and mean_oks (bins,; NaN where empty) and
    ece = sum_b count_b / N * |mean_score_b - mean_oks_b| (NaN without predictions).
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    a = instance_arrays(table)
    rows = (a.kept if kept_only else np.ones_like(a.kept)) & np.isfinite(a.oks) & np.isfinite(a.score)
    s, q = a.score[rows], a.oks[rows]
    lo = min(0.0, float(s.min())) if s.size else 0.0
    hi = max(1.0, float(s.max())) if s.size else 1.0
    edges = np.linspace(lo, hi, bins + 1)
    idx = np.clip(np.floor((s - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(idx, weights=s, minlength=bins) / count
        mean_oks = np.bincount(idx, weights=q, minlength=bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] * np.abs(mean_score[filled] - mean_oks[filled])) / s.size) if s.size else math.nan
    return {"edges": edges, "count": count, "mean_score": mean_score, "mean_oks": mean_oks, "ece": ece}


def correlation_summary(runs: Runs) -> list[dict[str, Any]]:
    """One row per run: n (kept), n_total, spearman / pearson / kendall of score vs OKS of the kept predictions,
    spearman_keypoint (mean over keypoint types of the per-keypoint Spearman), spearman_before_nms (all
    predictions), and AP / AP_before_nms from meta.metrics (None when absent)."""
    rows = []
    for label, table in _as_runs(runs).items():
        a = instance_arrays(table)
        kp = keypoint_correlations(table)
        metrics = table["meta"]["metrics"]
        rows.append({
            "run": label,
            "n": int(a.kept.sum()),
            "n_total": int(a.kept.size),
            "spearman": correlation(a.score[a.kept], a.oks[a.kept], "spearman"),
            "pearson": correlation(a.score[a.kept], a.oks[a.kept], "pearson"),
            "kendall": correlation(a.score[a.kept], a.oks[a.kept], "kendall"),
            "spearman_keypoint": float(np.nanmean(kp)) if np.isfinite(kp).any() else math.nan,
            "spearman_before_nms": correlation(a.score, a.oks, "spearman"),
            "AP": metrics.get("AP"),
            "AP_before_nms": metrics.get("AP_before_nms"),
        })
    return rows


def format_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """Fixed-width text table of :func:`correlation_summary` rows (floats with 3 decimals, None as n/a)."""
    if not rows:
        return "(no runs)"
    cols = list(rows[0])

    def cell(v: Any) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.3f}"
        return str(v)

    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))) for row in cells]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- plots


def plot_score_vs_oks(runs: Runs, out: str | Path | None = None, max_points: int = MAX_SCATTER_POINTS) -> Figure:
    """Scatter of score (x) vs OKS (y) of the kept predictions, one panel per run (4.5 x 4 in each, 100 dpi).

    Spearman is in each panel title (computed on all kept points; at most ``max_points`` are drawn).
    """
    runs = _as_runs(runs)
    fig = Figure(figsize=(4.5 * len(runs), 4.0), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(runs), squeeze=False, sharey=True)[0]
    for i, (ax, (label, table)) in enumerate(zip(axes, runs.items())):
        _draw_scatter(ax, label, table, _color(i), max_points)
    return _finish(fig, out)


def plot_keypoint_correlations(runs: Runs, out: str | Path | None = None) -> Figure:
    """Grouped bars: per-keypoint Spearman of keypoint score vs keypoint OKS, one bar per run and keypoint.

    Width max(6, 0.45 K + 2) in, height 4 in, 100 dpi. Runs must share the keypoint layout.
    """
    runs = _as_runs(runs)
    k = _common_k(runs)
    fig = Figure(figsize=(max(6.0, 0.45 * k + 2.0), 4.0), dpi=100, layout="constrained")
    _draw_keypoint_bars(fig.subplots(), runs)
    return _finish(fig, out)


def plot_calibration(runs: Runs, bins: int = 10, out: str | Path | None = None) -> Figure:
    """Mean OKS per score bin (kept predictions) with the y = x diagonal; one curve per run (5 x 4.5 in, 100 dpi)."""
    fig = Figure(figsize=(5.0, 4.5), dpi=100, layout="constrained")
    _draw_calibration(fig.subplots(), _as_runs(runs), bins)
    return _finish(fig, out)


def plot_ap_before_after_nms(runs: Runs, out: str | Path | None = None) -> Figure:
    """Bars of AP_before_nms and AP (meta.metrics) per run; "n/a" where a value is absent (max(5, 1.6 R + 2) x 4 in)."""
    runs = _as_runs(runs)
    fig = Figure(figsize=(max(5.0, 1.6 * len(runs) + 2.0), 4.0), dpi=100, layout="constrained")
    _draw_ap_bars(fig.subplots(), runs)
    return _finish(fig, out)


DECOMPOSITION_KEYS: tuple[str, ...] = ("AP", "AP_oracle")


def load_compare_results(results: str | Path | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``runs`` list of a compare ``results.json`` ({"runs": [{"name", "loss", "seed", "metrics": {...}}]}),
    from a path or the loaded dict; errors name the source and the missing key."""
    source = str(results) if not isinstance(results, Mapping) else "<results>"
    if not isinstance(results, Mapping):
        results = load_json(results, "compare results file")
    runs = results.get("runs") if isinstance(results, Mapping) else None
    if not isinstance(runs, list):
        raise ValueError(f"{source}: expected an object with a 'runs' list")
    for i, run in enumerate(runs):
        for key in ("name", "metrics"):
            if not isinstance(run, Mapping) or key not in run:
                raise ValueError(f"{source}: runs[{i}] is missing key {key!r} (expected name, loss, seed, metrics)")
    return runs


def plot_decomposition(results: str | Path | Mapping[str, Any], out: str | Path | None = None) -> Figure:
    """Per run of a compare results.json: bars of AP and AP_oracle (the AP with each prediction scored by its OKS,
    see docs/metrics.md), the scoring gap AP_oracle - AP written above each pair, and oks_median / spearman
    below the run name when present. "n/a" where a value is absent. Size max(5, 1.6 R + 2) x 4.5 in, 100 dpi."""
    runs = load_compare_results(results)
    fig = Figure(figsize=(max(5.0, 1.6 * len(runs) + 2.0), 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(runs))
    for j, (key, shade) in enumerate(zip(DECOMPOSITION_KEYS, (1.0, 0.45))):
        for i, run in enumerate(runs):
            value = run["metrics"].get(key)
            ok = isinstance(value, int | float) and math.isfinite(value)
            ax.bar(x[i] - 0.2 + 0.4 * j, value if ok else 0.0, 0.38, color=_color(j), alpha=shade,
                   label=key if i == 0 else None)
            ax.text(x[i] - 0.2 + 0.4 * j, (value if ok else 0.0) + 0.01, f"{value:.3f}" if ok else "n/a",
                    ha="center", va="bottom", fontsize=8)
    labels = []
    for i, run in enumerate(runs):
        m = run["metrics"]
        gap = m.get("scoring_gap")
        if not isinstance(gap, int | float) and all(isinstance(m.get(k), int | float) for k in DECOMPOSITION_KEYS):
            gap = m["AP_oracle"] - m["AP"]
        ax.text(x[i], 1.12, f"gap {gap:+.3f}" if isinstance(gap, int | float) else "gap n/a", ha="center",
                fontsize=8)
        extra = [f"{k} {_fmt(m[k])}" for k in ("oks_median", "spearman") if isinstance(m.get(k), int | float)]
        seed = f" s{run['seed']}" if "seed" in run else ""
        labels.append("\n".join([f"{run['name']}{seed}", *extra]))
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("AP")
    ax.set_ylim(0.0, 1.25)
    ax.set_title("AP vs AP_oracle (scores replaced by OKS): the scoring gap")
    ax.legend(fontsize=8, loc="upper left", ncols=2)
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, out)


def plot_runs_side_by_side(runs: Runs, bins: int = 10, out: str | Path | None = None,
                           max_points: int = MAX_SCATTER_POINTS) -> Figure:
    """Comparison grid: top row, the score-vs-OKS scatter of each run (shared OKS axis; scores differ in scale across losses); bottom row, calibration,
    per-keypoint Spearman and AP before/after NMS of all runs. Size max(15, 4.5 R) x 9 in, 100 dpi."""
    runs = _as_runs(runs)
    fig = Figure(figsize=(max(15.0, 4.5 * len(runs)), 9.0), dpi=100, layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    axes = top.subplots(1, len(runs), squeeze=False, sharey=True)[0]
    for i, (ax, (label, table)) in enumerate(zip(axes, runs.items())):
        _draw_scatter(ax, label, table, _color(i), max_points)
    ax_cal, ax_kpt, ax_ap = bottom.subplots(1, 3, width_ratios=[1.0, 2.0, 1.0])
    _draw_calibration(ax_cal, runs, bins)
    _common_k(runs)
    _draw_keypoint_bars(ax_kpt, runs)
    _draw_ap_bars(ax_ap, runs)
    fig.suptitle("Confidence vs localisation quality (OKS)")
    return _finish(fig, out)


# ---------------------------------------------------------------------------------------------- drawing


def _draw_scatter(ax: Axes, label: str, table: Table, color: Any, max_points: int) -> None:
    a = instance_arrays(table)
    s, q = a.score[a.kept], a.oks[a.kept]
    rho = correlation(s, q)
    shown = np.arange(s.size)
    if s.size > max_points:
        shown = np.sort(np.random.default_rng(0).choice(s.size, max_points, replace=False))
    ax.scatter(s[shown], q[shown], s=4, alpha=0.35, color=color, edgecolors="none", rasterized=True)
    ax.set_title(f"{label}: Spearman {_fmt(rho)} (n={s.size})")
    ax.set_xlabel("prediction score")
    ax.set_ylabel("OKS with best-matching GT")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


def _draw_keypoint_bars(ax: Axes, runs: Mapping[str, Table]) -> None:
    names = instance_arrays(next(iter(runs.values()))).keypoint_names
    k, r = len(names), len(runs)
    width = 0.8 / r
    x = np.arange(k)
    for i, (label, table) in enumerate(runs.items()):
        rho = keypoint_correlations(table)
        mean = float(np.nanmean(rho)) if np.isfinite(rho).any() else math.nan
        ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(rho), width, color=_color(i),
               label=f"{label} (mean {_fmt(mean)})")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("Spearman(keypoint score, keypoint OKS)")
    ax.set_title("Per-keypoint correlation (kept predictions)")
    ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.25)
    ax.legend(fontsize=8, loc="upper center", ncols=min(r, 4))
    ax.grid(axis="y", alpha=0.3)


def _draw_calibration(ax: Axes, runs: Mapping[str, Table], bins: int) -> None:
    hi = 1.0
    for i, (label, table) in enumerate(runs.items()):
        cal = calibration_curve(table, bins)
        filled = cal["count"] > 0
        hi = max(hi, float(cal["edges"][-1]))
        ax.plot(cal["mean_score"][filled], cal["mean_oks"][filled], "o-", color=_color(i),
                label=f"{label} (ECE {_fmt(cal['ece'])})")
    ax.plot([0.0, hi], [0.0, hi], "--", color="gray", linewidth=1.0, label="score = OKS")
    ax.set_xlabel(f"mean score per bin ({bins} bins)")
    ax.set_ylabel("mean OKS per bin")
    ax.set_title("Calibration (kept predictions)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _draw_ap_bars(ax: Axes, runs: Mapping[str, Table]) -> None:
    x = np.arange(len(runs))
    for j, (key, text, shade) in enumerate((("AP_before_nms", "before NMS", 0.45), ("AP", "after NMS", 1.0))):
        for i, table in enumerate(runs.values()):
            value = table["meta"]["metrics"].get(key)
            pos = x[i] - 0.2 + 0.4 * j
            ok = isinstance(value, int | float) and math.isfinite(value)
            ax.bar(pos, value if ok else 0.0, 0.38, color=_color(i), alpha=shade,
                   hatch=None if j else "//", label=text if i == 0 else None)
            ax.text(pos, (value if ok else 0.0) + 0.01, f"{value:.3f}" if ok else "n/a", ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(x, list(runs), rotation=20, ha="right")
    ax.set_ylabel("AP")
    ax.set_ylim(0.0, 1.25)
    ax.set_title("AP before / after OKS-NMS")
    ax.legend(fontsize=8, loc="upper center", ncols=2)
    ax.grid(axis="y", alpha=0.3)


# ---------------------------------------------------------------------------------------------- helpers


def _as_runs(runs: Runs) -> dict[str, Table]:
    if isinstance(runs, Mapping) and "instances" in runs and "meta" in runs:
        return {"run": dict(runs)}
    runs = dict(runs)
    if not runs:
        raise ValueError("no runs given: expected {label: table loaded with load_instances}")
    for label, table in runs.items():
        if not isinstance(table, Mapping) or "instances" not in table or "meta" not in table:
            raise ValueError(f"run {label!r} is not an instance table (expected keys 'meta' and 'instances')")
    return runs


def _common_k(runs: Mapping[str, Table]) -> int:
    ks = {label: len(t["meta"]["sigmas"]) for label, t in runs.items()}
    if len(set(ks.values())) != 1:
        raise ValueError(f"runs have different numbers of keypoints {ks}; per-keypoint plots need one layout")
    return next(iter(ks.values()))


def _color(i: int) -> Any:
    return f"C{i % 10}"


def _fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _finish(fig: Figure, out: str | Path | None) -> Figure:
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=fig.dpi)
    return fig
