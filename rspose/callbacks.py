"""Callbacks of the ``rspose`` command: the final metrics table, the COCO-format prediction writer, the checkpoint
callback that guards its directory against a second run, and the checkpoint saved on SIGTERM."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from rich.console import Console
from rich.table import Table

from rspose.data.specs import KEYPOINT_SCORE_THR
from rspose.errors import UserError, check_range

#: file written beside the checkpoints by :class:`GuardedModelCheckpoint`: the id of the run that writes there.
RUN_ID_FILE = ".rspose_run_id"

TABLE_KEYS = (
    "AP", "AP50", "AP75", "APm", "APl", "AR", "AP_easy", "AP_medium", "AP_hard",
    "spearman", "spearman_keypoint", "spearman_before_nms", "pearson", "kendall",
    "Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1",
)


def metrics_table(metrics: dict[str, float], title: str) -> Table:
    """A rich table of the metrics in ``TABLE_KEYS`` order (others after, sorted)."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    keys = [k for k in TABLE_KEYS if k in metrics] + sorted(k for k in metrics if k not in TABLE_KEYS)
    for key in keys:
        table.add_row(key, f"{metrics[key]:.4f}")
    return table


class MetricsTable(Callback):
    """Prints the evaluation metrics as a table: after fit (last validation), validate and test."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    @staticmethod
    def _collect(trainer: Trainer, prefix: str) -> dict[str, float]:
        return {
            key[len(prefix) + 1:]: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith(prefix + "/") and not key.endswith("loss")
        }

    @rank_zero_only
    def _print(self, trainer: Trainer, prefix: str, title: str) -> None:
        metrics = self._collect(trainer, prefix)
        if self.enabled and metrics:
            Console().print(metrics_table(metrics, title))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._print(trainer, "val", f"validation after {trainer.current_epoch} epochs")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._print(trainer, "val", "validation")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._print(trainer, "test", "test")


class PosePredictionWriter(BasePredictionWriter):
    """Writes ``predict`` results as a COCO keypoint results JSON (after OKS-NMS per image).

    Args:
        output_file: results path; default ``{trainer.log_dir}/predictions.keypoints.json``.
        nms: per-image NMS of the predictions ("none" keeps every instance).
        nms_thr: OKS threshold of the NMS.
        draw_dir: if set, also writes each image with the predicted skeletons drawn (score >= draw_thr).
        draw_thr: keypoint score threshold for drawing.
    """

    def __init__(
        self,
        output_file: str | None = None,
        nms: Literal["oks", "soft_oks", "none"] = "oks",
        nms_thr: float = 0.9,
        draw_dir: str | None = None,
        draw_thr: float = 0.3,
    ) -> None:
        super().__init__(write_interval="epoch")
        check_range("predict_writer.nms_thr", nms_thr, 0.0, 1.0)
        check_range("predict_writer.draw_thr", draw_thr, 0.0, 1.0)
        self.output_file = output_file
        self.nms = nms
        self.nms_thr = nms_thr
        self.draw_dir = draw_dir
        self.draw_thr = draw_thr
        self.written: Path | None = None

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        instances = [inst for batch in predictions for inst in batch]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, instances)
            instances = [inst for part in gathered for inst in part]
        if trainer.global_rank != 0:
            return
        results = predictions_to_coco(
            instances, pl_module.spec.sigmas, self.nms, self.nms_thr, pl_module.hparams.keypoint_score_thr
        )
        path = Path(self.output_file or Path(trainer.log_dir or ".") / "predictions.keypoints.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results))
        self.written = path
        if self.draw_dir is not None:
            from rspose.viz.skeleton import draw_predictions_on_images

            image_paths = {int(inst["image_id"]): inst["image_file"] for inst in instances if inst.get("image_file")}
            draw_predictions_on_images(results, image_paths, pl_module.spec, self.draw_dir, kpt_thr=self.draw_thr)


def predictions_to_coco(
    instances: list[dict[str, Any]],
    sigmas: Any,
    nms: Literal["oks", "soft_oks", "none"],
    nms_thr: float,
    keypoint_score_thr: float = KEYPOINT_SCORE_THR,
) -> list[dict[str, Any]]:
    """Predict-step instances -> COCO keypoint results, exactly as the metric post-processes them:
    deduplicate by instance id, rescore (box score x mean keypoint score above the threshold), per-image NMS,
    sorted by (-score, instance id)."""
    from rspose.metrics.coco_ap import KeypointPredictions, apply_nms, deduplicate, rescore, to_coco_results

    if not instances:
        return []
    keypoints = np.stack([np.asarray(inst["keypoints"], dtype=np.float64) for inst in instances])  # (N, K, 3)
    preds = deduplicate(
        KeypointPredictions(
            instance_ids=np.array([inst["instance_id"] for inst in instances], dtype=np.int64),
            image_ids=np.array([inst["image_id"] for inst in instances], dtype=np.int64),
            keypoints=keypoints[..., :2],
            keypoint_scores=keypoints[..., 2],
            bbox_scores=np.array([inst["bbox_score"] for inst in instances], dtype=np.float64),
            areas=np.array([inst["area"] for inst in instances], dtype=np.float64),
        )
    )
    scores = rescore(preds.keypoint_scores, preds.bbox_scores, "bbox_keypoint", keypoint_score_thr)
    kept = apply_nms(preds, scores, np.asarray(sigmas, dtype=np.float64), nms, nms_thr)
    return to_coco_results(preds.take(kept), scores[kept], category_id=1)


def run_id(trainer: Trainer) -> str:
    """This fit's id (one per Trainer, made on first use)."""
    if getattr(trainer, "_rspose_run_id", None) is None:
        trainer._rspose_run_id = uuid.uuid4().hex
    return trainer._rspose_run_id


class GuardedModelCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that keeps a second run from silently writing into the same directory.

    At the start of ``fit`` it writes this run's id to ``dirpath/.rspose_run_id``; before each save it checks that
    the file still holds that id. When another run has claimed the directory since (two fits sharing
    ``checkpoint.dirpath``, the second started before the first saved), this run stops with an error naming the
    directory instead of overwriting the other run's ``last.ckpt`` (or having its own overwritten). The CLI's
    start-up check (``--overwrite``) treats a directory holding a run id like one holding checkpoints.
    """

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and self.dirpath:
            path = Path(self.dirpath) / RUN_ID_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(run_id(trainer) + "\n")

    def check_owner(self, trainer: Trainer, filepath: str) -> None:
        """Raise ``UserError`` (on every rank) unless the directory of ``filepath`` still belongs to this run."""
        owner = None
        if trainer.is_global_zero:
            try:
                owner = (Path(filepath).parent / RUN_ID_FILE).read_text().strip()
            except OSError:
                owner = None  # not claimed (a directory other than dirpath, or the file was removed): nothing to guard
        owner = trainer.strategy.broadcast(owner)
        if owner is not None and owner != run_id(trainer):
            raise UserError(
                f"{Path(filepath).parent}: another run (id {owner}) started writing checkpoints into this directory "
                f"after this run (id {run_id(trainer)}); this run stops without overwriting them. Give each run its "
                "own checkpoint.dirpath / last_checkpoint.dirpath."
            )

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        self.check_owner(trainer, filepath)
        super()._save_checkpoint(trainer, filepath)


class SigtermCheckpoint(Callback):
    """On SIGTERM during ``fit`` (what a cluster sends before pre-emption), save a resumable checkpoint.

    Lightning notes the signal and raises ``SIGTERMException`` at the end of the current training batch (or
    validation batch); this callback then saves the full training state (weights, optimizer, scheduler, loop
    progress) as ``last_checkpoint``'s file (``last.ckpt``), so ``--ckpt_path`` that file (or ``last``) resumes it,
    and records the path on the exception; ``rspose`` then exits with code 143.

    Args:
        last: the ``last_checkpoint`` callback whose directory and file name are used.
    """

    def __init__(self, last: ModelCheckpoint) -> None:
        self.last = last
        self.saved: str | None = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit" or not self.last.dirpath:
            return
        filepath = self.last.format_checkpoint_name(self.last._monitor_candidates(trainer))
        self.last._save_checkpoint(trainer, filepath)
        self.saved = filepath
        exception.rspose_checkpoint = filepath
