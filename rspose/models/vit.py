"""Plain ViT backbone of ViTPose (Xu et al., NeurIPS 2022), built from timm blocks.

Design choices (matching ViTPose and mmpose's ``mmpretrain.VisionTransformer`` config for ViTPose):

* no class token: the sequence holds the (H / p) x (W / p) patch tokens only, with one learned absolute
  position embedding per patch; when a checkpoint carries a class-token position (MAE: 1 + 14 x 14,
  original ViTPose: 1 + 16 x 12), it is added to every patch position (exactly what ViTPose's forward
  does with ``pos_embed[:, :1]``) and the grid is resampled bicubically to this model's grid;
* patch embedding: p x p conv, stride p, zero padding 2 (ViTPose's ``patch_cfg=dict(padding=2)``; the
  grid stays (H / p, W / p) since 2 * padding < p);
* pre-norm blocks (LayerNorm eps 1e-6, qkv bias, GELU MLP ratio 4), stochastic depth increasing
  linearly to ``drop_path_rate``, final LayerNorm applied before reshaping to a feature map.

State-dict keys are timm's (``patch_embed.proj``, ``pos_embed``, ``blocks.{i}.attn.qkv``, ``norm``).
Checkpoints in the original ViTPose naming (``last_norm``) and in mmpretrain naming (``layers.{i}.ln1``,
``ffn.layers.0.0``, ``patch_embed.projection``, final ``ln1``) are renamed on load.
"""

from __future__ import annotations

import math
import re
from typing import Literal

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from rspose.models.checkpoint import load_weights

#: (embed_dim, depth, num_heads) of the ViTPose variants (ViTPose-S uses 12 heads, like mmpose's config).
VIT_ARCHS: dict[str, tuple[int, int, int]] = {
    "vit_small": (384, 12, 12),
    "vit_base": (768, 12, 12),
    "vit_large": (1024, 24, 16),
    "vit_huge": (1280, 32, 16),
}

_MMPRETRAIN_RENAMES = (
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^layers\.(\d+)\.ln1\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.ln2\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.attn\.", r"blocks.\1.attn."),
    (r"^layers\.(\d+)\.ffn\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^layers\.(\d+)\.ffn\.layers\.1\.", r"blocks.\1.mlp.fc2."),
    (r"^ln1\.", "norm."),
    (r"^last_norm\.", "norm."),  # original ViTPose repository
)


