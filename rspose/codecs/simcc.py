"""SimCC labels (Li et al. 2022): one 1D Gaussian per axis over k-times finer bins, argmax decoding.

Conventions (mmpose 1.x ``SimCCLabel`` with ``smoothing_type='gaussian'``, ``normalize=False``):

* k = simcc_split_ratio; bins Lx = round(W k), Ly = round(H k); input pixel x sits at bin x k.
* encode: centre bin ``round(x k)`` (numpy round-half-to-even, as mmpose), labels ``exp(-(b - mu)^2 / (2 sigma^2))``
  with peak exactly 1, TRUNCATED to |b - mu| <= 3 sigma (zero beyond; mmpose leaves the tails, docs/method.md needs
  them cut). target_weight is 0 for an unlabelled keypoint or when either axis has no bin inside its vector.
* decode: argmax per axis / k; score = min(max_x, max_y) (mmpose ``get_simcc_maximum``, without its -1 for
  non-positive maxima).
* flip_back: x reversed along bins, keypoints permuted, then x shifted k - 1 bins LEFT; y only permuted.
  Derivation: x' = W - 1 - x lands in bin (W - 1 - x) k = Lx - k - x k; reversing sends bin b to Lx - 1 - b,
  i.e. to x k + (k - 1). mmpose ``flip_vectors`` does not shift (a (k - 1) / k px bias). A fractional shift
  (non-integer k) is applied by linear interpolation; bins shifted in past the end repeat the last bin.

Shapes: K keypoints, B instances, target_x (K, Lx) / target_y (K, Ly) per sample, (B, K, L) batched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from rspose.codecs.base import Codec, HeadOutput, to_tensor
from rspose.codecs.gaussian import check_keypoints, gaussian_labels_1d


class SimCCLabel(Codec):
    """SimCC 1D Gaussian labels with argmax decoding.

    Args:
        input_size: (W, H) of the input crop in pixels.
        sigma: Gaussian sigma in bins, one value or (sigma_x, sigma_y).
        simcc_split_ratio: k, bins per input pixel.
    """

    target_keys = ("target_x", "target_y")
    use_udp = False

    def __init__(
        self,
        input_size: tuple[int, int] = (192, 256),
        sigma: float | tuple[float, float] = 6.0,
        simcc_split_ratio: float = 2.0,
    ) -> None:
        sig = (float(sigma), float(sigma)) if isinstance(sigma, (int, float)) else tuple(float(s) for s in sigma)
        if len(sig) != 2 or min(sig) <= 0:
            raise ValueError(f"SimCCLabel: sigma must be > 0, one value or (sigma_x, sigma_y), got {sigma}")
        if simcc_split_ratio <= 0:
            raise ValueError(f"SimCCLabel: simcc_split_ratio must be > 0, got {simcc_split_ratio}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.sigma: tuple[float, float] = (sig[0], sig[1])
        self.simcc_split_ratio = float(simcc_split_ratio)
        #: (Lx, Ly): number of bins of the x and y vectors.
        self.simcc_size = (
            int(np.around(self.input_size[0] * self.simcc_split_ratio)),
            int(np.around(self.input_size[1] * self.simcc_split_ratio)),
        )

    def encode(self, keypoints: np.ndarray, keypoints_visible: np.ndarray) -> dict[str, np.ndarray]:
        """keypoints: (K, 2) input px; keypoints_visible: (K,) -> target_x (K, Lx), target_y (K, Ly), target_weight."""
        kp, labelled = check_keypoints(keypoints, keypoints_visible, f"{type(self).__name__}.encode")
        mu = np.around(kp * self.simcc_split_ratio).astype(np.int64)
        tx, has_x = gaussian_labels_1d(mu[:, 0], mu[:, 0], self.simcc_size[0], self.sigma[0])
        ty, has_y = gaussian_labels_1d(mu[:, 1], mu[:, 1], self.simcc_size[1], self.sigma[1])
        weight = (labelled & has_x & has_y).astype(np.float32)
        return {"target_x": tx * weight[:, None], "target_y": ty * weight[:, None], "target_weight": weight}

    def _check(self, output: HeadOutput, where: str) -> tuple[Tensor, Tensor]:
        if not (isinstance(output, (tuple, list)) and len(output) == 2):
            raise TypeError(f"{where}: expected the (x, y) pair of SimCC vectors ((B, K, Lx), (B, K, Ly))")
        x, y = to_tensor(output[0]), to_tensor(output[1])
        if x.ndim != 3 or y.ndim != 3 or x.shape[:2] != y.shape[:2]:
            raise ValueError(
                f"{where}: expected x (B, K, Lx) and y (B, K, Ly) with the same B, K; got {tuple(x.shape)} and "
                f"{tuple(y.shape)}"
            )
        if (x.shape[-1], y.shape[-1]) != self.simcc_size:
            raise ValueError(
                f"{where}: vectors have (Lx, Ly) = {(x.shape[-1], y.shape[-1])}, the codec's simcc_size is "
                f"{self.simcc_size} (input_size {self.input_size} x simcc_split_ratio {self.simcc_split_ratio})"
            )
        if not (x.is_floating_point() and y.is_floating_point()):
            raise TypeError(f"{where}: expected floating-point vectors, got {x.dtype} and {y.dtype}")
        return x, y

    def decode(self, output: HeadOutput) -> tuple[Tensor, Tensor]:
        """output: ((B, K, Lx), (B, K, Ly)) any float dtype -> keypoints (B, K, 2) input px, scores (B, K)."""
        x, y = self._check(output, f"{type(self).__name__}.decode")
        x, y = x.float(), y.float()
        locs = torch.stack((x.argmax(dim=-1), y.argmax(dim=-1)), dim=-1).float() / self.simcc_split_ratio
        scores = torch.minimum(x.amax(dim=-1), y.amax(dim=-1))
        return locs, scores

    def flip_back(self, output: HeadOutput, flip_indices: Sequence[int]) -> HeadOutput:
        """output: ((B, K, Lx), (B, K, Ly)) of flipped crops -> the same in the original frame."""
        where = f"{type(self).__name__}.flip_back"
        x, y = self._check(output, where)
        if len(flip_indices) != x.shape[1]:
            raise ValueError(
                f"{where}: flip_indices has {len(flip_indices)} entries but the vectors have K = {x.shape[1]}"
            )
        index = torch.as_tensor(list(flip_indices), dtype=torch.long, device=x.device)
        x = x.flip(-1).index_select(1, index)
        y = y.index_select(1, index)
        return shift_left(x, self.simcc_split_ratio - 1.0), y


def shift_left(vectors: Tensor, shift: float) -> Tensor:
    """out[..., i] = vectors[..., i + shift] (linear interpolation, indices clamped to the ends).

    vectors: (..., L); shift in bins (negative shifts right). Integer shifts copy values exactly.
    """
    if shift == 0:
        return vectors
    length = vectors.shape[-1]
    whole = math.floor(shift)
    frac = shift - whole
    i = torch.arange(length, device=vectors.device) + whole
    lo = vectors.index_select(-1, i.clamp(0, length - 1))
    if frac == 0:
        return lo
    hi = vectors.index_select(-1, (i + 1).clamp(0, length - 1))
    return lo * (1 - frac) + hi * frac
