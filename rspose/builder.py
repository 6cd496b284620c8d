"""The module and datamodule of an ``rspose`` config, built without LightningCLI and without a Trainer.

    >>> import rspose
    >>> module, data = rspose.build_module("configs/quickstart.yaml", ["--model.flip_test", "false"])
    >>> module, data = rspose.build_module({"model": {...}, "data": {...}})      # the same config as a dict

The config is read exactly as ``rspose fit`` reads it: jsonargparse builds the ``model:`` and ``data:`` blocks
from the typed constructors of :class:`rspose.module.PoseLitModule` and :class:`rspose.data.datamodule.PoseDataModule`
(``class_path`` / ``init_args`` for the backbone, head, codec, loss), with the same data -> model links
(:func:`add_data_model_links`, also used by :class:`rspose.cli.RSPoseCLI`). The rest of a full ``rspose`` config
(``trainer``, ``seed_everything``, the CLI's own keys, :data:`CLI_ONLY_KEYS`) is accepted and not used; a key
that none of these knows (a misspelt ``model.flip_tset``) is one :class:`rspose.errors.UserError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser, Namespace
from lightning.pytorch import Trainer, seed_everything

from rspose.data.datamodule import PoseDataModule
from rspose.datasets.legacy import check_cli_args, check_data_spelling
from rspose.errors import UserError
from rspose.module import PoseLitModule

#: ``seed_everything`` when a config does not give it (the CLI's default too).
SEED_EVERYTHING_DEFAULT = 0

#: Top-level keys of a full ``rspose`` config that only the command line uses: LightningCLI's optimizer and
#: scheduler groups, the ``fit``/``validate``/``test``/``predict`` method arguments, and the groups and switches of
#: :meth:`rspose.cli.RSPoseCLI.add_arguments_to_parser` (tests/test_builder.py keeps this list equal to the CLI's).
CLI_ONLY_KEYS = (
    "optimizer", "lr_scheduler",
    "ckpt_path", "weights_only", "verbose", "return_predictions",
    "checkpoint", "last_checkpoint", "predict_writer", "metrics_table", "allow_random_weights", "overwrite",
)

#: What :func:`build_module` takes as a config: a YAML file, several (later ones win, as repeated ``--config``;
#: none: the overrides hold ``--config FILE``), or the config itself as a mapping.
Config = str | Path | Sequence[str | Path] | Mapping[str, Any]


def add_data_model_links(parser: ArgumentParser) -> None:
    """The data -> model links of every ``rspose`` parser: the codec is written once, under ``data``, and the
    model gets an identically configured (stateless) instance; the dataset's keypoint spec goes to the model."""
    parser.link_arguments("data.codec", "model.codec", apply_on="parse")
    parser.link_arguments("data.spec", "model.spec", apply_on="instantiate")


def config_parser() -> ArgumentParser:
    """The parser of a full ``rspose`` config: ``model`` and ``data`` (built), ``trainer`` (checked against
    :class:`lightning.pytorch.Trainer`, not built), ``seed_everything`` and :data:`CLI_ONLY_KEYS` (not checked)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="an rspose YAML config")
    parser.add_argument("--seed_everything", type=bool | int, default=SEED_EVERYTHING_DEFAULT)
    # the options LightningCLI gives these groups (add_lightning_class_args), so that a config parses identically
    parser.add_class_arguments(Trainer, "trainer", fail_untyped=False, instantiate=False, sub_configs=True)
    parser.add_class_arguments(PoseLitModule, "model", fail_untyped=False, sub_configs=True)
    parser.add_class_arguments(PoseDataModule, "data", fail_untyped=False, sub_configs=True)
    add_data_model_links(parser)
    for key in CLI_ONLY_KEYS:
        parser.add_argument(f"--{key}", type=Any, default=None, help="used by the rspose command line only")
    return parser


def parse_config(config: Config, overrides: Sequence[str] = (), parser: ArgumentParser | None = None) -> Namespace:
    """The checked config (nothing built): ``config`` (see :data:`Config`) plus ``overrides`` in the command
    line's dotted form (``["--model.flip_test", "false"]``, later ones win).

    Raises:
        UserError: a key no group knows, a value of the wrong type, an unreadable file; the message names it.
    """
    parser = parser or config_parser()
    try:
        if isinstance(config, Mapping):
            if "config" in config:
                raise UserError(
                    f"the config dict includes {config['config']!r} (a 'config:' key): a dict has no folder to read "
                    "it from; give the YAML file's path instead, or the resolved config (rspose fit --config FILE "
                    "--print_config)")
            if isinstance(config.get("data"), Mapping):
                check_data_spelling(config["data"], "the config dict")
            check_cli_args(overrides)
            namespace = parser.parse_object(dict(config))
            return parser.parse_args(list(overrides), namespace=namespace) if overrides else namespace
        files = [config] if isinstance(config, (str, Path)) else list(config)
        args = [word for path in files for word in ("--config", str(path))]
        check_cli_args([*args, *overrides])  # the old data spelling: one error that writes the new one
        return parser.parse_args([*args, *overrides])
    except ArgumentError as error:
        source = "the config dict" if isinstance(config, Mapping) else ", ".join(str(p) for p in files) or "config"
        raise UserError(f"{source}{' with overrides' if overrides else ''}: {' '.join(str(error).split())}") from None


def build_module(config: Config, overrides: Sequence[str] = ()) -> tuple[PoseLitModule, PoseDataModule]:
    """The :class:`rspose.module.PoseLitModule` and :class:`rspose.data.datamodule.PoseDataModule` of an
    ``rspose`` config (a YAML path, several, or a dict; ``overrides`` as on the command line), nothing run and no
    data read. The config's ``trainer``, ``seed_everything`` and CLI-only keys are accepted and not used."""
    parser = config_parser()
    namespace = parse_config(config, overrides, parser)
    del namespace["trainer"]  # its callbacks and logger are not built
    built = parser.instantiate(namespace)
    return built.model, built.data


def build_with_trainer_args(
    config: Config, overrides: Sequence[str] = ()
) -> tuple[PoseLitModule, PoseDataModule, dict[str, Any]]:
    """:func:`build_module` as ``rspose validate`` builds it: seeded by the config's ``seed_everything`` first (as
    the CLI does), and with the keyword arguments of the config's ``trainer`` block (its callbacks and logger built)
    for a :class:`lightning.pytorch.Trainer`. The CLI's own callbacks (checkpoints, metrics table, progress bar)
    are not among them."""
    parser = config_parser()
    namespace = parse_config(config, overrides, parser)
    seed = namespace.seed_everything
    if seed is not False:
        seed_everything(None if seed is True else seed, workers=True)
    built = parser.instantiate(namespace)
    return built.model, built.data, {**built.trainer}
