"""Whole-model loading (``model.init_from``) of official checkpoints, and safe (weights-only) checkpoint reading.

The state dicts are written here with the official key names and shapes; each test names the file of the
official code its keys come from (open-mmlab/mmpose, ViTAE-Transformer/ViTPose). The forward test builds the
official SimpleBaseline structure independently (torchvision ResNet-50 + an mmpose-style HeatmapHead written here)
and compares heatmaps.
"""

from __future__ import annotations

import pickle
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from rspose.models import (
    HeatmapHead,
    HRNetBackbone,
    PoseModel,
    ResNetBackbone,
    SimCCHead,
    ViTBackbone,
    ViTPoseSimpleHead,
)
from rspose.models.checkpoint import ALLOW_PICKLE_ENV, UnsafeCheckpointError, read_state_dict
from rspose.models.pretrained import load_pose_weights

K = 17


def _randomise(module: nn.Module, seed: int = 0) -> None:
    """Random weights and BatchNorm statistics, so that a wrongly placed tensor changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif name.endswith(("running_mean", "bias")):
                    t.copy_(torch.randn(t.shape, generator=g) * 0.1)
                elif t.ndim == 1:  # BN / LN weights
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    fan_in = t[0].numel() if t.ndim > 1 else 1
                    t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)


class OfficialHeatmapHead(nn.Module):
    """mmpose 1.x ``HeatmapHead`` as written in mmpose/models/heads/heatmap_heads/heatmap_head.py:
    ``_make_deconv_layers``: per layer ConvTranspose2d(k 4, stride 2, padding 1, output_padding 0, bias False),
    BatchNorm2d, ReLU(inplace); ``conv_layers`` = Identity; ``final_layer`` = Conv2d(256, K, 1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [nn.ConvTranspose2d(in_channels, 256, 4, stride=2, padding=1, output_padding=0, bias=False),
                       nn.BatchNorm2d(256), nn.ReLU(inplace=True)]
            in_channels = 256
        self.deconv_layers = nn.Sequential(*layers)
        self.conv_layers = nn.Identity()
        self.final_layer = nn.Conv2d(256, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.conv_layers(self.deconv_layers(x)))


def _official_simplebaseline_r50() -> tuple[nn.Module, nn.Module, dict[str, torch.Tensor]]:
    """torchvision ResNet-50 (mmpose/models/backbones/resnet.py uses the same names: conv1, bn1, layerN.i.convJ,
    bnJ, downsample.0/1) + OfficialHeatmapHead; returns both and the mmpose 1.x state dict (backbone.* / head.*)."""
    resnet = torchvision.models.resnet50(weights=None)
    head = OfficialHeatmapHead(2048, K)
    _randomise(resnet, 1)
    _randomise(head, 2)
    state = OrderedDict()
    for k, v in resnet.state_dict().items():
        if not k.startswith("fc."):
            state[f"backbone.{k}"] = v.clone()
    for k, v in head.state_dict().items():
        state[f"head.{k}"] = v.clone()
    return resnet.eval(), head.eval(), state


def _rspose_simplebaseline(input_size: tuple[int, int] = (96, 128)) -> PoseModel:
    return PoseModel(ResNetBackbone(50), HeatmapHead(), num_keypoints=K, input_size=input_size).eval()


def test_mmpose1_simplebaseline_r50_loads_whole_and_gives_the_same_heatmaps(tmp_path: Path) -> None:
    resnet, head, state = _official_simplebaseline_r50()
    path = tmp_path / "td-hm_res50_8xb64-210e_coco-256x192.pth"
    torch.save({"meta": {"epoch": 210, "mmpose_version": "1.3.0"}, "state_dict": state}, path)
    model = _rspose_simplebaseline()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = load_pose_weights(model, path)
    assert report.family == "mmpose1" and report.ok
    assert not report.missing and not report.unexpected and not report.mismatched
    own = model.state_dict()
    assert len(report.loaded) == len(own) == len(state)
    for key, value in state.items():  # same names in rspose: each tensor is where the official model has it
        torch.testing.assert_close(own[key], value, rtol=0, atol=0)
    x = torch.randn(2, 3, 128, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        feats = resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(
            resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))))))
        expected = head(feats)
        got = model(x)
    assert got.shape == (2, K, 32, 24)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_mmpose0_keypoint_head_layout_and_legacy_final_layer(tmp_path: Path) -> None:
    """mmpose 0.x TopdownHeatmapSimpleHead (mmpose/models/heads/topdown_heatmap_simple_head.py, v0.x branch):
    keys ``keypoint_head.deconv_layers.{0,1,3,4,6,7}`` and ``keypoint_head.final_layer``; with extra convs,
    ``final_layer`` is a Sequential [conv, BN, ReLU, ..., conv] (``final_layer.{n}``)."""
    _, _, state = _official_simplebaseline_r50()
    old = {k.replace("head.", "keypoint_head.", 1) if k.startswith("head.") else k: v for k, v in state.items()}
    path = tmp_path / "res50_coco_256x192-ec54d7f3_20200709.pth"
    torch.save({"state_dict": old}, path)
    model = _rspose_simplebaseline()
    report = load_pose_weights(model, path)
    assert report.family == "mmpose0" and report.ok
    torch.testing.assert_close(model.head.deconv_layers[4].running_var, state["head.deconv_layers.4.running_var"])
    torch.testing.assert_close(model.head.final_layer.bias, state["head.final_layer.bias"], rtol=0, atol=0)

    # legacy: one extra 3x3 conv inside final_layer (final_layer.0 conv, .1 BN, .3 the conv to K)
    def small_model() -> PoseModel:
        head = HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=(), conv_out_channels=(32,),
                           conv_kernel_sizes=(3,))
        return PoseModel(HRNetBackbone(18), head, num_keypoints=K, input_size=(64, 64))

    small = small_model()
    legacy = {k: v for k, v in small.state_dict().items() if k.startswith("backbone.")}
    g = torch.Generator().manual_seed(0)
    legacy["keypoint_head.final_layer.0.weight"] = torch.randn(32, 18, 3, 3, generator=g)
    legacy["keypoint_head.final_layer.0.bias"] = torch.randn(32, generator=g)
    for name in ("weight", "bias", "running_mean", "running_var"):
        legacy[f"keypoint_head.final_layer.1.{name}"] = torch.rand(32, generator=g)
    legacy["keypoint_head.final_layer.3.weight"] = torch.randn(K, 32, 1, 1, generator=g)
    legacy["keypoint_head.final_layer.3.bias"] = torch.randn(K, generator=g)
    small = small_model()
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": legacy}, path)
    assert load_pose_weights(small, path).ok
    torch.testing.assert_close(small.head.conv_layers[0].weight, legacy["keypoint_head.final_layer.0.weight"])
    torch.testing.assert_close(small.head.conv_layers[1].running_var, legacy["keypoint_head.final_layer.1.running_var"])
    torch.testing.assert_close(small.head.final_layer.weight, legacy["keypoint_head.final_layer.3.weight"])


