"""Faults met through the real `rspose` entry point (rspose.main.main, in-process): one error boundary for every
subcommand (one `rspose: error: ...` line, exit code 2; bugs keep their traceback), pickled checkpoints refused
with one message, `init_from` never read back from a checkpoint, `--ckpt_path last`, value ranges checked when the
objects are built, the run id that guards a checkpoint directory, and SIGTERM (a resumable checkpoint, exit 143)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from rspose.cli import run_lightning_cli
from rspose.main import main

ROOT = Path(__file__).resolve().parents[1]


def tiny(synth: Path, out: Path, config: str = "configs/quickstart.yaml", logger: bool = False) -> list[str]:
    args = [
        "--config", str(ROOT / config), "--data.dataset.init_args.root", str(synth), "--data.num_workers", "0",
        "--data.persistent_workers", "false", "--data.batch_size", "4", "--data.val_batch_size", "4",
        "--model.backbone.init_args.width", "8", "--trainer.default_root_dir", str(out),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.limit_train_batches", "1", "--trainer.max_epochs", "1",
    ]
    if not logger:
        args += ["--trainer.logger", "false", "--checkpoint.dirpath", str(out / "ckpt"),
                 "--last_checkpoint.dirpath", str(out / "ckpt")]
    return args


def one_error_line(capsys, code: int) -> str:
    """The command returned 2 and printed exactly one stderr line, `rspose: error: ...`; returns it."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("rspose: error: ")]
    assert code == 2, err[-3000:]
    assert len(error_lines) == 1 and "Traceback" not in err, err[-3000:]
    assert not [line for line in lines if "error" in line.lower() and line not in error_lines], err[-3000:]
    return error_lines[0]


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    run_lightning_cli(["fit", *tiny(synth, out)])
    return out / "ckpt" / "last.ckpt"


@pytest.fixture(scope="module")
def quickstart_ckpt(tmp_path_factory) -> Path:
    """Weights of the quickstart config as it is (what infer and export build)."""
    from rspose.inferencer import build_module

    module, _ = build_module(ROOT / "configs/quickstart.yaml")
    path = tmp_path_factory.mktemp("qs") / "quickstart.ckpt"
    torch.save({"state_dict": module.state_dict()}, path)
    return path


class Evil:
    """Any class: unpickling it would run code of our choosing."""


@pytest.fixture(scope="module")
def pickled(trained, tmp_path_factory) -> Path:
    """A real rspose checkpoint with one pickled object added (what weights-only loading refuses)."""
    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    ckpt["extra"] = Evil()
    path = tmp_path_factory.mktemp("evil") / "evil.ckpt"
    torch.save(ckpt, path)
    return path


@pytest.fixture()
def no_pickle(monkeypatch):
    monkeypatch.delenv("RSPOSE_ALLOW_PICKLE", raising=False)
    monkeypatch.delenv("RSPOSE_DEBUG", raising=False)


@pytest.mark.parametrize("how", ["--ckpt_path", "--model.init_from", "infer", "export"])
def test_pickled_checkpoint_is_refused_with_one_message(synth, pickled, tmp_path, capsys, no_pickle, how):
    config = str(ROOT / "configs/quickstart.yaml")
    if how == "infer":
        args = ["infer", "--config", config, "--ckpt_path", str(pickled), "--input",
                str(ROOT / "tests/data/coco/000000000785.jpg"), "--out", str(tmp_path / "out"), "--no_overlays"]
    elif how == "export":
        args = ["export", "--config", config, "--ckpt_path", str(pickled), "--out", str(tmp_path / "m.onnx")]
    else:
        args = ["validate", *tiny(synth, tmp_path), how, str(pickled)]
    line = one_error_line(capsys, main(args))
    assert "evil.ckpt" in line and "RSPOSE_ALLOW_PICKLE=1" in line, line


