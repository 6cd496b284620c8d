"""`rspose compare` end to end on tiny synthetic data: the table (Markdown + JSON), per-instance tables, plots."""

from __future__ import annotations

import json

import cv2

from rspose.compare import COLUMNS
from rspose.viz import load_instances


def test_compare_writes_table_tables_and_plots(tiny_compare):
    results = json.loads((tiny_compare / "results.json").read_text())
    runs = results["results"]
    assert set(runs) == {"heatmap_mse", "heatmap_rs", "simcc_kl", "simcc_rs"}
    for name, metrics in runs.items():
        for key in ("AP", "AP50", "AP75", "AR", "spearman", "spearman_keypoint", "spearman_before_nms"):
            assert key in metrics, (name, key)
        assert -1.0 <= metrics["AP"] <= 1.0 and metrics["wall_s"] > 0
        table = load_instances(tiny_compare / f"{name}.val.instances.json")
        # the table's metrics are the ones the run reported
        assert abs(table["meta"]["metrics"]["AP"] - metrics["AP"]) < 1e-9
    markdown = (tiny_compare / "results.md").read_text()
    assert all(column in markdown for column in COLUMNS) and markdown.count("\n| ") == 4  # one row per run
    assert results["settings"]["delta"] == 0.5 and results["settings"]["lambda"] == 1.0
    for stem in ("score_vs_oks", "calibration", "keypoint_correlations", "ap_nms", "side_by_side"):
        image = cv2.imread(str(tiny_compare / f"{stem}.png"))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, stem