class ViTBackbone(nn.Module):
    """ViTPose backbone: (B, 3, H, W) -> (B, C, H / p, W / p) (B, 768, 16, 12 for ViT-B at 256 x 192).

    Args:
        arch: ViTPose-S / B / L / H (C = 384 / 768 / 1024 / 1280; depth 12 / 12 / 24 / 32).
        img_size: (H, W) of the input crop; inputs of another size are rejected.
        patch_size: patch side p (16 for every ViTPose model).
        patch_padding: zero padding of the patch-embedding conv (ViTPose: 2); must satisfy 2 * padding < p.
        drop_path_rate: stochastic depth of the last block (ViTPose: S 0.1, B 0.3, L 0.5, H 0.55).
        grad_checkpointing: recompute block activations in backward (saves memory for ViT-L / H).
        checkpoint: local MAE / ViTPose / timm weights; ``None`` keeps timm's random init.

    Attributes:
        num_layers: depth + 2, the number of layer ids for layer-wise learning-rate decay (see :meth:`layer_id`).
    """

    def __init__(
        self,
        arch: Literal["vit_small", "vit_base", "vit_large", "vit_huge"] = "vit_base",
        img_size: tuple[int, int] = (256, 192),
        patch_size: int = 16,
        patch_padding: int = 2,
        drop_path_rate: float = 0.1,
        grad_checkpointing: bool = False,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        if arch not in VIT_ARCHS:
            raise ValueError(f"ViTBackbone: arch={arch!r}, expected one of {sorted(VIT_ARCHS)}")
        img_size = (int(img_size[0]), int(img_size[1]))
        if img_size[0] % patch_size or img_size[1] % patch_size:
            raise ValueError(f"ViTBackbone: img_size={img_size} (H, W) must be multiples of patch_size={patch_size}")
        if not 0 <= 2 * patch_padding < patch_size:
            raise ValueError(f"ViTBackbone: patch_padding={patch_padding}, expected 0 <= 2 * padding < "
                             f"patch_size={patch_size} (else the token grid is not (H / p, W / p))")
        embed_dim, depth, num_heads = VIT_ARCHS[arch]
        vit = VisionTransformer(
            img_size=img_size, patch_size=patch_size, num_classes=0, global_pool="", embed_dim=embed_dim,
            depth=depth, num_heads=num_heads, mlp_ratio=4.0, qkv_bias=True, class_token=False,
            drop_path_rate=drop_path_rate,
        )
        vit.patch_embed.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size, padding=patch_padding)
        self.patch_embed = vit.patch_embed
        self.pos_embed = vit.pos_embed  # (1, N, C), N = (H / p) * (W / p)
        self.blocks = vit.blocks
        self.norm = vit.norm
        self.arch = arch
        self.img_size = img_size
        self.grid_size: tuple[int, int] = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.grad_checkpointing = grad_checkpointing
        self.depth = depth
        self.num_layers: int = depth + 2
        self.out_channels: int = embed_dim
        self.out_stride: int = patch_size
        self.size_divisor: int = patch_size
        if checkpoint is not None:
            load_weights(self, checkpoint, adapt=self._adapt_state_dict)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) -> (B, C, H / p, W / p) after the final LayerNorm."""
        b = x.shape[0]
        x = self.patch_embed(x) + self.pos_embed  # (B, N, C)
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = grad_checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        x = self.norm(x)
        h, w = self.grid_size
        return x.transpose(1, 2).reshape(b, -1, h, w)

    def layer_id(self, param_name: str) -> int:
        """Layer index of a parameter for layer-wise lr decay (ViTPose's ``get_num_layer_for_vit``).

        0 for the patch / position embeddings, i + 1 for ``blocks.{i}``, ``num_layers - 1`` for the
        rest (final norm; the head gets this id too). Accepts names with any prefix
        (``backbone.blocks.3.attn.qkv.weight``). The lr scale is ``decay ** (num_layers - 1 - layer_id)``.
        """
        parts = param_name.split(".")
        if any(p in ("patch_embed", "pos_embed", "cls_token") for p in parts):
            return 0
        for i, p in enumerate(parts[:-1]):
            if p == "blocks" and parts[i + 1].isdigit():
                return int(parts[i + 1]) + 1
        return self.num_layers - 1

    def no_weight_decay(self) -> set[str]:
        """Parameter names ViTPose trains without weight decay besides biases and norms."""
        return {"pos_embed"}

    def _adapt_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Rename ViTPose / mmpretrain keys to timm's and resample ``pos_embed`` to this grid."""
        renamed = {}
        for key, value in state.items():
            for pattern, repl in _MMPRETRAIN_RENAMES:
                key = re.sub(pattern, repl, key)
            renamed[key] = value
        pos = renamed.get("pos_embed")
        if pos is not None and pos.ndim == 3 and pos.shape != self.pos_embed.shape:
            renamed["pos_embed"] = self._resample_pos_embed(pos)
        return renamed

    def _resample_pos_embed(self, pos: Tensor) -> Tensor:
        """pos: (1, T, C) with T = N, N + 1 (class token first) or 1 + s * s -> (1, N, C) on this grid."""
        h, w = self.grid_size
        n = pos.shape[1]
        if n != h * w and n > 1 and (n == h * w + 1 or math.isqrt(n - 1) ** 2 == n - 1):
            pos = pos[:, 1:] + pos[:, :1]  # fold the class-token position into every patch (ViTPose)
            n -= 1
        if n == h * w:
            old = (h, w)
        elif math.isqrt(n) ** 2 == n:
            old = (math.isqrt(n), math.isqrt(n))
        else:
            return pos  # unknown layout: reported as a shape mismatch by load_weights
        if old == (h, w):
            return pos
        return resample_abs_pos_embed(pos, new_size=[h, w], old_size=list(old), num_prefix_tokens=0,
                                      interpolation="bicubic", antialias=False)
