"""Load local pretrained weights into a backbone (never downloads).

Accepted files (``torch.load``-able):

* a plain state dict (timm, torchvision, MAE ``{"model": ...}``);
* a training checkpoint whose weights sit under ``"state_dict"`` (mmpose / mmengine, Lightning) or
  ``"model"`` (MAE, DeiT, timm train scripts).

Key prefixes ``module.`` (DDP), ``model.`` (Lightning modules holding a ``PoseModel`` as ``model``) and
``backbone.`` (mmpose pose models) are stripped in that order; when a prefix is found, keys outside it
(e.g. the ``head.*`` of a pose model) are ignored. Tensors are loaded with ``strict=False``: missing,
unexpected and shape-mismatched keys are reported in one :class:`UserWarning` instead of failing, so an
ImageNet checkpoint with its classifier (``fc.*``) loads into a headless backbone.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

#: Prefixes stripped, in this order, when some key of the state dict starts with them.
STRIPPED_PREFIXES = ("module.", "model.", "backbone.")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a checkpoint file and return its flat ``name -> tensor`` weights, prefixes stripped.

    Raises:
        FileNotFoundError: the file does not exist (the message names the path).
        ValueError: the file holds no tensor state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: '{path}' (expected a local .pth/.pt/.ckpt file; "
                                "rspose never downloads weights)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # mmengine / Lightning checkpoints pickle non-tensor metadata (configs, message hubs).
        warnings.warn(f"checkpoint '{path}' holds non-tensor objects; loading it with weights_only=False "
                      "(only do this with files you trust)", UserWarning, stacklevel=2)
        obj = torch.load(path, map_location="cpu", weights_only=False)
    state = obj
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not any(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"checkpoint '{path}' holds no state dict of tensors (looked at the top level and under "
                         f"'state_dict' / 'model'; top-level keys: {list(obj)[:10] if isinstance(obj, Mapping) else type(obj)})")
    state = {str(k): v for k, v in state.items() if isinstance(v, Tensor)}
    for prefix in STRIPPED_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_weights(
    module: nn.Module,
    path: str | Path,
    adapt: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
) -> tuple[list[str], list[str]]:
    """Load the checkpoint at ``path`` into ``module`` (non-strict) and warn about what did not match.

    Args:
        module: the backbone to fill.
        path: local checkpoint file.
        adapt: optional function renaming / resizing the state dict for ``module`` (e.g. ViT position
            embeddings resampled to the input grid).

    Returns:
        (missing, unexpected) key names; shape-mismatched keys (not loaded) are listed in both.
    """
    state = read_state_dict(path)
    if adapt is not None:
        state = adapt(state)
    own = module.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    for k in mismatched:
        del state[k]
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in mismatched]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected or mismatched:
        lines = [f"loaded '{path}' into {type(module).__name__}: {len(state) - len(unexpected)} of {len(own)} tensors"]
        if mismatched:
            lines.append(f"shape mismatch ({len(mismatched)}, not loaded): "
                         + ", ".join(f"{k} {tuple(own[k].shape)}" for k in mismatched[:10]))
        if missing:
            lines.append(f"missing ({len(missing)}): {', '.join(missing[:10])}")
        if unexpected:
            lines.append(f"unexpected ({len(unexpected)}): {', '.join(unexpected[:10])}")
        warnings.warn("; ".join(lines), UserWarning, stacklevel=2)
    return missing + mismatched, unexpected + mismatched
