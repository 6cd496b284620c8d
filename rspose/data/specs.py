"""Dataset specifications: keypoint names, flip indices, OKS sigmas, body-part ids and skeletons.

The numbers follow docs/protocols.md (the reference toolkits). A custom COCO-format dataset
takes its keypoint names and skeleton from the annotation JSON and its sigmas and flip indices from the
config (see :func:`spec_from_coco_json`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rspose.json_file import load_json


@dataclass(frozen=True)
class DatasetSpec:
    """Everything about a keypoint layout that the pipeline, codecs, losses and metrics need.

    Attributes:
        name: short dataset name ("coco", "crowdpose", "mpii" or a custom name).
        keypoint_names: K names, in annotation order.
        flip_indices: K ints; keypoint k of a horizontally flipped image is keypoint flip_indices[k].
        sigmas: K OKS sigmas (per-keypoint falloff).
        upper_body_ids / lower_body_ids: keypoint ids used by the half-body augmentation.
        skeleton: 0-based (a, b) keypoint pairs for drawing.
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_indices: tuple[int, ...]
    sigmas: tuple[float, ...]
    upper_body_ids: tuple[int, ...]
    lower_body_ids: tuple[int, ...]
    skeleton: tuple[tuple[int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        for key in ("flip_indices", "sigmas"):
            value = getattr(self, key)
            if len(value) != k:
                raise ValueError(
                    f"DatasetSpec {self.name!r}: {key} has {len(value)} entries, expected {k} "
                    f"(one per keypoint: {list(self.keypoint_names)})"
                )
        if sorted(self.flip_indices) != list(range(k)):
            raise ValueError(
                f"DatasetSpec {self.name!r}: flip_indices {list(self.flip_indices)} is not a permutation of 0..{k - 1}"
            )
        if any(self.flip_indices[self.flip_indices[i]] != i for i in range(k)):
            raise ValueError(f"DatasetSpec {self.name!r}: flip_indices {list(self.flip_indices)} is not an involution")
        for a, b in self.skeleton:
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"DatasetSpec {self.name!r}: skeleton link ({a}, {b}) is outside 0..{k - 1}")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def sigmas_array(self) -> np.ndarray:
        """(K,) float32 OKS sigmas."""
        return np.asarray(self.sigmas, dtype=np.float32)


#: Rescoring threshold of the top-down COCO protocol (mmpose's ``score_thr``): an instance's score is the box score x
#: the mean of its keypoint scores above this value. The evaluation, the prediction writer and Instance-Sort's
#: ``confidence: score`` share it.
KEYPOINT_SCORE_THR = 0.2

#: MPII PCKh: head size = this factor x the diagonal of the annotated head box (the benchmark's SC_BIAS).
HEAD_SIZE_FACTOR = 0.6


COCO = DatasetSpec(
    name="coco",
    keypoint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
        "right_knee", "left_ankle", "right_ankle",
    ),
    flip_indices=(0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15),
    sigmas=(
        0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
        0.087, 0.087, 0.089, 0.089,
    ),
    upper_body_ids=tuple(range(0, 11)),
    lower_body_ids=tuple(range(11, 17)),
    skeleton=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
        (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
)

CROWDPOSE = DatasetSpec(
    name="crowdpose",
    keypoint_names=(
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "top_head", "neck",
    ),
    flip_indices=(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13),
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),
    lower_body_ids=(6, 7, 8, 9, 10, 11),
    skeleton=(
        (12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7), (6, 7), (6, 8),
        (8, 10), (7, 9), (9, 11),
    ),
)

MPII = DatasetSpec(
    name="mpii",
    keypoint_names=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
        "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
        "left_elbow", "left_wrist",
    ),
    flip_indices=(5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10),
    sigmas=(
        0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072, 0.179, 0.179,
        0.072, 0.062,
    ),
    upper_body_ids=tuple(range(7, 16)),
    lower_body_ids=tuple(range(0, 7)),
    skeleton=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (8, 12), (12, 11),
        (11, 10), (8, 13), (13, 14), (14, 15),
    ),
)

BUILTIN_SPECS: dict[str, DatasetSpec] = {s.name: s for s in (COCO, CROWDPOSE, MPII)}


def get_spec(name: str) -> DatasetSpec:
    """Return the built-in spec called ``name`` ("coco", "crowdpose" or "mpii")."""
    try:
        return BUILTIN_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown dataset spec {name!r}; expected one of {sorted(BUILTIN_SPECS)}") from None


def spec_from_coco_json(
    ann_file: str | Path,
    sigmas: Sequence[float] | None,
    flip_indices: Sequence[int] | None,
    name: str = "custom",
    upper_body_ids: Sequence[int] | None = None,
    lower_body_ids: Sequence[int] | None = None,
) -> DatasetSpec:
    """Build the spec of a custom COCO-format keypoint dataset.

    Keypoint names and the (1-based) skeleton come from ``categories[0]`` of ``ann_file``; ``sigmas`` and
    ``flip_indices`` must come from the config, one per keypoint. Without body-part ids, half-body
    augmentation treats the first half of the keypoints as the upper body. When the names are exactly (same
    order) those of a built-in spec (COCO 17, CrowdPose 14, MPII 16), every value the config leaves out
    (sigmas, flip indices, body-part ids, and the skeleton if the file has none) is that spec's.
    """
    path = Path(ann_file)
    data = load_json(path, "COCO annotation file")
    categories = (data.get("categories") if isinstance(data, dict) else None) or []
    if not categories or "keypoints" not in categories[0]:
        raise ValueError(f"{path}: categories[0].keypoints is missing; a keypoint dataset must name its keypoints")
    names = tuple(categories[0]["keypoints"])
    k = len(names)
    # CrowdPose files name the head-top keypoint "head", rspose's spec "top_head"
    aliases = {"head": "top_head"}
    canonical = tuple(aliases.get(n, n) for n in names)
    known = next((spec for spec in BUILTIN_SPECS.values()
                  if tuple(aliases.get(n, n) for n in spec.keypoint_names) == canonical), None)
    if known is not None:  # the keypoints of COCO, CrowdPose or MPII: what the config leaves out comes from there
        sigmas = known.sigmas if sigmas is None else sigmas
        flip_indices = known.flip_indices if flip_indices is None else flip_indices
        upper_body_ids = known.upper_body_ids if upper_body_ids is None else upper_body_ids
        lower_body_ids = known.lower_body_ids if lower_body_ids is None else lower_body_ids
    if sigmas is None or flip_indices is None:
        missing = [n for n, v in (("sigmas", sigmas), ("flip_indices", flip_indices)) if v is None]
        raise ValueError(
            f"{path}: a custom dataset needs {' and '.join(missing)} in the config, one per keypoint ({k}: {list(names)})"
        )
    skeleton = tuple((int(a) - 1, int(b) - 1) for a, b in categories[0].get("skeleton", []))
    if not skeleton and known is not None:
        skeleton = known.skeleton
    upper = tuple(upper_body_ids) if upper_body_ids is not None else tuple(range(k // 2))
    lower = tuple(lower_body_ids) if lower_body_ids is not None else tuple(range(k // 2, k))
    return DatasetSpec(
        name=name,
        keypoint_names=names,
        flip_indices=tuple(int(i) for i in flip_indices),
        sigmas=tuple(float(s) for s in sigmas),
        upper_body_ids=upper,
        lower_body_ids=lower,
        skeleton=skeleton,
    )
