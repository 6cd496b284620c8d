"""`rspose export`: onnxruntime's outputs equal torch's for a heatmap head and a SimCC head, at batch 1 and 3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rspose.export import export_onnx
from rspose.inferencer import build_module
from rspose.main import main
from rspose.models import PoseModel, ViTBackbone, ViTPoseSimpleHead

ort = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]


def _check(onnx_path: Path, model: torch.nn.Module, input_size: tuple[int, int]) -> list[str]:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    names = [o.name for o in session.get_outputs()]
    g = torch.Generator().manual_seed(0)
    for batch in (1, 3):
        x = torch.randn(batch, 3, input_size[1], input_size[0], generator=g)
        with torch.no_grad():
            ref = model.eval()(x)
        ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        got = session.run(None, {"image": x.numpy()})
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            assert a.shape == tuple(b.shape)
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-4)
    return names


@pytest.mark.parametrize("config, outputs", [("quickstart.yaml", ["heatmaps"]),
                                             ("quickstart_simcc.yaml", ["simcc_x", "simcc_y"])])
def test_export_cli_matches_torch(tmp_path: Path, config: str, outputs: list[str]) -> None:
    torch.manual_seed(1)
    cfg = str(ROOT / "configs" / config)
    module, _ = build_module(cfg)
    with torch.no_grad():
        for m in module.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": module.state_dict()}, ckpt)
    out = tmp_path / "onnx" / "model.onnx"
    assert main(["export", "--config", cfg, "--ckpt_path", str(ckpt), "--out", str(out), "--batch_size", "2"]) == 0
    assert _check(out, module.model, tuple(module.codec.input_size)) == outputs


def test_export_vitpose_small(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = PoseModel(ViTBackbone("vit_small", img_size=(64, 48)), ViTPoseSimpleHead(), num_keypoints=17,
                      input_size=(48, 64))
    path = export_onnx(model, tmp_path / "vit.onnx", (48, 64))
    assert _check(path, model, (48, 64)) == ["heatmaps"]
