"""Ground-truth loading and the COCOeval run behind :class:`rspose.metrics.OKSMeanAP`.

pycocotools is the evaluator of record. ``faster-coco-eval`` (optional, ``pip install faster-coco-eval``)
can run the same evaluation; it is used only when asked for (``backend="faster_coco_eval"``).

CrowdPose (``iou_type="keypoints_crowd"``): the GT has no ``area``; every GT area is set to 0.53 x box
w x h (the reference CrowdPose / xtcocotools evaluator with ``use_area=False``), then the plain pycocotools
keypoint evaluation runs; AP_easy / AP_medium / AP_hard re-run it on the images with crowdIndex < 0.2,
0.2 <= crowdIndex < 0.8 and crowdIndex >= 0.8; an empty subset reports -1.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rspose.json_file import load_json

IouType = Literal["keypoints", "keypoints_crowd"]
Backend = Literal["pycocotools", "faster_coco_eval"]

STAT_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
CROWD_SPLITS = (("AP_easy", -np.inf, 0.2), ("AP_medium", 0.2, 0.8), ("AP_hard", 0.8, np.inf))
CROWD_AREA_FACTOR = 0.53


@dataclass
class GroundTruth:
    """A COCO-format keypoint GT, loaded once, with the arrays the metric needs.

    Attributes (M annotations, K keypoints):
        dataset: the COCO dict given to the evaluator (CrowdPose: areas set to 0.53 w h).
        source: where it came from (file path or "<dict>"), for error messages.
        keypoints: (M, K, 2) float64; visible: (M, K) float64 flags; areas: (M,) float64;
        ann_image_ids: (M,) int64; boxes: (M, 4) float64 [x, y, w, h];
        valid: (M,) bool, pycocotools' non-ignored GTs (not iscrowd and >= 1 labelled keypoint).
        image_ids: sorted (I,) int64 ids of every GT image; category_id: the person category id.
        keypoint_names: from categories[0].keypoints, or None; crowd_index: {image id: crowdIndex} or None.
    """

    dataset: dict
    source: str
    keypoints: np.ndarray
    visible: np.ndarray
    areas: np.ndarray
    ann_image_ids: np.ndarray
    boxes: np.ndarray
    valid: np.ndarray
    image_ids: np.ndarray
    category_id: int
    keypoint_names: list[str] | None
    crowd_index: dict[int, float] | None
    _coco: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[1])

    def coco(self, backend: Backend = "pycocotools"):
        """The evaluator's COCO object for this GT (built once per backend)."""
        if backend not in self._coco:
            if backend == "pycocotools":
                from pycocotools.coco import COCO
            else:
                from faster_coco_eval import COCO
            with quiet():
                obj = COCO()
                obj.dataset = self.dataset  # shared: COCOeval only (re)sets the same ignore flags on it
                obj.createIndex()
            self._coco[backend] = obj
        return self._coco[backend]


