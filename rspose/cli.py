"""The ``rspose`` command.

* ``rspose fit|validate|test|predict --config configs/....yaml [--trainer.devices 8 ...]``: a LightningCLI over
  :class:`rspose.module.PoseLitModule` and :class:`rspose.data.datamodule.PoseDataModule`. The data's codec and
  dataset spec are written once, under ``data``, and linked into the model.
* ``rspose synth --out DIR``: write the synthetic COCO-format dataset.
* ``rspose compare``: the MSE-vs-ranking reproduction on synthetic data (see :mod:`rspose.compare`).
* ``rspose infer``: keypoints for images / folders / videos (:mod:`rspose.infer`); ``rspose export``: the network
  to ONNX (:mod:`rspose.export`).
"""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from rspose.callbacks import MetricsTable, PosePredictionWriter
from rspose.data.datamodule import PoseDataModule
from rspose.module import PoseLitModule


class RSPoseCLI(LightningCLI):
    """LightningCLI with a checkpoint on the best validation metric (``checkpoint``; ``monitor: auto`` = val/AP,
    val/Mean for MPII),
    ``last.ckpt`` every epoch (``last_checkpoint``), the metrics table, the prediction writer and the
    data -> model links."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
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
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.filename": "last",
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(PosePredictionWriter, "predict_writer")
        parser.add_lightning_class_args(MetricsTable, "metrics_table")
        # The codec is written once, under data; the model gets an identically configured (stateless) instance.
        parser.link_arguments("data.codec", "model.codec", apply_on="parse")
        parser.link_arguments("data.spec", "model.spec", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """``checkpoint.monitor: auto`` (the default) becomes the dataset's headline metric: val/Mean (PCKh) for
        MPII, val/AP otherwise."""
        config = self._get(self.config, "checkpoint", default=None)
        if config is not None and config.get("monitor") == "auto":
            dataset = self._get(self.config, "data", default={}).get("dataset")
            config["monitor"] = "val/Mean" if dataset == "mpii" else "val/AP"

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Adds the rich progress bar unless the config disables progress bars or brings its own."""
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [RichProgressBar(leave=True)]}
        return super().instantiate_trainer(**kwargs)


def run_lightning_cli(args: list[str] | None = None, run: bool = True) -> RSPoseCLI:
    """Build (and by default run) the LightningCLI; ``args`` as on the command line."""
    return RSPoseCLI(
        PoseLitModule,
        PoseDataModule,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "synth":
        from rspose.data.synthetic import main as synth_main

        return synth_main(argv[1:])
    if argv and argv[0] in ("infer", "export"):  # rspose infer / rspose export: see rspose/infer.py, rspose/export.py
        module = __import__(f"rspose.{argv[0]}", fromlist=["main"])
        return module.main(argv[1:])
    if argv and argv[0] == "compare":
        from rspose.compare import main as compare_main

        return compare_main(argv[1:])
    run_lightning_cli(argv)
    return 0
