"""Deconvolution heatmap head (SimpleBaseline, HRNet, ViTPose classic decoder), as mmpose's HeatmapHead.

Layout: n x [ConvTranspose2d stride 2 (no bias), BN, ReLU] -> m x [Conv2d, BN, ReLU] -> Conv2d to K.

* SimpleBaseline (ResNet): 3 deconvs (256, 256, 256), kernels 4: stride 32 -> 4.
* ViTPose classic decoder: 2 deconvs (256, 256), kernels 4: stride 16 -> 4.
* HRNet: no deconv, a 1x1 conv on the stride-4 branch.

State-dict keys equal mmpose's (``deconv_layers.{i}``, ``conv_layers.{i}``, ``final_layer``).
"""

from __future__ import annotations

from torch import Tensor, nn

from rspose.models.head_base import PoseHead, init_mmpose_

#: kernel size -> (padding, output_padding) of a stride-2 deconvolution that exactly doubles h and w.
_DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


class HeatmapHead(PoseHead):
    """(B, C, h, w) features -> (B, K, h * 2^n, w * 2^n) heatmap logits, n = len(deconv_out_channels).

    Args:
        in_channels: C; ``None`` = the backbone's ``out_channels`` (set by :meth:`build`).
        num_keypoints: K; ``None`` = the dataset's (set by :meth:`build`).
        deconv_out_channels: output channels of each stride-2 deconvolution (``()`` for none).
        deconv_kernel_sizes: kernel of each deconvolution, one of 2, 3, 4 (same length).
        conv_out_channels: output channels of each extra conv after the deconvolutions.
        conv_kernel_sizes: odd kernel of each extra conv (same length; ``()`` = all 1).
        final_kernel_size: odd kernel of the last conv to K channels.

    Init (mmpose): deconv / conv weights N(0, 0.001), conv biases 0, BN weight 1 bias 0.
    """

    def __init__(
        self,
        in_channels: int | None = None,
        num_keypoints: int | None = None,
        deconv_out_channels: tuple[int, ...] = (256, 256, 256),
        deconv_kernel_sizes: tuple[int, ...] = (4, 4, 4),
        conv_out_channels: tuple[int, ...] = (),
        conv_kernel_sizes: tuple[int, ...] = (),
        final_kernel_size: int = 1,
    ) -> None:
        super().__init__(in_channels, num_keypoints)
        deconv_out_channels, deconv_kernel_sizes = tuple(deconv_out_channels), tuple(deconv_kernel_sizes)
        conv_out_channels = tuple(conv_out_channels)
        conv_kernel_sizes = tuple(conv_kernel_sizes) or (1,) * len(conv_out_channels)
        name = type(self).__name__
        if len(deconv_out_channels) != len(deconv_kernel_sizes):
            raise ValueError(f"{name}: deconv_out_channels={deconv_out_channels} and deconv_kernel_sizes="
                             f"{deconv_kernel_sizes} must have the same length")
        bad = [k for k in deconv_kernel_sizes if k not in _DECONV_PADDING]
        if bad:
            raise ValueError(f"{name}: deconv_kernel_sizes={deconv_kernel_sizes}, each must be 2, 3 or 4")
        if len(conv_out_channels) != len(conv_kernel_sizes):
            raise ValueError(f"{name}: conv_out_channels={conv_out_channels} and conv_kernel_sizes="
                             f"{conv_kernel_sizes} must have the same length")
        if any(k % 2 == 0 for k in (*conv_kernel_sizes, final_kernel_size)):
            raise ValueError(f"{name}: conv_kernel_sizes={conv_kernel_sizes} and final_kernel_size="
                             f"{final_kernel_size} must be odd (same-size convolutions)")
        self.deconv_out_channels = deconv_out_channels
        self.deconv_kernel_sizes = deconv_kernel_sizes
        self.conv_out_channels = conv_out_channels
        self.conv_kernel_sizes = conv_kernel_sizes
        self.final_kernel_size = final_kernel_size
        #: heatmap pixels per feature pixel along each axis.
        self.upsample: int = 2 ** len(deconv_out_channels)
        self._build_if_ready()

    def _build_layers(self) -> None:
        layers: list[nn.Module] = []
        cin = self.in_channels
        for cout, k in zip(self.deconv_out_channels, self.deconv_kernel_sizes):
            pad, out_pad = _DECONV_PADDING[k]
            layers += [nn.ConvTranspose2d(cin, cout, k, stride=2, padding=pad, output_padding=out_pad, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.deconv_layers = nn.Sequential(*layers) if layers else nn.Identity()
        layers = []
        for cout, k in zip(self.conv_out_channels, self.conv_kernel_sizes):
            layers += [nn.Conv2d(cin, cout, k, padding=(k - 1) // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.conv_layers = nn.Sequential(*layers) if layers else nn.Identity()
        k = self.final_kernel_size
        self.final_layer = nn.Conv2d(cin, self.num_keypoints, k, padding=(k - 1) // 2)
        init_mmpose_(self)

    def forward(self, feat: Tensor) -> Tensor:
        """feat: (B, C, h, w) -> (B, K, h * upsample, w * upsample) logits."""
        self._check_built()
        return self.final_layer(self.conv_layers(self.deconv_layers(feat)))
