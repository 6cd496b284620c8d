"""Top-down pose network: backbone then head, with the head's sizes filled in from backbone and data."""

from __future__ import annotations

from torch import Tensor, nn

from rspose.codecs.base import Codec, HeadOutput
from rspose.models.head_base import PoseHead


class PoseModel(nn.Module):
    """``head(backbone(x))``: (B, 3, H, W) crops -> (B, K, h, w) heatmaps or SimCC ((B, K, Lx), (B, K, Ly)).

    If ``head`` is a :class:`PoseHead` that is not built yet, it is built here with
    ``in_channels = backbone.out_channels``, ``num_keypoints``, ``input_size`` and the feature size
    ``input_size // backbone.out_stride``; a size the head config did give must agree.

    Args:
        backbone: any module with ``out_channels`` and ``out_stride`` attributes (optional ``size_divisor``: the
            input side must be a multiple of it, default ``out_stride``)
            (:class:`ResNetBackbone`, :class:`HRNetBackbone`, :class:`ViTBackbone`, :class:`TinyConvBackbone`).
        head: a :class:`PoseHead` (:class:`HeatmapHead`, :class:`ViTPoseSimpleHead`, :class:`SimCCHead`) or any
            built module taking the feature map.
        num_keypoints: K (the dataset's).
        input_size: (W, H) of the input crops; must be a multiple of the backbone stride.
        codec: the data's codec; when given, ``input_size`` (and SimCC's split ratio) come from it, and the head
            must produce what the codec decodes (heatmaps of ``codec.heatmap_size``, or SimCC vectors), checked
            here so that a mismatch fails at start-up naming the config keys instead of at the first step.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        num_keypoints: int | None = None,
        input_size: tuple[int, int] | None = None,
        codec: Codec | None = None,
    ) -> None:
        super().__init__()
        if codec is not None:
            if input_size is not None and tuple(input_size) != tuple(codec.input_size):
                raise ValueError(f"PoseModel: input_size={tuple(input_size)} differs from the codec's "
                                 f"{tuple(codec.input_size)}; give one of them")
            input_size = codec.input_size
        for attr in ("out_channels", "out_stride"):
            if not isinstance(getattr(backbone, attr, None), int):
                raise TypeError(f"PoseModel: backbone {type(backbone).__name__} has no int attribute '{attr}'")
        feature_size = None
        if input_size is not None:
            input_size = (int(input_size[0]), int(input_size[1]))
            feature_size = self.check_input_size(backbone, input_size)
        if isinstance(head, PoseHead):
            if codec is not None:
                self.check_head_codec(head, codec)
            split = getattr(codec, "simcc_split_ratio", None) if head.output_dims == 1 else None
            head.build(backbone.out_channels, num_keypoints, input_size, feature_size, split)
            if codec is not None and head.output_dims == 2 and feature_size is not None:
                self.check_heatmap_size(head, codec, feature_size, backbone)
        self.backbone = backbone
        self.head = head
        self.num_keypoints = num_keypoints
        self.input_size = input_size

    @staticmethod
    def check_head_codec(head: PoseHead, codec: Codec) -> None:
        """The head's output kind must be the codec's (heatmaps vs SimCC vectors)."""
        if head.output_dims != codec.num_dims:
            kinds = {2: "heatmaps", 1: "SimCC x/y vectors"}
            fix = "rspose.models.SimCCHead" if codec.num_dims == 1 else "rspose.models.HeatmapHead (or ViTPoseSimpleHead)"
            raise ValueError(f"model.head: {type(head).__name__} outputs {kinds[head.output_dims]} but data.codec "
                             f"({type(codec).__name__}) encodes and decodes {kinds[codec.num_dims]}; use {fix} as "
                             "model.head or change data.codec")

    @staticmethod
    def check_heatmap_size(head: PoseHead, codec: Codec, feature_size: tuple[int, int], backbone: nn.Module) -> None:
        """feature size x the head's upsampling must be the codec's heatmap size."""
        upsample = getattr(head, "upsample", None)
        expected = getattr(codec, "heatmap_size", None)
        if upsample is None or expected is None:
            return
        out = (feature_size[0] * upsample, feature_size[1] * upsample)
        if out != tuple(expected):
            raise ValueError(
                f"model.head: {type(head).__name__} makes {out[0]}x{out[1]} (w x h) heatmaps from the "
                f"{type(backbone).__name__} features ({feature_size[0]}x{feature_size[1]}, x{upsample}), but "
                f"data.codec.init_args.heatmap_size is {tuple(expected)}; change the head's upsampling "
                "(deconv_out_channels / upsample_factor) or the codec's heatmap_size"
            )

    @staticmethod
    def check_input_size(backbone: nn.Module, input_size: tuple[int, int]) -> tuple[int, int]:
        """Validate (W, H) for ``backbone`` and return the feature size (w, h)."""
        w, h = input_size
        stride = backbone.out_stride
        # HRNet and the tiny net downsample internally further than their output stride
        divisor = int(getattr(backbone, "size_divisor", stride))
        if w % divisor or h % divisor:
            raise ValueError(f"PoseModel: input_size (W, H) = {input_size} must be multiples of {divisor} "
                             f"for {type(backbone).__name__}")
        img_size = getattr(backbone, "img_size", None)
        if img_size is not None and tuple(img_size) != (h, w):
            raise ValueError(f"PoseModel: input_size (W, H) = {input_size} but {type(backbone).__name__} was built "
                             f"for img_size (H, W) = {tuple(img_size)}; set the backbone's img_size to ({h}, {w})")
        return w // stride, h // stride

    def forward(self, x: Tensor) -> HeadOutput:
        """x: (B, 3, H, W) normalised crops -> the head output (logits)."""
        return self.head(self.backbone(x))
