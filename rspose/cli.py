"""The ``rspose`` command.

* ``rspose fit|validate|test|predict --config configs/....yaml [--trainer.devices 8 ...]``: a LightningCLI over
  :class:`rspose.module.PoseLitModule` and :class:`rspose.data.datamodule.PoseDataModule`. The data's codec and
  dataset spec are written once, under ``data``, and linked into the model (:func:`rspose.builder.add_data_model_links`,
  the links :func:`rspose.build_module` uses too).
* ``rspose synth --out DIR``: write the synthetic COCO-format dataset.
* ``rspose compare``: the MSE-vs-ranking reproduction on synthetic data (see :mod:`rspose.compare`).
* ``rspose infer``: keypoints for images / folders / videos (:mod:`rspose.infer`); ``rspose export``: the network
  to ONNX (:mod:`rspose.export`).

The dispatcher between these (the ``rspose`` entry point) is :func:`rspose.main.main`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from rspose.builder import SEED_EVERYTHING_DEFAULT, add_data_model_links
from rspose.callbacks import (
    RUN_ID_FILE,
    GuardedModelCheckpoint,
    MetricsTable,
    PosePredictionWriter,
    SigtermCheckpoint,
)
from rspose.data.datamodule import PoseDataModule
from rspose.datasets import dataset_class
from rspose.datasets.legacy import check_cli_args
from rspose.errors import UserError
from rspose.models.checkpoint import load_checkpoint_file, pickle_allowed
from rspose.module import PoseLitModule

#: Model hyperparameters never taken from a checkpoint's ``hyper_parameters``: where rspose writes is chosen by the
#: user of this run, not by the run that saved the checkpoint; and the weights a run started from
#: (``init_from``) are already in the checkpoint: the file is never read again (it may have moved).
CKPT_HPARAMS_NEVER_LOADED = ("eval_outfile_prefix", "init_from", "init_from_strict")


class RSPoseCLI(LightningCLI):
    """LightningCLI with a checkpoint on the best validation metric (``checkpoint``; ``monitor: auto`` = the
    dataset's ``monitor``: val/AP, val/Mean for MPII),
    ``last.ckpt`` every epoch (``last_checkpoint``), the metrics table, the prediction writer and the
    data -> model links.

    With ``--ckpt_path``, what the user typed (config files + command line) wins over the checkpoint's saved
    hyperparameters; those only fill the model keys the user did not give (upstream LightningCLI does the reverse),
    and output paths (:data:`CKPT_HPARAMS_NEVER_LOADED`) never come from the checkpoint.

    ``validate``/``test`` without ``--ckpt_path`` and without weights (``model.init_from`` or a backbone
    ``checkpoint``) refuse to run on random weights unless ``--allow_random_weights true``."""

    #: set by :func:`main`: parse errors raise ``jsonargparse.ArgumentError`` (reported as one message) instead of
    #: printing the usage and exiting.
    raise_parse_errors: bool = False

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        if self.raise_parse_errors:
            kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Lightning's, after refusing the old spelling of the data section with one message that gives the new
        one (:mod:`rspose.datasets.legacy`)."""
        self._typed_args = args
        if args is None or isinstance(args, (list, tuple)):
            check_cli_args(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path last``, read the checkpoint safely (``RSPOSE_ALLOW_PICKLE``), and fill the model
        keys the user did not type from its hyperparameters (typed values win).

        This replaces a private method of LightningCLI because lightning 2.x has no public hook for it:
        ``LightningCLI.__init__`` calls ``_parse_ckpt_path`` unconditionally right after the public
        ``parse_arguments``, and Lightning's own version (checkpoint values win over typed ones, a plain
        ``torch.load(weights_only=True)``) would run after anything done in a public hook. If an upgrade stops
        calling it, tests/test_cli_promises.py (typed values win, output paths never from the checkpoint) fails."""
        self._ckpt_shapes: dict[str, tuple[int, ...]] | None = None
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if ckpt_path == "last":
            ckpt_path = str(self._resolve_last(self.config[subcommand]))
            self.config[subcommand]["ckpt_path"] = ckpt_path
        if not ckpt_path:
            return
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"--ckpt_path {ckpt_path} does not exist" + (
                " (Lightning's 'best' / 'hpc' are not supported by rspose; give the file)" if ckpt_path in (
                    "best", "hpc") else ""))
        ckpt = load_checkpoint_file(ckpt_path)  # weights only unless RSPOSE_ALLOW_PICKLE: a refusal names the file
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
            raise UserError(f"--ckpt_path {ckpt_path} is not a Lightning checkpoint of rspose (no 'state_dict'); a "
                            "plain or mmpose weights file goes to --model.init_from instead")
        self._ckpt_shapes = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
        if pickle_allowed() and "weights_only" in self.config[subcommand]:
            self.config[subcommand]["weights_only"] = False  # the user trusts it: Lightning must read it the same way
        hparams = dict(ckpt.get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        hparams.pop("_class_path", None)  # the model class is fixed (PoseLitModule)
        args = sys.argv[1:] if self._typed_args is None else self._typed_args
        # what the user typed: config files + command line, without the parser defaults
        typed = self.parser.parse_args(list(args), defaults=False) if isinstance(args, (list, tuple)) else args
        typed_model = (typed.get(subcommand) or {}).get("model") or {}
        typed_keys = {key.split(".")[0] for key in typed_model.keys()}
        fill = {k: v for k, v in hparams.items() if k not in typed_keys and k not in CKPT_HPARAMS_NEVER_LOADED}
        if not fill:
            return
        try:
            self.config = self.parser.parse_object({subcommand: {"model": fill}}, self.config)
        except SystemExit:
            sys.stderr.write(f"Parsing of the hyperparameters saved in {ckpt_path} failed!\n")
            raise

    def _resolve_last(self, config: Any) -> Path:
        """``--ckpt_path last``: the newest ``last*.ckpt`` of this run directory (the checkpoint directories
        configured, ``default_root_dir/checkpoints`` without a logger, else every ``version_*/checkpoints`` of the
        logger's folder); an error saying where it looked when there is none."""
        trainer = config.get("trainer") or {}
        root = Path(trainer.get("default_root_dir") or ".")
        logger = trainer.get("logger")
        dirs = [Path(d) for d in ((config.get(g) or {}).get("dirpath") for g in ("last_checkpoint", "checkpoint")) if d]
        if not dirs:
            if logger is False:
                dirs = [root / "checkpoints"]
            else:
                init = (getattr(logger, "init_args", None) or (logger.get("init_args") if isinstance(logger, dict)
                                                                else None) or {})
                save_dir = Path(init.get("save_dir") or root) if hasattr(init, "get") else root
                name = (init.get("name") if hasattr(init, "get") else None) or "lightning_logs"
                dirs = sorted((save_dir / name).glob("version_*/checkpoints"))
                if not dirs:
                    dirs = [save_dir / name / "version_*" / "checkpoints"]
        found = [p for d in dirs if d.is_dir() for p in d.glob("last*.ckpt") if p.is_file()]
        if not found:
            raise UserError(
                f"--ckpt_path last: no last.ckpt in {', '.join(str(d) for d in dirs)}: there is no earlier run of "
                "this directory to resume; leave --ckpt_path out to start a new run, or give the checkpoint file"
            )
        return max(found, key=lambda p: p.stat().st_mtime_ns)

    def _check_checkpoint_fits(self) -> None:
        """A checkpoint of another configuration (a heatmap run into a SimCC config) is named, with the keys that
        differ, instead of Lightning's strict-load traceback."""
        saved = getattr(self, "_ckpt_shapes", None)
        if saved is None or self.model is None or not getattr(self.model, "strict_loading", True):
            return
        own = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        missing = [k for k in own if k not in saved]
        unexpected = [k for k in saved if k not in own]
        mismatched = [f"{k} {saved[k]} vs {own[k]}" for k in own if k in saved and saved[k] != own[k]]
        if not (missing or unexpected or mismatched):
            return

        def listing(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f", ... (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        parts = [f"{name} ({len(keys)}): {listing(keys)}" for name, keys in (
            ("missing in the checkpoint", missing), ("not in this model", unexpected),
            ("shape checkpoint vs model", mismatched)) if keys]
        raise UserError(
            f"--ckpt_path {self.config[self.subcommand]['ckpt_path']} does not fit the model of this config: "
            + "; ".join(parts) + ". The config (backbone, head, codec, keypoints) differs from the run that saved "
            "the checkpoint: use that run's config"
        )

    def instantiate_classes(self) -> None:
        """Lightning's, then the checkpoint checked against the model built. (A plain ``ValueError`` of an rspose
        constructor here is a refused config value: :mod:`rspose.errors` reports it as a user error.)"""
        super().instantiate_classes()
        self._check_checkpoint_fits()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(GuardedModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "auto",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-{epoch:03d}",
                "checkpoint.save_last": False,
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        # Lightning saves checkpoint.save_last only when the best one improved: keep a separate last.ckpt,
        # written every epoch, so that a resume never loses epochs.
        parser.add_lightning_class_args(GuardedModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.filename": "last",
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
                "last_checkpoint.every_n_epochs": 1,
                "last_checkpoint.save_on_train_epoch_end": True,
            }
        )
        parser.add_argument(
            "--allow_random_weights",
            type=bool,
            default=False,
            help="validate/test: run even without --ckpt_path, model.init_from or a backbone checkpoint "
            "(random weights); ignored by fit and predict.",
        )
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="fit: write into a checkpoint directory (or a logger-less run directory) that already holds "
            "another run's checkpoints / config.yaml; without it, fit refuses. A resume (--ckpt_path into that "
            "directory) is always allowed.",
        )
        parser.add_lightning_class_args(PosePredictionWriter, "predict_writer")
        parser.add_lightning_class_args(MetricsTable, "metrics_table")
        add_data_model_links(parser)

    def before_instantiate_classes(self) -> None:
        """``checkpoint.monitor: auto`` (the default) becomes the dataset's headline metric (its class's ``monitor``:
        val/AP, val/Mean for MPII's PCKh)."""
        config = self._get(self.config, "checkpoint", default=None)
        if config is not None and config.get("monitor") == "auto":
            dataset = self._get(self.config, "data", default={}).get("dataset")
            config["monitor"] = dataset_class(dataset.class_path).monitor
        if self.subcommand in ("validate", "test"):
            self._refuse_random_weights()
        if self.subcommand == "fit":
            self._check_run_length()
            self._refuse_overwrite()

    def _check_run_length(self) -> None:
        """``trainer.max_epochs``: >= 1, or -1 (Lightning: until stopped) only when the schedule needs no end."""
        config = self.config["fit"]
        trainer = config.get("trainer") or {}
        epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps")
        if epochs is not None and (epochs == 0 or epochs < -1):
            raise UserError(f"trainer.max_epochs: {epochs}, expected an integer >= 1 (or -1: train until stopped)")
        schedule = (config.get("model") or {}).get("lr_schedule")
        if epochs == -1 and (steps is None or steps < 0) and schedule == "cosine":
            raise UserError(
                "trainer.max_epochs: -1 (train until stopped) with model.lr_schedule cosine, which needs the length "
                "of the run: give trainer.max_epochs >= 1 or trainer.max_steps"
            )

    def _refuse_overwrite(self) -> None:
        """``fit`` does not write over another run's checkpoints or config.yaml unless ``--overwrite true``."""
        config = self.config["fit"]
        if config.get("overwrite"):
            return
        ckpt_path = config.get("ckpt_path")
        resume_dir = Path(ckpt_path).resolve().parent if ckpt_path and Path(ckpt_path).is_file() else None
        trainer = config.get("trainer") or {}
        root = Path(trainer.get("default_root_dir") or ".").resolve()
        dirs = []
        for group in ("checkpoint", "last_checkpoint"):
            dirpath = (config.get(group) or {}).get("dirpath")
            # no dirpath: Lightning uses the logger's fresh version_N directory, or root/checkpoints without logger
            dirs.append(Path(dirpath).resolve() if dirpath else (root / "checkpoints" if trainer.get("logger") is False
                                                                 else None))
        for directory in dict.fromkeys(d for d in dirs if d is not None):
            if directory != resume_dir and directory.is_dir() and (
                any(directory.glob("*.ckpt")) or (directory / RUN_ID_FILE).is_file()
            ):
                raise UserError(
                    f"rspose fit: {directory} already holds checkpoints (or the {RUN_ID_FILE} of a run that has not "
                    "saved yet) of another run; give this run its own "
                    "directory, resume with --ckpt_path into it, or pass --overwrite true to write over them."
                )
        if trainer.get("logger") is False and (root / "config.yaml").is_file():
            if resume_dir is None or not resume_dir.is_relative_to(root):
                raise UserError(
                    f"rspose fit: {root / 'config.yaml'} belongs to another run (trainer.default_root_dir without "
                    "a logger); give this run its own directory or pass --overwrite true."
                )

    def _refuse_random_weights(self) -> None:
        config = self.config[self.subcommand]
        if config.get("ckpt_path") or config.get("allow_random_weights"):
            return
        model = config.get("model") or {}
        if getattr(model, "init_from", None):
            return
        backbone = getattr(model, "backbone", None)
        init_args = getattr(backbone, "init_args", None) if backbone is not None else None
        if init_args is not None and getattr(init_args, "checkpoint", None):
            return
        raise UserError(
            f"rspose {self.subcommand}: no weights given, the model would be evaluated with random weights. "
            "Pass --ckpt_path PATH (or model.init_from / a backbone checkpoint), or --allow_random_weights true."
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Adds the rich progress bar unless the config disables progress bars or brings its own, and the
        checkpoint saved on SIGTERM (:class:`rspose.callbacks.SigtermCheckpoint`)."""
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        extra = []
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            extra.append(RichProgressBar(leave=True))
        last = self._get(self.config_init, "last_checkpoint", default=None)
        if last is not None:
            extra.append(SigtermCheckpoint(last))
        if extra:
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": extra}
        return super().instantiate_trainer(**kwargs)


def run_lightning_cli(args: list[str] | None = None, run: bool = True) -> RSPoseCLI:
    """Build (and by default run) the LightningCLI; ``args`` as on the command line."""
    return RSPoseCLI(
        PoseLitModule,
        PoseDataModule,
        seed_everything_default=SEED_EVERYTHING_DEFAULT,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )
