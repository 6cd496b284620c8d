"""MSRA heatmaps (SimpleBaseline, Xiao et al. 2018): Gaussian at the rounded heatmap pixel, argmax decoding.

Conventions (mmpose 1.x ``MSRAHeatmap``):

* stride s = input_size / heatmap_size per axis; a keypoint at input pixel x sits at heatmap x / s.
* encode: centre ``int(x / s + 0.5)`` (truncation toward zero, as mmpose), a Gaussian of peak 1 on the square
  patch |p - centre| <= 3 sigma (per axis), zero elsewhere; with ``unbiased=True`` (DARK encoding) the Gaussian
  is centred at the sub-pixel x / s instead, on the same patch (mmpose leaves it untruncated; docs/method.md needs
  it truncated). target_weight is 0 for an unlabelled keypoint or when the patch has no pixel on the map.
* decode: argmax, then the quarter-pixel shift toward the larger neighbour (or DARK when ``unbiased``; other
  sub-pixel steps with ``decoding``), times s. DARK's blur kernel follows sigma unless set.
* flip_back: mirror x, permute keypoints by flip_indices, then shift one pixel right
  (``heatmap[..., 1:] = heatmap[..., :-1]``): the flipped crop's Gaussian lands about 1 - 1/s px left.

Shapes: K keypoints, B instances, heatmaps (K, h, w) per sample and (B, K, h, w) batched.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from torch import Tensor

from rspose.codecs.dark import refine_centroid, refine_dark, refine_quarter, resolve_blur_kernel
from rspose.codecs.gaussian import GaussianHeatmapCodec
from rspose.codecs.rank_fit import disc_radius, refine_rank_fit
from rspose.codecs.softargmax import refine_softargmax

#: The ``decoding`` choices of :class:`MSRAHeatmap` (the sub-pixel step after the argmax).
DECODINGS = ("quarter", "dark", "centroid", "softargmax", "rankfit")
Decoding = Literal["quarter", "dark", "centroid", "softargmax", "rankfit"]


class MSRAHeatmap(GaussianHeatmapCodec):
    """MSRA Gaussian heatmaps with argmax + a sub-pixel step (the quarter shift, DARK, or a decoder of ranking maps).

    Args:
        input_size: (W, H) of the input crop in pixels.
        heatmap_size: (w, h) of the heatmap.
        sigma: Gaussian sigma in heatmap pixels.
        unbiased: DARK: sub-pixel Gaussian encoding and DARK decoding (Taylor step on the blurred log heatmap).
        blur_kernel_size: odd kernel size of the DARK blur; ``None`` (default) derives it from sigma
            (:func:`rspose.codecs.dark.blur_kernel_for_sigma`, mmpose's 6 sigma - 1: 5 for sigma 1, 11 for 2, 17
            for 3). A value far from that is warned about. Only with DARK decoding.
        decoding: the sub-pixel step after the argmax; ``None`` (default) = ``"dark"`` when ``unbiased`` else
            ``"quarter"``. Decoding only: targets do not change.

            * ``"quarter"``: 0.25 px toward the larger neighbour (mmpose).
            * ``"dark"``: DARK, a Newton step on the log of the blurred map (mmpose).
            * ``"centroid"``: centre of mass of the 3x3 window (not an mmpose rule).
            * ``"softargmax"``: softmax(z / ``softargmax_temperature``)-weighted mean position over the
              ``softargmax_window`` square around the argmax, z = logit of the map (``softargmax_input``)
              (:mod:`rspose.codecs.softargmax`).
            * ``"rankfit"``: the centre fitted to the ranks of the pixels of the disc of radius ``rank_radius``
              (:mod:`rspose.codecs.rank_fit`): reads only the order that Spatial-RS's sort term trains.
        softargmax_window: odd side of the soft-argmax window (heatmap pixels).
        softargmax_temperature: soft-argmax temperature (> 0), in units of z.
        softargmax_input: ``"logit"``: z = log(p / (1 - p)) of the received map, i.e. the logits when a ranking
            loss's sigmoid preceded decoding (the module applies it); ``"value"``: z = the received map.
        rank_radius: radius of the rank-fit disc in heatmap pixels; ``None`` (default) = the disc of labels > 0.1
            (RankingLoss's default ``positive_threshold``): sigma sqrt(2 ln 10), 2.15 at sigma 1.

    Options of a decoder other than the chosen one are refused when set to a non-default value.
    """

    use_udp = False
    flip_shift = True

    def __init__(
        self,
        input_size: tuple[int, int] = (192, 256),
        heatmap_size: tuple[int, int] = (48, 64),
        sigma: float = 2.0,
        unbiased: bool = False,
        blur_kernel_size: int | None = None,
        decoding: Decoding | None = None,
        softargmax_window: int = 5,
        softargmax_temperature: float = 0.25,
        softargmax_input: Literal["logit", "value"] = "logit",
        rank_radius: float | None = None,
    ) -> None:
        name = type(self).__name__
        if sigma <= 0:
            raise ValueError(f"{name}: sigma must be > 0, got {sigma}")
        if decoding is not None and decoding not in DECODINGS:
            raise ValueError(f"{name}: decoding={decoding!r}, expected one of {list(DECODINGS)} or null")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.unbiased = unbiased
        self.decoding: str = decoding or ("dark" if unbiased else "quarter")
        if blur_kernel_size is not None and self.decoding != "dark":
            raise ValueError(f"{name}: blur_kernel_size={blur_kernel_size} is only used by DARK decoding "
                             f"(decoding={self.decoding!r}); set decoding: dark or unbiased: true")
        self.blur_kernel_size = resolve_blur_kernel(blur_kernel_size, self.sigma, name)
        if softargmax_window < 1 or softargmax_window % 2 != 1:
            raise ValueError(f"{name}: softargmax_window must be a positive odd integer, got {softargmax_window}")
        if not softargmax_temperature > 0:
            raise ValueError(f"{name}: softargmax_temperature must be > 0, got {softargmax_temperature}")
        if softargmax_input not in ("logit", "value"):
            raise ValueError(f"{name}: softargmax_input={softargmax_input!r}, expected 'logit' or 'value'")
        changed = (softargmax_window, softargmax_temperature, softargmax_input) != (5, 0.25, "logit")
        if changed and self.decoding != "softargmax":
            raise ValueError(f"{name}: softargmax_window/temperature/input are only used by decoding: softargmax "
                             f"(decoding={self.decoding!r})")
        if rank_radius is not None and self.decoding != "rankfit":
            raise ValueError(f"{name}: rank_radius={rank_radius} is only used by decoding: rankfit "
                             f"(decoding={self.decoding!r})")
        if rank_radius is not None and rank_radius < 1:
            raise ValueError(f"{name}: rank_radius must be >= 1 heatmap pixel, got {rank_radius}")
        self.softargmax_window = int(softargmax_window)
        self.softargmax_temperature = float(softargmax_temperature)
        self.softargmax_input = softargmax_input
        self.rank_radius = float(rank_radius) if rank_radius is not None else disc_radius(self.sigma, 0.1)
        if self.decoding == "rankfit" and self.rank_radius < 1:
            raise ValueError(f"{name}: the rank-fit disc of sigma {sigma:g} has radius {self.rank_radius:.2f} < 1; "
                             "set rank_radius >= 1")
        #: (2,) float32 input pixels per heatmap pixel (x, y).
        self.scale_factor = (np.array(self.input_size) / np.array(self.heatmap_size)).astype(np.float32)
        self.scale_xy = (float(self.scale_factor[0]), float(self.scale_factor[1]))  # decode: Python floats

    @property
    def subpixel_targets(self) -> bool:
        """DARK (``unbiased``) centres the Gaussian at the sub-pixel keypoint, MSRA at the rounded pixel."""
        return self.unbiased

    def refine(self, locs: Tensor, heatmaps: Tensor) -> Tensor:
        """The ``decoding`` step: locs (B, K, 2) argmax pixels, heatmaps (B, K, h, w) -> (B, K, 2) heatmap px."""
        if self.decoding == "dark":
            return refine_dark(locs, heatmaps, self.blur_kernel_size)
        if self.decoding == "centroid":
            return refine_centroid(locs, heatmaps)
        if self.decoding == "softargmax":
            return refine_softargmax(
                locs, heatmaps, self.softargmax_window, self.softargmax_temperature, self.softargmax_input
            )
        if self.decoding == "rankfit":
            return refine_rank_fit(locs, heatmaps, self.rank_radius)
        return refine_quarter(locs, heatmaps)