def test_mmpose1_hrnet_w32_official_key_names(tmp_path: Path) -> None:
    """Key names and shapes from mmpose/models/backbones/hrnet.py (stem conv1/bn1/conv2/bn2, layer1 Bottlenecks,
    ``transition{i}.{j}.0`` / ``.{j}.0.0`` for a new branch, ``stage{i}.{m}.branches.{b}.{n}``,
    ``fuse_layers.{i}.{j}``; the last module fuses into branch 0 only) + HeatmapHead without deconv."""
    model = PoseModel(HRNetBackbone(32), HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=()),
                      num_keypoints=K, input_size=(64, 64))
    official_shapes = {
        "backbone.conv1.weight": (64, 3, 3, 3),
        "backbone.bn2.running_var": (64,),
        "backbone.layer1.0.conv3.weight": (256, 64, 1, 1),
        "backbone.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "backbone.transition1.0.0.weight": (32, 256, 3, 3),
        "backbone.transition1.1.0.0.weight": (64, 256, 3, 3),
        "backbone.transition3.3.0.0.weight": (256, 128, 3, 3),
        "backbone.stage2.0.branches.1.3.conv2.weight": (64, 64, 3, 3),
        "backbone.stage2.0.fuse_layers.0.1.0.weight": (32, 64, 1, 1),
        "backbone.stage2.0.fuse_layers.1.0.0.0.weight": (64, 32, 3, 3),
        "backbone.stage3.3.fuse_layers.2.0.1.0.weight": (128, 32, 3, 3),
        "backbone.stage4.2.fuse_layers.0.3.0.weight": (32, 256, 1, 1),
        "head.final_layer.weight": (K, 32, 1, 1),
    }
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=g) if v.dtype.is_floating_point else v.clone()
             for k, v in model.state_dict().items()}
    for key, shape in official_shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("backbone.stage4.2.fuse_layers.1.") for k in state)  # multiscale_output=False
    path = tmp_path / "td-hm_hrnet-w32_8xb64-210e_coco-256x192.pth"
    torch.save({"state_dict": state}, path)
    fresh = PoseModel(HRNetBackbone(32), HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=()),
                      num_keypoints=K, input_size=(64, 64))
    assert load_pose_weights(fresh, path).ok
    for key in official_shapes:
        torch.testing.assert_close(fresh.state_dict()[key], state[key], rtol=0, atol=0)


