"""Top-down geometry and augmentation: box -> centre/scale, flip, half body, random box, affine warp, normalise.

Conventions follow mmpose 1.x (``GetBBoxCenterScale``, ``RandomFlip``, ``RandomHalfBody``,
``RandomBBoxTransform``, ``TopdownAffine`` and ``PoseDataPreprocessor``):

* A box (x, y, w, h) becomes centre (x + w/2, y + h/2) and scale (w, h) * padding (1.25) in image pixels.
  The scale is reshaped to the input aspect ratio W / H (growing the short side) just before the warp.
* Horizontal flip of an image of width w: x' = w - 1 - x (keypoints and centre), then keypoints are
  permuted by the flip indices. We never flip pixels: the flip is folded into the one affine warp.
* Half body (p 0.3, >= 9 labelled keypoints, >= 2 upper / >= 3 lower, upper preferred with p 0.7): the box
  becomes the extent of the chosen half's labelled keypoints, centred at their mean, padded 1.5.
* Random box (truncated normal on [-1, 1]): shift by 0.16 scale (p 0.3), scale by 1 +- 0.5 (p 1), rotate by
  up to 80 degrees (p 0.6).
* Misplaced box (**beyond mmpose and the paper, off by default**, ``misplace_prob``): the final box is moved by
  m x scale, m uniform in ``misplace_shift`` (0.5-1.5 by default), in a uniform random direction, so that
  the person is partly or wholly out of the crop: a training example of a false or badly placed detection.
  The sample is marked ``misplaced``; :class:`rspose.losses.RankingLoss` puts such crops into Instance-Sort
  as low-quality members (docs/method.md).
* Warp: the plain matrix maps the centre to (W/2, H/2) with W / scale_w pixels per image pixel and rotates by
  -rot; the UDP matrix maps it to ((W-1)/2, (H-1)/2) with (W-1)/scale_w and (H-1)/scale_h and rotates by +rot
  (both exactly as mmpose; the sign only matters for a fixed, non-random rotation). cv2 bilinear, zero border.
* Normalise: BGR uint8 -> RGB float32, (x - mean) / std with the ImageNet statistics on the 0-255 scale.

Shapes: K keypoints, B batch, input crop W x H (``input_size = (W, H)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from rspose.errors import UserError

#: ImageNet statistics (RGB, 0-255), as mmpose's PoseDataPreprocessor.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


# --------------------------------------------------------------------------------------------- boxes
def bbox_xywh_to_center_scale(bbox: np.ndarray, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """bbox: (..., 4) x, y, w, h -> centre (..., 2), scale (..., 2) = (w, h) * padding, float32."""
    bbox = np.asarray(bbox, dtype=np.float32)
    center = bbox[..., :2] + bbox[..., 2:4] * np.float32(0.5)
    scale = bbox[..., 2:4] * np.float32(padding)
    return center.astype(np.float32), scale.astype(np.float32)


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """scale: (..., 2) (w, h) -> (..., 2) with w / h == aspect_ratio, growing the short side (mmpose)."""
    scale = np.asarray(scale, dtype=np.float32)
    if scale.shape == (2,):  # one box: plain floats are much cheaper than stack/where
        w, h = float(scale[0]), float(scale[1])
        return np.array([w, w / aspect_ratio] if w > h * aspect_ratio else [h * aspect_ratio, h], dtype=np.float32)
    w, h = scale[..., 0], scale[..., 1]
    wide = w > h * aspect_ratio
    out = np.stack([np.where(wide, w, h * aspect_ratio), np.where(wide, w / aspect_ratio, h)], axis=-1)
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------- warps
def get_warp_matrix(center: np.ndarray, scale: np.ndarray, rot: float, input_size: tuple[int, int]) -> np.ndarray:
    """The plain top-down affine (mmpose ``get_warp_matrix``, shift 0), image px -> crop px.

    A similarity: the centre goes to (W/2, H/2), ``W / scale[0]`` crop pixels per image pixel on both axes
    (``scale`` is expected at the input aspect ratio), rotation by -rot degrees. Returns (2, 3) float32.
    """
    w_out, h_out = input_size
    s = w_out / float(scale[0])
    r = math.radians(float(rot))
    cos, sin = math.cos(r) * s, math.sin(r) * s
    cx, cy = float(center[0]), float(center[1])
    return np.array(
        [
            [cos, sin, w_out * 0.5 - cos * cx - sin * cy],
            [-sin, cos, h_out * 0.5 + sin * cx - cos * cy],
        ],
        dtype=np.float32,
    )


def get_udp_warp_matrix(center: np.ndarray, scale: np.ndarray, rot: float, input_size: tuple[int, int]) -> np.ndarray:
    """The unbiased (UDP) affine (mmpose ``get_udp_warp_matrix``), image px -> crop px. Returns (2, 3) float32.

    The centre goes to ((W-1)/2, (H-1)/2), (W-1)/scale_w and (H-1)/scale_h crop pixels per image pixel,
    rotation by +rot degrees.
    """
    w_out, h_out = input_size
    sx = (w_out - 1) / float(scale[0])
    sy = (h_out - 1) / float(scale[1])
    r = math.radians(float(rot))
    cos, sin = math.cos(r), math.sin(r)
    cx, cy = float(center[0]), float(center[1])
    return np.array(
        [
            [cos * sx, -sin * sx, sx * (-cos * cx + sin * cy + 0.5 * float(scale[0]))],
            [sin * sy, cos * sy, sy * (-sin * cx - cos * cy + 0.5 * float(scale[1]))],
        ],
        dtype=np.float32,
    )


def warp_matrix(
    center: np.ndarray, scale: np.ndarray, rot: float, input_size: tuple[int, int], use_udp: bool
) -> np.ndarray:
    """(2, 3) float32 image -> crop affine: UDP when ``use_udp`` else the plain one."""
    fn = get_udp_warp_matrix if use_udp else get_warp_matrix
    return fn(center, scale, rot, input_size)


def with_hflip(matrix: np.ndarray, image_width: int) -> np.ndarray:
    """(2, 3) ``matrix`` o horizontal flip (x -> w - 1 - x): the warp of the mirrored image, read from the original."""
    out = matrix.astype(np.float32).copy()
    out[:, 2] += out[:, 0] * np.float32(image_width - 1)
    out[:, 0] = -out[:, 0]
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """points: (K, 2); matrix: (2, 3) -> (K, 2) float32 points ``matrix @ [x, y, 1]``."""
    points = np.asarray(points, dtype=np.float32)
    m = matrix.astype(np.float32)
    return points @ m[:, :2].T + m[:, 2]


def warp_image(image: np.ndarray, matrix: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """image: (h, w, 3) uint8 -> (H, W, 3) uint8 crop; one bilinear cv2.warpAffine, zero border."""
    return cv2.warpAffine(image, matrix, (int(input_size[0]), int(input_size[1])), flags=cv2.INTER_LINEAR)


def crop_to_image(
    keypoints: Tensor, center: Tensor, scale: Tensor, input_size: tuple[int, int], use_udp: bool
) -> Tensor:
    """Map keypoints from input-crop pixels back to image pixels: the exact inverse of the validation warp.

    Args:
        keypoints: (B, K, 2) crop px; center: (B, 2) and scale: (B, 2) image px (scale at the input aspect
            ratio, as the dataset returns it); input_size: (W, H); use_udp: invert the UDP warp.

    Returns:
        (B, K, 2) image px, in the dtype of ``keypoints`` (computed in float32 or wider).
    """
    w_out, h_out = input_size
    dtype = torch.promote_types(keypoints.dtype, torch.float32)
    kp = keypoints.to(dtype)
    center = center.to(device=kp.device, dtype=dtype)[:, None, :]
    scale = scale.to(device=kp.device, dtype=dtype)[:, None, :]
    if use_udp:
        size = torch.tensor([w_out - 1.0, h_out - 1.0], dtype=dtype, device=kp.device)
        per_px = scale / size  # image px per crop px, per axis
        out = (kp - size / 2) * per_px + center
    else:
        half = torch.tensor([w_out / 2.0, h_out / 2.0], dtype=dtype, device=kp.device)
        per_px = scale[..., :1] / w_out  # the plain warp uses the width on both axes
        out = (kp - half) * per_px + center
    return out.to(keypoints.dtype)


# --------------------------------------------------------------------------------------------- pixels
class Normalizer:
    """BGR uint8 (H, W, 3) crop -> RGB float32 (3, H, W), (x - mean) / std (one fused multiply-add per plane)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.scale = [np.float32(1.0 / s) for s in std]
        self.shift = [np.float32(-m / s) for m, s in zip(mean, std)]

    def __call__(self, crop_bgr: np.ndarray) -> np.ndarray:
        h, w = crop_bgr.shape[:2]
        planes = cv2.split(crop_bgr)
        out = np.empty((3, h, w), dtype=np.float32)
        for c in range(3):  # output channel c (RGB) reads input plane 2 - c (BGR)
            np.multiply(planes[2 - c], self.scale[c], out=out[c], casting="unsafe")
            out[c] += self.shift[c]
        return out