def test_pickled_checkpoint_loads_with_the_opt_in(synth, pickled, tmp_path, monkeypatch):
    monkeypatch.setenv("RSPOSE_ALLOW_PICKLE", "1")
    with pytest.warns(UserWarning, match="RSPOSE_ALLOW_PICKLE is set"):
        cli = run_lightning_cli(["validate", *tiny(synth, tmp_path), "--ckpt_path", str(pickled)])
    assert "val/AP" in cli.trainer.callback_metrics


@pytest.mark.parametrize("how", ["--ckpt_path", "--model.init_from"])
def test_text_file_as_checkpoint_is_one_message(synth, tmp_path, capsys, no_pickle, how):
    text = tmp_path / "notes.ckpt"
    text.write_text("these are my notes, not a checkpoint\n")
    line = one_error_line(capsys, main(["validate", *tiny(synth, tmp_path), how, str(text)]))
    assert "notes.ckpt" in line and "not a PyTorch checkpoint" in line, line


def test_heatmap_checkpoint_into_simcc_config_names_the_keys(synth, trained, tmp_path, capsys, no_pickle):
    code = main(["validate", *tiny(synth, tmp_path, "configs/quickstart_simcc.yaml"), "--ckpt_path", str(trained)])
    line = one_error_line(capsys, code)
    assert "does not fit the model of this config" in line and "model.head." in line, line


def test_init_from_is_never_read_back_from_a_checkpoint(synth, trained, tmp_path):
    """A fine-tuned run (fit --model.init_from W): its checkpoint holds the weights; validate/test --ckpt_path
    must not read W again (here W has moved away)."""
    weights = tmp_path / "start.ckpt"
    shutil.copy(trained, weights)
    run = tmp_path / "finetune"
    run_lightning_cli(["fit", *tiny(synth, run), "--model.init_from", str(weights)])
    last = run / "ckpt" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]["init_from"] == str(weights)
    weights.rename(tmp_path / "moved.ckpt")
    for sub in ("validate", "test"):
        cli = run_lightning_cli([sub, *tiny(synth, tmp_path / sub), "--ckpt_path", str(last)])
        assert cli.model.hparams.init_from is None and cli.model.hparams.init_from_strict is True
    from rspose.models import HeatmapHead, TinyConvBackbone
    from rspose.module import PoseLitModule

    dm = cli.datamodule
    module = PoseLitModule.load_from_checkpoint(last, backbone=TinyConvBackbone(width=8), head=HeatmapHead(
        deconv_out_channels=[], deconv_kernel_sizes=[]), codec=dm.codec, spec=dm.spec, loss=cli.model.loss,
        weights_only=True)
    assert module.hparams.init_from is None


@pytest.mark.parametrize(("extra", "names"), [
    (["--data.batch_size", "0"], "data.batch_size: 0, expected an integer >= 1"),
    (["--trainer.max_epochs", "-1"], "trainer.max_epochs: -1 (train until stopped) with model.lr_schedule cosine"),
    (["--trainer.max_epochs", "-3"], "trainer.max_epochs: -3, expected an integer >= 1"),
    (["--model.lr", "-0.01"], "model.lr: -0.01, expected a finite number > 0"),
    (["--data.bbox_padding", "0"], "data.bbox_padding: 0.0, expected a finite number > 0"),
    (["--data.bbox_padding", "-1"], "data.bbox_padding: -1.0, expected a finite number > 0"),
    (["--predict_writer.nms_thr", "1.5"], "predict_writer.nms_thr: 1.5, expected a finite number in [0, 1]"),
    # a loss refusing its value inside jsonargparse's union handling: the loss's own message, not the wrapper's
    (["--model.loss.init_args.delta", "-1"], "rspose: error: SpatialRSLoss: delta must be >= 0, got -1.0"),
])
def test_value_ranges_are_checked_when_built(synth, tmp_path, capsys, no_pickle, extra, names):
    line = one_error_line(capsys, main(["fit", *tiny(synth, tmp_path), *extra]))
    assert names in line, line
    assert not (tmp_path / "ckpt").exists()


