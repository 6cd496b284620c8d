"""Load a whole top-down pose model (backbone and head) from an official or an rspose checkpoint.

Families, told apart by the key prefixes of the state dict (after unwrapping ``state_dict`` / ``model`` and a
DDP ``module.`` prefix):

===============  ==========================================  =================================================
family           keys                                         sources
===============  ==========================================  =================================================
``rspose``       ``model.backbone.*``, ``model.head.*``       rspose's Lightning checkpoints (``last.ckpt``)
``mmpose1``      ``backbone.*``, ``head.*``                   mmpose 1.x (SimpleBaseline, HRNet, SimCC, ViTPose
                                                              with mmpretrain ViT names); a saved ``PoseModel``
``mmpose0``      ``backbone.*``, ``keypoint_head.*``          mmpose 0.x, the ViTPose repository
===============  ==========================================  =================================================

Name mapping (rspose's modules already use the official names wherever they can):

* ResNet and HRNet backbones: identical names (torchvision / mmpose / timm layouts agree), no renaming.
* ViT: mmpretrain names (``layers.{i}.ln1``, ``ffn.layers.0.0``, ``patch_embed.projection``, ``ln1``) and the
  ViTPose repository's ``last_norm`` become timm's (:class:`rspose.models.ViTBackbone`). A position embedding
  with a class-token slot (1, 1 + N, C) is handled as its source's forward pass does: mmpose 1.x (mmpretrain,
  ``with_cls_token=False``) drops the slot, the ViTPose repository adds it to every patch position
  (``x + pos_embed[:, 1:] + pos_embed[:, :1]``); a different patch grid is resampled bicubically.
* ``HeatmapHead`` (``deconv_layers.{i}``, ``conv_layers.{i}``, ``final_layer``), ``ViTPoseSimpleHead``
  (``final_layer``) and ``SimCCHead`` (``final_layer`` or ``deconv_head.*``, ``mlp_head_x``, ``mlp_head_y``):
  identical names; the old mmpose layout where ``final_layer.{n}`` also held the extra convs is split into
  ``conv_layers.{n}`` and ``final_layer`` (as mmpose's own load hook does).

Strict by default: every parameter and buffer of the rspose model must be filled with a tensor of the same
shape and nothing may be left over, else one :class:`ValueError` lists the missing and unexpected keys and
the shape mismatches. BatchNorm ``num_batches_tracked`` counters are not required (old checkpoints lack
them; they do not change the forward pass). ``strict=False`` loads what fits and warns with the same lists.
Files are read safely (:func:`rspose.models.checkpoint.load_checkpoint_file`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from torch import Tensor, nn

from rspose.errors import UserError
from rspose.models.checkpoint import load_checkpoint_file, unwrap_state_dict

Family = Literal["rspose", "mmpose1", "mmpose0"]

FAMILY_NAMES: dict[str, str] = {
    "rspose": "rspose Lightning checkpoint (model.backbone.* / model.head.*)",
    "mmpose1": "mmpose 1.x layout (backbone.* / head.*)",
    "mmpose0": "mmpose 0.x / ViTPose layout (backbone.* / keypoint_head.*)",
}

#: Keys not required to be in the checkpoint (BatchNorm step counters: unused by the forward pass).
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


@dataclass
class LoadReport:
    """What :func:`load_pose_weights` did: the family and the keys (rspose names) loaded / not loaded."""

    path: str
    family: Family
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, model: nn.Module, limit: int = 10) -> str:
        """One-paragraph summary: counts and the first ``limit`` keys of each list."""
        backbone = type(getattr(model, "backbone", model)).__name__
        head = type(getattr(model, "head", model)).__name__
        lines = [f"checkpoint '{self.path}' ({FAMILY_NAMES[self.family]}) vs {backbone} + {head}: "
                 f"{len(self.loaded)} tensors fit"]

        def listing(keys: list[str]) -> str:
            more = f", ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
            return ", ".join(keys[:limit]) + more

        if self.missing:
            lines.append(f"missing in the checkpoint ({len(self.missing)}): {listing(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected, not in the model ({len(self.unexpected)}): {listing(self.unexpected)}")
        if self.mismatched:
            shown = [f"{k} checkpoint {a} vs model {b}" for k, a, b in self.mismatched]
            lines.append(f"shape mismatch ({len(self.mismatched)}): {listing(shown)}")
        return "; ".join(lines)


def detect_family(keys: list[str]) -> Family:
    """The checkpoint family from its (unwrapped) key names.

    Raises:
        ValueError: no known layout (the message lists the top-level prefixes found).
    """
    tops = {k.split(".", 1)[0] for k in keys}
    if any(k.startswith(("model.backbone.", "model.head.")) for k in keys):
        return "rspose"
    if "backbone" in tops and "keypoint_head" in tops:
        return "mmpose0"
    if "backbone" in tops and "head" in tops:
        return "mmpose1"
    raise UserError(
        "cannot tell the checkpoint layout: expected keys under backbone.* and head.* (mmpose 1.x), backbone.* and "
        f"keypoint_head.* (mmpose 0.x / ViTPose) or model.backbone.* (rspose); found top-level prefixes "
        f"{sorted(tops)[:10]} (a backbone-only file goes to the backbone's checkpoint= argument instead)"
    )


def _split_legacy_final_layer(head_state: dict[str, Tensor], head: nn.Module) -> dict[str, Tensor]:
    """Old mmpose heads kept the extra convs inside ``final_layer.{n}``: split into conv_layers / final_layer."""
    convs = getattr(head, "conv_layers", None)
    if not isinstance(convs, nn.Sequential):
        return head_state
    out = {}
    for key, value in head_state.items():
        m = re.match(r"^final_layer\.(\d+)\.(.+)$", key)
        if m is not None:
            idx, rest = int(m.group(1)), m.group(2)
            key = f"conv_layers.{idx}.{rest}" if idx < len(convs) else f"final_layer.{rest}"
        out[key] = value
    return out


def map_state_dict(state: dict[str, Tensor], model: nn.Module) -> tuple[dict[str, Tensor], Family]:
    """Rename an official / rspose state dict to ``model``'s (a :class:`PoseModel`) names.

    Returns:
        (state dict with ``backbone.*`` / ``head.*`` keys in rspose names, family). Keys of other top-level
        modules are kept as they are (they show up as unexpected).
    """
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    family = detect_family(list(state))
    if family == "rspose":
        # the LightningModule holds the network as `model`; other entries (loss modules) are not the network
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    head_prefix = "keypoint_head." if family == "mmpose0" else "head."
    backbone_state: dict[str, Tensor] = {}
    head_state: dict[str, Tensor] = {}
    other: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            backbone_state[key[len("backbone."):]] = value
        elif key.startswith(head_prefix):
            head_state[key[len(head_prefix):]] = value
        else:
            other[key] = value
    backbone = getattr(model, "backbone", None)
    adapt = getattr(backbone, "_adapt_state_dict", None)
    if adapt is not None:  # ViT: renames and the position embedding
        pos = backbone_state.get("pos_embed")
        grid = getattr(backbone, "grid_size", None)
        if family == "mmpose1" and pos is not None and grid is not None and pos.ndim == 3 \
                and pos.shape[1] == grid[0] * grid[1] + 1:
            backbone_state["pos_embed"] = pos[:, 1:]  # mmpretrain without class token drops the slot
        backbone_state = adapt(backbone_state)
    head = getattr(model, "head", None)
    if head is not None:
        head_state = _split_legacy_final_layer(head_state, head)
    mapped = {f"backbone.{k}": v for k, v in backbone_state.items()}
    mapped.update({f"head.{k}": v for k, v in head_state.items()})
    mapped.update(other)
    return mapped, family


def load_pose_weights(
    model: nn.Module, path: str | Path, strict: bool = True, allow_pickle: bool | None = None
) -> LoadReport:
    """Fill ``model`` (a :class:`rspose.models.PoseModel`: ``backbone`` and built ``head``) from ``path``.

    Args:
        model: the network to fill, built with the sizes of the checkpoint's model (keypoints, input size).
        path: local checkpoint (see the module docstring for the families).
        strict: raise unless every tensor of ``model`` is filled and nothing is left over; ``False`` loads what
            fits and warns.
        allow_pickle: see :func:`rspose.models.checkpoint.load_checkpoint_file` (default: ``RSPOSE_ALLOW_PICKLE``).

    Raises:
        ValueError: (strict) missing / unexpected / mismatched keys, listed in one message; or an unknown layout.
    """
    path = Path(path).expanduser()
    state = unwrap_state_dict(load_checkpoint_file(path, allow_pickle), path)
    mapped, family = map_state_dict(state, model)
    own = model.state_dict()
    report = LoadReport(str(path), family)
    fitting = {}
    for key, value in mapped.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            fitting[key] = value
    report.missing = [k for k in own if k not in mapped and not k.endswith(OPTIONAL_SUFFIXES)]
    report.loaded = list(fitting)
    if not report.ok:
        message = report.describe(model)
        hint = ("; check that the config's backbone, head, data keypoints and codec input size are the "
                "checkpoint's")
        if strict:
            raise UserError(message + hint + ", or set model.init_from_strict false to load what fits")
        warnings.warn(message, UserWarning, stacklevel=2)
    model.load_state_dict(fitting, strict=False)
    return report
