"""The codec contract: keypoints <-> training targets, batched decoding and the flip-back rule.

A codec is used in two places:

* in the dataset (numpy, one instance at a time, inside DataLoader workers): :meth:`Codec.encode`
  turns keypoints in input-crop pixels into the targets of one sample;
* in the LightningModule (torch, batched, on the model's device): :meth:`Codec.decode` turns the
  head output back into keypoints in input-crop pixels with scores, and :meth:`Codec.flip_back`
  maps the output for a horizontally flipped crop back to the unflipped frame (flip test).

Shapes: K keypoints, B batch, input crop W x H (``input_size = (W, H)``), heatmap w x h.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

#: A head output: one (B, K, h, w) heatmap tensor, or the (x, y) pair of SimCC vectors
#: ((B, K, Lx), (B, K, Ly)).
HeadOutput = Tensor | tuple[Tensor, Tensor]


class Codec(ABC):
    """Base class of every codec. Subclasses are plain, typed classes (the CLI builds them).

    Attributes:
        input_size: (W, H) of the input crop in pixels.
        use_udp: whether the data pipeline warps crops with the UDP affine (and back-projects with its inverse).
        target_keys: names of the target arrays that :meth:`encode` returns besides ``target_weight``
            (``("heatmaps",)`` for heatmap codecs, ``("target_x", "target_y")`` for SimCC).
    """

    input_size: tuple[int, int]
    target_keys: tuple[str, ...]
    #: True when crops must be warped with the unbiased (UDP) affine, whose inverse the module uses too.
    use_udp: bool = False

    @abstractmethod
    def encode(self, keypoints: np.ndarray, keypoints_visible: np.ndarray) -> dict[str, np.ndarray]:
        """Encode one instance.

        Args:
            keypoints: (K, 2) float32 keypoint coordinates in input-crop pixels.
            keypoints_visible: (K,) float32, > 0 for a labelled keypoint.

        Returns:
            A dict with every key of :attr:`target_keys` (float32 labels with peak 1, truncated at
            3 sigma, the labels the ranking losses consume) and ``target_weight`` (K,) float32: 0 for
            an unlabelled keypoint or one whose label falls off the target.
        """

    @abstractmethod
    def decode(self, output: HeadOutput) -> tuple[Tensor, Tensor]:
        """Decode a batch of head outputs (any float dtype; computed in float32).

        Returns:
            keypoints: (B, K, 2) float32 in input-crop pixels; scores: (B, K) float32 (the maximum
            of the heatmap / vectors, i.e. in the same units as ``output``).
        """

    @abstractmethod
    def flip_back(self, output: HeadOutput, flip_indices: Sequence[int]) -> HeadOutput:
        """Map the head output of a horizontally flipped crop back to the original frame.

        Mirrors along x, permutes keypoints by ``flip_indices`` and applies this codec's shift
        (docs/protocols.md: MSRA heatmaps 1 px, UDP none, SimCC k - 1 bins).
        """

    @property
    def num_dims(self) -> int:
        """2 for heatmap codecs, 1 for SimCC (each axis is a 1D set for the ranking loss)."""
        return 2 if self.target_keys == ("heatmaps",) else 1


def as_float32(output: HeadOutput) -> HeadOutput:
    """Cast a head output to float32 (decoding always runs in float32, also under autocast)."""
    if isinstance(output, Tensor):
        return output.float()
    return tuple(o.float() for o in output)  # type: ignore[return-value]


def to_tensor(array: np.ndarray | Tensor) -> Tensor:
    return array if isinstance(array, Tensor) else torch.from_numpy(np.ascontiguousarray(array))


def scale_xy(points: Tensor, factor: tuple[float, float]) -> Tensor:
    """(..., 2) x, y points times the per-axis ``factor`` (x, y), given as Python floats: no host data is copied
    to the device (a copy from host memory waits for a GPU) and nothing breaks a compiled graph."""
    fx, fy = factor
    return torch.stack((points[..., 0] * fx, points[..., 1] * fy), dim=-1)
