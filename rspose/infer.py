"""``rspose infer``: keypoints for an image, a folder of images or a video, with overlays and one results JSON.

    rspose infer --config CFG --ckpt_path CKPT --input PATH --out DIR [--boxes FILE [--images ANN]] [--device cpu]

Inputs: an image file, a video file (decoded frame by frame with OpenCV) or a folder (its images and videos,
not recursive, in name order). Person boxes (x, y, w, h in pixels, optional score):

* none given: one box over the whole image (or frame); source ``"whole image"``;
* ``--boxes`` with a JSON object ``{file name: [[x, y, w, h, score], ...]}``: keyed by the file's path relative
  to the input folder or by its base name; a video's frames by ``"{name}:{frame}"`` (frame from 0), or by the
  video's name for every frame; source ``"boxes file"``;
* ``--boxes`` with a COCO detection results list (``[{"image_id", "bbox", "score", "category_id"}, ...]``) and
  ``--images`` with a COCO annotation file whose ``images`` map ids to ``file_name``; only ``category_id`` 1
  (person) is used; source ``"COCO detections"``.
An input with no entry in the boxes file gets no predictions (counted in the summary). ``--bbox_thr`` drops
lower-scoring boxes; the predictions of each image go through OKS-NMS (``--nms``) as in ``rspose predict``.

Writes ``DIR/results.json``: ``{"box_source", "config", "checkpoint", "keypoint_names", "skeleton",
"predictions": [...], "errors": [...], "inputs": [...]}``; each prediction has ``file_name``, ``frame`` (None for
images), ``image_id`` (the COCO id with ``--images``, else the input's position), ``category_id`` 1,
``keypoints`` ``[x1, y1, s1, ..., xK, yK, sK]`` (COCO results layout, s = keypoint score), ``score`` (instance
score), ``bbox`` [x, y, w, h], ``bbox_score`` and ``box_source``; so ``predictions`` loads in
``pycocotools.COCO.loadRes``. Overlays: ``DIR/overlays/{stem}_pose.jpg`` per image, ``{stem}_pose.mp4`` per
video (``.avi`` when the mp4 codec is unavailable). An unreadable file is listed under ``errors`` and in the
summary, the other inputs are still processed, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rspose.data.readers.coco import as_float, as_int, as_numbers, index_images
from rspose.errors import ArgumentParser, UserError, check_range
from rspose.json_file import load_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def list_inputs(path: Path) -> list[Path]:
    """The image and video files of ``path`` (a file, or a folder's files in name order)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"--input {path}: the folder holds no image ({', '.join(IMAGE_SUFFIXES)}) or "
                                    f"video ({', '.join(VIDEO_SUFFIXES)}) files")
        return files
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            raise UserError(f"--input {path}: unknown file type {path.suffix!r}, expected an image "
                             f"({', '.join(IMAGE_SUFFIXES)}) or a video ({', '.join(VIDEO_SUFFIXES)})")
        return [path]
    raise FileNotFoundError(f"--input {path} does not exist")


@dataclass
class BoxSource:
    """Boxes per input: ``lookup(name, frame)`` -> (N, 5) array or None (no entry)."""

    name: str
    by_key: dict[str, np.ndarray] = field(default_factory=dict)
    image_ids: dict[str, int] = field(default_factory=dict)  # file name -> COCO image id (with --images)

    def lookup(self, rel_name: str, frame: int | None) -> np.ndarray | None:
        if self.name == "whole image":
            return None
        base = Path(rel_name).name
        keys = [rel_name, base] if frame is None else [f"{rel_name}:{frame}", f"{base}:{frame}", rel_name, base]
        for key in keys:
            if key in self.by_key:
                return self.by_key[key]
        return np.zeros((0, 5))


