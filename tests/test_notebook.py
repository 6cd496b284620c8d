"""notebooks/correlation.ipynb runs end to end on the per-instance tables of a tiny real `rspose compare` run
(the `tiny_compare` fixture) and saves its PNGs.

The kernel: nbclient starts a kernelspec written into tmp_path (found through JUPYTER_PATH) whose argv is
this test's own interpreter, so the notebook runs in the same venv as pytest whatever kernels are registered
on the machine, and nothing is written outside tmp_path (no `ipykernel install`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "correlation.ipynb"
KERNEL = "rspose-test-python"
PLOTS = ("score_vs_oks", "calibration", "keypoint_correlations", "ap_nms", "side_by_side")


def test_notebook_is_stripped():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "RSPOSE_INSTANCE_TABLES" in code[0].source


def test_notebook_runs_on_a_tiny_run(tmp_path, monkeypatch, tiny_compare):
    # rspose compare writes {out}/{variant}/seed{S}/eval.val.instances.json
    tables = [str(sorted((tiny_compare / name).glob("seed*/eval.val.instances.json"))[0])
              for name in ("heatmap_mse", "heatmap_rs")]
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rspose test", "language": "python",
    }))
    plot_dir = tmp_path / "plots"
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("RSPOSE_INSTANCE_TABLES", ":".join(tables))
    monkeypatch.setenv("RSPOSE_PLOT_DIR", str(plot_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()

    for name in PLOTS:
        png = plot_dir / f"comparison.{name}.png"
        assert png.is_file() and png.stat().st_size > 1000, png
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(PLOTS)
    text = "".join(o.get("text", "") for o in outputs)
    assert "spearman" in text and "heatmap_mse" in text and "heatmap_rs" in text  # labels: the tables' paths
