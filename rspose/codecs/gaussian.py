"""Gaussian targets shared by the codecs, and the common body of the Gaussian heatmap codecs (MSRA, UDP).

* :func:`check_keypoints`: validate one instance's keypoints (every codec's ``encode``);
* :func:`gaussian_labels_1d`: truncated 1D Gaussians (the SimCC vectors and the heatmaps' separable factors);
* :func:`gaussian_heatmaps`: truncated 2D Gaussian heatmaps (mmpose ``generate_gaussian_heatmaps`` /
  ``generate_udp_gaussian_heatmaps``);
* :func:`flip_heatmaps`: the flip-back of heatmaps, with or without the one-pixel shift;
* :class:`GaussianHeatmapCodec`: encode / decode / flip_back of a heatmap codec; a subclass sets its geometry and
  says where the Gaussian is centred, which sub-pixel step follows the argmax and whether flip-back shifts.

Shapes: K keypoints, B instances, heatmaps (K, h, w) per sample and (B, K, h, w) batched.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from rspose.codecs.base import Codec, HeadOutput, scale_xy, to_tensor
from rspose.codecs.dark import check_heatmaps, heatmap_argmax


def check_keypoints(keypoints: np.ndarray, keypoints_visible: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one instance: keypoints (K, 2), keypoints_visible (K,). Returns (float32 keypoints, labelled mask).

    A keypoint with a non-finite coordinate counts as unlabelled (its coordinates are replaced by 0).
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    visible = np.asarray(keypoints_visible, dtype=np.float32)
    if keypoints.ndim != 2 or keypoints.shape[1] != 2:
        raise ValueError(f"{where}: keypoints must have shape (K, 2), got {keypoints.shape}")
    if visible.shape != (keypoints.shape[0],):
        raise ValueError(
            f"{where}: keypoints_visible must have shape (K,) = ({keypoints.shape[0]},), got {visible.shape}"
        )
    finite = np.isfinite(keypoints).all(axis=1)
    labelled = (visible > 0) & finite
    return np.where(finite[:, None], keypoints, 0.0).astype(np.float32), labelled


def gaussian_labels_1d(
    centre: np.ndarray, mean: np.ndarray, length: int, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Truncated 1D Gaussians, one per keypoint.

    Args:
        centre: (K,) int64 patch centres (bins); mean: (K,) float Gaussian means; length: number of bins.

    Returns:
        labels: (K, length) float32, ``exp(-(b - mean)^2 / (2 sigma^2))`` where |b - centre| <= 3 sigma, else 0;
        has_bin: (K,) bool, whether the patch has a bin inside [0, length).
    """
    bins = np.arange(length, dtype=np.float64)[None, :]
    inside = np.abs(bins - centre[:, None]) <= 3.0 * sigma
    labels = np.exp(-((bins - mean[:, None].astype(np.float64)) ** 2) / (2.0 * sigma**2)) * inside
    return labels.astype(np.float32), inside.any(axis=1)