def _box_rows(value: Any, where: str) -> np.ndarray:
    """(N, 5) x, y, w, h, score boxes (score 1 when absent), checked as detection files are: finite numbers and a
    width and height >= 0; else a UserError naming ``where`` and the box."""
    try:
        if isinstance(value, (str, bytes, dict)):
            raise TypeError
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        arr = None
    if arr is not None and arr.size == 0:
        return np.zeros((0, 5))
    if arr is None or arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise UserError(f"{where}: expected a list of [x, y, w, h] or [x, y, w, h, score] boxes, got {value!r:.80}")
    bad = ~np.isfinite(arr).all(axis=1) | (arr[:, 2:4] < 0).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(f"{where}: box {i} {arr[i].tolist()} has a NaN or infinite value or a negative size; expected "
                        "finite x, y, w >= 0, h >= 0 (and score)")
    if arr.shape[1] == 4:
        arr = np.concatenate([arr, np.ones((len(arr), 1))], axis=1)
    return arr


def read_boxes(boxes_file: Path | None, images_file: Path | None, bbox_thr: float = 0.0) -> BoxSource:
    """Parse ``--boxes`` (and ``--images``); see the module docstring for the formats."""
    if boxes_file is None:
        if images_file is not None:
            raise UserError("--images is only used with a COCO detection file given as --boxes")
        return BoxSource("whole image")
    if not boxes_file.is_file():
        raise FileNotFoundError(f"--boxes {boxes_file} does not exist")
    data = load_json(boxes_file, "--boxes")
    if isinstance(data, dict):
        by_key = {}
        for key, value in data.items():
            rows = _box_rows(value, f"--boxes {boxes_file}, entry {key!r}")
            by_key[str(key)] = rows[rows[:, 4] >= bbox_thr]
        return BoxSource("boxes file", by_key)
    if isinstance(data, list):
        if images_file is None:
            raise UserError(f"--boxes {boxes_file} is a COCO detection list (image ids): give --images with the "
                             "COCO annotation file whose 'images' map each id to its file_name")
        if not images_file.is_file():
            raise FileNotFoundError(f"--images {images_file} does not exist")
        ann = load_json(images_file, "--images")
        if not isinstance(ann, dict) or not isinstance(ann.get("images"), list):
            raise UserError(f"--images {images_file}: expected a COCO annotation file with an 'images' list")
        index_images(ann, f"--images {images_file}", "")  # ids, names and sizes: errors naming the entry
        names = {as_int(im["id"], f"--images {images_file}", "id"): str(im["file_name"]) for im in ann["images"]}
        rows: dict[str, list[list[float]]] = {name: [] for name in names.values()}
        for i, det in enumerate(data):
            where = f"--boxes {boxes_file}[{i}]"
            if not isinstance(det, dict) or "image_id" not in det or "bbox" not in det:
                raise UserError(f"{where}: expected {{'image_id', 'bbox', 'score'}}, got {det!r:.80}")
            if as_int(det.get("category_id", 1), where, "category_id") != 1:
                continue
            name = names.get(as_int(det["image_id"], where, "image_id"))
            if name is None:
                raise UserError(f"{where}: image_id {det['image_id']} is not in --images {images_file}")
            score = as_float(det.get("score", 1.0), where, "score")
            box = _box_rows([[*as_numbers(det["bbox"], where, "bbox").reshape(-1)[:4], score]], where)
            if score >= bbox_thr:
                rows[name].append(box[0].tolist())
        by_key = {name: _box_rows(r, f"--boxes {boxes_file}") for name, r in rows.items()}
        return BoxSource("COCO detections", by_key, image_ids={v: k for k, v in names.items()})
    raise UserError(f"--boxes {boxes_file}: expected a JSON object {{file name: boxes}} or a COCO detection list")


