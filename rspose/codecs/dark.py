"""Batched heatmap decoding shared by the heatmap codecs: argmax, the quarter-pixel shift, DARK and DARK-UDP.

Everything here works on torch tensors batched over instances and keypoints, in float32, with no Python loop
over instances, keypoints or pixels. The rules follow mmpose 1.x (``codecs/utils/post_processing.py`` and
``codecs/utils/refinement.py``):

* :func:`heatmap_argmax`: integer location of the first maximum and its value. Unlike mmpose, a non-positive
  maximum does not turn the location into -1 (raw logits keep their argmax; the score tells the rest).
* :func:`refine_quarter`: move 0.25 px toward the larger neighbour on each axis (``refine_keypoints``).
* :func:`refine_dark`: Gaussian blur (cv2 kernel, zero border, rescaled to the original maximum), log with a
  1e-10 floor, one Newton step with the Hessian from +-2 px differences (``refine_keypoints_dark``); skipped
  within 2 px of the border and where the Hessian is singular.
* :func:`refine_centroid` (not in mmpose): centre of mass of the non-negative values around the argmax.
* :func:`refine_dark_udp`: same blur, clip to [1e-3, 50], log, edge padding, one Newton step with +-1 px
  differences and ``H + eps I`` (``refine_keypoints_dark_udp``).

Safety additions (deviations only on degenerate maps): DARK offsets that are not finite become 0 and every
DARK offset is clamped to +-1 heatmap pixel, so any finite input (logits, constant or all-zero maps, fp16
overflow) decodes to finite keypoints.

Shapes: B instances, K keypoints, heatmaps (B, K, h, w); locations are (x, y) in heatmap pixels.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: Largest DARK step, in heatmap pixels (a Newton step on a log-Gaussian stays within half a pixel).
MAX_DARK_OFFSET = 1.0
#: A configured blur kernel more than this many pixels from :func:`blur_kernel_for_sigma` is warned about.
BLUR_KERNEL_TOLERANCE = 2


def blur_kernel_for_sigma(sigma: float) -> int:
    """The DARK / DARK-UDP blur kernel of heatmaps with Gaussian ``sigma`` (heatmap pixels): mmpose's rule.

    mmpose's configs pair sigma 2 with an 11-pixel kernel and sigma 3 with 17, i.e. ``6 sigma - 1``; this returns
    that value rounded to the nearest integer and made odd (upwards), at least 1: sigma 1 -> 5, 2 -> 11, 3 -> 17,
    1.5 -> 9.
    """
    if not (sigma > 0 and np.isfinite(sigma)):
        raise ValueError(f"blur_kernel_for_sigma: sigma must be a positive number, got {sigma}")
    size = max(1, int(round(6.0 * sigma - 1.0)))
    return size if size % 2 == 1 else size + 1


def resolve_blur_kernel(blur_kernel_size: int | None, sigma: float, where: str) -> int:
    """The effective blur kernel: ``blur_kernel_size`` if given (odd, >= 1), else :func:`blur_kernel_for_sigma`.

    A given kernel more than :data:`BLUR_KERNEL_TOLERANCE` pixels from the one sigma implies is kept but warned
    about (a blur much wider than the peak flattens it and biases DARK's step toward the argmax).
    """
    expected = blur_kernel_for_sigma(sigma)
    if blur_kernel_size is None:
        return expected
    if isinstance(blur_kernel_size, bool) or not isinstance(blur_kernel_size, (int, np.integer)):
        raise TypeError(f"{where}: blur_kernel_size must be an odd integer or null, got {blur_kernel_size!r}")
    if blur_kernel_size % 2 != 1 or blur_kernel_size < 1:
        raise ValueError(f"{where}: blur_kernel_size must be a positive odd integer, got {blur_kernel_size}")
    if abs(int(blur_kernel_size) - expected) > BLUR_KERNEL_TOLERANCE:
        warnings.warn(
            f"{where}: blur_kernel_size={blur_kernel_size} does not follow sigma={sigma:g}: the expected kernel is "
            f"{expected} (6 sigma - 1, odd); leave blur_kernel_size unset (null) to derive it from sigma",
            stacklevel=3,
        )
    return int(blur_kernel_size)


def check_heatmaps(heatmaps: Tensor, heatmap_size: tuple[int, int], where: str) -> Tensor:
    """Validate a (B, K, h, w) heatmap batch against ``heatmap_size = (w, h)`` and cast it to float32."""
    if heatmaps.ndim != 4:
        raise ValueError(f"{where}: expected heatmaps of shape (B, K, h, w), got shape {tuple(heatmaps.shape)}")
    w, h = heatmap_size
    if tuple(heatmaps.shape[-2:]) != (h, w):
        raise ValueError(
            f"{where}: heatmaps are {tuple(heatmaps.shape[-2:])} (h, w) but the codec's heatmap_size (w, h) is "
            f"{tuple(heatmap_size)}, i.e. expected (h, w) = {(h, w)}"
        )
    if not heatmaps.is_floating_point():
        raise TypeError(f"{where}: expected floating-point heatmaps, got dtype {heatmaps.dtype}")
    return heatmaps.float()


def heatmap_argmax(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """First maximum of each heatmap.

    Args:
        heatmaps: (B, K, h, w) float.

    Returns:
        locs: (B, K, 2) int64 (x, y) in heatmap pixels; vals: (B, K) the maximum values.
    """
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, h * w)
    idx = flat.argmax(dim=-1)  # the first maximal index, as np.argmax
    vals = flat.amax(dim=-1)
    return torch.stack((idx % w, idx // w), dim=-1), vals


def _gather(flat: Tensor, x: Tensor, y: Tensor, w: int) -> Tensor:
    """flat: (N, h*w); x, y: (N,) int64 already inside the map -> (N,) values flat[n, y*w + x]."""
    return flat.gather(1, (y * w + x).unsqueeze(1)).squeeze(1)


def refine_quarter(locs: Tensor, heatmaps: Tensor) -> Tensor:
    """mmpose ``refine_keypoints``: shift 0.25 px toward the larger neighbour on each axis.

    Args:
        locs: (B, K, 2) int64 argmax locations; heatmaps: (B, K, h, w) float32.

    Returns:
        (B, K, 2) float32 refined locations in heatmap pixels.
    """
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b * k, h * w)
    x, y = locs[..., 0].reshape(-1), locs[..., 1].reshape(-1)
    # mmpose's (asymmetric) conditions: 1 < x < w - 1 and 0 < y < h for dx; 1 < y < h - 1 and 0 < x < w for dy.
    ok_x = (x > 1) & (x < w - 1) & (y > 0) & (y < h)
    ok_y = (y > 1) & (y < h - 1) & (x > 0) & (x < w)
    xc, yc = x.clamp(1, w - 2), y.clamp(1, h - 2)
    dx = _gather(flat, xc + 1, y.clamp(0, h - 1), w) - _gather(flat, xc - 1, y.clamp(0, h - 1), w)
    dy = _gather(flat, x.clamp(0, w - 1), yc + 1, w) - _gather(flat, x.clamp(0, w - 1), yc - 1, w)
    step = torch.stack((torch.where(ok_x, dx.sign(), 0.0), torch.where(ok_y, dy.sign(), 0.0)), dim=-1)
    step = torch.nan_to_num(step, nan=0.0)
    return locs.float() + 0.25 * step.reshape(b, k, 2)


def refine_centroid(locs: Tensor, heatmaps: Tensor, radius: int = 1) -> Tensor:
    """Centre of mass of the non-negative heatmap values in the (2r+1) x (2r+1) window around the argmax.

    Not an mmpose rule: a decoder for maps whose peak is not Gaussian-shaped (ranking-trained sigmoid maps).
    Pixels outside the map count as 0; a window with no positive mass keeps the argmax.

    Args:
        locs: (B, K, 2) int64 argmax locations; heatmaps: (B, K, h, w) float32; radius: r >= 1.

    Returns:
        (B, K, 2) float32 refined locations in heatmap pixels.
    """
    b, k, h, w = heatmaps.shape
    offsets = torch.arange(-radius, radius + 1, device=heatmaps.device)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    dx, dy = dx.reshape(-1), dy.reshape(-1)  # (W2,)
    x = locs[..., 0].reshape(-1, 1) + dx  # (B*K, W2)
    y = locs[..., 1].reshape(-1, 1) + dy
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    flat = heatmaps.reshape(b * k, h * w)
    values = flat.gather(1, (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)))
    values = torch.where(inside & torch.isfinite(values), values.clamp(min=0), 0.0)
    mass = values.sum(1, keepdim=True)
    safe = torch.where(mass > 0, mass, 1.0)
    offset = torch.stack(((values * dx).sum(1, keepdim=True) / safe, (values * dy).sum(1, keepdim=True) / safe), -1)
    offset = torch.where((mass > 0).unsqueeze(-1), offset, 0.0)
    return locs.float() + offset.reshape(b, k, 2)


#: cv2.getGaussianKernel(k, sigma <= 0) uses these fixed kernels for k <= 9 (OpenCV's small_gaussian_tab).
_CV2_SMALL_KERNELS = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
    9: tuple(v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4)),
}


@functools.lru_cache(maxsize=32)
def gaussian_taps(kernel_size: int) -> tuple[float, ...]:
    """The 1D kernel ``cv2.getGaussianKernel(kernel_size, 0)`` (what ``cv2.GaussianBlur(ksize=(k, k), sigmaX=0)``
    uses), as Python floats: the fixed kernels for k <= 9, else a Gaussian with sigma = 0.3 ((k - 1) / 2 - 1) + 0.8,
    normalised to sum 1. Plain Python, so that decoding needs no host data on the device and compiles."""
    if kernel_size in _CV2_SMALL_KERNELS:
        return _CV2_SMALL_KERNELS[kernel_size]
    sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    centre = (kernel_size - 1) / 2
    taps = [math.exp(-((i - centre) ** 2) / (2 * sigma * sigma)) for i in range(kernel_size)]
    total = sum(taps)
    return tuple(t / total for t in taps)


def _blur_matrix(n: int, kernel_size: int, device: torch.device) -> Tensor:
    """(n, n) float64 banded matrix of :func:`gaussian_taps` on ``device``, zero border.

    Row i holds the kernel centred at i, truncated at the map edge: multiplying by it is the blur of the
    zero-padded map. Built from Python floats on the device (no host-to-device copy).
    """
    offset = torch.arange(n, device=device)[None, :] - torch.arange(n, device=device)[:, None]
    matrix = torch.zeros(n, n, dtype=torch.float64, device=device)
    r = kernel_size // 2
    for j, tap in enumerate(gaussian_taps(kernel_size)):
        matrix = torch.where(offset == j - r, tap, matrix)
    return matrix


def gaussian_blur(heatmaps: Tensor, kernel_size: int) -> Tensor:
    """mmpose ``gaussian_blur``: blur each map with a zero border, then rescale it to its original maximum.

    The rescale is skipped (factor 1) where the original or the blurred maximum is not positive and finite,
    where mmpose would produce NaN or flip signs. The separable blur runs as two banded matrix products
    in float64 (much faster than a depthwise convolution on CPU at heatmap sizes).

    Args:
        heatmaps: (B, K, h, w) float32. kernel_size: odd.

    Returns:
        (B, K, h, w) float32.
    """
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"gaussian_blur: blur_kernel_size must be a positive odd integer, got {kernel_size}")
    h, w = heatmaps.shape[-2:]
    # float64: immune to TF32 matmuls on GPU, and the log-derivatives of DARK are differences of close values
    my = _blur_matrix(h, kernel_size, heatmaps.device)
    mx = _blur_matrix(w, kernel_size, heatmaps.device)
    blurred = (my @ heatmaps.double() @ mx.T).float()
    orig_max = heatmaps.amax(dim=(-2, -1), keepdim=True)
    blur_max = blurred.amax(dim=(-2, -1), keepdim=True)
    ok = (orig_max > 0) & (blur_max > 0) & torch.isfinite(orig_max) & torch.isfinite(blur_max)
    factor = torch.where(ok, orig_max / torch.where(ok, blur_max, 1.0), 1.0)
    return blurred * factor


def _safe_offset(offset: Tensor) -> Tensor:
    offset = torch.where(torch.isfinite(offset), offset, 0.0)
    return offset.clamp(-MAX_DARK_OFFSET, MAX_DARK_OFFSET)


def refine_dark(locs: Tensor, heatmaps: Tensor, blur_kernel_size: int) -> Tensor:
    """mmpose ``refine_keypoints_dark`` (DARK, Zhang et al. 2020), batched.

    Args:
        locs: (B, K, 2) int64 argmax locations; heatmaps: (B, K, h, w) float32 (not modified).

    Returns:
        (B, K, 2) float32 refined locations in heatmap pixels.
    """
    b, k, h, w = heatmaps.shape
    if w < 5 or h < 5:  # no pixel is 2 px away from every border: DARK never applies
        return locs.float()
    logh = gaussian_blur(heatmaps, blur_kernel_size).clamp_min(1e-10).log().reshape(b * k, h * w)
    x, y = locs[..., 0].reshape(-1), locs[..., 1].reshape(-1)
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)
    x, y = x.clamp(2, w - 3), y.clamp(2, h - 3)

    def at(ddx: int, ddy: int) -> Tensor:
        return _gather(logh, x + ddx, y + ddy, w)

    c = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - 2 * c + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    ok = ok & (det != 0)
    safe_det = torch.where(ok, det, 1.0)
    # offset = -H^-1 g with H^-1 = [[dyy, -dxy], [-dxy, dxx]] / det
    off_x = -(dyy * dx - dxy * dy) / safe_det
    off_y = -(dxx * dy - dxy * dx) / safe_det
    offset = _safe_offset(torch.stack((off_x, off_y), dim=-1)) * ok.unsqueeze(-1)
    return locs.float() + offset.reshape(b, k, 2)


def refine_dark_udp(locs: Tensor, heatmaps: Tensor, blur_kernel_size: int) -> Tensor:
    """mmpose ``refine_keypoints_dark_udp`` (DARK for UDP heatmaps, Huang et al. 2020), batched.

    Args:
        locs: (B, K, 2) int64 argmax locations; heatmaps: (B, K, h, w) float32 (not modified).

    Returns:
        (B, K, 2) float32 refined locations in heatmap pixels.
    """
    b, k, h, w = heatmaps.shape
    logh = gaussian_blur(heatmaps, blur_kernel_size).clamp(1e-3, 50.0).log()
    logh = F.pad(logh.reshape(b * k, 1, h, w), (1, 1, 1, 1), mode="replicate").reshape(b * k, (h + 2) * (w + 2))
    # locations in the padded map
    x, y = locs[..., 0].reshape(-1) + 1, locs[..., 1].reshape(-1) + 1

    def at(ddx: int, ddy: int) -> Tensor:
        return _gather(logh, x + ddx, y + ddy, w + 2)

    i = at(0, 0)
    ix1, ix1_ = at(1, 0), at(-1, 0)
    iy1, iy1_ = at(0, 1), at(0, -1)
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    eps = float(np.finfo(np.float32).eps)
    dxx = ix1 - 2 * i + ix1_ + eps
    dyy = iy1 - 2 * i + iy1_ + eps
    dxy = 0.5 * (at(1, 1) - ix1 - iy1 + 2 * i - ix1_ - iy1_ + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    ok = det != 0
    safe_det = torch.where(ok, det, 1.0)
    off_x = -(dyy * dx - dxy * dy) / safe_det
    off_y = -(dxx * dy - dxy * dx) / safe_det
    offset = _safe_offset(torch.stack((off_x, off_y), dim=-1)) * ok.unsqueeze(-1)
    return locs.float() + offset.reshape(b, k, 2)
