"""Draw predicted skeletons on images with OpenCV (BGR, uint8), e.g. for ``rspose predict``.

A link (a, b) is drawn only when both of its keypoints score at least ``kpt_thr``; a keypoint dot only when
it does. Left limbs are green, right limbs orange, the rest (face centre, neck, pelvis...) blue; a keypoint's
side comes from its name (``left_*`` / ``l_*``, ``right_*`` / ``r_*``), a link is on a side when both ends are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rspose.data.specs import DatasetSpec

LEFT_BGR: tuple[int, int, int] = (0, 200, 0)
RIGHT_BGR: tuple[int, int, int] = (0, 128, 255)
CENTRE_BGR: tuple[int, int, int] = (255, 153, 51)
_SHIFT = 4  # cv2 fixed-point bits: coordinates are drawn with 1/16 px precision


def keypoint_sides(keypoint_names: Sequence[str] | None, num_keypoints: int) -> list[str]:
    """"left", "right" or "centre" per keypoint, from its name (all "centre" without names)."""
    if keypoint_names is None:
        return ["centre"] * num_keypoints
    if len(keypoint_names) != num_keypoints:
        raise ValueError(f"keypoint_names has {len(keypoint_names)} entries, keypoints have K = {num_keypoints}")
    sides = []
    for name in keypoint_names:
        n = name.lower()
        sides.append("left" if n.startswith(("left", "l_")) else "right" if n.startswith(("right", "r_")) else "centre")
    return sides


def draw_skeleton(
    image: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    skeleton: Iterable[tuple[int, int]],
    kpt_thr: float = 0.3,
    keypoint_names: Sequence[str] | None = None,
    radius: int = 3,
    thickness: int = 2,
    antialias: bool = True,
) -> np.ndarray:
    """Return a copy of ``image`` with the skeletons of N instances drawn on it.

    image: (H, W, 3) uint8 BGR. keypoints: (N, K, 2) pixel (x, y) (or (K, 2) for one instance).
    scores: (N, K) (or (K,)). skeleton: 0-based (a, b) keypoint pairs. Keypoints scoring below ``kpt_thr``
    or with non-finite coordinates are not drawn, nor are the links touching them. ``radius`` 0 draws no dots.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 BGR, got shape {image.shape} dtype {image.dtype}")
    kpts = np.asarray(keypoints, dtype=np.float64)
    kscores = np.asarray(scores, dtype=np.float64)
    if kpts.ndim == 2:
        kpts, kscores = kpts[None], kscores[None]
    if kpts.ndim != 3 or kpts.shape[2] != 2 or kscores.shape != kpts.shape[:2]:
        raise ValueError(
            f"keypoints must be (N, K, 2) and scores (N, K); got keypoints {kpts.shape} and scores {kscores.shape}"
        )
    n, k = kscores.shape
    links = [(int(a), int(b)) for a, b in skeleton]
    for a, b in links:
        if not (0 <= a < k and 0 <= b < k):
            raise ValueError(f"skeleton link ({a}, {b}) is outside the keypoint range 0..{k - 1}")
    colors = {"left": LEFT_BGR, "right": RIGHT_BGR, "centre": CENTRE_BGR}
    sides = keypoint_sides(keypoint_names, k)
    line_type = cv2.LINE_AA if antialias else cv2.LINE_8
    visible = (kscores >= kpt_thr) & np.isfinite(kpts).all(axis=-1)  # (N, K)
    fixed = np.round(np.nan_to_num(kpts) * (1 << _SHIFT)).astype(np.int64)  # (N, K, 2)
    out = image.copy()
    for i in range(n):
        for a, b in links:
            if not (visible[i, a] and visible[i, b]):
                continue
            side = sides[a] if sides[a] == sides[b] else "centre"
            cv2.line(out, tuple(map(int, fixed[i, a])), tuple(map(int, fixed[i, b])), colors[side],
                     thickness, line_type, _SHIFT)
        if radius > 0:
            for j in np.flatnonzero(visible[i]):
                cv2.circle(out, tuple(map(int, fixed[i, j])), radius << _SHIFT, colors[sides[j]], -1, line_type, _SHIFT)
    return out


def draw_predictions_on_images(
    results_json: Sequence[Mapping[str, Any]],
    image_paths: Mapping[int, str | Path],
    spec: DatasetSpec,
    out_dir: str | Path,
    kpt_thr: float = 0.3,
    score_thr: float = 0.0,
    radius: int = 3,
    thickness: int = 2,
) -> list[Path]:
    """Draw COCO-format keypoint results on their images and write ``out_dir/{image stem}_pose.jpg``.

    results_json: [{"image_id": int, "keypoints": [x1, y1, s1, ..., xK, yK, sK], "score": float, ...}].
    image_paths: image_id -> image file; every listed image is written (with no skeleton if it has no result);
    results of images not listed are ignored. Instances scoring below ``score_thr`` are skipped; higher-scoring
    instances are drawn on top. Returns the written paths in image id order.
    """
    k = spec.num_keypoints
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for idx, res in enumerate(results_json):
        for key in ("image_id", "keypoints", "score"):
            if key not in res:
                raise ValueError(f"results[{idx}] is missing key {key!r} (COCO keypoint result format)")
        if len(res["keypoints"]) != 3 * k:
            raise ValueError(
                f"results[{idx}] (image_id {res['image_id']}) has {len(res['keypoints'])} keypoint values, "
                f"expected 3 x {k} for dataset {spec.name!r}"
            )
        if res["score"] >= score_thr:
            by_image.setdefault(int(res["image_id"]), []).append(res)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = sorted(image_paths)
    stems = [Path(image_paths[i]).stem for i in ids]
    unique = len(set(stems)) == len(stems)
    written = []
    for image_id, stem in zip(ids, stems):
        path = Path(image_paths[image_id])
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read image {path} (image_id {image_id})")
        insts = sorted(by_image.get(image_id, []), key=lambda r: r["score"])
        if insts:
            arr = np.asarray([r["keypoints"] for r in insts], dtype=np.float64).reshape(len(insts), k, 3)
            image = draw_skeleton(image, arr[..., :2], arr[..., 2], spec.skeleton, kpt_thr, spec.keypoint_names,
                                  radius, thickness)
        target = out_dir / (f"{stem}_pose.jpg" if unique else f"{image_id}_{stem}_pose.jpg")
        if not cv2.imwrite(str(target), image):
            raise OSError(f"cannot write {target}")
        written.append(target)
    return written
