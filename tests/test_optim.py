"""Optimiser param groups (ViTPose layer-wise decay, no decay on norms/biases) and the lr schedule, against
hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rspose.models import HeatmapHead, PoseModel, ResNetBackbone, ViTBackbone
from rspose.optim import build_optimizer, build_param_groups, lr_lambda


def vit_model() -> PoseModel:
    backbone = ViTBackbone("vit_small", img_size=(64, 48), drop_path_rate=0.0)
    head = HeatmapHead(deconv_out_channels=(8,), deconv_kernel_sizes=(4,))
    return PoseModel(backbone, head, num_keypoints=17, input_size=(48, 64))


def test_layer_decay_scales_follow_mmpose_rule():
    model = vit_model()
    decay, num_layers = 0.75, model.backbone.num_layers  # depth + 2
    groups = build_param_groups(model, weight_decay=0.1, layer_decay=decay)
    optimizer = build_optimizer(groups, "adamw", lr=1e-3)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    expected_layer = {"backbone.blocks.0.mlp.fc1.weight": 1, "backbone.blocks.3.attn.qkv.weight": 4,
                      "head.final_layer.weight": num_layers - 1}
    for name, layer in expected_layer.items():
        assert lr_of[id(params[name])] == pytest.approx(1e-3 * decay ** (num_layers - 1 - layer)), name
    embed = [n for n in params if n.startswith("backbone.patch_embed") and n.endswith("weight")][0]
    assert lr_of[id(params[embed])] == pytest.approx(1e-3 * decay ** (num_layers - 1))
    # no weight decay on biases, norms and the position embedding; decay on matrices
    assert wd_of[id(params["backbone.blocks.0.mlp.fc1.bias"])] == 0.0
    assert wd_of[id(params["backbone.pos_embed"])] == 0.0
    assert wd_of[id(params["backbone.blocks.0.mlp.fc1.weight"])] == 0.1
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(params)


def test_layer_decay_needs_a_layered_backbone():
    model = PoseModel(ResNetBackbone(18), HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=()),
                      num_keypoints=17, input_size=(64, 64))
    with pytest.raises(ValueError, match="layer_decay=0.75.*ResNetBackbone"):
        build_param_groups(model, 0.0, layer_decay=0.75)


def test_plain_groups_cover_every_parameter_once():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    groups = build_param_groups(model, weight_decay=0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert {g["weight_decay"] for g in groups} == {0.0, 0.01}


def test_step_schedule_warmup_and_milestones():
    factor = lr_lambda(500, 0.001, "step", (170, 200), 0.1, steps_per_epoch=lambda: 100, total_steps=lambda: 21000)
    assert factor(0) == pytest.approx(0.001)
    assert factor(250) == pytest.approx(0.001 + 0.999 * 0.5)
    assert factor(500) == pytest.approx(1.0)
    assert factor(169 * 100 + 99) == pytest.approx(1.0)
    assert factor(170 * 100) == pytest.approx(0.1)
    assert factor(200 * 100) == pytest.approx(0.01)


def test_cosine_schedule():
    factor = lr_lambda(0, 0.001, "cosine", (), 0.1, steps_per_epoch=lambda: 10, total_steps=lambda: 100,
                       min_lr_ratio=0.1)
    assert factor(0) == pytest.approx(1.0)
    assert factor(50) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(100) == pytest.approx(0.1)
    torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), factor)
