"""The per-instance table (``*.instances.json``): ONE definition of its fields, its writer and its reader.

Format (one file is one evaluation *run*)::

    {"meta": {"keypoint_names": [K names] | null, "sigmas": [K floats], "metrics": {name: float | null}},
     "instances": [{"instance_id": int, "image_id": int, "score": float, "bbox_score": float, "oks": float,
                    "kept": bool, "keypoint_scores": [K floats], "keypoint_oks": [K floats | null] | null}, ...]}

One entry per deduplicated prediction (before NMS): ``score`` is the rescored instance score, ``kept`` whether it
survived OKS-NMS, ``oks`` its OKS with the best-matching non-ignored GT of its image (0 if none) and
``keypoint_oks[k]`` the per-keypoint term exp(-e_k) with that GT (null where the GT keypoint is unlabelled or
there is no GT). NaN metrics are written as null.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rspose.json_file import load_json

INSTANCE_KEYS: tuple[str, ...] = (
    "instance_id", "image_id", "score", "bbox_score", "oks", "kept", "keypoint_scores", "keypoint_oks",
)
META_KEYS: tuple[str, ...] = ("keypoint_names", "sigmas", "metrics")


def instance_rows(table: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Rows (dicts with INSTANCE_KEYS) from the metric's column table: instance_ids, image_ids, scores,
    bbox_scores, oks, kept (N,) and keypoint_scores, keypoint_oks (N, K) arrays."""
    cols = ("instance_ids", "image_ids", "scores", "bbox_scores", "oks", "kept", "keypoint_scores")
    kpt_oks = [[None if math.isnan(x) else x for x in row] for row in np.asarray(table["keypoint_oks"]).tolist()]
    values = [np.asarray(table[c]).tolist() for c in cols] + [kpt_oks]
    return [dict(zip(INSTANCE_KEYS, row)) for row in zip(*values)]


def write_instances(
    path: str | Path,
    rows: Sequence[Mapping[str, Any]],
    sigmas: Sequence[float],
    keypoint_names: Sequence[str] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Write a table (validated first, so a written file always reads back); returns the path."""
    meta = {"keypoint_names": None if keypoint_names is None else list(keypoint_names),
            "sigmas": [float(s) for s in sigmas],
            "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in (metrics or {}).items()}}
    table = {"meta": meta, "instances": [dict(r) for r in rows]}
    validate_instances(table, source=str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        json.dump(table, f)
    return path


def read_instances(path: str | Path) -> dict[str, Any]:
    """Read and validate one ``*.instances.json`` table; errors name the file, the entry and the key."""
    table = load_json(path, "instance table")
    validate_instances(table, source=str(path))
    return table


def validate_instances(table: Any, source: str = "<table>") -> None:
    """Raise ValueError naming ``source`` and the missing or malformed key if ``table`` breaks the format."""
    if not isinstance(table, dict):
        raise ValueError(f"{source}: expected a JSON object with keys 'meta' and 'instances', got {type(table).__name__}")
    for key in ("meta", "instances"):
        if key not in table:
            raise ValueError(f"{source}: missing key {key!r} (expected top-level keys 'meta' and 'instances')")
    meta = table["meta"]
    if not isinstance(meta, dict):
        raise ValueError(f"{source}: 'meta' must be an object with keys {list(META_KEYS)}")
    for key in META_KEYS:
        if key not in meta:
            raise ValueError(f"{source}: missing key 'meta.{key}' (expected meta keys {list(META_KEYS)})")
    if not isinstance(meta["metrics"], dict):
        raise ValueError(f"{source}: 'meta.metrics' must be an object of metric name -> number")
    k = len(meta["sigmas"])
    names = meta["keypoint_names"]
    if names is not None and len(names) != k:
        raise ValueError(f"{source}: 'meta.keypoint_names' has {len(names)} entries, 'meta.sigmas' has {k}")
    instances = table["instances"]
    if not isinstance(instances, list):
        raise ValueError(f"{source}: 'instances' must be a list of objects")
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise ValueError(f"{source}: instances[{i}] must be an object with keys {list(INSTANCE_KEYS)}")
        for key in INSTANCE_KEYS:
            if key not in inst:
                raise ValueError(
                    f"{source}: instances[{i}] (instance_id {inst.get('instance_id')!r}) is missing key {key!r} "
                    f"(expected keys {list(INSTANCE_KEYS)})"
                )
        if len(inst["keypoint_scores"]) != k:
            raise ValueError(
                f"{source}: instances[{i}].keypoint_scores has {len(inst['keypoint_scores'])} entries, "
                f"expected {k} (one per keypoint, as meta.sigmas)"
            )
        if inst["keypoint_oks"] is not None and len(inst["keypoint_oks"]) != k:
            raise ValueError(
                f"{source}: instances[{i}].keypoint_oks has {len(inst['keypoint_oks'])} entries, expected {k} or null"
            )

