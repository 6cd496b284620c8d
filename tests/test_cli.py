"""The real `rspose` LightningCLI on tiny data: every config parses, fit/validate/test/predict run, resume continues,
predict's JSON loads in pycocotools, and bad configs fail at start-up naming the culprit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import DATA
from pycocotools.coco import COCO as COCOApi

from rspose.cli import run_lightning_cli
from rspose.data.synthetic import generate_synthetic_coco

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml")  # compare: variant lists; _base: schedules
                 if "compare" not in p.parts and "_base" not in p.parts)
FIXTURES = DATA


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_synthetic_coco(root, num_train=12, num_val=6, seed=1)
    return root



def quick_args(synth: Path, tmp_path: Path, config: str = "configs/quickstart.yaml") -> list[str]:
    return [
        "--config", str(ROOT / config),
        "--data.dataset.init_args.root", str(synth),
        "--data.num_workers", "0",
        "--data.persistent_workers", "false",
        "--data.batch_size", "8",
        "--data.val_batch_size", "8",
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]


def test_every_config_is_covered_and_parses(capsys):
    assert len(CONFIGS) >= 22, [c.name for c in CONFIGS]
    for config in CONFIGS:
        with pytest.raises(SystemExit) as exit_info:
            run_lightning_cli(["fit", "--config", str(config), "--print_config"])
        assert exit_info.value.code in (None, 0), config
        printed = capsys.readouterr().out
        assert "class_path: rspose.models." in printed and "codec:" in printed, config


@pytest.mark.parametrize("config", ["configs/quickstart.yaml", "configs/quickstart_simcc.yaml"])
@pytest.mark.parametrize("loss", ["baseline", "rs"])
def test_fit_validate_test_predict_fast_dev_run(synth, tmp_path, config, loss):
    baseline = "rspose.losses.KLDiscretLoss" if "simcc" in config else "rspose.losses.KeypointMSELoss"
    class_path = {"baseline": baseline, "rs": "rspose.losses.RankingLoss"}[loss]
    args = quick_args(synth, tmp_path, config) + ["--model.loss", json.dumps({"class_path": class_path})]
    for sub in ("fit", "validate", "test"):
        weights = [] if sub == "fit" else ["--allow_random_weights", "true"]  # an untrained model, knowingly
        cli = run_lightning_cli([sub, *args, *weights, "--trainer.fast_dev_run", "true"])
        metrics = cli.trainer.callback_metrics
        if sub != "fit":
            prefix = "val" if sub == "validate" else "test"
            assert f"{prefix}/AP" in metrics and f"{prefix}/spearman" in metrics, sorted(metrics)
            assert 0.0 <= float(metrics[f"{prefix}/AP"]) <= 1.0
    out = tmp_path / "preds.keypoints.json"
    draw_dir = tmp_path / "drawn"
    run_lightning_cli(
        ["predict", *args, "--trainer.fast_dev_run", "true", "--predict_writer.output_file", str(out),
         "--predict_writer.draw_dir", str(draw_dir)]
    )
    results = json.loads(out.read_text())
    assert sorted(p.suffix for p in draw_dir.iterdir()) and all(p.stat().st_size > 0 for p in draw_dir.iterdir())
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)  # ordered as the metric orders them
    assert results and all(len(r["keypoints"]) == 17 * 3 for r in results)
    gt = COCOApi(str(synth / "annotations" / "person_keypoints_val2017.json"))
    loaded = gt.loadRes(results)  # pycocotools accepts it (image ids, format)
    assert len(loaded.getAnnIds()) == len(results)


def test_fit_on_real_coco_fixture(tmp_path):
    coco = FIXTURES / "coco"
    args = [
        "fit", "--config", str(ROOT / "configs/quickstart.yaml"),
        "--data.dataset", "rspose.datasets.COCO", "--data.dataset.init_args.root", str(coco),
        "--data.dataset.init_args.train_ann", "test_coco.json", "--data.dataset.init_args.val_ann", "test_coco.json",
        "--data.dataset.init_args.train_img_dir", ".", "--data.dataset.init_args.val_img_dir", ".",
        "--data.dataset.init_args.val_bbox_file", "test_coco_det_AP_H_56.json",
        "--data.num_workers", "0", "--data.persistent_workers", "false", "--data.batch_size", "4",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.fast_dev_run", "true",
        "--trainer.enable_progress_bar", "false",
    ]
    cli = run_lightning_cli(args)
    assert cli.trainer.datamodule.spec.name == "coco"
    assert "val/AP" in cli.trainer.callback_metrics


def test_resume_continues_from_the_right_step_with_optimizer_state(synth, tmp_path):
    args = quick_args(synth, tmp_path) + ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                                          "--trainer.check_val_every_n_epoch", "1", "--trainer.logger", "false"]
    first = run_lightning_cli(["fit", *args, "--trainer.max_epochs", "2",
                               "--checkpoint.dirpath", str(tmp_path / "ckpt"),
                               "--last_checkpoint.dirpath", str(tmp_path / "ckpt")])
    assert first.trainer.global_step == 4
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.exists()
    saved = torch.load(last, map_location="cpu", weights_only=False)
    saved_state = saved["optimizer_states"][0]["state"]
    second = run_lightning_cli(
        ["fit", *args, "--trainer.max_epochs", "3", "--ckpt_path", str(last),
         "--checkpoint.dirpath", str(tmp_path / "ckpt2"), "--last_checkpoint.dirpath", str(tmp_path / "ckpt2")]
    )
    assert second.trainer.global_step == 6
    assert second.trainer.current_epoch == 3
    # Adam's step counter continued from the checkpoint: 4 saved + 2 new steps.
    state = second.trainer.optimizers[0].state_dict()["state"]
    first_key = sorted(saved_state)[0]
    assert float(saved_state[first_key]["step"]) == 4
    assert float(state[first_key]["step"]) == 6


def test_unknown_config_key_fails_naming_it(synth, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_lightning_cli(["fit", *quick_args(synth, tmp_path), "--model.no_such_option", "3"])
    assert "no_such_option" in capsys.readouterr().err


def test_unknown_key_in_yaml_fails_naming_it(synth, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs/quickstart.yaml").read_text().replace("{delta: 0.5,", "{dleta: 0.5,"))
    with pytest.raises(SystemExit):
        run_lightning_cli(["fit", "--config", str(bad), "--data.dataset.init_args.root", str(synth)])
    assert "dleta" in capsys.readouterr().err


def test_wrong_path_fails_at_start_naming_the_key(synth, tmp_path):
    with pytest.raises(Exception, match="val_ann.*does_not_exist.json"):
        run_lightning_cli(["fit", *quick_args(synth, tmp_path), "--data.dataset", "rspose.datasets.COCO",
                           "--data.dataset.init_args.root", str(synth),
                           "--data.dataset.init_args.val_ann", "does_not_exist.json", "--trainer.fast_dev_run", "true"])


def test_keypoint_count_mismatch_fails_naming_it(synth, tmp_path):
    with pytest.raises(ValueError, match="num_keypoints=14.*17"):
        run_lightning_cli([*quick_args(synth, tmp_path), "--model.num_keypoints", "14"], run=False)


@pytest.mark.parametrize("config", ["configs/quickstart.yaml", "configs/quickstart_simcc.yaml"])
def test_bf16_mixed_precision_trains_with_finite_losses(synth, tmp_path, config):
    args = quick_args(synth, tmp_path, config) + ["--trainer.precision", "bf16-mixed", "--trainer.fast_dev_run", "2"]
    cli = run_lightning_cli(["fit", *args])
    metrics = cli.trainer.callback_metrics
    for key in ("train/loss", "train/spatial", "train/spatial_rank", "train/spatial_sort", "train/instance_sort"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    # the logged parts add up: spatial = rank + sort, loss = spatial + lambda * instance_sort (lambda = 1)
    assert torch.isclose(metrics["train/spatial"], metrics["train/spatial_rank"] + metrics["train/spatial_sort"],
                         atol=1e-5)
    assert torch.isclose(metrics["train/loss"], metrics["train/spatial"] + metrics["train/instance_sort"], atol=1e-5)
    assert 0.0 <= float(metrics["val/AP"]) <= 1.0


def test_ddp_validate_equals_single_process(synth, tmp_path):
    """`validate` with 2 CPU processes (gloo, DistributedSampler padding) gives exactly the 1-process metrics."""
    import subprocess
    import sys

    ckpt_dir = tmp_path / "ckpt"
    run_lightning_cli(["fit", *quick_args(synth, tmp_path), "--trainer.max_epochs", "1",
                       "--trainer.limit_train_batches", "3", "--trainer.check_val_every_n_epoch", "1",
                       "--last_checkpoint.dirpath", str(ckpt_dir), "--checkpoint.dirpath", str(ckpt_dir)])
    # Lightning's DDP launcher re-runs sys.argv in each new process, so the driver must be a script file.
    driver = tmp_path / "validate_and_dump.py"
    driver.write_text(
        "import json, sys\n"
        "from rspose.cli import run_lightning_cli\n"
        "cli = run_lightning_cli(sys.argv[2:])\n"
        "if cli.trainer.global_rank == 0:\n"
        "    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}\n"
        "    open(sys.argv[1], 'w').write(json.dumps(metrics))\n"
    )
    results = {}
    for name, extra in (("single", ["--trainer.devices", "1"]),
                        ("ddp", ["--trainer.strategy", "ddp", "--trainer.devices", "2"])):
        out = tmp_path / f"{name}.json"
        args = ["validate", *quick_args(synth, tmp_path / name), "--trainer.accelerator", "cpu", *extra,
                "--ckpt_path", str(ckpt_dir / "last.ckpt")]
        env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, str(driver), str(out), *args], timeout=300, env=env, cwd=tmp_path,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = json.loads(out.read_text())
    assert "val/AP" in results["single"]
    for key in ("val/AP", "val/AR", "val/AP75", "val/spearman", "val/spearman_keypoint", "val/spearman_before_nms"):
        assert results["ddp"][key] == results["single"][key], key