# --------------------------------------------------------------------------------------------- augmentation
def flip_keypoints(
    keypoints: np.ndarray, keypoints_visible: np.ndarray, image_width: int, flip_indices: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """keypoints: (K, 2), keypoints_visible: (K,) -> both mirrored (x' = w - 1 - x) and permuted."""
    index = np.asarray(flip_indices, dtype=np.int64)
    kp = np.asarray(keypoints, dtype=np.float32)[index].copy()
    kp[:, 0] = np.float32(image_width - 1) - kp[:, 0]
    return kp, np.asarray(keypoints_visible, dtype=np.float32)[index].copy()


def truncated_normal(rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` float32 samples of a standard normal truncated to [-1, 1] (scipy truncnorm(-1, 1)), by rejection."""
    out = np.empty(0, dtype=np.float64)
    while out.size < size:  # 68% acceptance: one draw of 3 x size is almost always enough
        z = rng.standard_normal(3 * size + 4)
        out = np.concatenate([out, z[np.abs(z) <= 1.0]]) if out.size else z[np.abs(z) <= 1.0]
    return out[:size].astype(np.float32)


@dataclass(frozen=True)
class AugmentResult:
    """One sampled augmentation: the box, rotation and keypoints in the (possibly flipped) image frame."""

    center: np.ndarray  # (2,) image px of the (flipped) image
    scale: np.ndarray  # (2,) image px, not yet at the input aspect ratio
    rotation: float  # degrees
    flipped: bool
    keypoints: np.ndarray  # (K, 2) in the (flipped) image frame, permuted when flipped
    keypoints_visible: np.ndarray  # (K,) permuted when flipped
    misplaced: bool = False  # the box was moved off the person (``TopDownAugment.misplace_prob``)


@dataclass(frozen=True)
class TopDownAugment:
    """The random steps of the top-down training pipeline, with mmpose 1.x defaults (see the module docstring).

    Setting a probability to 0 switches the step off. ``misplace_prob`` / ``misplace_shift``: the misplaced-box
    step (beyond mmpose and the paper; 0 = off, the default, which draws no random number for it).
    """

    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_total_keypoints: int = 9
    half_body_min_upper_keypoints: int = 2
    half_body_min_lower_keypoints: int = 3
    half_body_padding: float = 1.5
    half_body_upper_prob: float = 0.7
    shift_factor: float = 0.16
    shift_prob: float = 0.3
    scale_factor: tuple[float, float] = (0.5, 1.5)
    scale_prob: float = 1.0
    rotate_factor: float = 80.0
    rotate_prob: float = 0.6
    misplace_prob: float = 0.0
    misplace_shift: tuple[float, float] = (0.5, 1.5)

    def __post_init__(self) -> None:
        for key in ("flip_prob", "half_body_prob", "half_body_upper_prob", "shift_prob", "scale_prob", "rotate_prob",
                    "misplace_prob"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"TopDownAugment.{key} must be in [0, 1], got {value}")
        for key, low_open in (("shift_factor", False), ("rotate_factor", False), ("half_body_padding", True)):
            value = getattr(self, key)
            if not (np.isfinite(value) and (value > 0 if low_open else value >= 0)):
                raise UserError(f"TopDownAugment.{key} must be a finite number {'>' if low_open else '>='} 0, got {value}")
        for key in ("half_body_min_total_keypoints", "half_body_min_upper_keypoints", "half_body_min_lower_keypoints"):
            if getattr(self, key) < 0:
                raise UserError(f"TopDownAugment.{key} must be >= 0, got {getattr(self, key)}")
        lo, hi = self.scale_factor
        if not 0.0 < lo <= hi:
            raise UserError(
                f"TopDownAugment.scale_factor must be (low, high) with 0 < low <= high, got {self.scale_factor}"
            )
        lo, hi = self.misplace_shift
        if not 0.0 <= lo <= hi:
            raise UserError(
                f"TopDownAugment.misplace_shift must be (low, high) with 0 <= low <= high (fractions of the box "
                f"scale), got {self.misplace_shift}"
            )

    def half_body_ids(self, rng: np.random.Generator, visible: np.ndarray, upper: Sequence[int], lower: Sequence[int]):
        """The keypoint ids whose extent becomes the half-body box, or None (mmpose ``RandomHalfBody``)."""
        if self.half_body_prob <= 0 or visible.sum() < self.half_body_min_total_keypoints:
            return None
        if rng.random() > self.half_body_prob:
            return None
        upper_valid = [i for i in upper if visible[i] > 0]
        lower_valid = [i for i in lower if visible[i] > 0]
        prefer_upper = rng.random() < self.half_body_upper_prob
        upper_ok = len(upper_valid) >= self.half_body_min_upper_keypoints
        lower_ok = len(lower_valid) >= self.half_body_min_lower_keypoints
        if not upper_ok and not lower_ok:
            return None
        if not lower_ok:
            return upper_valid
        if not upper_ok:
            return lower_valid
        return upper_valid if prefer_upper else lower_valid

    def __call__(
        self,
        rng: np.random.Generator,
        center: np.ndarray,
        scale: np.ndarray,
        keypoints: np.ndarray,
        keypoints_visible: np.ndarray,
        image_width: int,
        flip_indices: Sequence[int],
        upper_body_ids: Sequence[int],
        lower_body_ids: Sequence[int],
    ) -> AugmentResult:
        """Sample flip -> half body -> shift/scale/rotate [-> misplaced box] for one instance.

        Args:
            center, scale: (2,) the padded box (scale not yet at the input aspect ratio), image px.
            keypoints: (K, 2) image px; keypoints_visible: (K,); image_width: w of the decoded image.
        """
        center = np.array(center, dtype=np.float32)
        scale = np.array(scale, dtype=np.float32)
        kp = np.asarray(keypoints, dtype=np.float32)
        vis = np.asarray(keypoints_visible, dtype=np.float32)

        flipped = bool(self.flip_prob > 0 and rng.random() < self.flip_prob)
        if flipped:
            kp, vis = flip_keypoints(kp, vis, image_width, flip_indices)
            center[0] = np.float32(image_width - 1) - center[0]

        ids = self.half_body_ids(rng, vis, upper_body_ids, lower_body_ids)
        if ids is not None:
            selected = kp[ids]
            extent = (selected.max(axis=0) - selected.min(axis=0)) * np.float32(self.half_body_padding)
            if extent.max() > 0:  # coincident keypoints give no box: keep the original one
                center = selected.mean(axis=0).astype(np.float32)
                scale = extent.astype(np.float32)

        z = truncated_normal(rng, 4)
        u = rng.random(3)
        if u[0] < self.shift_prob:
            center = center + z[:2] * np.float32(self.shift_factor) * scale
        lo, hi = self.scale_factor
        if u[1] < self.scale_prob:
            scale = scale * (z[2] * np.float32((hi - lo) * 0.5) + np.float32((hi + lo) * 0.5))
        rotation = float(z[3] * self.rotate_factor) if u[2] < self.rotate_prob else 0.0
        misplaced = bool(self.misplace_prob > 0 and rng.random() < self.misplace_prob)
        if misplaced:
            lo, hi = self.misplace_shift
            angle, size = rng.uniform(0.0, 2.0 * math.pi), rng.uniform(lo, hi)
            center = center + np.array([math.cos(angle), math.sin(angle)], dtype=np.float32) * np.float32(size) * scale
        return AugmentResult(
            center=center.astype(np.float32),
            scale=scale.astype(np.float32),
            rotation=rotation,
            flipped=flipped,
            keypoints=kp,
            keypoints_visible=vis,
            misplaced=misplaced,
        )
