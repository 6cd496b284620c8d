"""Connects a batch of decoded predictions to the dataset's metric (OKS-mAP or PCKh, chosen by the dataset).

The LightningModule builds one evaluator per stage in ``setup`` from its datamodule; the evaluator is an
``nn.Module`` holding the torchmetrics metric, so Lightning moves it to the device and torchmetrics gathers
its states across ranks in ``compute``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from rspose.metrics import OKSMeanAP, PCKhAccuracy


class PoseEvaluator(nn.Module):
    """Feeds batches to a metric.

    Args:
        metric: an :class:`OKSMeanAP` (COCO-style AP; areas for OKS-NMS are the crop box areas, scale_w x
            scale_h, as in the reference toolkits) or a :class:`PCKhAccuracy` (MPII).
    """

    def __init__(self, metric: OKSMeanAP | PCKhAccuracy) -> None:
        super().__init__()
        self.metric = metric

    def update(self, batch: dict[str, Tensor], keypoints: Tensor, scores: Tensor) -> None:
        """keypoints: (B, K, 2) image px; scores: (B, K)."""
        if isinstance(self.metric, PCKhAccuracy):
            self.metric.update(
                batch["instance_id"],
                keypoints,
                batch["keypoints"].float(),
                batch["keypoints_visible"].float(),
                batch.get("head_size"),
            )
        else:
            self.metric.update(
                batch["instance_id"],
                batch["image_id"],
                keypoints,
                scores,
                batch["bbox_score"].float(),
                batch["scale"].float().prod(dim=-1),
            )

    def compute(self) -> dict[str, float]:
        return {name: float(value) for name, value in self.metric.compute().items()}

    def write_outputs(self) -> list[Path]:
        """Write the last evaluation's result files (OKSMeanAP with an outfile_prefix; nothing otherwise). Call on
        global rank zero only."""
        return self.metric.write_outputs() if isinstance(self.metric, OKSMeanAP) else []

    def reset(self) -> None:
        self.metric.reset()


def build_evaluator(datamodule: Any, stage: str, hparams: Any) -> PoseEvaluator | None:
    """The metric for ``stage`` ("val" or "test") of a :class:`rspose.data.datamodule.PoseDataModule`: the one its
    dataset object gives (:meth:`rspose.datasets.PoseDataset.metric`), fed with the module's ``hparams``.

    Returns None when the datamodule has no annotation file for that stage.
    """
    ann_file = datamodule.eval_ann_file(stage)
    if ann_file is None:
        return None
    return PoseEvaluator(datamodule.dataset.metric(ann_file, stage, hparams))
