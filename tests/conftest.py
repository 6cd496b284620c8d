"""Shared fixtures: the test data folder, one torch thread per test, and a tiny `rspose compare` run (real
training, evaluation and per-instance tables)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rspose.data.synthetic import generate_synthetic_coco

DATA = Path(__file__).resolve().parent / "data"
"""The real COCO, CrowdPose and MPII samples kept in the repository (tests/data/README.md: origin, licence)."""


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The folder of real samples: ``coco/``, ``crowdpose/``, ``mpii/``. Read-only: copy before changing a file."""
    return DATA


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A tiny synthetic COCO-format dataset (8 train / 4 val images, seed 1), one per test module."""
    root = tmp_path_factory.mktemp("synth")
    generate_synthetic_coco(root, num_train=8, num_val=4, seed=1)
    return root


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests use small tensors: one intra-op thread is faster and steadier than two on the 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def image_check_cache_in_tmp(tmp_path_factory, monkeypatch):
    """The data module's image-check cache (default ~/.cache/rspose) goes to a folder of this test session."""
    monkeypatch.setenv("RSPOSE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "rspose-cache"))


def compare_args(data: Path) -> list[str]:
    """The LightningCLI arguments that keep a compare run tiny."""
    return [
        "--data.dataset.init_args.root", str(data), "--data.num_workers", "0", "--data.persistent_workers", "false",
        # the size and seed the data was generated with (tiny_compare): other values would regenerate 800 / 200 images
        "--data.dataset.init_args.train_images", "16", "--data.dataset.init_args.val_images", "6", "--data.dataset.init_args.seed", "3",
        "--data.batch_size", "16", "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.num_sanity_val_steps", "0",
    ]


@pytest.fixture(scope="session")
def tiny_compare_args(tiny_compare) -> list[str]:
    return compare_args(tiny_compare.parent / "data")


@pytest.fixture(scope="session")
def tiny_compare(tmp_path_factory) -> Path:
    """`rspose compare` on 16 synthetic images, one short epoch per run, both pairs; returns its output folder."""
    from rspose.compare import main

    root = tmp_path_factory.mktemp("compare")
    data = root / "data"
    generate_synthetic_coco(data, num_train=16, num_val=6, seed=3)
    out = root / "out"
    before = torch.get_num_threads()  # session fixtures are set up before the per-test thread fixture
    torch.set_num_threads(1)
    try:
        code = main(["--out", str(out), "--pairs", "heatmap", "simcc", "--", *compare_args(data)])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return out
