"""The contract of a training loss: head output + batch -> ``{"loss": ..., <logged parts>}``.

A config chooses the loss by ``class_path``, like the backbone, head and codec::

    model:
      loss:
        class_path: rspose.losses.RankingLoss
        init_args: {delta: 0.5, instance_sort_weight: 1.0}

:class:`rspose.module.PoseLitModule` calls :meth:`PoseLoss.bind` once with the data's codec and dataset spec
(a loss that cannot train that codec's targets fails there, at start-up, naming ``model.loss`` and
``data.codec``), then ``loss(output, batch)`` at every training and evaluation step.

Batch keys a loss may read (B instances, K keypoints; see :mod:`rspose.data.dataset`): the codec's
``target_keys`` (``heatmaps`` (B, K, h, w), or ``target_x`` (B, K, Lx) and ``target_y`` (B, K, Ly)),
``target_weight`` (B, K), ``keypoints_input`` (B, K, 2) ground truth in crop pixels, ``keypoints_visible``
(B, K) and ``area_input`` (B,) the instance area in crop pixels^2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from rspose.codecs.base import Codec, HeadOutput

if TYPE_CHECKING:
    from rspose.data.specs import DatasetSpec


class PoseLoss(nn.Module):
    """Base class of every training loss.

    Class attributes:
        codec_dims: the codec kinds this loss can train: 2 (heatmaps), 1 (SimCC vectors) or both.
        sigmoid_outputs: the head's outputs are logits to pass through a sigmoid before decoding (the ranking
            losses; flip averaging stays on logits, see docs/method.md). Evaluation and inference read it.
            It belongs to the loss, not to the head or the codec: the same head and codec (HeatmapHead +
            MSRAHeatmap) output heatmap values under MSE and logits under RankingLoss, so only the training
            objective says what the trained weights output. A head or codec flag would be a second value that must
            agree with the loss, and a disagreement would decode silently wrong. Inference reads it from the loss
            of the run's config, which the checkpoint's hyperparameters carry; a loss has no weights and is
            cheap to build.
        optional_parts: logged parts that are NaN when a batch has nothing to measure; the module logs them only
            where they are finite, and only at logging steps (reading them waits for the device).

    Subclasses implement :meth:`forward` and may extend :meth:`bind` (call ``super().bind``).
    """

    codec_dims: ClassVar[tuple[int, ...]] = (1, 2)
    sigmoid_outputs: ClassVar[bool] = False
    optional_parts: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self._codec: Codec | None = None
        self.register_buffer("sigmas", torch.zeros(0), persistent=False)

    def bind(self, codec: Codec, spec: DatasetSpec) -> None:
        """Attach the data's codec and keypoint spec; raise if this loss cannot train the codec's targets."""
        if codec.num_dims not in self.codec_dims:
            kinds = {2: "heatmaps", 1: "SimCC vectors"}
            alternatives = {2: "rspose.losses.KeypointMSELoss or rspose.losses.RankingLoss",
                            1: "rspose.losses.KLDiscretLoss or rspose.losses.RankingLoss"}[codec.num_dims]
            raise ValueError(
                f"model.loss: {type(self).__name__} trains {kinds[self.codec_dims[0]]}, but data.codec "
                f"({type(codec).__name__}) produces {kinds[codec.num_dims]}; use {alternatives} as model.loss"
            )
        self._codec = codec
        self.sigmas = torch.as_tensor(spec.sigmas, dtype=torch.float32, device=self.sigmas.device)

    @property
    def codec(self) -> Codec:
        if self._codec is None:
            raise RuntimeError(f"{type(self).__name__}: call bind(codec, spec) first (PoseLitModule does)")
        return self._codec

    def outputs(self, output: HeadOutput) -> list[Tensor]:
        """The head output as a list of axes: [heatmaps] or [x vectors, y vectors]."""
        return [output] if isinstance(output, Tensor) else list(output)

    def targets(self, batch: Mapping[str, Tensor]) -> list[Tensor]:
        """The codec's targets of ``batch``, in the order of :meth:`outputs`."""
        return [batch[key] for key in self.codec.target_keys]

    def forward(self, output: HeadOutput, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Returns ``{"loss": scalar float32 (with gradient), **parts}``: parts are float32 scalars that the
        module logs (detached) as ``train/<name>``."""
        raise NotImplementedError
