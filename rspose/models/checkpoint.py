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

Safe loading: files are read with ``torch.load(weights_only=True)``, which unpickles tensors, containers,
plain values and (allowed here) numpy arrays only, so a checkpoint cannot run code when it is opened. A file that needs more (mmengine
checkpoints pickle their message hub and config objects) is refused with one message naming the file; the
only way to read it anyway is the explicit opt-in ``RSPOSE_ALLOW_PICKLE=1`` in the environment (or
``allow_pickle=True`` in Python), for files you trust. Re-saving only the weights
(``torch.save(torch.load(f, weights_only=False)["state_dict"], "weights.pth")``, once, on a trusted file)
makes a file that loads without it.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rspose.errors import UserError

#: Prefixes stripped, in this order, when some key of the state dict starts with them.
STRIPPED_PREFIXES = ("module.", "model.", "backbone.")


#: Environment variable that allows unpickling arbitrary objects from checkpoint files (trusted files only).
ALLOW_PICKLE_ENV = "RSPOSE_ALLOW_PICKLE"


class UnsafeCheckpointError(UserError, pickle.UnpicklingError):
    """A checkpoint needs full unpickling (it could run code) and the opt-in was not given: a user error (exit
    code 2, one message naming the file and ``RSPOSE_ALLOW_PICKLE``), and still a ``pickle.UnpicklingError``."""


def _looks_like_torch_file(path: Path) -> bool:
    """A ``torch.save`` file: a zip archive (the format since torch 1.6) or a pickle (protocol 2+ starts 0x80)."""
    import zipfile

    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as f:
        return f.read(1) == b"\x80"


def pickle_allowed(allow_pickle: bool | None = None) -> bool:
    """``allow_pickle`` if given, else whether ``RSPOSE_ALLOW_PICKLE`` is set to 1 / true / yes."""
    if allow_pickle is not None:
        return bool(allow_pickle)
    return os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes")


def numpy_safe_globals() -> list:
    """numpy array / scalar / dtype reconstruction, allowed in weights-only loading (mmpose checkpoints keep numpy
    arrays in ``meta``). They rebuild arrays from raw bytes and run no code; object arrays' items still go through
    the weights-only unpickler. Listed under both the numpy 2 (``numpy._core``) and numpy 1 (``numpy.core``) names."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    out: list = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    out += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(multiarray, name)
        out += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    return out


def load_checkpoint_file(path: str | Path, allow_pickle: bool | None = None) -> object:
    """``torch.load`` a local file on the CPU, safely (``weights_only=True``) unless pickling is allowed.

    Args:
        path: local checkpoint file.
        allow_pickle: ``True`` reads any pickle (runs code from the file: trusted files only); ``None`` (default)
            reads the ``RSPOSE_ALLOW_PICKLE`` environment variable; ``False`` never.

    Raises:
        FileNotFoundError: the file does not exist (the message names the path).
        UnsafeCheckpointError: the file holds objects other than tensors and plain containers, and pickling
            is not allowed (the message names the file and the opt-in).
        UserError: the file is not a PyTorch checkpoint (a text file, an image, a damaged archive).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: '{path}' (expected a local .pth/.pt/.ckpt file; "
                                "rspose never downloads weights)")
    if not _looks_like_torch_file(path):
        raise UserError(f"checkpoint '{path}' is not a PyTorch checkpoint (neither a torch.save zip archive nor a "
                        "pickle); expected a .pth/.pt/.ckpt file written by torch.save")
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise UserError(f"checkpoint '{path}' could not be read as a PyTorch checkpoint ({err})") from None
        if not pickle_allowed(allow_pickle):
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
            what = f" (first: {found.group(1)})" if found else ""
            raise UnsafeCheckpointError(
                f"checkpoint '{path}' holds pickled objects besides tensors{what}, which could run code when loaded; "
                f"rspose loads weights only. If you trust this file, set {ALLOW_PICKLE_ENV}=1 "
                "in the environment, or re-save its weights alone with torch.save(state_dict, 'weights.pth')"
            ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as err:
        raise UserError(f"checkpoint '{path}' could not be read as a PyTorch checkpoint ({type(err).__name__}: "
                        f"{str(err)[:200]})") from None
    warnings.warn(f"checkpoint '{path}': {ALLOW_PICKLE_ENV} is set, unpickling it with weights_only=False "
                  "(only do this with files you trust)", UserWarning, stacklevel=2)
    return torch.load(path, map_location="cpu", weights_only=False)


def read_state_dict(path: str | Path, allow_pickle: bool | None = None) -> dict[str, Tensor]:
    """Read a checkpoint file and return its flat ``name -> tensor`` weights, prefixes stripped.

    ``allow_pickle``: see :func:`load_checkpoint_file` (default: the ``RSPOSE_ALLOW_PICKLE`` variable).

    Raises:
        FileNotFoundError: the file does not exist (the message names the path).
        UnsafeCheckpointError: the file needs full unpickling and the opt-in was not given.
        ValueError: the file holds no tensor state dict.
    """
    path = Path(path).expanduser()
    obj = load_checkpoint_file(path, allow_pickle)
    state = unwrap_state_dict(obj, path)
    for prefix in STRIPPED_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def unwrap_state_dict(obj: object, path: str | Path) -> dict[str, Tensor]:
    """The flat ``name -> tensor`` dict of a loaded checkpoint: the top level, or under ``state_dict`` / ``model``.

    Raises:
        ValueError: no tensor state dict found (the message names ``path`` and the top-level keys).
    """
    state = obj
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not any(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"checkpoint '{path}' holds no state dict of tensors (looked at the top level and under "
                         f"'state_dict' / 'model'; top-level keys: {list(obj)[:10] if isinstance(obj, Mapping) else type(obj)})")
    return {str(k): v for k, v in state.items() if isinstance(v, Tensor)}


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