@contextlib.contextmanager
def quiet():
    """Swallow what pycocotools prints to stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def load_ground_truth(ann_file: str | Path | dict, iou_type: IouType = "keypoints") -> GroundTruth:
    """Read a COCO-format keypoint annotation file (or an in-memory dict) and check what COCOeval needs."""
    if isinstance(ann_file, dict):
        source, data = "<dict>", copy.deepcopy(ann_file)
    else:
        source, data = str(Path(ann_file)), load_json(ann_file, "OKSMeanAP: annotation file")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{source}: key {key!r} is missing or not a list; expected a COCO keypoint file")
    if not data["categories"]:
        raise ValueError(f"{source}: 'categories' is empty; expected the person category")
    cat = data["categories"][0]
    names = list(cat["keypoints"]) if "keypoints" in cat else None
    anns = data["annotations"]
    k = len(names) if names is not None else (len(anns[0]["keypoints"]) // 3 if anns else 0)
    if k == 0:
        raise ValueError(f"{source}: cannot tell the number of keypoints (no categories[0].keypoints, no annotation)")
    seen: set[int] = set()
    for ann in anns:
        if ann.get("id") in seen:  # pycocotools indexes annotations by id: a second copy would replace the first
            raise ValueError(f"{source}: annotation id {ann.get('id')} appears more than once; ids must be unique")
        seen.add(ann.get("id"))
        if len(ann.get("keypoints", ())) != 3 * k:
            raise ValueError(
                f"{source}: annotation id {ann.get('id')} has {len(ann.get('keypoints', ()))} keypoint values, "
                f"expected {3 * k} (K = {k})"
            )
        if "bbox" not in ann:
            raise ValueError(f"{source}: annotation id {ann.get('id')} has no 'bbox'")
        if not np.isfinite(np.asarray(ann["keypoints"], dtype=np.float64)).all():
            raise ValueError(f"{source}: annotation id {ann.get('id')} has a NaN or infinite value in 'keypoints'")
        if "num_keypoints" not in ann:  # pycocotools reads it to ignore keypoint-less GT: count v > 0 as COCO does
            ann["num_keypoints"] = int(sum(v > 0 for v in ann["keypoints"][2::3]))
        ann.setdefault("iscrowd", 0)
        ann.pop("segmentation", None)  # not used by keypoint evaluation; large
        if iou_type == "keypoints_crowd":
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3]) * CROWD_AREA_FACTOR
        elif "area" not in ann:
            raise ValueError(
                f"{source}: annotation id {ann.get('id')} has no 'area' (needed for OKS); "
                "a CrowdPose-style file needs iou_type='keypoints_crowd'"
            )
    crowd_index = None
    if iou_type == "keypoints_crowd":
        missing = [img["id"] for img in data["images"] if "crowdIndex" not in img]
        if missing:
            raise ValueError(f"{source}: images {missing[:5]} have no 'crowdIndex' (needed for keypoints_crowd)")
        crowd_index = {int(img["id"]): float(img["crowdIndex"]) for img in data["images"]}
    m = len(anns)
    kp = np.asarray([a["keypoints"] for a in anns], dtype=np.float64).reshape(m, k, 3)
    iscrowd = np.asarray([bool(a["iscrowd"]) for a in anns], dtype=bool)
    return GroundTruth(
        dataset=data,
        source=source,
        keypoints=kp[..., :2].copy(),
        visible=kp[..., 2].copy(),
        areas=np.asarray([a["area"] for a in anns], dtype=np.float64),
        ann_image_ids=np.asarray([a["image_id"] for a in anns], dtype=np.int64),
        boxes=np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(m, 4),
        valid=~iscrowd & ((kp[..., 2] > 0).sum(-1) > 0),
        image_ids=np.unique(np.asarray([img["id"] for img in data["images"]], dtype=np.int64)),
        category_id=int(cat["id"]),
        keypoint_names=names,
        crowd_index=crowd_index,
    )


def load_results(gt: GroundTruth, results: list[dict], backend: Backend = "pycocotools"):
    """The evaluator's result object; an empty list gives an empty one (pycocotools' loadRes would crash)."""
    coco_gt = gt.coco(backend)
    with quiet():
        if results:
            return coco_gt.loadRes(results)
        if backend == "pycocotools":
            from pycocotools.coco import COCO
        else:
            from faster_coco_eval import COCO
        res = COCO()
        res.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                       "categories": copy.deepcopy(coco_gt.dataset["categories"])}
        res.createIndex()
        return res


def run_cocoeval(
    gt: GroundTruth,
    coco_dt,
    sigmas: np.ndarray,
    img_ids: list[int] | None = None,
    backend: Backend = "pycocotools",
) -> dict[str, float]:
    """Keypoint COCOeval (maxDets 20) on ``img_ids`` (default: every GT image) -> {AP, AP50, ..., ARl}."""
    with quiet():
        if backend == "pycocotools":
            from pycocotools.cocoeval import COCOeval

            ev = COCOeval(gt.coco(backend), coco_dt, "keypoints")
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        else:
            from faster_coco_eval import COCOeval_faster

            ev = COCOeval_faster(gt.coco(backend), coco_dt, "keypoints", print_function=lambda *a, **k: None,
                                 kpt_oks_sigmas=list(np.asarray(sigmas, dtype=np.float64)))
        if img_ids is not None:
            ev.params.imgIds = list(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {key: float(v) for key, v in zip(STAT_KEYS, ev.stats)}


def crowd_split_image_ids(gt: GroundTruth) -> dict[str, list[int]]:
    """CrowdPose splits by crowdIndex: {"AP_easy": [...], "AP_medium": [...], "AP_hard": [...]}."""
    assert gt.crowd_index is not None
    out = {}
    for name, lo, hi in CROWD_SPLITS:
        out[name] = sorted(i for i, ci in gt.crowd_index.items() if lo <= ci < hi)
    return out


def evaluate_keypoints(
    gt: GroundTruth,
    results: list[dict],
    sigmas: np.ndarray,
    iou_type: IouType = "keypoints",
    backend: Backend = "pycocotools",
) -> dict[str, float]:
    """Run COCOeval on COCO keypoint results (list of {image_id, category_id, keypoints, score}).

    ``results`` are consumed (the evaluator adds keys to them). CrowdPose adds AP_easy/medium/hard.
    """
    coco_dt = load_results(gt, results, backend)
    out = run_cocoeval(gt, coco_dt, sigmas, None, backend)
    if iou_type == "keypoints_crowd":
        for name, ids in crowd_split_image_ids(gt).items():
            out[name] = run_cocoeval(gt, coco_dt, sigmas, ids, backend)["AP"] if ids else -1.0
    return out
