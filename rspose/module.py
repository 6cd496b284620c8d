"""The LightningModule: backbone + head + codec + loss, train/val/test/predict steps.

Batches are the dicts of :class:`rspose.data.dataset.TopDownDataset` (B instances, K keypoints):
``image`` (B, 3, H, W); the codec's targets (``heatmaps`` (B, K, h, w) or ``target_x`` (B, K, Lx) and
``target_y`` (B, K, Ly)); ``target_weight`` (B, K); ``keypoints_input`` (B, K, 2) GT in crop pixels;
``keypoints_visible`` (B, K); ``area_input`` (B,); and the meta that evaluation needs (``instance_id``,
``image_id``, ``center``, ``scale``, ``bbox_score``, ``keypoints``).

The loss is an object (:class:`rspose.losses.PoseLoss`, chosen in the config by ``class_path``): the MSE and KL
baselines or :class:`rspose.losses.RankingLoss`. When the loss says its outputs are logits
(``loss.sigmoid_outputs``, the ranking losses), flip averaging runs on logits, then a sigmoid, then decoding.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from rspose.codecs.base import Codec, HeadOutput
from rspose.data.specs import KEYPOINT_SCORE_THR, DatasetSpec
from rspose.data.transforms import crop_to_image
from rspose.errors import UserError, check_range
from rspose.evaluator import PoseEvaluator, build_evaluator
from rspose.losses import PoseLoss
from rspose.models import PoseModel
from rspose.models.pretrained import load_pose_weights
from rspose.optim import build_optimizer, build_param_groups, lr_lambda

#: (key, low, high, low_open): the valid range of each numeric model setting (None: unbounded), checked when the
#: module is built so that the message names the key (``model.lr: -0.01, expected ...``).
HPARAM_RANGES = (
    ("lr", 0.0, None, True), ("weight_decay", 0.0, None, False), ("layer_decay", 0.0, 1.0, True),
    ("warmup_iters", 0, None, False), ("warmup_ratio", 0.0, 1.0, False), ("gamma", 0.0, None, True),
    ("min_lr_ratio", 0.0, 1.0, False), ("eval_nms_thr", 0.0, 1.0, False), ("keypoint_score_thr", 0.0, 1.0, False),
)


def check_hparam_ranges(values: dict[str, Any]) -> None:
    """Raise ``UserError`` naming ``model.<key>`` and its range for a value outside :data:`HPARAM_RANGES`."""
    for key, low, high, low_open in HPARAM_RANGES:
        check_range(f"model.{key}", values[key], low, high, low_open=low_open, allow_none=key == "layer_decay")
    for milestone in values["milestones"]:
        check_range("model.milestones", milestone, 0)


class PoseLitModule(LightningModule):
    """Top-down pose estimator.

    Args:
        backbone: feature extractor (e.g. ``rspose.models.ResNetBackbone``).
        head: a head (``rspose.models.HeatmapHead``, ``ViTPoseSimpleHead``, ``SimCCHead``) given with its own
            arguments only: ``in_channels``, ``num_keypoints`` and the sizes are filled in by
            :class:`rspose.models.PoseModel` from the backbone, the data spec and the codec.
        codec: the data's codec (linked from ``data.codec`` by the CLI).
        spec: the data's dataset spec (linked from ``data.spec``): keypoint count, flip indices, OKS sigmas.
        num_keypoints: optional check: if given, it must equal the data's keypoint count.
        loss: the training loss (``rspose.losses.KeypointMSELoss``, ``KLDiscretLoss`` or ``RankingLoss``); it must
            suit the codec (checked here). Its outputs decide whether a sigmoid precedes decoding.
        flip_test: average with the flipped-back output of the mirrored crop at val/test/predict time.
        optimizer, lr, weight_decay, layer_decay: the optimiser (layer_decay: ViTPose layer-wise decay).
        warmup_iters, warmup_ratio: linear warm-up from ``warmup_ratio * lr``.
        lr_schedule, milestones, gamma, min_lr_ratio: step decay at the epochs of ``milestones`` or cosine.
        eval_nms, eval_nms_thr, keypoint_score_thr: OKS-NMS and rescoring of the COCO-style metric.
        eval_outfile_prefix: if set, global rank zero writes ``{prefix}.{stage}.keypoints.json`` (COCO results) and
            ``{prefix}.{stage}.instances.json`` (the per-instance table the notebook reads) at each evaluation.
        eval_ap_before_nms: also evaluate AP without NMS (one more COCOeval), reported as ``AP_before_nms``.
        eval_backend: COCOeval implementation; faster_coco_eval (``pip install rspose[fast]``) gives identical
            numbers about 2.6x faster (benchmarks/metric.py).
        eval_diagnostics: also report AP_oracle, scoring_gap, oks_median, oks_mean, kpt_error, score_low_oks,
            n_low_oks, score_rest, n_rest (one more NMS + COCOeval; see docs/metrics.md). COCO-style data only.
        init_from: local checkpoint of a whole pose model (backbone and head) loaded after the network is built:
            mmpose 1.x / 0.x, ViTPose or rspose files (:func:`rspose.models.pretrained.load_pose_weights`).
        init_from_strict: with ``init_from``, fail unless every tensor is filled and nothing is left over
            (``False``: load what fits and warn). Neither is ever taken back from a checkpoint's hyperparameters
            (``--ckpt_path``, :meth:`load_from_checkpoint`): the checkpoint holds the weights.
        compile: ``torch.compile`` the network and the loss for ``fit`` (its training and validation), each as one
            graph (``fullgraph=True``: a graph break is an error) with static shapes (an epoch's last, smaller batch
            compiles once and is reused in every epoch). Inference and export stay eager. Off by default;
            docs/performance.md has the measured speed.

    The training step never waits for the device (no host synchronisation): a non-finite training loss is
    recorded on the device and raised as a ``FloatingPointError`` at the next logging step
    (``trainer.log_every_n_steps``), at the last batch of an epoch and at the end of training.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        codec: Codec | None = None,
        spec: DatasetSpec | None = None,
        num_keypoints: int | None = None,
        loss: PoseLoss | None = None,
        flip_test: bool = True,
        optimizer: Literal["adam", "adamw"] = "adam",
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        layer_decay: float | None = None,
        warmup_iters: int = 500,
        warmup_ratio: float = 0.001,
        lr_schedule: Literal["step", "cosine"] = "step",
        milestones: tuple[int, ...] = (170, 200),
        gamma: float = 0.1,
        min_lr_ratio: float = 0.0,
        eval_nms: Literal["oks", "soft_oks", "none"] = "oks",
        eval_nms_thr: float = 0.9,
        keypoint_score_thr: float = KEYPOINT_SCORE_THR,
        eval_outfile_prefix: str | None = None,
        eval_ap_before_nms: bool = False,
        eval_backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools",
        eval_diagnostics: bool = False,
        init_from: str | None = None,
        init_from_strict: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        check_hparam_ranges(locals())
        self.save_hyperparameters(ignore=["backbone", "head", "codec", "spec", "loss"])
        if codec is None or spec is None:
            raise UserError(
                "PoseLitModule needs the data's codec and spec (the CLI links them from data.codec and data.spec; "
                "in Python pass codec=datamodule.codec, spec=datamodule.spec)"
            )
        if loss is None:
            raise UserError(
                "model.loss is required: e.g. {class_path: rspose.losses.RankingLoss} (or KeypointMSELoss for "
                "heatmaps, KLDiscretLoss for SimCC)"
            )
        if num_keypoints is not None and num_keypoints != spec.num_keypoints:
            raise UserError(
                f"model.num_keypoints={num_keypoints} disagrees with the data: dataset {spec.name!r} has "
                f"{spec.num_keypoints} keypoints"
            )
        loss.bind(codec, spec)
        self.codec = codec
        self.spec = spec
        self.loss = loss
        self.model = PoseModel(backbone, head, num_keypoints=spec.num_keypoints, codec=codec)
        if init_from is not None:
            load_pose_weights(self.model, init_from, strict=init_from_strict)
        self.flip_indices = list(spec.flip_indices)
        self.val_metric: PoseEvaluator | None = None
        self.test_metric: PoseEvaluator | None = None
        self._nonfinite: _NonFiniteWatch | None = None

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> PoseLitModule:
        """Lightning's, except that the saved ``init_from`` is not loaded again (the checkpoint holds the weights)."""
        kwargs.setdefault("init_from", None)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    # ------------------------------------------------------------------ forward and decoding
    def forward(self, image: Tensor) -> HeadOutput:
        """image: (B, 3, H, W) normalised -> head output (heatmaps (B, K, h, w) or SimCC (x, y) vectors)."""
        return self.model(image)

    def _outputs(self, output: HeadOutput) -> list[Tensor]:
        return [output] if isinstance(output, Tensor) else list(output)

    def predict_output(self, image: Tensor, output: HeadOutput | None = None) -> HeadOutput:
        """Forward with optional flip test; float32 scores (a sigmoid after ranking training).

        ``output`` is the plain forward of ``image`` when the caller has it already.
        """
        outputs = self._outputs(self(image) if output is None else output)
        if self.hparams.flip_test:
            flipped = self._outputs(self.codec.flip_back(self(image.flip(-1)), self.flip_indices))
            outputs = [0.5 * (a.float() + b.float()) for a, b in zip(outputs, flipped)]
        outputs = [o.float() for o in outputs]
        if self.loss.sigmoid_outputs:
            outputs = [o.sigmoid() for o in outputs]
        return outputs[0] if len(outputs) == 1 else (outputs[0], outputs[1])

    def decode_to_image(self, batch: dict[str, Tensor], output: HeadOutput | None = None) -> tuple[Tensor, Tensor]:
        """Keypoints (B, K, 2) in image pixels and scores (B, K) for a batch."""
        keypoints, scores = self.codec.decode(self.predict_output(batch["image"], output))
        keypoints = crop_to_image(
            keypoints, batch["center"].float(), batch["scale"].float(), self.codec.input_size, self.codec.use_udp
        )
        return keypoints, scores

    # ------------------------------------------------------------------ training
    def compute_loss(self, output: HeadOutput, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``self.loss(output, batch)``: ``loss`` and the loss's logged parts (float32 scalars)."""
        return self.loss(output, batch)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One step; nothing here waits for the device except at the steps that write logs (see the class)."""
        parts = self.compute_loss(self(batch["image"]), batch)
        loss = parts["loss"]
        if self._nonfinite is None:
            self._nonfinite = _NonFiniteWatch()
        self._nonfinite.record(parts)
        logs_now = self._logs_this_step(batch_idx)
        if logs_now:
            self._raise_if_nonfinite()
        batch_size = batch["image"].shape[0]
        for name, value in parts.items():
            if name in self.loss.optional_parts and not (logs_now and bool(torch.isfinite(value))):
                continue  # NaN = nothing to measure in this batch; only read at a logging step
            self.log(f"train/{name}", value.detach(), batch_size=batch_size, prog_bar=name == "loss")
        return loss

    def _logs_this_step(self, batch_idx: int) -> bool:
        """Lightning writes this step's logs (every ``log_every_n_steps``), or it is the epoch's last batch; True
        outside a Trainer."""
        trainer = self._trainer
        if trainer is None:
            return True
        connector = getattr(trainer, "_logger_connector", None)
        logs = True if connector is None else bool(connector.should_update_logs)
        return logs or batch_idx + 1 >= trainer.num_training_batches

    def _raise_if_nonfinite(self) -> None:
        """Raise if a training loss since the start was NaN or inf (reads the device-side record: a sync)."""
        watch = self._nonfinite
        if watch is None or self._scaler_skips_nonfinite() or not bool(watch.seen):
            return
        values = ", ".join(f"{k}={float(v):.4g}" for k, v in watch.values.items())
        first = int(watch.first)
        raise FloatingPointError(
            f"non-finite training loss at epoch {self.current_epoch}, step {self.global_step} (first at training "
            f"batch {first} of this run, {watch.calls - first} batch(es) before this check; {values}): the model "
            "diverged or the batch holds NaN/inf; lower model.lr, set trainer.gradient_clip_val, or check the data"
        )

    def on_train_start(self) -> None:
        self._nonfinite = None  # a fresh record per fit

    def on_train_end(self) -> None:
        self._raise_if_nonfinite()

    def _scaler_skips_nonfinite(self) -> bool:
        """fp16 mixed precision: a GradScaler skips steps with inf/NaN gradients and lowers its scale."""
        trainer = self._trainer
        return trainer is not None and str(trainer.precision) in ("16-mixed", "16")

    # ------------------------------------------------------------------ evaluation
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.compile and self.model._compiled_call_impl is None:
            # nn.Module.compile keeps the state-dict keys (checkpoints load either way)
            self.model.compile(fullgraph=True, dynamic=False)
            self.loss.compile(fullgraph=True, dynamic=False)
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        if stage in ("fit", "validate"):
            self.val_metric = build_evaluator(datamodule, "val", self.hparams)
        if stage == "test":
            self.test_metric = build_evaluator(datamodule, "test", self.hparams)

    def _eval_step(self, batch: dict[str, Tensor], metric: PoseEvaluator | None, prefix: str) -> None:
        output = self(batch["image"])
        keypoints, scores = self.decode_to_image(batch, output)
        if metric is not None:
            metric.update(batch, keypoints, scores)
        if batch["target_weight"].sum() > 0:
            loss = self.compute_loss(output, batch)["loss"]
            self.log(f"{prefix}/loss", loss, batch_size=batch["image"].shape[0], sync_dist=True)

    def _eval_epoch_end(self, metric: PoseEvaluator | None, prefix: str) -> None:
        if metric is None:
            return
        results = metric.compute()
        if self.trainer.is_global_zero:  # result files: one writer; compute() gathered every rank's predictions
            metric.write_outputs()
        metric.reset()
        # compute() already gathered every rank's predictions: the values are identical on all ranks.
        self.log_dict({f"{prefix}/{name}": float(value) for name, value in results.items()}, sync_dist=False)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metric, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end(self.val_metric, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metric, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end(self.test_metric, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> list[dict[str, Any]]:
        """One dict per instance: image_id, instance_id, keypoints (K, 3) [x, y, score] in image px, bbox_score,
        area (the crop box, for OKS-NMS) and image_file. Rescoring and NMS happen in the prediction writer."""
        keypoints, scores = self.decode_to_image(batch)
        points = torch.cat([keypoints, scores[..., None]], dim=-1).cpu()
        areas = batch["scale"].float().prod(dim=-1).tolist()
        files = batch.get("image_file")
        return [
            {
                "image_id": int(batch["image_id"][i]),
                "instance_id": int(batch["instance_id"][i]),
                "keypoints": points[i],
                "bbox_score": float(batch["bbox_score"][i]),
                "area": areas[i],
                "image_file": files[i] if files is not None else None,
            }
            for i in range(points.shape[0])
        ]

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = build_param_groups(self.model, hp.weight_decay, hp.layer_decay)
        optimizer = build_optimizer(groups, hp.optimizer, hp.lr)

        def steps_per_epoch() -> int:
            batches = self.trainer.num_training_batches  # inf until the fit loop has its dataloader
            if not math.isfinite(batches):
                return 1 << 62
            return max(1, int(batches) // self.trainer.accumulate_grad_batches)

        def total_steps() -> int:
            return max(1, int(self.trainer.estimated_stepping_batches))

        factor = lr_lambda(
            hp.warmup_iters, hp.warmup_ratio, hp.lr_schedule, tuple(hp.milestones), hp.gamma,
            steps_per_epoch, total_steps, hp.min_lr_ratio,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class _NonFiniteWatch:
    """Device-side record of the first non-finite training loss: no host synchronisation until it is read.

    ``seen``: bool scalar; ``first``: int64 scalar, the 1-based count of :meth:`record` calls at the first
    non-finite loss (0 when none); ``values``: that step's parts; ``calls``: the number of records (host int).
    """

    def __init__(self) -> None:
        self.seen: Tensor | None = None
        self.first: Tensor | None = None
        self.count: Tensor | None = None
        self.values: dict[str, Tensor] = {}
        self.calls = 0

    def record(self, parts: dict[str, Tensor]) -> None:
        loss = parts["loss"].detach()
        if self.seen is None or self.seen.device != loss.device:
            self.seen = torch.zeros((), dtype=torch.bool, device=loss.device)
            self.first = torch.zeros((), dtype=torch.long, device=loss.device)
            self.count = torch.zeros((), dtype=torch.long, device=loss.device)
            self.values = {}
        self.calls += 1
        self.count = self.count + 1
        bad = ~torch.isfinite(loss)
        new = bad & ~self.seen
        self.first = torch.where(new, self.count, self.first)
        for name, value in parts.items():
            old = self.values.get(name)
            value = value.detach().float()
            self.values[name] = value if old is None else torch.where(new, value, old)
        self.seen = self.seen | bad