def test_mmpose1_simcc_r50_head_names(tmp_path: Path) -> None:
    """mmpose/models/heads/coord_cls_heads/simcc_head.py: with deconvs, ``deconv_head`` is a HeatmapHead
    (``deconv_head.deconv_layers.{0,1,3,4,6,7}``, ``deconv_head.final_layer``), then ``mlp_head_x`` /
    ``mlp_head_y`` = Linear(h' * w', W * k) / Linear(h' * w', H * k)."""
    w, h, ratio = 64, 96, 2.0
    state = {k: v for k, v in _official_simplebaseline_r50()[2].items() if k.startswith("backbone.")}
    g = torch.Generator().manual_seed(5)
    cin = 2048
    for i in (0, 3, 6):
        state[f"head.deconv_head.deconv_layers.{i}.weight"] = torch.randn(cin, 256, 4, 4, generator=g)
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"head.deconv_head.deconv_layers.{i + 1}.{name}"] = torch.rand(256, generator=g)
        state[f"head.deconv_head.deconv_layers.{i + 1}.num_batches_tracked"] = torch.tensor(7)
        cin = 256
    state["head.deconv_head.final_layer.weight"] = torch.randn(K, 256, 1, 1, generator=g)
    state["head.deconv_head.final_layer.bias"] = torch.randn(K, generator=g)
    flat = (w // 32 * 8) * (h // 32 * 8)
    state["head.mlp_head_x.weight"] = torch.randn(int(w * ratio), flat, generator=g)
    state["head.mlp_head_x.bias"] = torch.randn(int(w * ratio), generator=g)
    state["head.mlp_head_y.weight"] = torch.randn(int(h * ratio), flat, generator=g)
    state["head.mlp_head_y.bias"] = torch.randn(int(h * ratio), generator=g)
    path = tmp_path / "simcc_res50_8xb64-210e_coco-256x192.pth"
    torch.save({"state_dict": state}, path)
    head = SimCCHead(simcc_split_ratio=ratio, deconv_out_channels=(256, 256, 256), deconv_kernel_sizes=(4, 4, 4))
    model = PoseModel(ResNetBackbone(50), head, num_keypoints=K, input_size=(w, h))
    assert load_pose_weights(model, path).ok
    own = model.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0)


def _mmpretrain_name(timm_name: str) -> str:
    """timm ViT name -> mmpretrain.VisionTransformer name (mmpretrain/models/backbones/vision_transformer.py:
    ``patch_embed.projection``, ``layers.{i}.ln1 / attn.qkv / attn.proj / ln2 / ffn.layers.0.0 / ffn.layers.1``,
    final ``ln1``)."""
    import re

    rules = [(r"^patch_embed\.proj\.", "patch_embed.projection."), (r"^blocks\.(\d+)\.norm1\.", r"layers.\1.ln1."),
             (r"^blocks\.(\d+)\.norm2\.", r"layers.\1.ln2."), (r"^blocks\.(\d+)\.mlp\.fc1\.", r"layers.\1.ffn.layers.0.0."),
             (r"^blocks\.(\d+)\.mlp\.fc2\.", r"layers.\1.ffn.layers.1."), (r"^blocks\.(\d+)\.attn\.", r"layers.\1.attn."),
             (r"^norm\.", "ln1.")]
    for pattern, repl in rules:
        timm_name = re.sub(pattern, repl, timm_name)
    return timm_name