def iter_frames(path: Path) -> Iterator[tuple[int | None, np.ndarray, float]]:
    """(frame index or None for an image, BGR frame, fps) of an image or a video; raises OSError if unreadable."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read image {path} (corrupt or not an image)")
        yield None, image, 0.0
        return
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise OSError(f"cannot open video {path} (corrupt or unsupported codec)")
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield index, frame, fps
            index += 1
        if index == 0:
            raise OSError(f"cannot read any frame of video {path} (corrupt or unsupported codec)")
    finally:
        cap.release()


class VideoOverlay:
    """Writes frames to ``{stem}_pose.mp4`` (mp4v), or ``.avi`` (MJPG) if the mp4 writer does not open."""

    def __init__(self, out_dir: Path, stem: str, fps: float, size: tuple[int, int]) -> None:
        self.path = out_dir / f"{stem}_pose.mp4"
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            self.path = out_dir / f"{stem}_pose.avi"
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
        if not self.writer.isOpened():
            raise OSError(f"cannot open a video writer for {self.path}")

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.release()


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="rspose infer", description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="rspose YAML config of the model")
    parser.add_argument("--ckpt_path", required=True, help="local checkpoint (rspose .ckpt, mmpose, ViTPose)")
    parser.add_argument("--input", required=True, help="an image, a video or a folder of them")
    parser.add_argument("--out", required=True, help="output folder (results.json, overlays/)")
    parser.add_argument("--boxes", default=None, help="{file name: [[x, y, w, h, score], ...]} JSON, or a COCO "
                        "detection file (then also --images)")
    parser.add_argument("--images", default=None, help="COCO annotation file mapping image ids to file names")
    parser.add_argument("--bbox_thr", type=float, default=0.0, help="drop boxes scoring below this")
    parser.add_argument("--nms", choices=("oks", "none"), default="oks", help="per-image OKS-NMS of the poses")
    parser.add_argument("--nms_thr", type=float, default=0.9)
    parser.add_argument("--draw_thr", type=float, default=0.3, help="keypoint score needed to draw it")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--batch_size", type=int, default=32, help="boxes per forward pass")
    parser.add_argument("--no_overlays", action="store_true", help="write results.json only")
    parser.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                        help="rich progress bar (auto: on a terminal with more than one frame/image)")
    return parser


def _records(pred, keep: np.ndarray, rel: str, frame: int | None, image_id: int, source: str) -> list[dict]:
    out = []
    order = np.flatnonzero(keep)[np.argsort(-pred.instance_scores[keep], kind="stable")]
    for i in order:
        flat = np.concatenate([pred.keypoints[i], pred.keypoint_scores[i][:, None]], axis=1).reshape(-1)
        out.append({
            "file_name": rel, "frame": frame, "image_id": image_id, "category_id": 1,
            "keypoints": [float(v) for v in flat], "score": float(pred.instance_scores[i]),
            "bbox": [float(v) for v in pred.boxes[i, :4]], "bbox_score": float(pred.boxes[i, 4]),
            "box_source": source,
        })
    return out


def run_infer(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code (1 when any input failed)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rspose.inferencer import Inferencer
    from rspose.metrics.nms import oks_nms
    from rspose.viz.skeleton import draw_skeleton

    console = Console(stderr=True, soft_wrap=True)
    input_path = Path(args.input).expanduser()
    inputs = list_inputs(input_path)
    root = input_path if input_path.is_dir() else input_path.parent
    boxes = read_boxes(Path(args.boxes) if args.boxes else None, Path(args.images) if args.images else None,
                       args.bbox_thr)
    pose = Inferencer(args.config, args.ckpt_path, device=args.device, batch_size=args.batch_size)
    spec = pose.spec
    sigmas = np.asarray(spec.sigmas, dtype=np.float64)
    out_dir = Path(args.out)
    overlay_dir = out_dir / "overlays"
    if not args.no_overlays:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions: list[dict] = []
    errors: list[dict] = []
    done: list[dict] = []
    no_boxes = 0
    show = args.progress == "on" or (args.progress == "auto" and console.is_terminal
                                     and (len(inputs) > 1 or inputs[0].suffix.lower() in VIDEO_SUFFIXES))
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, disable=not show, transient=False)
    with progress:
        files_task = progress.add_task("inputs", total=len(inputs))
        for position, path in enumerate(inputs):
            rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
            image_id = boxes.image_ids.get(rel, boxes.image_ids.get(path.name, position))
            is_video = path.suffix.lower() in VIDEO_SUFFIXES
            frames_task = None
            if is_video and show:
                cap = cv2.VideoCapture(str(path))
                total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
                cap.release()
                frames_task = progress.add_task(f"  {path.name}", total=total)
            video: VideoOverlay | None = None
            count, n_pred = 0, 0
            overlay_path = None
            try:
                for frame, image, fps in iter_frames(path):
                    found = boxes.lookup(rel, frame)
                    if found is not None and len(found) == 0:
                        no_boxes += 1
                    pred = pose.predict(image, found)
                    keep = np.ones(len(pred.boxes), dtype=bool)
                    if args.nms == "oks" and len(pred.boxes) > 1:
                        areas = pred.boxes[:, 2] * pred.boxes[:, 3]
                        keep = oks_nms(pred.keypoints, pred.instance_scores, areas, sigmas, args.nms_thr).numpy()
                    records = _records(pred, keep, rel, frame, image_id, boxes.name)
                    predictions.extend(records)
                    n_pred += len(records)
                    count += 1
                    if not args.no_overlays:
                        order = np.flatnonzero(keep)[np.argsort(pred.instance_scores[keep], kind="stable")]
                        drawn = draw_skeleton(image, pred.keypoints[order], pred.keypoint_scores[order],
                                              spec.skeleton, args.draw_thr, spec.keypoint_names)
                        if is_video:
                            if video is None:
                                video = VideoOverlay(overlay_dir, path.stem, fps, (image.shape[1], image.shape[0]))
                            video.write(drawn)
                        else:
                            overlay_path = overlay_dir / f"{path.stem}_pose.jpg"
                            if not cv2.imwrite(str(overlay_path), drawn):
                                raise OSError(f"cannot write {overlay_path}")
                    if frames_task is not None:
                        progress.advance(frames_task)
                if video is not None:
                    overlay_path = video.path
                done.append({"file_name": rel, "frames": count if is_video else None, "predictions": n_pred,
                             "overlay": str(overlay_path) if overlay_path else None})
            except (OSError, cv2.error, ValueError) as err:
                errors.append({"file_name": rel, "error": str(err)})
            finally:
                if video is not None:
                    video.close()
                if frames_task is not None:
                    progress.remove_task(frames_task)
            progress.advance(files_task)
    results = {
        "box_source": boxes.name,
        "config": str(args.config),
        "checkpoint": str(args.ckpt_path),
        "keypoint_names": list(spec.keypoint_names) if spec.keypoint_names else None,
        "skeleton": [list(link) for link in spec.skeleton],
        "inputs": done,
        "errors": errors,
        "predictions": predictions,
    }
    results_path = out_dir / "results.json"
    results_path.write_text(json.dumps(results))
    frames = sum(d["frames"] or 1 for d in done)
    console.print(f"rspose infer: {len(done)} of {len(inputs)} inputs ({frames} images / frames), "
                  f"{len(predictions)} poses, boxes: {boxes.name}"
                  + (f" ({no_boxes} images / frames without boxes)" if no_boxes else "")
                  + f"; results: {results_path}" + ("" if args.no_overlays else f", overlays: {overlay_dir}"))
    for err in errors:
        console.print(f"[red]error[/red] {err['file_name']}: {err['error']}", highlight=False)
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    """``rspose infer`` (called by :func:`rspose.main.main`, whose error boundary reports user errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, low, high in (("bbox_thr", None, None), ("nms_thr", 0.0, 1.0), ("draw_thr", 0.0, 1.0),
                           ("batch_size", 1, None)):
        check_range(f"infer --{key}", getattr(args, key), low, high)
    return run_infer(args)


if __name__ == "__main__":
    from rspose.main import main as rspose_main

    sys.exit(rspose_main(["infer", *sys.argv[1:]]))
