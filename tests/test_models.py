"""Backbones, heads and PoseModel: shapes, parameter counts against published values, mmpose init,
lazy head building, local checkpoint loading (CPU, small inputs; large models only on the meta device)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rspose.models import (
    HeatmapHead,
    HRNetBackbone,
    PoseModel,
    ResNetBackbone,
    SimCCHead,
    TinyConvBackbone,
    ViTBackbone,
    ViTPoseSimpleHead,
)

torch.manual_seed(0)




def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def r18() -> ResNetBackbone:
    return ResNetBackbone(18).eval()


# ---------------------------------------------------------------- backbones: shapes


@pytest.mark.parametrize(("h", "w"), [(256, 192), (128, 96)])
def test_resnet_shape(r18: ResNetBackbone, h: int, w: int) -> None:
    with torch.no_grad():
        out = r18(torch.randn(2, 3, h, w))
    assert (r18.out_channels, r18.out_stride) == (512, 32)
    assert out.shape == (2, 512, h // 32, w // 32)


def test_resnet50_shape_on_meta() -> None:
    with torch.device("meta"):
        net = ResNetBackbone(50)
        out = net(torch.empty(1, 3, 128, 96))
    assert net.out_channels == 2048 and out.shape == (1, 2048, 4, 3)


def test_hrnet_returns_stride4_branch() -> None:
    net = HRNetBackbone(32).eval()
    assert (net.out_channels, net.out_stride) == (32, 4)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 96)).shape == (1, 32, 16, 24)


def test_hrnet_has_no_unused_parameters() -> None:
    net = HRNetBackbone(18)
    net(torch.randn(1, 3, 64, 64)).sum().backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None]
    assert unused == []  # the fuse layers of the 3 dropped output branches are gone (DDP-safe)


def test_hrnet_w18_shape_on_meta() -> None:
    with torch.device("meta"):
        net = HRNetBackbone(18)
        assert net(torch.empty(1, 3, 256, 192)).shape == (1, 18, 64, 48)


@pytest.mark.parametrize(("h", "w"), [(256, 192), (128, 96)])
def test_vit_small_shape(h: int, w: int) -> None:
    net = ViTBackbone("vit_small", img_size=(h, w), drop_path_rate=0.0).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, h, w))
    assert (net.out_channels, net.out_stride) == (384, 16)
    assert out.shape == (1, 384, h // 16, w // 16)


def test_vit_base_grid_16x12_on_meta() -> None:
    with torch.device("meta"):
        net = ViTBackbone("vit_base")
        out = net(torch.empty(2, 3, 256, 192))
    assert out.shape == (2, 768, 16, 12)


def test_vit_output_is_final_norm_tokens() -> None:
    net = ViTBackbone("vit_small", img_size=(64, 48), drop_path_rate=0.0).eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        out = net(x)
        tokens = net.patch_embed(x) + net.pos_embed
        for blk in net.blocks:
            tokens = blk(tokens)
        tokens = F.layer_norm(tokens, (384,), net.norm.weight, net.norm.bias, eps=1e-6)
    # token (row r, col c) -> out[:, :, r, c], row-major over the 4 x 3 grid
    torch.testing.assert_close(out[0, :, 1, 2], tokens[0, 1 * 3 + 2])
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), tokens)


def test_vit_patch_embedding_has_padding_2() -> None:
    net = ViTBackbone("vit_small", img_size=(64, 48))
    x = torch.randn(1, 3, 64, 48)
    conv = net.patch_embed.proj
    with torch.no_grad():
        tok = net.patch_embed(x)[0]  # (N, C)
        # token (0, 0) sees rows / cols -2 .. 13: zero padding, then pixels 0 .. 13
        ref0 = (conv.weight[:, :, 2:, 2:] * x[0, :, :14, :14]).sum((1, 2, 3)) + conv.bias
        # token (1, 1) sees pixels 14 .. 29
        ref1 = (conv.weight * x[0, :, 14:30, 14:30]).sum((1, 2, 3)) + conv.bias
    torch.testing.assert_close(tok[0], ref0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tok[1 * 3 + 1], ref1, rtol=1e-4, atol=1e-5)


def test_tiny_backbone_shape() -> None:
    net = TinyConvBackbone(16).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 128, 96))
    assert (net.out_channels, net.out_stride) == (16, 4) and out.shape == (2, 16, 32, 24)


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    ("depth", "torchvision_params"),
    # torchvision's documented ResNet parameter counts, minus the 1000-way classifier (C * 1000 + 1000)
    [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032), (101, 44_549_160), (152, 60_192_808)],
)
def test_resnet_param_count(depth: int, torchvision_params: int) -> None:
    with torch.device("meta"):
        net = ResNetBackbone(depth)
    assert count(net) == torchvision_params - (net.out_channels * 1000 + 1000)


def test_simplebaseline_r50_param_count() -> None:
    with torch.device("meta"):
        model = PoseModel(ResNetBackbone(50), HeatmapHead(), num_keypoints=17, input_size=(192, 256))
    # mmpose model zoo: SimpleBaseline ResNet-50 34.0M; by hand: deconvs 2048*256*16 + 2 * 256*256*16,
    # 3 BN (2 * 256 each), final 1x1 conv 256*17 + 17
    head = 2048 * 256 * 16 + 2 * 256 * 256 * 16 + 3 * 512 + 256 * 17 + 17
    assert count(model.head) == head
    assert abs(count(model) / 34.0e6 - 1) < 0.01


def test_hrnet_param_counts() -> None:
    with torch.device("meta"):
        w32 = PoseModel(HRNetBackbone(32), HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=()), 17,
                        (192, 256))
        w48 = HRNetBackbone(48)
    # mmpose model zoo: HRNet-W32 top-down 28.5M, HRNet-W48 63.6M
    assert abs(count(w32) / 28.54e6 - 1) < 0.005
    assert abs(count(w48) / 63.6e6 - 1) < 0.01


@pytest.mark.parametrize(("arch", "dim", "depth"),
                         [("vit_small", 384, 12), ("vit_base", 768, 12), ("vit_large", 1024, 24),
                          ("vit_huge", 1280, 32)])
def test_vit_param_count_formula(arch: str, dim: int, depth: int) -> None:
    with torch.device("meta"):
        net = ViTBackbone(arch)
    # block: qkv 3D^2+3D, proj D^2+D, fc1 4D^2+4D, fc2 4D^2+D, 2 LayerNorms 4D; embedding 3*16*16*D + D;
    # 16*12 position embeddings; final LayerNorm 2D
    expected = depth * (12 * dim * dim + 13 * dim) + (3 * 256 * dim + dim) + 192 * dim + 2 * dim
    assert count(net) == expected
    assert net.num_layers == depth + 2


def test_vitpose_b_param_count() -> None:
    with torch.device("meta"):
        model = PoseModel(ViTBackbone("vit_base"), HeatmapHead(deconv_out_channels=(256, 256),
                                                                 deconv_kernel_sizes=(4, 4)), 17, (192, 256))
    assert abs(count(model) / 90.0e6 - 1) < 0.01  # ViTPose-B (classic decoder): ~90M in mmpose's zoo


# ---------------------------------------------------------------- heads


@pytest.mark.parametrize(("kernels", "n"), [((4, 4, 4), 3), ((3, 3), 2), ((2,), 1), ((), 0)])
def test_heatmap_head_upsamples_by_2_per_deconv(kernels: tuple[int, ...], n: int) -> None:
    head = HeatmapHead(64, 5, deconv_out_channels=(8,) * n, deconv_kernel_sizes=kernels)
    out = head(torch.randn(2, 64, 8, 6))
    assert out.shape == (2, 5, 8 * 2**n, 6 * 2**n) and head.upsample == 2**n


def test_heatmap_head_extra_convs_and_final_kernel() -> None:
    head = HeatmapHead(16, 4, deconv_out_channels=(), deconv_kernel_sizes=(), conv_out_channels=(8, 8),
                       conv_kernel_sizes=(3, 1), final_kernel_size=3)
    assert head(torch.randn(1, 16, 10, 7)).shape == (1, 4, 10, 7)
    assert head.final_layer.kernel_size == (3, 3)


def test_vitpose_simple_head_matches_relu_upsample_conv() -> None:
    head = ViTPoseSimpleHead(32, 17)
    feat = torch.randn(2, 32, 16, 12)
    out = head(feat)
    assert out.shape == (2, 17, 64, 48)
    up = F.interpolate(feat.clamp(min=0), size=(64, 48), mode="bilinear", align_corners=False)
    ref = F.conv2d(up, head.final_layer.weight, head.final_layer.bias, padding=1)
    torch.testing.assert_close(out, ref)


def test_simcc_head_lengths_384_512() -> None:
    head = SimCCHead(2048, 17, input_size=(192, 256), in_featuremap_size=(6, 8), simcc_split_ratio=2.0)
    x, y = head(torch.randn(2, 2048, 8, 6))
    assert x.shape == (2, 17, 384) and y.shape == (2, 17, 512) and head.num_bins == (384, 512)
    assert head.mlp_head_x.in_features == 48


def test_simcc_head_matches_per_axis_linear() -> None:
    head = SimCCHead(8, 3, input_size=(16, 32), in_featuremap_size=(2, 4), simcc_split_ratio=1.5)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    feat = torch.randn(2, 8, 4, 2)
    x, y = head(feat)
    assert x.shape == (2, 3, 24) and y.shape == (2, 3, 48)
    maps = torch.einsum("bchw,kc->bkhw", feat, head.final_layer.weight[:, :, 0, 0]) + head.final_layer.bias[:, None, None]
    flat = maps.reshape(2, 3, 8)  # row-major (h, w) flattening
    torch.testing.assert_close(x, flat @ head.mlp_head_x.weight.T + head.mlp_head_x.bias, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y, flat @ head.mlp_head_y.weight.T + head.mlp_head_y.bias, rtol=1e-4, atol=1e-4)


def test_simcc_head_with_deconvs() -> None:
    head = SimCCHead(64, 17, input_size=(192, 256), in_featuremap_size=(6, 8), simcc_split_ratio=2.0,
                     deconv_out_channels=(16, 16), deconv_kernel_sizes=(4, 4))
    x, y = head(torch.randn(1, 64, 8, 6))
    assert x.shape == (1, 17, 384) and y.shape == (1, 17, 512)
    assert head.mlp_head_x.in_features == 24 * 32


def _assert_normal(t: torch.Tensor, std: float) -> None:
    assert abs(t.mean().item()) < 4 * std / math.sqrt(t.numel())
    assert abs(t.std().item() / std - 1) < 0.1


def test_mmpose_init_statistics() -> None:
    head = HeatmapHead(256, 17)
    _assert_normal(head.final_layer.weight, 0.001)
    assert torch.all(head.final_layer.bias == 0)
    deconvs = [m for m in head.deconv_layers if isinstance(m, nn.ConvTranspose2d)]
    assert len(deconvs) == 3 and all(d.bias is None for d in deconvs)
    for d in deconvs:
        _assert_normal(d.weight, 0.001)
    for bn in (m for m in head.deconv_layers if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    simple = ViTPoseSimpleHead(768, 17)
    _assert_normal(simple.final_layer.weight, 0.001)
    simcc = SimCCHead(256, 17, input_size=(192, 256), in_featuremap_size=(6, 8), simcc_split_ratio=2.0)
    _assert_normal(simcc.mlp_head_x.weight, 0.01)
    _assert_normal(simcc.mlp_head_y.weight, 0.01)
    assert torch.all(simcc.mlp_head_x.bias == 0) and torch.all(simcc.final_layer.bias == 0)


# ---------------------------------------------------------------- lazy build / PoseModel


def test_pose_model_builds_heads_from_backbone_and_data(r18: ResNetBackbone) -> None:
    head = HeatmapHead(deconv_out_channels=(32,), deconv_kernel_sizes=(4,))
    assert not head.is_built and count(head) == 0
    with pytest.raises(RuntimeError, match="not built"):
        head(torch.randn(1, 512, 4, 3))
    model = PoseModel(r18, head, num_keypoints=14, input_size=(96, 128)).eval()
    assert head.in_channels == 512 and head.num_keypoints == 14
    assert model(torch.randn(1, 3, 128, 96)).shape == (1, 14, 8, 6)
    simcc = PoseModel(r18, SimCCHead(simcc_split_ratio=2.0), num_keypoints=17, input_size=(96, 128)).eval()
    assert simcc.head.in_featuremap_size == (3, 4)
    x, y = simcc(torch.randn(1, 3, 128, 96))
    assert x.shape == (1, 17, 192) and y.shape == (1, 17, 256)


def test_pose_model_rejects_inconsistent_sizes(r18: ResNetBackbone) -> None:
    with pytest.raises(ValueError, match="in_channels=256"):
        PoseModel(r18, HeatmapHead(in_channels=256), num_keypoints=17, input_size=(192, 256))
    with pytest.raises(ValueError, match="num_keypoints unknown"):
        PoseModel(r18, HeatmapHead(), input_size=(192, 256))
    with pytest.raises(ValueError, match="multiples of 32"):
        PoseModel(r18, HeatmapHead(), 17, input_size=(200, 256))
    with torch.device("meta"):
        vit = ViTBackbone("vit_small", img_size=(256, 192))
    with pytest.raises(ValueError, match=r"img_size \(H, W\) = \(256, 192\)"):
        PoseModel(vit, ViTPoseSimpleHead(), 17, input_size=(256, 192))


def test_heads_from_jsonargparse_config(r18: ResNetBackbone) -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--backbone", type=nn.Module)
    parser.add_argument("--head", type=nn.Module)
    cfg = parser.parse_object({
        "backbone": {"class_path": "rspose.models.TinyConvBackbone", "init_args": {"width": 8}},
        "head": {"class_path": "rspose.models.SimCCHead", "init_args": {"simcc_split_ratio": 2.0}},
    })
    objs = parser.instantiate_classes(cfg)
    model = PoseModel(objs.backbone, objs.head, num_keypoints=5, input_size=(48, 64))
    x, y = model(torch.randn(1, 3, 64, 48))
    assert x.shape == (1, 5, 96) and y.shape == (1, 5, 128)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_roundtrip_and_wrapped_formats(r18: ResNetBackbone, tmp_path) -> None:
    state = {k: v.clone() for k, v in r18.state_dict().items()}
    plain = tmp_path / "r18.pth"
    torch.save(state, plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete state dict loads without any warning
        loaded = ResNetBackbone(18, checkpoint=str(plain))
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    # mmpose-style: weights under 'state_dict', backbone prefix, head keys ignored
    mm = tmp_path / "mmpose.pth"
    torch.save({"state_dict": {**{f"backbone.{k}": v for k, v in state.items()},
                               "head.final_layer.weight": torch.zeros(17, 256, 1, 1)}}, mm)
    loaded = ResNetBackbone(18, checkpoint=str(mm))
    torch.testing.assert_close(loaded.layer4[1].conv2.weight, state["layer4.1.conv2.weight"], rtol=0, atol=0)
    # torchvision-style ImageNet file with a classifier: loads, and warns about the extra keys
    tv = tmp_path / "tv.pth"
    torch.save({"model": {**state, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}}, tv)
    with pytest.warns(UserWarning, match=r"unexpected \(2\): fc.weight"):
        loaded = ResNetBackbone(18, checkpoint=str(tv))
    torch.testing.assert_close(loaded.conv1.weight, state["conv1.weight"], rtol=0, atol=0)


def test_checkpoint_missing_file_names_path(tmp_path) -> None:
    path = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(FileNotFoundError, match="nowhere/resnet50.pth"):
        ResNetBackbone(18, checkpoint=str(path))
    with pytest.raises(FileNotFoundError, match="hrnet.pth"):
        HRNetBackbone(18, checkpoint=str(tmp_path / "hrnet.pth"))


def test_checkpoint_partial_warns_missing_and_shape_mismatch(tmp_path) -> None:
    net = TinyConvBackbone(8)
    state = dict(net.state_dict())
    del state["fuse4.0.weight"]
    state["lateral8.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "tiny.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning) as rec:
        TinyConvBackbone(8, checkpoint=str(path))
    msg = str(rec[0].message)
    assert "missing (1): fuse4.0.weight" in msg and "shape mismatch (1, not loaded): lateral8.weight" in msg


def test_vit_checkpoint_original_vitpose_layout(tmp_path) -> None:
    src = ViTBackbone("vit_small", img_size=(64, 48))
    state = {("last_norm." + k[5:] if k.startswith("norm.") else k): v.clone() for k, v in src.state_dict().items()}
    cls_pos = torch.randn(1, 1, 384)
    state["pos_embed"] = torch.cat([cls_pos, state["pos_embed"]], 1)  # (1, 1 + 4 * 3, C) as in ViTPose
    path = tmp_path / "vitpose.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.items()}}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dst = ViTBackbone("vit_small", img_size=(64, 48), checkpoint=str(path))
    torch.testing.assert_close(dst.pos_embed, src.pos_embed + cls_pos, rtol=0, atol=0)
    torch.testing.assert_close(dst.norm.weight, src.norm.weight, rtol=0, atol=0)
    torch.testing.assert_close(dst.blocks[3].mlp.fc1.weight, src.blocks[3].mlp.fc1.weight, rtol=0, atol=0)


def test_vit_checkpoint_mae_square_grid_resampled(tmp_path) -> None:
    pos = torch.randn(1, 1 + 14 * 14, 384)  # MAE ViT-S at 224: class token + 14 x 14
    path = tmp_path / "mae.pth"
    torch.save({"model": {"pos_embed": pos, "cls_token": torch.zeros(1, 1, 384)}}, path)
    with pytest.warns(UserWarning, match="cls_token"):
        net = ViTBackbone("vit_small", img_size=(256, 192), checkpoint=str(path))
    grid = (pos[:, 1:] + pos[:, :1]).reshape(1, 14, 14, 384).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(16, 12), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(net.pos_embed.data, ref, rtol=1e-5, atol=1e-5)


def test_vit_checkpoint_mmpretrain_names(tmp_path) -> None:
    src = ViTBackbone("vit_small", img_size=(64, 48))
    s = src.state_dict()
    mm = {  # mmpretrain.VisionTransformer names (mmpose 1.x ViTPose checkpoints)
        "backbone.patch_embed.projection.weight": s["patch_embed.proj.weight"],
        "backbone.layers.0.ln1.weight": s["blocks.0.norm1.weight"],
        "backbone.layers.0.ln2.bias": s["blocks.0.norm2.bias"],
        "backbone.layers.0.attn.qkv.weight": s["blocks.0.attn.qkv.weight"],
        "backbone.layers.0.attn.proj.bias": s["blocks.0.attn.proj.bias"],
        "backbone.layers.0.ffn.layers.0.0.weight": s["blocks.0.mlp.fc1.weight"],
        "backbone.layers.0.ffn.layers.1.weight": s["blocks.0.mlp.fc2.weight"],
        "backbone.ln1.weight": s["norm.weight"] + 1,
    }
    path = tmp_path / "mmpretrain.pth"
    torch.save({"state_dict": mm}, path)
    with pytest.warns(UserWarning, match="missing"):
        dst = ViTBackbone("vit_small", img_size=(64, 48), checkpoint=str(path))
    d = dst.state_dict()
    for new in ("patch_embed.proj.weight", "blocks.0.norm1.weight", "blocks.0.norm2.bias", "blocks.0.attn.qkv.weight",
                "blocks.0.attn.proj.bias", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight"):
        torch.testing.assert_close(d[new], s[new], rtol=0, atol=0)
    torch.testing.assert_close(d["norm.weight"], s["norm.weight"] + 1, rtol=0, atol=0)


# ---------------------------------------------------------------- layer-wise lr decay ids


def test_vit_layer_ids_follow_vitpose() -> None:
    with torch.device("meta"):
        net = ViTBackbone("vit_base")
    assert net.num_layers == 14
    assert net.layer_id("pos_embed") == 0
    assert net.layer_id("patch_embed.proj.weight") == 0
    assert net.layer_id("blocks.0.norm1.weight") == 1
    assert net.layer_id("blocks.11.mlp.fc2.bias") == 12
    assert net.layer_id("backbone.blocks.3.attn.qkv.weight") == 4
    assert net.layer_id("norm.weight") == 13
    assert net.layer_id("head.final_layer.weight") == 13
    ids = {net.layer_id(n) for n, _ in net.named_parameters()}
    assert ids == set(range(14))


def test_vit_grad_checkpointing_gives_same_gradients() -> None:
    net = ViTBackbone("vit_small", img_size=(32, 32), drop_path_rate=0.0)
    x = torch.randn(2, 3, 32, 32)
    net(x).square().mean().backward()
    ref = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    net.grad_checkpointing = True
    net(x).square().mean().backward()
    for n, p in net.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], rtol=1e-4, atol=1e-6)