def _vit_pose(simple: bool) -> PoseModel:
    head = ViTPoseSimpleHead() if simple else HeatmapHead(deconv_out_channels=(256, 256), deconv_kernel_sizes=(4, 4))
    return PoseModel(ViTBackbone("vit_small", img_size=(64, 48)), head, num_keypoints=K, input_size=(48, 64))


def test_vitpose_repo_layout_last_norm_and_class_token_slot(tmp_path: Path) -> None:
    """ViTAE-Transformer/ViTPose mmpose/models/backbones/vit.py: ``blocks.{i}``, ``last_norm``, pos_embed
    (1, num_patches + 1, C) used as ``x + pos_embed[:, 1:] + pos_embed[:, :1]``; head ``keypoint_head.*``
    (TopdownHeatmapSimpleHead: simple decoder = ``final_layer`` 3x3 only)."""
    src = _vit_pose(simple=True)
    _randomise(src, 4)
    s = src.state_dict()
    cls = torch.randn(1, 1, 384)
    official = {}
    for k, v in s.items():
        if k.startswith("backbone."):
            name = k[len("backbone."):]
            name = "last_norm." + name[5:] if name.startswith("norm.") else name
            official[f"backbone.{name}"] = v
        else:
            official["keypoint_head." + k[len("head."):]] = v
    official["backbone.pos_embed"] = torch.cat([cls, s["backbone.pos_embed"]], 1)
    path = tmp_path / "vitpose_small.pth"
    torch.save({"state_dict": official}, path)
    dst = _vit_pose(simple=True)
    report = load_pose_weights(dst, path)
    assert report.family == "mmpose0" and report.ok
    d = dst.state_dict()
    torch.testing.assert_close(d["backbone.pos_embed"], s["backbone.pos_embed"] + cls, rtol=0, atol=0)
    for k in s:
        if k != "backbone.pos_embed":
            torch.testing.assert_close(d[k], s[k], rtol=0, atol=0)


def test_mmpose1_vitpose_mmpretrain_names_drop_class_slot(tmp_path: Path) -> None:
    """mmpose 1.x ViTPose (configs/.../td-hm_ViTPose-base_8xb64-210e_coco-256x192.py): backbone
    ``mmpretrain.VisionTransformer(with_cls_token=False)``, head HeatmapHead with 2 deconvs."""
    src = _vit_pose(simple=False)
    _randomise(src, 6)
    s = src.state_dict()
    official = {}
    for k, v in s.items():
        official[("backbone." + _mmpretrain_name(k[9:])) if k.startswith("backbone.") else k] = v
    official["backbone.pos_embed"] = torch.cat([torch.randn(1, 1, 384), s["backbone.pos_embed"]], 1)
    assert "backbone.layers.3.ffn.layers.0.0.weight" in official and "backbone.ln1.bias" in official
    path = tmp_path / "td-hm_ViTPose-small_8xb64-210e_coco-256x192.pth"
    torch.save({"state_dict": official}, path)
    dst = _vit_pose(simple=False)
    assert load_pose_weights(dst, path).ok
    for k, v in dst.state_dict().items():
        torch.testing.assert_close(v, s[k], rtol=0, atol=0)  # class slot dropped, everything else in place


