"""``rspose export``: the pose network (backbone + head) to ONNX, with a dynamic batch axis.

    rspose export --config CFG --ckpt_path CKPT --out model.onnx [--batch_size 1] [--opset 17]

Needs the optional extra ``pip install rspose[onnx]`` (``onnx``, and ``onnxruntime`` to run or check the file).
Only the network is exported: input ``image`` (B, 3, H, W) float32, the crop normalised as in training (RGB,
ImageNet mean / std on the 0-255 scale, H x W = the codec's input size); outputs the logits, ``heatmaps``
(B, K, h, w) for a heatmap head or ``simcc_x`` (B, K, W * k) and ``simcc_y`` (B, K, H * k) for SimCC. Cropping,
the flip test, the sigmoid after ranking training and decoding stay in Python (:class:`rspose.Inferencer`).
``--batch_size`` is the batch of the example input used for tracing; the batch axis stays dynamic.
The TorchScript-based exporter (``torch.onnx.export(dynamo=False)``) is used: it needs no further package.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from rspose.errors import ArgumentParser, UserError


def output_names(model: nn.Module, example: torch.Tensor) -> list[str]:
    """["heatmaps"] for a tensor output, ["simcc_x", "simcc_y"] for a SimCC pair."""
    with torch.no_grad():
        out = model(example)
    return ["heatmaps"] if isinstance(out, torch.Tensor) else ["simcc_x", "simcc_y"]


def export_onnx(
    model: nn.Module, out: str | Path, input_size: tuple[int, int], batch_size: int = 1, opset: int = 17
) -> Path:
    """Write ``model`` (a :class:`rspose.models.PoseModel`, put in eval mode) to ``out`` as ONNX.

    Args:
        model: the network; input (B, 3, H, W), output heatmaps or a SimCC pair.
        out: the .onnx file to write (parent folders are created).
        input_size: (W, H) of the crop (the codec's ``input_size``).
        batch_size: batch of the tracing example; the exported batch axis is dynamic.
        opset: ONNX opset version.

    Raises:
        ImportError: ``onnx`` is not installed (the message names the extra).
    """
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError:
        raise ImportError("rspose export needs the onnx package: pip install 'rspose[onnx]'") from None
    if batch_size < 1:
        raise UserError(f"export: batch_size={batch_size}, expected >= 1")
    model = model.eval()
    w, h = int(input_size[0]), int(input_size[1])
    example = torch.zeros(batch_size, 3, h, w)
    names = output_names(model, example)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter's notice
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # shape checks become constants
        torch.onnx.export(
            model, (example,), str(out), input_names=["image"], output_names=names,
            dynamic_axes={name: {0: "batch"} for name in ["image", *names]}, opset_version=opset, dynamo=False,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """``rspose export`` entry point."""
    parser = ArgumentParser(prog="rspose export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="rspose YAML config of the model")
    parser.add_argument("--ckpt_path", required=True, help="local checkpoint (rspose .ckpt, mmpose, ViTPose)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--batch_size", type=int, default=1, help="batch of the tracing example (axis stays dynamic)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    args = parser.parse_args(argv)
    from rspose.inferencer import Inferencer

    if args.batch_size < 1:
        parser.error(f"--batch_size {args.batch_size}, expected >= 1")
    pose = Inferencer(args.config, args.ckpt_path)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError("rspose export needs the onnx package: pip install -e '.[onnx]' (a checkout) or "
                        "pip install 'rspose[onnx]'") from None
    path = export_onnx(pose.module.model, args.out, tuple(pose.codec.input_size), args.batch_size, args.opset)
    print(f"rspose export: wrote {path} (input 'image' (B, 3, {pose.codec.input_size[1]}, "
          f"{pose.codec.input_size[0]}), dynamic batch)")
    return 0


if __name__ == "__main__":
    from rspose.main import main as rspose_main

    sys.exit(rspose_main(["export", *sys.argv[1:]]))
