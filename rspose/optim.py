"""Optimisers and learning-rate schedules of the reference recipes.

* Adam / AdamW over all parameters, or, for ViTPose, AdamW with layer-wise learning-rate decay (mmpose's
  LayerDecayOptimizerConstructor: a parameter of layer ``i`` of ``L`` gets ``lr * layer_decay ** (L - 1 - i)``;
  the patch embedding is layer 0, block j layer j + 1, the head layer L - 1) and no weight decay on norms,
  biases and position embeddings.
* A per-iteration schedule: linear warm-up from ``warmup_ratio * lr`` over ``warmup_iters`` iterations, then a
  step decay by ``gamma`` at each epoch of ``milestones`` (mmpose's LinearLR + MultiStepLR), or a cosine decay
  to ``min_lr_ratio * lr`` over the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Literal

import torch
from torch import nn

NO_DECAY_KEYS = ("pos_embed", "cls_token", "relative_position_bias_table")


def _no_weight_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or any(key in name for key in NO_DECAY_KEYS)


def build_param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float | None = None,
    backbone_attr: str = "backbone",
) -> list[dict]:
    """Split ``model``'s trainable parameters into optimizer groups.

    Without ``layer_decay`` there are at most two groups (with and without weight decay). With it, the
    backbone must expose ``num_layers: int`` and ``layer_id(param_name) -> int`` (the ViT backbone does);
    parameters outside the backbone (the head) get layer ``num_layers - 1``, i.e. the full learning rate.
    Each group carries ``lr_scale``, which :func:`build_optimizer` multiplies into the base lr.
    """
    backbone = getattr(model, backbone_attr, None)
    if layer_decay is not None:
        if backbone is None or not hasattr(backbone, "layer_id") or not hasattr(backbone, "num_layers"):
            raise ValueError(
                f"layer_decay={layer_decay} needs a backbone with num_layers and layer_id() (the ViT backbone); "
                f"got {type(backbone).__name__}"
            )
        num_layers = int(backbone.num_layers)
    groups: dict[tuple[int, bool], dict] = {}
    prefix = f"{backbone_attr}."
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = _no_weight_decay(name, param)
        layer = 0
        scale = 1.0
        if layer_decay is not None:
            layer = backbone.layer_id(name[len(prefix):]) if name.startswith(prefix) else num_layers - 1
            scale = layer_decay ** (num_layers - 1 - layer)
        key = (layer, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale}
        groups[key]["params"].append(param)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(
    params: Iterable[dict],
    name: Literal["adam", "adamw"],
    lr: float,
) -> torch.optim.Optimizer:
    """Adam or AdamW over param groups that carry ``lr_scale`` (see :func:`build_param_groups`)."""
    groups = []
    for group in params:
        group = dict(group)
        group["lr"] = lr * group.get("lr_scale", 1.0)
        groups.append(group)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimizer must be 'adam' or 'adamw', got {name!r}")


def lr_lambda(
    warmup_iters: int,
    warmup_ratio: float,
    schedule: Literal["step", "cosine"],
    milestones: tuple[int, ...],
    gamma: float,
    steps_per_epoch: Callable[[], int],
    total_steps: Callable[[], int],
    min_lr_ratio: float = 0.0,
) -> Callable[[int], float]:
    """The per-iteration multiplier of the base lr (for ``torch.optim.lr_scheduler.LambdaLR``).

    ``steps_per_epoch`` and ``total_steps`` are callables because the Trainer knows them only once the
    dataloaders exist.
    """

    def factor(step: int) -> float:
        warm = 1.0
        if warmup_iters > 0 and step < warmup_iters:
            warm = warmup_ratio + (1.0 - warmup_ratio) * step / warmup_iters
        if schedule == "step":
            epoch = step // max(1, steps_per_epoch())
            decay = gamma ** sum(1 for m in milestones if epoch >= m)
        else:
            progress = min(1.0, step / max(1, total_steps()))
            decay = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return warm * decay

    return factor
