"""Person detections ([{image_id, category_id, bbox xywh, score}]) -> PoseInstance list for evaluation.

Each detection of category 1 with ``score >= score_thr`` becomes one instance of its ground-truth image (the
COCO annotation file gives the file name and size). As mmpose, detection boxes are not clipped; keypoints are
zeros with visibility 0 (no ground truth); ``area`` is the box w x h. The instance id is the position of the
detection in the file, so it is stable whatever the threshold.

Errors name the file and the entry: a detection for an image id absent from the annotations, a malformed
entry, a negative box size, a ``score`` or box value that is not a finite number (NaN, inf, a string), a file with no usable detection at all (empty, no person category, every score
below the threshold: evaluation would silently not run). A detection of zero area (w == 0 or h == 0) is
skipped with one counted warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rspose.data.readers.coco import as_float, as_int, as_numbers, index_images
from rspose.data.readers.instance import InstanceList, PoseInstance, box_center_scale, warn_skipped
from rspose.errors import UserError
from rspose.json_file import load_json


def read_detections(
    det_file: str | Path,
    ann_file: str | Path,
    img_dir: str | Path,
    num_keypoints: int,
    input_size: tuple[int, int],
    score_thr: float = 0.0,
    padding: float = 1.25,
) -> InstanceList:
    """Read a detection file against the COCO annotation file of its images.

    Args:
        det_file: JSON list of detections; ann_file: COCO file whose ``images`` the detections refer to;
        img_dir: image folder; num_keypoints: K; input_size: (W, H) sets the aspect ratio of ``scale``;
        score_thr: keep detections with score >= score_thr; padding: box padding of ``scale``.
    """
    dets = load_json(det_file, "detection file")
    if not isinstance(dets, list):
        raise UserError(f"{det_file}: a detection file must be a JSON list of {{image_id, category_id, bbox, score}}")
    images = index_images(load_json(ann_file, "COCO annotation file"), ann_file, img_dir)
    skipped = {"other category": 0, "below score threshold": 0, "zero-area box": 0}
    out = []
    for index, det in enumerate(dets):
        if not isinstance(det, dict):
            raise UserError(f"{det_file}: detection #{index} is {det!r:.80}; expected {{image_id, category_id, bbox, "
                             "score}")
        missing = [k for k in ("image_id", "bbox", "score") if k not in det]
        if missing:
            raise UserError(f"{det_file}: detection #{index} has no {missing}: {det}")
        where = f"{det_file}: detection #{index}"
        if as_int(det.get("category_id", 1), where, "category_id") != 1:
            skipped["other category"] += 1
            continue
        image_id = as_int(det["image_id"], where, "image_id")
        score = as_float(det["score"], where, "score")
        if not np.isfinite(score):
            raise UserError(f"{where} (image_id {image_id}) has 'score' {det['score']!r}; expected a finite number")
        if image_id not in images:
            raise UserError(
                f"{det_file}: detection #{index} is for image_id {image_id}, which is not an image of {ann_file}"
            )
        bbox = as_numbers(det["bbox"], where, "bbox").reshape(-1)[:4]
        if bbox.shape != (4,) or not np.isfinite(bbox).all() or bbox[2] < 0 or bbox[3] < 0:
            raise UserError(f"{det_file}: detection #{index} (image_id {image_id}) has an invalid bbox {det['bbox']}")
        if score < score_thr:
            skipped["below score threshold"] += 1
            continue
        if bbox[2] * bbox[3] <= 0:
            skipped["zero-area box"] += 1
            continue
        img = images[image_id]
        center, scale = box_center_scale(bbox, input_size, padding)
        out.append(
            PoseInstance(
                instance_id=index,
                image_id=image_id,
                image_file=img["file"],
                bbox=bbox,
                center=center,
                scale=scale,
                keypoints=np.zeros((num_keypoints, 2), dtype=np.float32),
                keypoints_visible=np.zeros(num_keypoints, dtype=np.float32),
                area=float(bbox[2] * bbox[3]),
                bbox_score=score,
                num_keypoints=0,
                crowd_index=img["crowd_index"],
                image_size=(img["width"], img["height"]),
            )
        )
    if not out:
        detail = ", ".join(f"{n} {reason}" + (f" {score_thr:g}" if reason == "below score threshold" else "")
                           for reason, n in skipped.items() if n)
        raise UserError(
            f"{det_file}: no usable detection"
            + (f" among its {len(dets)} entries ({detail})" if dets else " (the file is an empty list)")
            + "; expected person detections (category_id 1) with score >= data.dataset.init_args.bbox_score_thr and a non-empty box"
        )
    warn_skipped(str(det_file), len(dets), skipped, unexpected=("zero-area box",))
    return InstanceList(out, str(det_file), skipped)
