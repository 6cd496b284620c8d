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

import numpy as np
from torch import Tensor

from rspose.codecs.dark import refine_dark_udp, resolve_blur_kernel
from rspose.codecs.gaussian import GaussianHeatmapCodec


class UDPHeatmap(GaussianHeatmapCodec):
    """UDP Gaussian heatmaps with DARK-UDP decoding.

    Args:
        input_size: (W, H) of the input crop in pixels.
        heatmap_size: (w, h) of the heatmap (both > 1).
        sigma: Gaussian sigma in heatmap pixels.
        blur_kernel_size: odd kernel size of the DARK-UDP blur; ``None`` (default) derives it from sigma
            (:func:`rspose.codecs.dark.blur_kernel_for_sigma`, mmpose's 6 sigma - 1: 11 for sigma 2, 17 for 3); a
            value far from that is warned about.
    """

    use_udp = True
    subpixel_targets = True  # UDP always centres the Gaussian at the sub-pixel keypoint
    flip_shift = False

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

    def refine(self, locs: Tensor, heatmaps: Tensor) -> Tensor:
        """DARK-UDP: locs (B, K, 2) argmax pixels, heatmaps (B, K, h, w) -> (B, K, 2) heatmap px."""
        return refine_dark_udp(locs, heatmaps, self.blur_kernel_size)