def gaussian_heatmaps(
    keypoints_hm: np.ndarray, labelled: np.ndarray, heatmap_size: tuple[int, int], sigma: float, subpixel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Truncated Gaussian heatmaps (mmpose ``generate_gaussian_heatmaps`` / ``generate_udp_gaussian_heatmaps``).

    Args:
        keypoints_hm: (K, 2) float32 keypoints in heatmap pixels; labelled: (K,) bool.
        subpixel: centre the Gaussian at the keypoint (UDP / DARK) rather than at the rounded pixel.

    Returns:
        heatmaps: (K, h, w) float32; target_weight: (K,) float32.
    """
    w, h = heatmap_size
    centre = (keypoints_hm + np.float32(0.5)).astype(np.int64)  # int(): truncation toward zero, as mmpose
    mean = keypoints_hm if subpixel else centre
    gx, has_x = gaussian_labels_1d(centre[:, 0], mean[:, 0], w, sigma)
    gy, has_y = gaussian_labels_1d(centre[:, 1], mean[:, 1], h, sigma)
    weight = (labelled & has_x & has_y).astype(np.float32)
    heatmaps = gy[:, :, None] * gx[:, None, :] * weight[:, None, None]
    return heatmaps.astype(np.float32), weight


def flip_heatmaps(heatmaps: Tensor, flip_indices: Sequence[int], shift: bool, where: str) -> Tensor:
    """Mirror (B, K, h, w) heatmaps along x, permute keypoints, optionally shift 1 px right (edge kept)."""
    if heatmaps.ndim != 4:
        raise ValueError(f"{where}: expected heatmaps of shape (B, K, h, w), got shape {tuple(heatmaps.shape)}")
    if len(flip_indices) != heatmaps.shape[1]:
        raise ValueError(
            f"{where}: flip_indices has {len(flip_indices)} entries but the heatmaps have K = {heatmaps.shape[1]}"
        )
    index = torch.as_tensor(list(flip_indices), dtype=torch.long, device=heatmaps.device)
    out = heatmaps.flip(-1).index_select(1, index)
    if shift:
        out = torch.cat((out[..., :1], out[..., :-1]), dim=-1)
    return out


class GaussianHeatmapCodec(Codec):
    """Truncated Gaussian heatmap targets, argmax decoding with a sub-pixel step, flip-back (MSRA and UDP).

    A subclass's constructor sets ``input_size`` (W, H), ``heatmap_size`` (w, h), ``sigma``, ``scale_factor``
    ((2,) float32 input pixels per heatmap pixel, x and y) and ``scale_xy`` (the same as Python floats), and the
    subclass defines :attr:`subpixel_targets`, :attr:`flip_shift` and :meth:`refine`.
    """

    target_keys = ("heatmaps",)
    heatmap_size: tuple[int, int]
    sigma: float
    scale_factor: np.ndarray
    scale_xy: tuple[float, float]
    #: whether flip_back shifts the mirrored heatmaps one pixel right (MSRA) or not (UDP).
    flip_shift: ClassVar[bool]

    @property
    @abstractmethod
    def subpixel_targets(self) -> bool:
        """Whether encode centres the Gaussian at the sub-pixel keypoint rather than at the rounded pixel."""

    @abstractmethod
    def refine(self, locs: Tensor, heatmaps: Tensor) -> Tensor:
        """The sub-pixel step after the argmax: locs (B, K, 2) integer heatmap pixels, heatmaps (B, K, h, w) float32
        -> (B, K, 2) float32 heatmap pixels."""

    def encode(self, keypoints: np.ndarray, keypoints_visible: np.ndarray) -> dict[str, np.ndarray]:
        """keypoints: (K, 2) input px; keypoints_visible: (K,) -> heatmaps (K, h, w), target_weight (K,)."""
        kp, labelled = check_keypoints(keypoints, keypoints_visible, f"{type(self).__name__}.encode")
        heatmaps, weight = gaussian_heatmaps(
            kp / self.scale_factor, labelled, self.heatmap_size, self.sigma, subpixel=self.subpixel_targets
        )
        return {"heatmaps": heatmaps, "target_weight": weight}

    def decode(self, output: HeadOutput) -> tuple[Tensor, Tensor]:
        """output: (B, K, h, w) heatmaps (any float dtype) -> keypoints (B, K, 2) input px, scores (B, K)."""
        if isinstance(output, tuple):
            raise TypeError(f"{type(self).__name__}.decode: expected one (B, K, h, w) tensor, got a tuple")
        heatmaps = check_heatmaps(to_tensor(output), self.heatmap_size, f"{type(self).__name__}.decode")
        locs, scores = heatmap_argmax(heatmaps)
        return scale_xy(self.refine(locs, heatmaps), self.scale_xy), scores

    def flip_back(self, output: HeadOutput, flip_indices: Sequence[int]) -> HeadOutput:
        """output: (B, K, h, w) heatmaps of flipped crops -> (B, K, h, w) in the original frame."""
        if isinstance(output, tuple):
            raise TypeError(f"{type(self).__name__}.flip_back: expected one (B, K, h, w) tensor, got a tuple")
        return flip_heatmaps(to_tensor(output), flip_indices, shift=self.flip_shift,
                             where=f"{type(self).__name__}.flip_back")