def output_args(sub: str, synth: Path, ckpt: Path, out: Path) -> list[str]:
    if sub == "fit":
        return ["fit", *tiny(synth, out)]
    common = ["--config", str(ROOT / "configs/quickstart.yaml"), "--ckpt_path", str(ckpt)]
    if sub == "infer":
        return ["infer", *common, "--input", str(ROOT / "tests/data/coco/000000000785.jpg"), "--out", str(out)]
    return ["export", *common, "--out", str(out / "model.onnx")]


@pytest.mark.parametrize("sub", ["fit", "infer", "export"])
def test_output_folder_under_a_file_is_one_message(synth, quickstart_ckpt, tmp_path, capsys, no_pickle, sub):
    if sub == "export":
        pytest.importorskip("onnx")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    line = one_error_line(capsys, main(output_args(sub, synth, quickstart_ckpt, blocker / "out")))
    assert str(blocker) in line, line


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("sub", ["fit", "infer", "export"])
def test_unwritable_output_folder_is_one_message(synth, quickstart_ckpt, tmp_path, capsys, no_pickle, sub):
    if sub == "export":
        pytest.importorskip("onnx")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = one_error_line(capsys, main(output_args(sub, synth, quickstart_ckpt, locked / "out")))
        assert "Permission denied" in line and str(locked) in line, line
    finally:
        locked.chmod(0o755)


def test_argparse_errors_use_the_same_one_line(capsys, no_pickle):
    for sub in ("infer", "export", "compare", "synth"):
        line = one_error_line(capsys, main([sub, "--no_such_flag"]))
        assert line.startswith(f"rspose: error: {sub}: ") and f"rspose {sub} --help" in line, line


def test_value_error_while_preparing_the_run_is_still_a_user_error(synth, tmp_path, capsys, no_pickle):
    """A check of rspose's that runs when the optimizer is built (layer_decay needs a ViT backbone) refuses a config
    value: one line, exit 2, as before."""
    line = one_error_line(capsys, main(["fit", *tiny(synth, tmp_path), "--model.layer_decay", "0.75"]))
    assert "layer_decay=0.75 needs a backbone with num_layers" in line, line


def test_infer_value_ranges(quickstart_ckpt, tmp_path, capsys, no_pickle):
    args = ["infer", "--config", str(ROOT / "configs/quickstart.yaml"), "--ckpt_path", str(quickstart_ckpt),
            "--input", str(ROOT / "tests/data/coco/000000000785.jpg"), "--out", str(tmp_path / "out")]
    line = one_error_line(capsys, main([*args, "--nms_thr", "2"]))
    assert line == "rspose: error: infer --nms_thr: 2.0, expected a finite number in [0, 1]", line
    line = one_error_line(capsys, main([*args, "--batch_size", "0"]))
    assert line == "rspose: error: infer --batch_size: 0, expected an integer >= 1", line


def test_a_plain_value_error_of_our_own_code_keeps_its_traceback():
    """A ValueError raised by rspose at run time (here the metric's check, called wrongly) is a bug, not a user
    error: it is not turned into a one-line message."""
    import numpy as np

    from rspose.errors import user_error_message
    from rspose.metrics.coco_ap import KeypointPredictions, deduplicate

    kp = np.random.default_rng(0).uniform(0, 100, (2, 17, 2))
    preds = KeypointPredictions(np.array([7, 7]), np.ones(2, dtype=np.int64), kp, np.full((2, 17), 0.5),
                                np.ones(2), np.full(2, 100.0))
    with pytest.raises(ValueError) as info:
        deduplicate(preds)
    assert user_error_message(info.value) is None