def test_rspose_lightning_checkpoint_and_strictness(tmp_path: Path) -> None:
    from rspose.codecs import MSRAHeatmap
    from rspose.data.specs import get_spec
    from rspose.losses import KeypointMSELoss
    from rspose.models import TinyConvBackbone
    from rspose.module import PoseLitModule

    codec = MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0)

    def lit(**kwargs) -> PoseLitModule:
        return PoseLitModule(TinyConvBackbone(8), HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=()),
                             codec=codec, spec=get_spec("coco"), loss=KeypointMSELoss(), **kwargs)

    src = lit()
    _randomise(src.model, 8)
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "state_dict": src.state_dict(), "hyper_parameters": dict(src.hparams)}, path)
    dst = lit(init_from=str(path))
    for k, v in src.model.state_dict().items():
        torch.testing.assert_close(dst.model.state_dict()[k], v, rtol=0, atol=0)

    # wrong keypoint count: a shape mismatch, one error naming the key and both shapes
    state = {k: v for k, v in src.state_dict().items()}
    state["model.head.final_layer.weight"] = torch.zeros(14, 8, 1, 1)
    del state["model.backbone.fuse4.0.weight"]
    state["model.head.extra.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(ValueError) as err:
        lit(init_from=str(bad))
    msg = str(err.value)
    assert "bad.ckpt" in msg and "rspose Lightning checkpoint" in msg
    assert "missing in the checkpoint (1): backbone.fuse4.0.weight" in msg
    assert "unexpected, not in the model (1): head.extra.weight" in msg
    assert "head.final_layer.weight checkpoint (14, 8, 1, 1) vs model (17, 8, 1, 1)" in msg
    assert "init_from_strict" in msg
    with pytest.warns(UserWarning, match="missing in the checkpoint"):
        loose = lit(init_from=str(bad), init_from_strict=False)
    torch.testing.assert_close(loose.model.backbone.enc16[0][0].weight, src.model.backbone.enc16[0][0].weight)


def test_many_missing_keys_are_listed_ten_and_counted(tmp_path: Path) -> None:
    model = _rspose_simplebaseline()
    path2 = tmp_path / "half.pth"
    state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items() if "layer4" not in k}
    state.update({f"head.{k}": v for k, v in model.head.state_dict().items()})
    torch.save(state, path2)
    with pytest.raises(ValueError, match=r"missing in the checkpoint \(\d+\): backbone\.layer4\.0\.conv1\.weight.*"
                                         r"\(\+\d+ more\)"):
        load_pose_weights(model, path2)


def test_unknown_layout_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet50_imagenet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.bias": torch.zeros(1000)}, path)
    with pytest.raises(ValueError, match=r"cannot tell the checkpoint layout.*\['conv1', 'fc'\]"):
        load_pose_weights(_rspose_simplebaseline(), path)


# ---------------------------------------------------------------- safe loading


class _Payload:
    """Unpickling this object runs ``open(marker, "w")`` (what a malicious checkpoint could do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_payload_is_refused_without_the_opt_in(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(2)}, "meta": _Payload(str(marker))}, path)
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    with pytest.raises(UnsafeCheckpointError, match=rf"evil\.pth.*{ALLOW_PICKLE_ENV}=1"):
        read_state_dict(path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth"):
        load_pose_weights(_rspose_simplebaseline(), path)
    with pytest.raises(UnsafeCheckpointError):
        ResNetBackbone(18, checkpoint=str(path))
    assert not marker.exists()
    assert issubclass(UnsafeCheckpointError, pickle.UnpicklingError)
    # explicit opt-in: loads (and the payload runs, which is why it must be explicit)
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    with pytest.warns(UserWarning, match=ALLOW_PICKLE_ENV):
        state = read_state_dict(path)
    assert list(state) == ["conv1.weight"] and marker.exists()


def test_numpy_metadata_loads_without_the_opt_in(tmp_path: Path, monkeypatch) -> None:
    """mmpose 1.x checkpoints keep numpy arrays in ``meta`` (e.g. dataset_meta sigmas): not code, so allowed."""
    import numpy as np

    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    path = tmp_path / "mmpose_meta.pth"
    sigmas = np.array([0.026, 0.025, 0.025])
    torch.save({"meta": {"dataset_meta": {"sigmas": sigmas, "num_keypoints": np.int64(17),
                                          "names": np.array(["nose", "left_eye"], dtype=object)}},
                "state_dict": {"backbone.conv1.weight": torch.ones(2)}}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_state_dict(path)["conv1.weight"].tolist() == [1.0, 1.0]


def test_init_from_through_the_cli_config(tmp_path: Path) -> None:
    from rspose.inferencer import build_module

    config = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
    src, _ = build_module(config)
    _randomise(src.model, 9)
    path = tmp_path / "src.ckpt"
    torch.save({"state_dict": src.state_dict()}, path)
    dst, _ = build_module(config, ["--model.init_from", str(path)])
    for k, v in src.model.state_dict().items():
        torch.testing.assert_close(dst.model.state_dict()[k], v, rtol=0, atol=0)
    assert dst.hparams.init_from == str(path) and dst.hparams.init_from_strict is True
