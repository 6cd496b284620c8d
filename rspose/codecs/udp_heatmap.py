"""UDP heatmaps (Huang et al. 2020, "The Devil is in the Details"): unbiased sub-pixel Gaussians, DARK-UDP decoding.

Conventions (mmpose 1.x ``UDPHeatmap`` with ``heatmap_type='gaussian'``):

* scale = (input_size - 1) / (heatmap_size - 1) per axis: input pixel 0 and W - 1 map to heatmap 0 and w - 1,
  which is what the UDP affine (crop corners on pixel centres) needs.
* encode: a Gaussian of amplitude 1 centred at the sub-pixel x / scale, on the square patch
  |p - int(x / scale + 0.5)| <= 3 sigma (per axis), zero elsewhere. The sampled peak is 1 when the keypoint
  falls on a heatmap pixel and slightly less otherwise (exp(-d^2 / (2 sigma^2)), d the sub-pixel distance).
  target_weight is 0 for an unlabelled keypoint or a patch with no pixel on the map.
* decode: argmax, DARK-UDP refinement, times scale. mmpose multiplies by input_size / (heatmap_size - 1)
  because it back-projects with the plain (non-UDP) affine; this codec's decode returns true input-crop pixels,
  to be back-projected with the inverse UDP affine (``use_udp = True``). Both give the same image coordinates.
* flip_back: mirror x and permute keypoints, no shift (x' = W - 1 - x maps exactly onto the mirrored grid).

Shapes: K keypoints, B instances, heatmaps (K, h, w) per sample and (B, K, h, w) batched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from rspose.codecs.base import Codec, HeadOutput, scale_xy, to_tensor
from rspose.codecs.dark import check_heatmaps, heatmap_argmax, refine_dark_udp, resolve_blur_kernel
from rspose.codecs.msra_heatmap import check_keypoints, flip_heatmaps, gaussian_heatmaps


class UDPHeatmap(Codec):
    """UDP Gaussian heatmaps with DARK-UDP decoding.

    Args:
        input_size: (W, H) of the input crop in pixels.
        heatmap_size: (w, h) of the heatmap (both > 1).
        sigma: Gaussian sigma in heatmap pixels.
        blur_kernel_size: odd kernel size of the DARK-UDP blur; ``None`` (default) derives it from sigma
            (:func:`rspose.codecs.dark.blur_kernel_for_sigma`, mmpose's 6 sigma - 1: 11 for sigma 2, 17 for 3); a
            value far from that is warned about.
    """

    target_keys = ("heatmaps",)
    use_udp = True

    def __init__(
        self,
        input_size: tuple[int, int] = (192, 256),
        heatmap_size: tuple[int, int] = (48, 64),
        sigma: float = 2.0,
        blur_kernel_size: int | None = None,
    ) -> None:
        if sigma <= 0:
            raise ValueError(f"UDPHeatmap: sigma must be > 0, got {sigma}")
        if min(heatmap_size) < 2 or min(input_size) < 2:
            raise ValueError(f"UDPHeatmap: input_size {input_size} and heatmap_size {heatmap_size} must be >= 2")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.blur_kernel_size = resolve_blur_kernel(blur_kernel_size, self.sigma, "UDPHeatmap")
        #: (2,) float32 input pixels per heatmap pixel (x, y): (input - 1) / (heatmap - 1).
        self.scale_factor = ((np.array(self.input_size) - 1) / (np.array(self.heatmap_size) - 1)).astype(np.float32)
        self.scale_xy = (float(self.scale_factor[0]), float(self.scale_factor[1]))  # decode: Python floats

    def encode(self, keypoints: np.ndarray, keypoints_visible: np.ndarray) -> dict[str, np.ndarray]:
        """keypoints: (K, 2) input px; keypoints_visible: (K,) -> heatmaps (K, h, w), target_weight (K,)."""
        kp, labelled = check_keypoints(keypoints, keypoints_visible, f"{type(self).__name__}.encode")
        heatmaps, weight = gaussian_heatmaps(
            kp / self.scale_factor, labelled, self.heatmap_size, self.sigma, subpixel=True
        )
        return {"heatmaps": heatmaps, "target_weight": weight}

    def decode(self, output: HeadOutput) -> tuple[Tensor, Tensor]:
        """output: (B, K, h, w) heatmaps (any float dtype) -> keypoints (B, K, 2) input px, scores (B, K)."""
        if isinstance(output, tuple):
            raise TypeError(f"{type(self).__name__}.decode: expected one (B, K, h, w) tensor, got a tuple")
        heatmaps = check_heatmaps(to_tensor(output), self.heatmap_size, f"{type(self).__name__}.decode")
        locs, scores = heatmap_argmax(heatmaps)
        refined = refine_dark_udp(locs, heatmaps, self.blur_kernel_size)
        return scale_xy(refined, self.scale_xy), scores

    def flip_back(self, output: HeadOutput, flip_indices: Sequence[int]) -> HeadOutput:
        """output: (B, K, h, w) heatmaps of flipped crops -> (B, K, h, w) in the original frame (no shift)."""
        if isinstance(output, tuple):
            raise TypeError(f"{type(self).__name__}.flip_back: expected one (B, K, h, w) tensor, got a tuple")
        return flip_heatmaps(to_tensor(output), flip_indices, shift=False, where=f"{type(self).__name__}.flip_back")
