"""ViTPose's simple decoder: ReLU, bilinear x4 upsampling, one 3x3 conv to K heatmaps.

Equivalent to mmpose's ``FeatureMapProcessor(scale_factor=4.0, apply_relu=True)`` neck followed by a
``HeatmapHead`` without deconvolution and a 3x3 final layer (state-dict key ``final_layer``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from rspose.models.head_base import PoseHead, init_mmpose_


class ViTPoseSimpleHead(PoseHead):
    """(B, C, h, w) features -> (B, K, h * f, w * f) heatmap logits, f = ``upsample_factor``.

    Args:
        in_channels: C; ``None`` = the backbone's ``out_channels`` (set by :meth:`build`).
        num_keypoints: K; ``None`` = the dataset's (set by :meth:`build`).
        upsample_factor: bilinear scale factor (4: stride-16 ViT features -> stride-4 heatmaps).
        final_kernel_size: odd kernel of the conv to K channels (ViTPose: 3).

    Init (mmpose): conv weight N(0, 0.001), bias 0.
    """

    def __init__(
        self,
        in_channels: int | None = None,
        num_keypoints: int | None = None,
        upsample_factor: int = 4,
        final_kernel_size: int = 3,
    ) -> None:
        super().__init__(in_channels, num_keypoints)
        if upsample_factor < 1:
            raise ValueError(f"ViTPoseSimpleHead: upsample_factor={upsample_factor}, expected >= 1")
        if final_kernel_size % 2 == 0:
            raise ValueError(f"ViTPoseSimpleHead: final_kernel_size={final_kernel_size} must be odd")
        self.upsample_factor = upsample_factor
        self.final_kernel_size = final_kernel_size
        #: heatmap pixels per feature pixel along each axis.
        self.upsample: int = upsample_factor
        self._build_if_ready()

    def _build_layers(self) -> None:
        k = self.final_kernel_size
        self.final_layer = nn.Conv2d(self.in_channels, self.num_keypoints, k, padding=(k - 1) // 2)
        init_mmpose_(self)

    def forward(self, feat: Tensor) -> Tensor:
        """feat: (B, C, h, w) -> (B, K, h * f, w * f) logits."""
        self._check_built()
        x = F.relu(feat)
        if self.upsample_factor != 1:
            x = F.interpolate(x, scale_factor=self.upsample_factor, mode="bilinear", align_corners=False)
        return self.final_layer(x)
