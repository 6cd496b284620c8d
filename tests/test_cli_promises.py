"""What the `rspose` command promises (docs/cli.md): typed values win over a checkpoint's hyperparameters, last.ckpt
after every training epoch, no evaluation of random weights by accident, one-message user errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rspose.cli import run_lightning_cli
from rspose.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def tiny(synth: Path, out: Path) -> list[str]:
    return [
        "--config", str(ROOT / "configs/quickstart.yaml"),
        "--data.dataset.init_args.root", str(synth),
        "--data.num_workers", "0",
        "--data.persistent_workers", "false",
        "--data.batch_size", "4",
        "--data.val_batch_size", "4",
        "--model.backbone.init_args.width", "8",
        "--trainer.default_root_dir", str(out),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger", "false",
        "--trainer.limit_train_batches", "1",
        "--checkpoint.dirpath", str(out / "ckpt"),
        "--last_checkpoint.dirpath", str(out / "ckpt"),
    ]


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory) -> Path:
    """last.ckpt of a 1-epoch run whose saved hparams differ from the defaults: flip_test true,
    keypoint_score_thr 0.35 and an output prefix of its own."""
    out = tmp_path_factory.mktemp("trained")
    run_lightning_cli(["fit", *tiny(synth, out), "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1",
                       "--model.keypoint_score_thr", "0.35", "--model.eval_outfile_prefix", str(out / "theirs")])
    for stale in out.glob("theirs.*"):
        stale.unlink()
    hparams = torch.load(out / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hparams["flip_test"] is True and hparams["keypoint_score_thr"] == 0.35  # what the test relies on
    assert hparams["eval_outfile_prefix"] == str(out / "theirs")
    return out / "ckpt" / "last.ckpt"


def test_typed_values_win_over_checkpoint_hparams(synth, trained, tmp_path):
    prefix = tmp_path / "mine"
    cli = run_lightning_cli(["validate", *tiny(synth, tmp_path), "--ckpt_path", str(trained),
                             "--model.eval_outfile_prefix", str(prefix), "--model.flip_test", "false"])
    assert cli.model.hparams.flip_test is False
    assert cli.model.hparams.eval_outfile_prefix == str(prefix)
    assert (tmp_path / "mine.val.keypoints.json").is_file() and (tmp_path / "mine.val.instances.json").is_file()
    assert not list(trained.parent.parent.glob("theirs.*"))
    # what the user did not type is filled from the checkpoint
    assert cli.model.hparams.keypoint_score_thr == 0.35


def test_checkpoint_does_not_choose_output_paths(synth, trained, tmp_path):
    cli = run_lightning_cli(["validate", *tiny(synth, tmp_path), "--ckpt_path", str(trained)])
    assert cli.model.hparams.eval_outfile_prefix is None
    assert not list(trained.parent.parent.glob("theirs.*"))
    assert cli.model.hparams.flip_test is True  # not typed: from the checkpoint


def test_last_ckpt_after_every_training_epoch_without_validation(synth, tmp_path):
    # quickstart validates every 12 epochs: 2 epochs run no validation at all
    run_lightning_cli(["fit", *tiny(synth, tmp_path), "--trainer.max_epochs", "2"])
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file()
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["epoch"] == 1 and saved["global_step"] == 2  # written at the end of the second epoch


@pytest.mark.parametrize("sub", ["validate", "test"])
def test_evaluating_random_weights_needs_opt_in(synth, tmp_path, sub):
    with pytest.raises(UserError, match="--allow_random_weights"):
        run_lightning_cli([sub, *tiny(synth, tmp_path)])
    cli = run_lightning_cli([sub, *tiny(synth, tmp_path), "--allow_random_weights", "true"])
    assert f"{'val' if sub == 'validate' else 'test'}/AP" in cli.trainer.callback_metrics


def test_backbone_checkpoint_counts_as_weights(synth, tmp_path):
    from rspose.models import TinyConvBackbone

    weights = tmp_path / "backbone.pt"
    torch.save(TinyConvBackbone(width=8).state_dict(), weights)
    cli = run_lightning_cli(["validate", *tiny(synth, tmp_path), "--model.backbone.init_args.checkpoint", str(weights)])
    assert "val/AP" in cli.trainer.callback_metrics


def rspose(args: list[str], debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("RSPOSE_DEBUG", None)
    if debug:
        env["RSPOSE_DEBUG"] = "1"
    return subprocess.run([sys.executable, str(ROOT / "lightning_cli.py"), *args], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("extra", "names"), [
    (["--model.no_such_option", "3"], "no_such_option"),
    (["--model.num_keypoints", "14"], "num_keypoints=14"),
])
def test_user_error_is_one_message_with_exit_code_2(synth, tmp_path, extra, names):
    proc = rspose(["fit", *tiny(synth, tmp_path), *extra])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) <= 3 and names in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    debug = rspose(["fit", *tiny(synth, tmp_path), *extra], debug=True)
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr


def test_bug_is_not_hidden():
    from rspose.errors import user_error_message

    try:
        torch.zeros(2).view(3)
    except RuntimeError as exc:
        assert user_error_message(exc) is None
    try:
        int("x")  # a ValueError raised outside rspose's own code
    except ValueError as exc:
        assert user_error_message(exc) is None
    assert user_error_message(UserError("model.lr: -1, expected > 0")) == "model.lr: -1, expected > 0"


def test_fit_does_not_overwrite_another_runs_checkpoints(synth, tmp_path):
    args = ["fit", *tiny(synth, tmp_path), "--trainer.max_epochs", "1"]
    run_lightning_cli(args)
    ckpt_dir = tmp_path / "ckpt"
    before = (ckpt_dir / "last.ckpt").read_bytes()
    with pytest.raises(UserError, match=f"{ckpt_dir}.*--overwrite true"):
        run_lightning_cli(args)
    assert (ckpt_dir / "last.ckpt").read_bytes() == before  # refused before anything was written
    # the same run's own directory: a resume is allowed
    resumed = run_lightning_cli([*args, "--trainer.max_epochs", "2", "--ckpt_path", str(ckpt_dir / "last.ckpt")])
    assert resumed.trainer.current_epoch == 2
    # a logger-less run directory holding another run's config.yaml, checkpoints elsewhere
    with pytest.raises(UserError, match="config.yaml.*--overwrite true"):
        run_lightning_cli([*args, "--checkpoint.dirpath", str(tmp_path / "new"),
                           "--last_checkpoint.dirpath", str(tmp_path / "new")])
    run_lightning_cli([*args, "--overwrite", "true"])  # explicit


def test_dispatcher_lives_outside_the_cli_module(tmp_path):
    from rspose.main import SUBCOMMANDS, main

    code = "import sys, rspose.cli; print(sorted(m for m in sys.modules if m in ('rspose.compare', 'rspose.main')))"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]
    assert set(SUBCOMMANDS) >= {"synth", "compare"}
    assert main(["synth", "--out", str(tmp_path / "s"), "--images", "1", "--val-images", "1"]) == 0
    assert len(list((tmp_path / "s" / "train2017").glob("*.jpg"))) == 1
