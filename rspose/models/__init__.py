"""Pose networks: a backbone (image -> one feature map) and a head (feature map -> heatmaps / SimCC vectors).

Backbones, each with ``out_channels`` (C), ``out_stride`` (s) and ``size_divisor`` (inputs must be
multiples of it); ``forward``: (B, 3, H, W) -> (B, C, H / s, W / s):

=====================================  ======================  ===  ====  =============================
class                                  C                        s   div   used by
=====================================  ======================  ===  ====  =============================
``ResNetBackbone(depth=50)``           2048 (512 for 18 / 34)   32   32   SimpleBaseline, SimCC
``HRNetBackbone(width=32)``            width                    4    32   HRNet (stride-4 branch)
``ViTBackbone(arch="vit_base")``       384 / 768 / 1024 / 1280  16   16   ViTPose-S / B / L / H
``TinyConvBackbone(width=32)``         width                    4    16   CPU quickstart, smoke tests
=====================================  ======================  ===  ====  =============================

Heads (mmpose layouts, init and state-dict names):

* ``HeatmapHead``: n stride-2 deconvs + conv to K -> (B, K, h * 2^n, w * 2^n). SimpleBaseline: the defaults
  (256, 256, 256); ViTPose classic: ``deconv_out_channels=(256, 256), deconv_kernel_sizes=(4, 4)``;
  HRNet and the tiny net: ``deconv_out_channels=(), deconv_kernel_sizes=()``.
* ``ViTPoseSimpleHead``: ReLU, bilinear x4, 3x3 conv -> (B, K, 4h, 4w).
* ``SimCCHead``: conv to K (optionally after deconvs), flatten, one Linear per axis ->
  ((B, K, W * k), (B, K, H * k)).

How the sizes reach the head (one rule for Python and for the CLI): every head takes
``in_channels: int | None = None`` and ``num_keypoints: int | None = None`` (SimCC also ``input_size`` and
``in_featuremap_size``). Left ``None``, they are filled in by :class:`PoseModel`, which calls
``head.build(backbone.out_channels, num_keypoints, input_size, input_size // backbone.out_stride)`` and only
then creates the head's layers; a value given in the config must agree or ``build`` raises. With every
size given, a head is built by its constructor (``HeatmapHead(2048, 17)``). A LightningModule therefore
takes ``backbone: nn.Module`` and ``head: nn.Module`` and wraps them as
``PoseModel(backbone, head, num_keypoints=K, input_size=codec.input_size)`` before the optimizer is made;
the YAML reads::

    model:
      backbone: {class_path: rspose.models.ResNetBackbone, init_args: {depth: 50}}
      head: {class_path: rspose.models.HeatmapHead}          # in_channels, num_keypoints inferred

Pretrained weights come only from local files (``checkpoint=``), see :mod:`rspose.models.checkpoint`.
ViT layer-wise lr decay: ``ViTBackbone.layer_id(name)`` and ``ViTBackbone.num_layers``
(scale = decay ** (num_layers - 1 - layer_id); head parameters use layer_id = num_layers - 1).
"""

from rspose.models.backbones import HRNetBackbone, ResNetBackbone, TinyConvBackbone
from rspose.models.checkpoint import load_weights, read_state_dict
from rspose.models.head_base import PoseHead
from rspose.models.heatmap_head import HeatmapHead
from rspose.models.pose_model import PoseModel
from rspose.models.pretrained import load_pose_weights
from rspose.models.simcc_head import SimCCHead
from rspose.models.vit import ViTBackbone
from rspose.models.vitpose_simple_head import ViTPoseSimpleHead

__all__ = [
    "HRNetBackbone",
    "HeatmapHead",
    "PoseHead",
    "PoseModel",
    "ResNetBackbone",
    "SimCCHead",
    "TinyConvBackbone",
    "ViTBackbone",
    "ViTPoseSimpleHead",
    "load_pose_weights",
    "load_weights",
    "read_state_dict",
]
