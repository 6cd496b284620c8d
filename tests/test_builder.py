"""rspose.build_module: the same module as the CLI's, from a path or a dict, refusing misspelt keys, and the
Python API, `rspose export` and compare's evaluation without any LightningCLI."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI

import rspose
from rspose.builder import CLI_ONLY_KEYS, build_module, build_with_trainer_args
from rspose.cli import run_lightning_cli
from rspose.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
PAPER = ROOT / "configs" / "coco" / "simplebaseline_r50_256x192_rs.yaml"


def _same_codec(a, b) -> None:
    assert type(a) is type(b)
    assert vars(a).keys() == vars(b).keys()
    for key, value in vars(a).items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(vars(b)[key]), err_msg=key)


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _settings(loss: torch.nn.Module) -> dict[str, object]:
    """A loss's plain settings (numbers, strings), its own and its parts'."""
    return {f"{name}.{key}": value for name, part in loss.named_modules() for key, value in vars(part).items()
            if isinstance(value, (int, float, str, bool, type(None)))}


@pytest.mark.parametrize("config", [QUICKSTART, PAPER], ids=["quickstart", "paper"])
def test_build_module_from_path_and_dict_equals_the_cli_module(config, capsys):
    cli = run_lightning_cli(["--config", str(config), "--trainer.logger", "false"], run=False)
    want_shapes = {k: tuple(v.shape) for k, v in cli.model.state_dict().items()}
    # LightningCLI adds the name of its instantiator and stores the YAML dump (lists where the constructor got
    # tuples); the hyperparameters themselves are the same
    want_hparams = {k: _plain(v) for k, v in cli.model.hparams.items() if k != "_instantiator"}
    as_dict = yaml.safe_load(config.read_text())
    if "config" in as_dict:  # a paper config extends a base file (configs/README.md): a dict must be resolved
        with pytest.raises(UserError, match="a dict has no folder"):
            build_module(as_dict)
        capsys.readouterr()
        with pytest.raises(SystemExit):
            run_lightning_cli(["fit", "--config", str(config), "--print_config"])
        as_dict = yaml.safe_load(capsys.readouterr().out)
    for module, data in (build_module(config), build_module(str(config)), build_module(as_dict)):
        assert isinstance(module, rspose.PoseLitModule) and isinstance(data, rspose.PoseDataModule)
        assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == want_shapes
        assert {k: _plain(v) for k, v in module.hparams.items()} == want_hparams
        _same_codec(module.codec, cli.model.codec)
        _same_codec(data.codec, cli.datamodule.codec)
        assert module.spec == cli.model.spec and data.spec == module.spec
        assert type(module.loss) is type(cli.model.loss)
        assert _settings(module.loss) == _settings(cli.model.loss)


def test_overrides_from_a_path_and_from_a_dict():
    as_dict = yaml.safe_load(QUICKSTART.read_text())
    overrides = ["--model.flip_test", "false", "--data.codec.init_args.sigma", "1.5", "--data.batch_size", "3"]
    for config in (QUICKSTART, as_dict):
        module, data = build_module(config, overrides)
        assert module.hparams.flip_test is False and module.codec.sigma == 1.5 and data.codec.sigma == 1.5
        assert data.batch_size == 3


def test_seeded_build_and_trainer_args_equal_the_cli(tmp_path):
    args = ["--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path), "--seed_everything", "5"]
    cli = run_lightning_cli(["--config", str(QUICKSTART), *args], run=False)
    module, _, trainer_args = build_with_trainer_args(QUICKSTART, args)
    for key, value in cli.model.state_dict().items():  # seeded as the CLI seeds: the same initial weights
        torch.testing.assert_close(module.state_dict()[key], value, rtol=0, atol=0)
    trainer = Trainer(**trainer_args)
    assert (trainer.max_epochs, trainer.check_val_every_n_epoch, trainer.default_root_dir) == (
        cli.trainer.max_epochs, cli.trainer.check_val_every_n_epoch, cli.trainer.default_root_dir)
    assert trainer.precision == cli.trainer.precision == "32-true" and trainer.logger is None


def test_a_full_config_is_accepted_and_its_cli_keys_ignored(tmp_path):
    config = yaml.safe_load(QUICKSTART.read_text())
    config.update({"ckpt_path": "nowhere.ckpt", "checkpoint": {"monitor": "val/AP"}, "overwrite": True,
                   "allow_random_weights": True, "metrics_table": {"enabled": False}})
    module, _ = build_module(config)
    assert module.hparams.init_from is None  # ckpt_path is the command line's, nothing read


@pytest.mark.parametrize("where", ["override", "dict", "file"])
def test_a_misspelt_key_is_one_user_error_naming_it(tmp_path, where):
    config: object = QUICKSTART
    overrides: list[str] = []
    if where == "override":
        overrides = ["--model.flip_tset", "false"]
    else:
        config = yaml.safe_load(QUICKSTART.read_text())
        config["data"]["batch_sise"] = 3
        if where == "file":
            path = tmp_path / "bad.yaml"
            path.write_text(yaml.safe_dump(config))
            config = path
    with pytest.raises(UserError) as error:
        build_module(config, overrides)
    assert ("flip_tset" if where == "override" else "batch_sise") in str(error.value)
    if where == "file":
        assert str(config) in str(error.value)


def test_cli_only_keys_are_the_cli_s_own_keys():
    cli = run_lightning_cli(["--config", str(QUICKSTART), "--trainer.logger", "false"], run=False)
    top = {key.split(".")[0] for key in cli.parser.get_defaults().keys()}
    # the subcommands (fit, validate, ...) add the arguments of the Trainer method they run
    for subcommand, skip in LightningCLI.subcommands().items():
        top |= set(inspect.signature(getattr(Trainer, subcommand)).parameters) - skip - {"self"}
    assert top - {"config", "seed_everything", "trainer", "model", "data"} == set(CLI_ONLY_KEYS)


@pytest.fixture
def no_lightning_cli(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a LightningCLI was constructed")

    monkeypatch.setattr(LightningCLI, "__init__", refuse)


def test_python_api_export_and_compare_evaluation_build_no_lightning_cli(no_lightning_cli, synth, tmp_path):
    from rspose.compare import evaluate_one
    from rspose.export import main as export_main

    with pytest.raises(AssertionError, match="LightningCLI"):  # the patch works
        run_lightning_cli(["--config", str(QUICKSTART)], run=False)
    data_args = ["--data.dataset.init_args.root", str(synth), "--data.dataset.init_args.train_images", "8",
                 "--data.dataset.init_args.val_images", "4", "--data.dataset.init_args.seed", "1",
                 "--data.num_workers", "0", "--data.persistent_workers", "false"]
    module, _ = rspose.build_module(QUICKSTART, data_args)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": module.state_dict()}, ckpt)

    pose = rspose.Inferencer(QUICKSTART, ckpt, overrides=data_args)
    for key, value in module.model.state_dict().items():
        torch.testing.assert_close(pose.module.model.state_dict()[key], value, rtol=0, atol=0)

    metrics = evaluate_one(["--config", str(QUICKSTART), *data_args, "--trainer.enable_progress_bar", "false"],
                           str(ckpt), threads=0)
    assert 0.0 <= metrics["AP"] <= 1.0 and metrics["eval_wall_s"] > 0

    pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    assert export_main(["--config", str(QUICKSTART), "--ckpt_path", str(ckpt), "--out", str(out)]) == 0
    assert out.is_file()


def test_the_old_data_spelling_is_refused_with_the_new_one():
    old = yaml.safe_load(QUICKSTART.read_text())
    old["data"] = {**{k: v for k, v in old["data"].items() if k != "dataset"}, "dataset": "synthetic",
                   "root": "data/synthetic"}
    with pytest.raises(UserError, match=r"the config dict: data uses the old spelling.*rspose.datasets.Synthetic"):
        build_module(old)
    with pytest.raises(UserError, match=r"--data.dataset.init_args.root"):
        build_module(QUICKSTART, ["--data.root", "elsewhere"])
