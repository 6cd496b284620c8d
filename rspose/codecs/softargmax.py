"""Windowed soft-argmax: the temperature-softmax centre of mass around the argmax of a heatmap.

Not an mmpose rule: a decoder for ranking-trained maps, whose logits order the pixels of the peak without
having a Gaussian's shape. Around the integer argmax (x0, y0), over the ``window x window`` pixels inside the
map, the location is

    sum_p softmax(z_p / T) * p,     z = logit(heatmap) (``input="logit"``) or the heatmap itself (``"value"``).

What the codec receives: after ranking training the module applies a sigmoid before decoding
(``loss.sigmoid_outputs``), so the codec sees probabilities; ``input="logit"`` inverts that sigmoid
(``log p - log(1 - p)`` with p clamped to [1e-12, 1 - 2^-25]: float32 probabilities saturate at 1 for logits above
about 17, so larger logits read as about 17.3). On MSE maps, which are not probabilities, the same rule reads values
<= 0 as a logit of about -27.6 (no weight) and values >= 1 as the saturated logit: a documented, well-defined
decoder, just not a meaningful one for them.

Shapes: B instances, K keypoints, heatmaps (B, K, h, w); locations (x, y) in heatmap pixels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

#: Probability clamp of ``input="logit"`` (the smallest step below 1 that float32 probabilities can take).
LOGIT_CLAMP = (1e-12, 1.0 - 2.0**-25)


def window_offsets(window: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The (dx, dy) int64 offsets, each (window^2,), of a square odd window centred on 0 (row-major)."""
    r = window // 2
    offsets = torch.arange(-r, r + 1, device=device)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    return dx.reshape(-1), dy.reshape(-1)


def gather_window(locs: Tensor, heatmaps: Tensor, dx: Tensor, dy: Tensor) -> tuple[Tensor, Tensor]:
    """Values at ``locs + (dx, dy)``.

    Args:
        locs: (B, K, 2) int64; heatmaps: (B, K, h, w); dx, dy: (P,) int64.

    Returns:
        values (B*K, P) (0 outside the map) and inside (B*K, P) bool (in the map and finite).
    """
    b, k, h, w = heatmaps.shape
    x = locs[..., 0].reshape(-1, 1) + dx
    y = locs[..., 1].reshape(-1, 1) + dy
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    values = heatmaps.reshape(b * k, h * w).gather(1, y.clamp(0, h - 1) * w + x.clamp(0, w - 1))
    inside = inside & torch.isfinite(values)
    return torch.where(inside, values, 0.0), inside


def refine_softargmax(
    locs: Tensor, heatmaps: Tensor, window: int = 5, temperature: float = 0.25,
    input: Literal["logit", "value"] = "logit",
) -> Tensor:
    """Soft-argmax of ``z / temperature`` over the window around the argmax (module docstring).

    Args:
        locs: (B, K, 2) int64 argmax locations; heatmaps: (B, K, h, w) float32 (what the codec received).
        window: odd side of the square window (1: the argmax itself). temperature: > 0, in units of z.
        input: ``"logit"``: z = logit(heatmap) (the map holds sigmoid probabilities); ``"value"``: z = heatmap.

    Returns:
        (B, K, 2) float32 locations in heatmap pixels (always within the window).
    """
    b, k = heatmaps.shape[:2]
    dx, dy = window_offsets(window, heatmaps.device)
    values, inside = gather_window(locs, heatmaps, dx, dy)
    z = values.double()
    if input == "logit":
        p = z.clamp(*LOGIT_CLAMP)
        z = p.log() - (-p).log1p()
    z = torch.where(inside, z / temperature, -torch.inf)
    weights = torch.softmax(z, dim=1)
    weights = torch.where(inside.any(1, keepdim=True), weights, 0.0)  # a non-finite argmax: keep it
    offset = torch.stack(((weights * dx).sum(1), (weights * dy).sum(1)), dim=-1).float()
    return locs.float() + offset.reshape(b, k, 2)
