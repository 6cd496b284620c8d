"""Rank fit: read the keypoint from the ORDER of the pixels of the positive disc around the argmax.

Not an mmpose rule: a decoder designed for what the sort term of Spatial-RS trains. That term constrains only
the order of the positive pixels (label > ``positive_threshold``, a disc of radius
``R = sigma sqrt(2 ln(1 / threshold))`` around the keypoint: 2.15 px and 13 pixels at sigma 1, threshold 0.1):
the pixel nearer the keypoint must score higher. Nothing fixes the values themselves, so a decoder that reads
them (DARK's log-Gaussian, a soft-argmax's temperature) assumes a shape the loss never asked for. This one uses
only the order, so any monotone transform of the map (logits or sigmoid probabilities alike) decodes the same.

Rule: over the pixels p of the map with |p - p0| <= R (p0 the integer argmax), rank the values (0 = lowest,
ties share their mean rank) and fit by least squares

    rank_p ~ a + b x_p + c y_p + e |p - p0|^2

If pixels are ordered by their distance to a centre u, the number of disc pixels ranked above p grows like the
area pi |p - u|^2, i.e. the rank is (approximately) linear in |p - u|^2 = |p - p0|^2 - 2 (u - p0).(p - p0) + const;
so e < 0 and u = p0 - (b, c) / (2 e). A fit that is not concave (e >= 0) or singular keeps the argmax, and the
offset is clamped to +-1 pixel (as DARK's). The estimate is biased toward p0 (ranks are coarse: a keypoint 0.3 px
off the pixel reads as 0.24 with the 13-pixel disc), the same for every map, so it cannot favour one loss.

Shapes: B instances, K keypoints, heatmaps (B, K, h, w); locations (x, y) in heatmap pixels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rspose.codecs.softargmax import gather_window

#: Largest rank-fit offset from the argmax, in heatmap pixels.
MAX_RANK_OFFSET = 1.0


def disc_radius(sigma: float, threshold: float = 0.1) -> float:
    """Radius of the Spatial-RS positive disc: labels exp(-d^2 / (2 sigma^2)) > ``threshold`` (0 < threshold < 1)."""
    if not 0 < threshold < 1:
        raise ValueError(f"disc_radius: threshold must be in (0, 1), got {threshold}")
    return sigma * math.sqrt(2.0 * math.log(1.0 / threshold))


def disc_offsets(radius: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """The (dx, dy) int64 offsets, each (P,), of the pixels with dx^2 + dy^2 <= radius^2 (row-major)."""
    r = int(math.floor(radius))
    offsets = torch.arange(-r, r + 1, device=device)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    keep = (dx * dx + dy * dy) <= radius * radius + 1e-9
    # the kept pixels first, in row-major order, with their count known in Python: static shapes, no host sync
    count = sum(1 for i in range(-r, r + 1) for j in range(-r, r + 1) if i * i + j * j <= radius * radius + 1e-9)
    order = torch.argsort((~keep).flatten().to(torch.int8), stable=True)[:count]
    return dx.flatten()[order], dy.flatten()[order]


def refine_rank_fit(locs: Tensor, heatmaps: Tensor, radius: float) -> Tensor:
    """Centre fitted to the ranks of the disc's pixels (module docstring).

    Args:
        locs: (B, K, 2) int64 argmax locations; heatmaps: (B, K, h, w) float32 (logits or probabilities).
        radius: disc radius in heatmap pixels (>= 1, so that the fit has at least the 5 pixels of a cross).

    Returns:
        (B, K, 2) float32 refined locations in heatmap pixels.
    """
    if radius < 1:
        raise ValueError(f"refine_rank_fit: radius must be >= 1 heatmap pixel, got {radius}")
    b, k = heatmaps.shape[:2]
    dx, dy = disc_offsets(radius, heatmaps.device)
    values, inside = gather_window(locs, heatmaps, dx, dy)  # (N, P)
    m = inside.double()
    v = values.double()
    # mean ranks among the pixels inside: rank_i = #{j: v_j < v_i} + (#{j: v_j == v_i} - 1) / 2
    less = (v.unsqueeze(1) < v.unsqueeze(2)).double()  # [n, i, j] = v_j < v_i
    equal = (v.unsqueeze(1) == v.unsqueeze(2)).double()
    ranks = ((less + 0.5 * equal) * m.unsqueeze(1)).sum(2) - 0.5
    x, y = dx.double(), dy.double()
    design = torch.stack((torch.ones_like(x), x, y, x * x + y * y), dim=-1)  # (P, 4)
    weighted = design.unsqueeze(0) * m.unsqueeze(-1)  # (N, P, 4)
    normal = weighted.transpose(1, 2) @ design  # (N, 4, 4)
    rhs = (weighted * (ranks * m).unsqueeze(-1)).sum(1)  # (N, 4)
    coef, info = torch.linalg.solve_ex(normal, rhs)
    _, bx, cy, e = coef.unbind(-1)
    ok = (info == 0) & (e < -1e-9) & torch.isfinite(coef).all(-1)
    safe_e = torch.where(ok, e, -1.0)
    offset = torch.stack((-bx / (2 * safe_e), -cy / (2 * safe_e)), dim=-1)
    offset = torch.where(ok.unsqueeze(-1), offset, 0.0).clamp(-MAX_RANK_OFFSET, MAX_RANK_OFFSET).float()
    return locs.float() + offset.reshape(b, k, 2)