def test_ckpt_path_last_resumes_the_latest_run_or_says_there_is_none(synth, tmp_path, capsys, no_pickle):
    line = one_error_line(capsys, main(["fit", *tiny(synth, tmp_path, logger=True), "--ckpt_path", "last"]))
    assert "--ckpt_path last: no last.ckpt in" in line and "no earlier run" in line, line
    first = run_lightning_cli(["fit", *tiny(synth, tmp_path, logger=True)])
    assert first.trainer.global_step == 1
    again = run_lightning_cli(["fit", *tiny(synth, tmp_path, logger=True), "--ckpt_path", "last",
                               "--trainer.max_epochs", "2"])
    assert again.trainer.global_step == 2 and again.trainer.current_epoch == 2  # continued, not from scratch
    # without a logger: the same command resumes instead of being refused as "another run"
    bare = tmp_path / "bare"
    run_lightning_cli(["fit", *tiny(synth, bare)])
    resumed = run_lightning_cli(["fit", *tiny(synth, bare), "--ckpt_path", "last", "--trainer.max_epochs", "2"])
    assert resumed.trainer.global_step == 2


class StartSecondRun(Callback):
    """After the first training batch of run A (before A saves anything), run B starts in the same directory and
    finishes: A must then refuse to save over B's checkpoints."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.done = False

    def on_train_batch_end(self, trainer, *args) -> None:
        if not self.done:
            self.done = True
            run_lightning_cli(self.args)


def test_second_run_in_the_same_checkpoint_directory_is_caught_at_save_time(synth, tmp_path, capsys, no_pickle):
    from rspose.errors import UserError

    common = tmp_path / "one_ckpt_dir"
    a = tiny(synth, tmp_path / "a") + ["--checkpoint.dirpath", str(common), "--last_checkpoint.dirpath", str(common)]
    b = tiny(synth, tmp_path / "b") + ["--checkpoint.dirpath", str(common), "--last_checkpoint.dirpath", str(common),
                                       "--model.lr", "0.001", "--overwrite", "true"]
    cli = run_lightning_cli(a, run=False)
    cli.trainer.callbacks.append(StartSecondRun(["fit", *b]))
    b_saved = None
    with pytest.raises(UserError, match=f"{common}: another run .* this run stops without overwriting them"):
        try:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        finally:
            b_saved = torch.load(common / "last.ckpt", map_location="cpu", weights_only=True)
    assert b_saved["hyper_parameters"]["lr"] == 0.001  # B's checkpoint is still there, not overwritten by A
    # without --overwrite, B would have been refused at start-up: A's run id was already in the directory
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".rspose_run_id").write_text("someone\n")
    line = one_error_line(capsys, main(["fit", *tiny(synth, tmp_path / "c"), "--checkpoint.dirpath", str(fresh),
                                        "--last_checkpoint.dirpath", str(fresh)]))
    assert str(fresh) in line and "--overwrite true" in line, line


class SigtermAfterFirstStep(Callback):
    """Sends this process SIGTERM (as a cluster does before pre-emption) after the first training step."""

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)  # the handler runs; Lightning raises at the end of this batch


def test_sigterm_saves_a_resumable_checkpoint_and_exits_143(synth, tmp_path):
    args = tiny(synth, tmp_path) + ["--trainer.limit_train_batches", "2", "--trainer.max_epochs", "3"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "lightning_cli.py"), "fit", *args,
         "--trainer.callbacks+=test_cli_faults.SigtermAfterFirstStep"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    last = tmp_path / "ckpt" / "last.ckpt"
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert f"rspose: terminated by SIGTERM: saved a resumable checkpoint {last}" in proc.stderr, proc.stderr[-3000:]
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 1 and saved["epoch"] == 0 and saved["optimizer_states"] and saved["loops"]
    resumed = run_lightning_cli(["fit", *args, "--ckpt_path", str(last)])
    # 3 epochs of 2 batches: the step saved at the signal plus the 5 left, none repeated or lost
    assert resumed.trainer.global_step == 6
    assert resumed.trainer.current_epoch == 3


def test_path_errors_are_user_errors():
    """An unwritable output folder (PermissionError) is reported as one message naming the path; run as a unit
    check because the tests may run as root, for whom a read-only folder is writable."""
    from rspose.errors import user_error_message

    for exc in (PermissionError(13, "Permission denied", "/data/out"), NotADirectoryError(20, "Not a directory",
                                                                                         "/data/file/out")):
        assert user_error_message(exc) == f"[Errno {exc.errno}] {exc.strerror}: '{exc.filename}'"
