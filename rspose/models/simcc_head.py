"""SimCC head (Li et al., ECCV 2022): per-keypoint feature maps flattened, one linear classifier per axis.

As mmpose's SimCCHead: optional deconvolutions (a :class:`HeatmapHead` ending in a conv to K channels,
key ``deconv_head``) or a single conv to K channels (key ``final_layer``), then each keypoint's map
(h' x w' values) is flattened and mapped by ``mlp_head_x`` to W * k bins and by ``mlp_head_y`` to H * k
bins (k = ``simcc_split_ratio``; 384 and 512 bins for a 192 x 256 input with k = 2).

mmpose's SimCC ResNet-50 recipe (72.1 AP) keeps SimpleBaseline's three 256-channel deconvolutions
(``deconv_out_channels=(256, 256, 256)``, ``deconv_kernel_sizes=(4, 4, 4)``); the default here is none
(SimCC* of the paper, a 1x1 conv on the stride-32 features).
"""

from __future__ import annotations

from torch import Tensor, nn

from rspose.models.head_base import PoseHead, init_mmpose_
from rspose.models.heatmap_head import HeatmapHead


class SimCCHead(PoseHead):
    """(B, C, h, w) features -> ((B, K, W * k), (B, K, H * k)) logits of the x and y bins.

    Args:
        in_channels: C; ``None`` = the backbone's ``out_channels`` (set by :meth:`build`).
        num_keypoints: K; ``None`` = the dataset's (set by :meth:`build`).
        input_size: (W, H) of the input crop; ``None`` = the codec's (set by :meth:`build`).
        in_featuremap_size: (w, h) of the backbone features; ``None`` = input_size / backbone stride.
        simcc_split_ratio: k, bins per input pixel; ``None`` = the codec's (set by :meth:`build`: the split ratio
            is written once, under ``data.codec``).
        deconv_out_channels: channels of optional stride-2 deconvolutions before the conv to K.
        deconv_kernel_sizes: their kernels (2, 3 or 4; same length).
        final_layer_kernel_size: odd kernel of the conv to K channels.

    Init (mmpose): conv / deconv N(0, 0.001), Linear N(0, 0.01), biases 0, BN weight 1 bias 0.
    """

    output_dims = 1

    def __init__(
        self,
        in_channels: int | None = None,
        num_keypoints: int | None = None,
        input_size: tuple[int, int] | None = None,
        in_featuremap_size: tuple[int, int] | None = None,
        simcc_split_ratio: float | None = None,
        deconv_out_channels: tuple[int, ...] = (),
        deconv_kernel_sizes: tuple[int, ...] = (),
        final_layer_kernel_size: int = 1,
    ) -> None:
        super().__init__(in_channels, num_keypoints)
        if simcc_split_ratio is not None and simcc_split_ratio <= 0:
            raise ValueError(f"SimCCHead: simcc_split_ratio={simcc_split_ratio}, expected > 0")
        deconv_out_channels, deconv_kernel_sizes = tuple(deconv_out_channels), tuple(deconv_kernel_sizes)
        if len(deconv_out_channels) != len(deconv_kernel_sizes):
            raise ValueError(f"SimCCHead: deconv_out_channels={deconv_out_channels} and deconv_kernel_sizes="
                             f"{deconv_kernel_sizes} must have the same length")
        if final_layer_kernel_size % 2 == 0:
            raise ValueError(f"SimCCHead: final_layer_kernel_size={final_layer_kernel_size} must be odd")
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.in_featuremap_size = (None if in_featuremap_size is None
                                   else (int(in_featuremap_size[0]), int(in_featuremap_size[1])))
        self.simcc_split_ratio = None if simcc_split_ratio is None else float(simcc_split_ratio)
        self.deconv_out_channels = deconv_out_channels
        self.deconv_kernel_sizes = deconv_kernel_sizes
        self.final_layer_kernel_size = final_layer_kernel_size
        self._build_if_ready()

    def _needs(self) -> tuple[str, ...]:
        return ("in_channels", "num_keypoints", "input_size", "in_featuremap_size", "simcc_split_ratio")

    def _take_sizes(
        self,
        input_size: tuple[int, int] | None,
        feature_size: tuple[int, int] | None,
        simcc_split_ratio: float | None = None,
    ) -> dict[str, tuple[int, int] | float | None]:
        return {"input_size": input_size, "in_featuremap_size": feature_size,
                "simcc_split_ratio": None if simcc_split_ratio is None else float(simcc_split_ratio)}

    @property
    def num_bins(self) -> tuple[int, int]:
        """(W * k, H * k): lengths of the x and y vectors."""
        self._check_built()
        return self.mlp_head_x.out_features, self.mlp_head_y.out_features

    def _build_layers(self) -> None:
        k = self.final_layer_kernel_size
        upsample = 2 ** len(self.deconv_out_channels)
        if self.deconv_out_channels:
            self.deconv_head = HeatmapHead(
                self.in_channels, self.num_keypoints, self.deconv_out_channels, self.deconv_kernel_sizes,
                final_kernel_size=k,
            )
        else:
            self.final_layer = nn.Conv2d(self.in_channels, self.num_keypoints, k, padding=(k - 1) // 2)
        w, h = self.in_featuremap_size
        flatten_dims = w * upsample * h * upsample
        self.mlp_head_x = nn.Linear(flatten_dims, round(self.input_size[0] * self.simcc_split_ratio))
        self.mlp_head_y = nn.Linear(flatten_dims, round(self.input_size[1] * self.simcc_split_ratio))
        init_mmpose_(self)

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: (B, C, h, w) -> (pred_x (B, K, W * k), pred_y (B, K, H * k)) logits."""
        self._check_built()
        x = self.deconv_head(feat) if self.deconv_out_channels else self.final_layer(feat)
        x = x.flatten(2)  # (B, K, h' * w')
        if x.shape[-1] != self.mlp_head_x.in_features:
            raise ValueError(f"SimCCHead: got a (h, w) = {tuple(feat.shape[-2:])} feature map but was built for "
                             f"in_featuremap_size (w, h) = {self.in_featuremap_size} (input_size {self.input_size})")
        return self.mlp_head_x(x), self.mlp_head_y(x)
