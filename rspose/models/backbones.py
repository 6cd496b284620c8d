"""Convolutional backbones: ResNet (SimpleBaseline / SimCC), HRNet (highest-resolution branch), a tiny CPU net.

Every backbone maps an image batch (B, 3, H, W) to one feature map (B, C, H / s, W / s) and exposes
``out_channels`` (C) and ``out_stride`` (s), which the heads are built from (see :mod:`rspose.models`).
The timm models are built with random weights (``pretrained=True`` is never passed: nothing is
downloaded); ``checkpoint`` loads a local file instead (:func:`rspose.models.checkpoint.load_weights`).

The modules taken from timm are registered directly on the backbone, so state-dict keys are the
timm / torchvision / mmpose names (``conv1.weight``, ``layer1.0.conv1.weight``,
``stage4.2.fuse_layers.0.1.0.weight``, ...) and checkpoints of all three load without renaming.
"""

from __future__ import annotations

from typing import Literal

import timm
import torch.nn.functional as F
from torch import Tensor, nn

from rspose.models.checkpoint import load_weights


class ResNetBackbone(nn.Module):
    """ResNet-v1.5 (torchvision layout, stride on the 3x3 conv) without pooling and classifier.

    forward: (B, 3, H, W) -> (B, C, ceil(H / 32), ceil(W / 32)) with C = 512 (depth 18, 34) or 2048.

    Args:
        depth: 18 / 34 (BasicBlock, for tiny tests and the CPU quickstart), 50 / 101 / 152 (Bottleneck).
        checkpoint: local torchvision / timm / mmpose weights; ``None`` keeps the random init.
    """

    def __init__(self, depth: Literal[18, 34, 50, 101, 152] = 50, checkpoint: str | None = None) -> None:
        super().__init__()
        if depth not in (18, 34, 50, 101, 152):
            raise ValueError(f"ResNetBackbone: depth={depth!r}, expected one of 18, 34, 50, 101, 152")
        net = timm.create_model(f"resnet{depth}", pretrained=False, num_classes=0, global_pool="")
        for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))
        self.depth = depth
        self.out_channels: int = net.num_features
        self.out_stride: int = 32
        self.size_divisor: int = 32
        if checkpoint is not None:
            load_weights(self, checkpoint)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) -> (B, C, H / 32, W / 32)."""
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class HRNetBackbone(nn.Module):
    """HRNet-W{18,32,48} (Sun et al. 2019) returning the stride-4 branch of the last stage.

    As in the mmpose / original top-down HRNet (``multiscale_output=False``), the last module of stage 4
    fuses every branch into the highest-resolution one only: timm builds the fuse layers of all four
    output branches, the three unused ones are dropped here (no unused parameters under DDP), so the
    parameter count and state-dict keys equal mmpose's.

    forward: (B, 3, H, W) -> (B, width, H / 4, W / 4) (H, W multiples of 32).

    Args:
        width: channels of the highest-resolution branch (18, 32 or 48).
        checkpoint: local timm / mmpose weights; ``None`` keeps the random init.
    """

    def __init__(self, width: Literal[18, 32, 48] = 32, checkpoint: str | None = None) -> None:
        super().__init__()
        if width not in (18, 32, 48):
            raise ValueError(f"HRNetBackbone: width={width!r}, expected one of 18, 32, 48")
        net = timm.create_model(f"hrnet_w{width}", pretrained=False, head="", num_classes=0)
        names = ("conv1", "bn1", "act1", "conv2", "bn2", "act2", "layer1",
                 "transition1", "stage2", "transition2", "stage3", "transition3", "stage4")
        for name in names:
            self.add_module(name, getattr(net, name))
        last = self.stage4[-1]
        last.fuse_layers = last.fuse_layers[:1]  # fuse into branch 0 only
        last.multi_scale_output = False
        self.width = width
        self.out_channels: int = width
        self.out_stride: int = 4
        self.size_divisor: int = 32  # the lowest-resolution branch is at stride 32
        if checkpoint is not None:
            load_weights(self, checkpoint)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) -> (B, width, H / 4, W / 4)."""
        x = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        x = self.layer1(x)
        ys = self.stage2([t(x) for t in self.transition1])
        # a transition is Identity for a kept branch and a stride-2 conv from the lowest branch for a new one
        ys = self.stage3([ys[i] if isinstance(t, nn.Identity) else t(ys[-1]) for i, t in enumerate(self.transition2)])
        ys = self.stage4([ys[i] if isinstance(t, nn.Identity) else t(ys[-1]) for i, t in enumerate(self.transition3)])
        return ys[0]


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _ResBlock(nn.Module):
    """3x3-3x3 residual block at constant width (the ResNet BasicBlock)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(channels, channels)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class TinyConvBackbone(nn.Module):
    """A ~1M-parameter encoder-decoder for CPU quickstarts and smoke tests (stride-4 output).

    Encoder: stem of two stride-2 3x3 convs (stride 4, ``width`` channels), then stride 8 (2 x width) and
    stride 16 (4 x width) stages of residual blocks. Decoder (FPN-like): 1x1 lateral convs, nearest x2
    upsampling and addition back to stride 4, each followed by a 3x3 conv. The stride-16 stage gives
    the receptive field a heatmap needs (~ the whole 128 x 96 crop) while the output stays at the
    heatmap resolution, so the matching head is ``HeatmapHead(deconv_out_channels=())`` (a 1x1 conv)
    or ``SimCCHead`` with no deconvolution.

    forward: (B, 3, H, W) -> (B, width, H / 4, W / 4) (H, W multiples of 16).

    Args:
        width: channels at stride 4 (doubled at each lower resolution).
        checkpoint: local weights saved from this class.
    """

    def __init__(self, width: int = 32, checkpoint: str | None = None) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"TinyConvBackbone: width={width!r}, expected a positive int")
        w = width
        self.stem = nn.Sequential(_conv_bn_relu(3, w, stride=2), _conv_bn_relu(w, w, stride=2))
        self.enc4 = _ResBlock(w)
        self.enc8 = nn.Sequential(_conv_bn_relu(w, 2 * w, stride=2), _ResBlock(2 * w))
        self.enc16 = nn.Sequential(_conv_bn_relu(2 * w, 4 * w, stride=2), _ResBlock(4 * w), _ResBlock(4 * w))
        self.lateral16 = nn.Conv2d(4 * w, 2 * w, 1, bias=False)
        self.fuse8 = _conv_bn_relu(2 * w, 2 * w)
        self.lateral8 = nn.Conv2d(2 * w, w, 1, bias=False)
        self.fuse4 = _conv_bn_relu(w, w)
        self.width = width
        self.out_channels: int = w
        self.out_stride: int = 4
        self.size_divisor: int = 16
        if checkpoint is not None:
            load_weights(self, checkpoint)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) -> (B, width, H / 4, W / 4)."""
        c4 = self.enc4(self.stem(x))
        c8 = self.enc8(c4)
        c16 = self.enc16(c8)
        p8 = self.fuse8(c8 + F.interpolate(self.lateral16(c16), size=c8.shape[-2:], mode="nearest"))
        return self.fuse4(c4 + F.interpolate(self.lateral8(p8), size=c4.shape[-2:], mode="nearest"))
