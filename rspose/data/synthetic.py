"""Synthetic COCO-format keypoint data: articulated stick people, the embedded default dataset.

``generate_synthetic_coco(out_dir)`` writes the mmpose/COCO layout, so a COCO reader works with
``root=out_dir`` and the default file names::

    out_dir/annotations/person_keypoints_train2017.json
    out_dir/annotations/person_keypoints_val2017.json
    out_dir/train2017/*.jpg, out_dir/val2017/*.jpg
    out_dir/person_detection_results/COCO_val2017_detections_AP_H_56_person.json
    out_dir/rspose_synthetic.json   (the generator parameters, written last: see ``ensure_synthetic_coco``)

Each image holds 1..max_people figures with the 17 COCO keypoints (order of ``rspose.data.specs.COCO``):
a kinematic skeleton (torso, head with hair, eyes, nose and ears, two-segment arms and legs) with random
joint angles, scale (40-220 px tall), position and in-plane rotation (mostly upright), on a textured
background (gradient, stripes, noise blobs, muted distractor shapes).

Left/right is visible: the person's left limbs are warm (red-orange), the right limbs cool (blue-cyan), and
the left upper arm and thigh carry a white square marker, so a horizontally flipped figure looks different.

Annotation conventions (documented here because a reader may rely on them):
    keypoints: [x, y, v] * 17 in pixel-index coordinates (pixel i is centred at x = i, as in
        mmpose's flip x' = w - 1 - x). v = 2 visible; v = 1 labelled but hidden by a figure drawn later;
        v = 0 outside the image, written as [0, 0, 0]. Self-occlusion keeps v = 2.
    bbox: [x, y, w, h], the tight box of all pixels of the figure's drawing (amodal: parts hidden by later
        figures count), clipped to the image, so every labelled keypoint lies inside it.
    area: number of image pixels of the same amodal drawing (the segmentation area, on the same support
        as bbox). No "segmentation" field is written.
    Figures with no visible pixel are not annotated; figures cut by the border keep their annotation even
    when no keypoint is inside the image (num_keypoints == 0, dropped by the training filter); about 3% of
    figures are placed that way on purpose (``PEEK_PROB``).
    ids: train images 1..num_train, val images 1000001..; file names are the 12-digit image id + ".jpg";
    annotation ids run on from train into val, so they are unique across both files.
Detections (val only): one jittered box per annotated figure (IoU mostly 0.7-0.95, score increasing with
IoU), a lower-scored duplicate for about 20% of figures, and about 20% false positives with low scores.

Everything is deterministic from ``seed``: image ``i`` of a split draws from ``default_rng([seed, split, i])``,
so the same seed gives byte-identical JSON and JPEG files (on the same OpenCV build).
"""

from __future__ import annotations

import colorsys
import json
import math
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rspose.data.specs import COCO
from rspose.errors import ArgumentParser, UserError

SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn at 1/16 px
_ONE = 1 << SHIFT
_SPLIT_CODE = {"train": 0, "val": 1}
_ID_OFFSET = {"train": 0, "val": 1_000_000}  # image ids: train 1.., val 1000001..
PEEK_PROB = 0.03  # share of figures placed with all keypoints just outside the image (num_keypoints == 0)
DET_FILE = "COCO_val2017_detections_AP_H_56_person.json"
PARAMS_FILE = "rspose_synthetic.json"

# keypoint ids in COCO order
NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI = range(11)
L_HIP, R_HIP, L_KNE, R_KNE, L_ANK, R_ANK = range(11, 17)


def _bgr(h: float, s: float, v: float) -> tuple[int, int, int]:
    """HSV in [0, 1] -> BGR ints in [0, 255]."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(b * 255), int(g * 255), int(r * 255)


def _dark(c: tuple[int, int, int], f: float = 0.5) -> tuple[int, int, int]:
    return int(c[0] * f), int(c[1] * f), int(c[2] * f)


def _rot(a: float) -> np.ndarray:
    """(2, 2) rotation by ``a`` radians in image coordinates (y down: positive turns clockwise on screen)."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


def _pose(rng: np.random.Generator) -> dict[str, Any]:
    """Random canonical pose of a frontal figure about 1 unit tall, pelvis at the origin, y down.

    Returns keypoints (17, 2), neck (2,), head centre (2,), head radius, head angle (radians) and the
    canonical size of limbs; the person's left is image +x (facing the camera).
    """
    deg = math.pi / 180
    lean = rng.normal(0.0, 6.0) * deg
    up = _rot(lean) @ np.array([0.0, -1.0])
    down = -up
    perp = np.array([-up[1], up[0]])  # towards the person's left (image +x when upright)
    kp = np.zeros((17, 2))
    neck = rng.uniform(0.27, 0.32) * up
    sw, hw = rng.uniform(0.09, 0.12), rng.uniform(0.06, 0.08)
    kp[L_SHO], kp[R_SHO] = neck + sw * perp + 0.02 * down, neck - sw * perp + 0.02 * down
    kp[L_HIP], kp[R_HIP] = hw * perp, -hw * perp

    def limb(start: int, mid: int, end: int, side: float, a1: float, a2: float, l1: float, l2: float) -> None:
        for j, (a, length) in ((mid, (a1, l1)), (end, (a1 + a2, l2))):
            d = math.cos(a * deg) * down + side * math.sin(a * deg) * perp
            fore = rng.uniform(0.6, 1.0) if rng.random() < 0.25 else 1.0  # out-of-plane foreshortening
            kp[j] = kp[start if j == mid else mid] + length * fore * d

    for side, (s, e, w) in ((1.0, (L_SHO, L_ELB, L_WRI)), (-1.0, (R_SHO, R_ELB, R_WRI))):
        limb(s, e, w, side, rng.uniform(-25, 170), rng.uniform(-140, 40), rng.uniform(0.15, 0.18), rng.uniform(0.13, 0.16))
    for side, (h, k, a) in ((1.0, (L_HIP, L_KNE, L_ANK)), (-1.0, (R_HIP, R_KNE, R_ANK))):
        t1 = rng.uniform(-15, 45) if rng.random() < 0.85 else rng.uniform(45, 100)
        limb(h, k, a, side, t1, rng.uniform(-50, 25), rng.uniform(0.23, 0.26), rng.uniform(0.22, 0.25))

    head_angle = lean + rng.normal(0.0, 10.0) * deg
    hup = _rot(head_angle) @ np.array([0.0, -1.0])
    hp = np.array([-hup[1], hup[0]])
    r = rng.uniform(0.055, 0.07)
    hc = neck + (rng.uniform(0.02, 0.04) + r) * hup
    yaw = rng.uniform(-0.35, 0.35)
    kp[NOSE] = hc + yaw * 0.6 * r * hp - 0.25 * r * hup
    kp[L_EYE] = hc + (0.33 + yaw * 0.6) * r * hp + 0.12 * r * hup
    kp[R_EYE] = hc + (-0.33 + yaw * 0.6) * r * hp + 0.12 * r * hup
    kp[L_EAR] = hc + (0.8 + yaw * 0.2) * r * hp
    kp[R_EAR] = hc + (-0.8 + yaw * 0.2) * r * hp
    return {"kp": kp, "neck": neck, "head": hc, "r": r, "head_angle": head_angle}


class _Pen:
    """Draws each primitive twice: in colour on the image, and as 255 on the figure's mask."""

    def __init__(self, img: np.ndarray, mask: np.ndarray) -> None:
        self.img, self.mask = img, mask

    @staticmethod
    def _p(pt: np.ndarray) -> tuple[int, int]:
        return int(round(float(pt[0]) * _ONE)), int(round(float(pt[1]) * _ONE))

    def line(self, a: np.ndarray, b: np.ndarray, color: tuple[int, int, int], thickness: int) -> None:
        pa, pb = self._p(a), self._p(b)
        cv2.line(self.img, pa, pb, color, thickness, cv2.LINE_AA, SHIFT)
        cv2.line(self.mask, pa, pb, 255, thickness, cv2.LINE_8, SHIFT)

    def disc(self, c: np.ndarray, radius: float, color: tuple[int, int, int]) -> None:
        pc, rr = self._p(c), max(int(round(radius * _ONE)), _ONE)
        cv2.circle(self.img, pc, rr, color, -1, cv2.LINE_AA, SHIFT)
        cv2.circle(self.mask, pc, rr, 255, -1, cv2.LINE_8, SHIFT)

    def poly(self, pts: np.ndarray, color: tuple[int, int, int]) -> None:
        p = np.rint(pts * _ONE).astype(np.int32)[None]
        cv2.fillPoly(self.img, p, color, cv2.LINE_AA, SHIFT)
        cv2.fillPoly(self.mask, p, 255, cv2.LINE_8, SHIFT)

    def ellipse(self, c: np.ndarray, axes: tuple[float, float], angle_deg: float, color: tuple[int, int, int]) -> None:
        pc = self._p(c)
        ax = (max(int(round(axes[0] * _ONE)), _ONE), max(int(round(axes[1] * _ONE)), _ONE))
        cv2.ellipse(self.img, pc, ax, angle_deg, 0, 360, color, -1, cv2.LINE_AA, SHIFT)
        cv2.ellipse(self.mask, pc, ax, angle_deg, 0, 360, 255, -1, cv2.LINE_8, SHIFT)


def _draw_figure(pen: _Pen, rng: np.random.Generator, pose: dict[str, Any], height: float, theta: float,
                 pelvis: np.ndarray) -> np.ndarray:
    """Draw one figure (canonical ``pose`` scaled to ``height`` px, rotated by ``theta``, pelvis at ``pelvis``).

    Returns its keypoints (17, 2) in image coordinates.
    """
    rot = _rot(theta)

    def tf(p: np.ndarray) -> np.ndarray:
        return p @ rot.T * height + pelvis

    kp, neck, hc = tf(pose["kp"]), tf(pose["neck"]), tf(pose["head"])
    r = pose["r"] * height
    left_arm = _bgr(rng.uniform(-0.02, 0.07), rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0))
    left_leg = _bgr(rng.uniform(-0.02, 0.07), rng.uniform(0.75, 1.0), rng.uniform(0.6, 0.9))
    right_arm = _bgr(rng.uniform(0.52, 0.66), rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0))
    right_leg = _bgr(rng.uniform(0.52, 0.66), rng.uniform(0.75, 1.0), rng.uniform(0.6, 0.9))
    torso = _bgr(rng.uniform(0, 1), rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.8))
    skin = _bgr(rng.uniform(0.04, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.95))
    hair = _bgr(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.8), rng.uniform(0.05, 0.35))
    t_arm, t_leg = max(2, round(0.042 * height)), max(2, round(0.055 * height))
    jr = max(1.2, 0.022 * height)  # joint disc radius

    # back to front: legs, torso, arms, head, joints, left-side markers
    for h, k, a, c in ((L_HIP, L_KNE, L_ANK, left_leg), (R_HIP, R_KNE, R_ANK, right_leg)):
        pen.line(kp[h], kp[k], c, t_leg)
        pen.line(kp[k], kp[a], c, max(2, t_leg - 1))
    pelvis_l, pelvis_r = kp[L_HIP] + (kp[L_HIP] - kp[R_HIP]) * 0.3, kp[R_HIP] + (kp[R_HIP] - kp[L_HIP]) * 0.3
    pen.poly(np.stack([kp[L_SHO], kp[R_SHO], pelvis_r, pelvis_l]), torso)
    pen.line(neck, hc, skin, max(2, round(0.5 * r)))
    for s, e, w, c in ((L_SHO, L_ELB, L_WRI, left_arm), (R_SHO, R_ELB, R_WRI, right_arm)):
        pen.line(kp[s], kp[e], c, t_arm)
        pen.line(kp[e], kp[w], c, max(2, t_arm - 1))
    up = rot @ _rot(pose["head_angle"]) @ np.array([0.0, -1.0])
    ang = math.degrees(theta + pose["head_angle"])
    pen.ellipse(hc + 0.12 * r * up, (0.86 * r, 0.98 * r), ang, hair)
    pen.ellipse(hc - 0.06 * r * up, (0.76 * r, 0.86 * r), ang, skin)
    er = max(1.0, 0.14 * r)
    pen.disc(kp[L_EAR], 1.3 * er, _dark(skin, 0.7))
    pen.disc(kp[R_EAR], 1.3 * er, _dark(skin, 0.7))
    pen.disc(kp[L_EYE], er, (25, 25, 25))
    pen.disc(kp[R_EYE], er, (25, 25, 25))
    pen.disc(kp[NOSE], er, (40, 40, 170))
    for ids, c in (((L_SHO, L_ELB), left_arm), ((R_SHO, R_ELB), right_arm), ((L_HIP, L_KNE), left_leg),
                   ((R_HIP, R_KNE), right_leg)):
        for j in ids:
            pen.disc(kp[j], jr, _dark(c, 0.55))
    for j, c in ((L_WRI, left_arm), (R_WRI, right_arm), (L_ANK, left_leg), (R_ANK, right_leg)):
        pen.disc(kp[j], 1.4 * jr, _dark(c, 0.7))
    m = max(1.0, 0.35 * t_arm)
    for a, b in ((L_SHO, L_ELB), (L_HIP, L_KNE)):
        c = (kp[a] + kp[b]) / 2
        pen.poly(c + np.array([[-m, -m], [m, -m], [m, m], [-m, m]]) @ rot.T, (255, 255, 255))
    return kp


@lru_cache(maxsize=4)
def _noise_tile(h: int, w: int) -> np.ndarray:
    """(2h, 2w, 1) float32 standard normal pixel noise, fixed (seed 0); images take random crops of it."""
    return np.random.default_rng(0).standard_normal((2 * h, 2 * w, 1), dtype=np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 texture: colour gradient + smooth noise blobs + optional stripes + pixel noise + muted shapes."""
    gh, gw = int(rng.integers(2, 12)), int(rng.integers(2, 12))
    a = rng.uniform(0, 2 * math.pi)
    gy, gx = np.mgrid[0:gh, 0:gw] / np.array([max(gh - 1, 1), max(gw - 1, 1)])[:, None, None]
    g = math.cos(a) * gx + math.sin(a) * gy
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    c0, c1 = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    low = c0 + (c1 - c0) * g[..., None] + rng.uniform(-1, 1, (gh, gw, 3)) * rng.uniform(10, 50)
    # cubic upsampling of uint8 is ~20x faster than of float32 in OpenCV
    img = cv2.resize(np.clip(low, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    if rng.random() < 0.5:  # stripes sin(fx x + fy y + phase), as a sum of two outer products
        b, period, phase = rng.uniform(0, math.pi), rng.uniform(6, 40), rng.uniform(0, 2 * math.pi)
        fx, fy = 2 * math.pi / period * math.cos(b), 2 * math.pi / period * math.sin(b)
        ax = np.arange(w, dtype=np.float32) * np.float32(fx) + np.float32(phase)
        ay = np.arange(h, dtype=np.float32) * np.float32(fy)
        s = np.outer(np.cos(ay), np.sin(ax)) + np.outer(np.sin(ay), np.cos(ax))
        img += s[..., None] * rng.uniform(-40, 40, 3).astype(np.float32)
    oy, ox = int(rng.integers(0, h)), int(rng.integers(0, w))
    img += _noise_tile(h, w)[oy:oy + h, ox:ox + w] * np.float32(rng.uniform(0, 6))
    out = cv2.convertScaleAbs(img)  # saturating float -> uint8
    for _ in range(int(rng.integers(0, 4))):  # muted distractors
        c = _bgr(rng.uniform(0, 1), rng.uniform(0, 0.25), rng.uniform(0.2, 0.9))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        sx, sy = int(rng.integers(5, w // 3)), int(rng.integers(5, h // 3))
        if rng.random() < 0.5:
            cv2.rectangle(out, (x, y), (x + sx, y + sy), c, -1)
        else:
            cv2.ellipse(out, (x, y), (sx // 2, sy // 2), float(rng.uniform(0, 180)), 0, 360, c, -1, cv2.LINE_AA)
    return out


def _peek(rng: np.random.Generator, kp: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pelvis position that puts every keypoint just outside one image border while the body pokes in.

    kp: (17, 2) keypoints relative to the pelvis. The keypoint nearest the border ends 0.5 px outside it,
    so the disc or limb drawn around it still covers border pixels: an instance with num_keypoints == 0.
    """
    side, m = int(rng.integers(0, 4)), 0.5
    x, y = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    if side == 0:
        return np.array([-m - kp[:, 0].max(), y])
    if side == 1:
        return np.array([w - 1 + m - kp[:, 0].min(), y])
    if side == 2:
        return np.array([x, -m - kp[:, 1].max()])
    return np.array([x, h - 1 + m - kp[:, 1].min()])


def _render_image(rng: np.random.Generator, w: int, h: int, max_people: int) -> tuple[np.ndarray, list[dict]]:
    """One image and its instances: keypoints (17, 3), bbox [x, y, w, h], area (see the module docstring)."""
    img = _background(rng, h, w)
    owner = np.zeros((h, w), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    pen = _Pen(img, mask)
    n = int(rng.integers(1, max_people + 1))
    heights = np.sort(np.exp(rng.uniform(math.log(40), math.log(220), n)))  # small (far) first, big drawn last
    people, placed = [], []
    for i, height in enumerate(heights):
        pose = _pose(rng)
        theta = rng.normal(0, 8) * math.pi / 180 if rng.random() < 0.92 else rng.uniform(-math.pi, math.pi)
        if rng.random() < PEEK_PROB:
            pelvis = _peek(rng, pose["kp"] @ _rot(theta).T * height, w, h)
        elif i > 0 and rng.random() < 0.3:  # crowd: stand near an earlier figure, to overlap it
            pelvis = placed[int(rng.integers(0, len(placed)))] + rng.normal(0, 0.35, 2) * height
        elif rng.random() < 0.75:
            pelvis = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.25, 0.85) * h])
        else:  # anywhere, often truncated by a border
            pelvis = np.array([rng.uniform(-0.25, 1.25) * w, rng.uniform(-0.2, 1.3) * h])
        placed.append(pelvis)
        mask[:] = 0
        kp = _draw_figure(pen, rng, pose, float(height), theta, pelvis)
        area = cv2.countNonZero(mask)
        if area == 0:
            continue
        x, y, bw, bh = cv2.boundingRect(mask)  # tight box of the non-zero pixels
        roi = owner[y:y + bh, x:x + bw]
        roi[mask[y:y + bh, x:x + bw] > 0] = i + 1
        bbox = [float(x), float(y), float(bw), float(bh)]
        people.append({"index": i + 1, "kp": kp, "bbox": bbox, "area": area})
    visible_px = np.bincount(owner.ravel(), minlength=n + 1)
    instances = []
    for p in people:
        if visible_px[p["index"]] == 0:
            continue  # fully hidden by later figures: not annotated
        kp = p["kp"]
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= w - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= h - 1)
        xi = np.clip(np.rint(kp[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.rint(kp[:, 1]).astype(int), 0, h - 1)
        v = np.where(inside, np.where(owner[yi, xi] == p["index"], 2, 1), 0)
        kpv = np.concatenate([np.where(v[:, None] > 0, np.round(kp, 2), 0.0), v[:, None]], axis=1)
        instances.append({"keypoints": kpv, "bbox": p["bbox"], "area": p["area"]})
    return img, instances


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two [x, y, w, h] boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)


def _jitter(rng: np.random.Generator, box: np.ndarray, s: float, w: int, h: int) -> np.ndarray:
    cx, cy = box[0] + box[2] / 2 + rng.normal(0, s) * box[2], box[1] + box[3] / 2 + rng.normal(0, s) * box[3]
    bw, bh = box[2] * math.exp(rng.normal(0, s)), box[3] * math.exp(rng.normal(0, s))
    x0, y0 = max(cx - bw / 2, 0.0), max(cy - bh / 2, 0.0)
    x1, y1 = min(cx + bw / 2, float(w)), min(cy + bh / 2, float(h))
    return np.array([x0, y0, max(x1 - x0, 1.0), max(y1 - y0, 1.0)])


def _detections(rng: np.random.Generator, image_id: int, boxes: list[list[float]], w: int, h: int) -> list[dict]:
    """Simulated person detector output for one image: jittered true boxes, duplicates, false positives."""
    dets = []

    def add(box: np.ndarray, score: float) -> None:
        dets.append({"image_id": image_id, "category_id": 1, "bbox": [round(float(c), 2) for c in box],
                     "score": round(min(max(score, 1e-4), 1.0), 4)})

    for gt in boxes:
        g = np.asarray(gt, dtype=float)
        box = _jitter(rng, g, rng.uniform(0.025, 0.07), w, h)
        q = (_iou(box, g) - 0.5) / 0.45
        score = 0.1 + 0.88 * min(max(q, 0.0), 1.0) + rng.normal(0, 0.04)
        add(box, score)
        if rng.random() < 0.2:
            add(_jitter(rng, g, rng.uniform(0.05, 0.12), w, h), score * rng.uniform(0.3, 0.9))
    for _ in range(int(rng.poisson(0.3 * max(len(boxes), 1)))):
        bh = rng.uniform(30, 0.8 * h)
        bw = bh * rng.uniform(0.3, 0.8)
        x, y = rng.uniform(0, w - bw * 0.5), rng.uniform(0, h - bh * 0.5)
        add(np.array([x, y, min(bw, w - x), min(bh, h - y)]), rng.uniform(0.01, 0.4))
    return dets


def _categories() -> list[dict]:
    return [{
        "id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO.keypoint_names),
        "skeleton": [[a + 1, b + 1] for a, b in COCO.skeleton],
    }]


#: Default size of the synthetic dataset (the quickstart's): train and val images.
SYNTHETIC_TRAIN_IMAGES = 800
SYNTHETIC_VAL_IMAGES = 200


def _write_json(obj: Any, path: Path) -> None:
    with path.open("w") as f:
        json.dump(obj, f, separators=(",", ":"))


def generate_synthetic_coco(
    out_dir: str | Path,
    num_train: int = SYNTHETIC_TRAIN_IMAGES,
    num_val: int = SYNTHETIC_VAL_IMAGES,
    seed: int = 0,
    image_size: tuple[int, int] = (320, 256),
    max_people: int = 4,
) -> dict:
    """Write a synthetic COCO-format keypoint dataset under ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: dataset root (created; existing files of the same names are overwritten).
        num_train / num_val: number of images per split.
        seed: non-negative int; the same seed gives byte-identical files.
        image_size: (width, height) in pixels.
        max_people: figures per image are drawn uniformly from 1..max_people (fewer are annotated when a
            figure ends up entirely outside the image or hidden).

    Returns:
        summary: {"out_dir", "images", "instances", "keypoints_labelled", "detections", "seconds", and per
        split "train"/"val": {"images", "instances", "keypoints_labelled", "empty_instances"}}.
    """
    w, h = (int(s) for s in image_size)
    for name, value, low in (("num_train", num_train, 0), ("num_val", num_val, 0), ("seed", seed, 0),
                             ("max_people", max_people, 1), ("image_size[0]", w, 16), ("image_size[1]", h, 16)):
        if int(value) < low:
            raise UserError(f"generate_synthetic_coco: {name}={value} must be >= {low}")
    if max_people > 254:
        raise UserError(f"generate_synthetic_coco: max_people={max_people} must be <= 254")
    t0 = time.perf_counter()
    root = Path(out_dir)
    params = _params(num_train, num_val, seed, (w, h), max_people)
    (root / PARAMS_FILE).unlink(missing_ok=True)  # an interrupted run leaves no record of finished data
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "person_detection_results").mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out_dir": str(root)}
    detections: list[dict] = []
    ann_id = 0
    for split, count in (("train", num_train), ("val", num_val)):
        img_dir = root / f"{split}2017"
        img_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            rng = np.random.default_rng([seed, _SPLIT_CODE[split], i])
            image_id = _ID_OFFSET[split] + i + 1
            file_name = f"{image_id:012d}.jpg"
            img, instances = _render_image(rng, w, h, max_people)
            if not cv2.imwrite(str(img_dir / file_name), img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
                raise OSError(f"generate_synthetic_coco: could not write {img_dir / file_name}")
            images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
            for inst in instances:
                ann_id += 1
                kpv = inst["keypoints"]
                annotations.append({
                    "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                    "keypoints": [float(c) if j % 3 < 2 else int(c) for j, c in enumerate(kpv.ravel())],
                    "num_keypoints": int(np.count_nonzero(kpv[:, 2] > 0)),
                    "bbox": inst["bbox"], "area": float(inst["area"]),
                })
            if split == "val":
                detections += _detections(rng, image_id, [inst["bbox"] for inst in instances], w, h)
        info = {"description": f"rspose synthetic keypoints ({split})", "version": "1", "seed": int(seed)}
        _write_json({"info": info, "licenses": [], "images": images, "annotations": annotations,
                     "categories": _categories()}, root / "annotations" / f"person_keypoints_{split}2017.json")
        summary[split] = {
            "images": len(images), "instances": len(annotations),
            "keypoints_labelled": sum(a["num_keypoints"] for a in annotations),
            "empty_instances": sum(a["num_keypoints"] == 0 for a in annotations),
        }
    _write_json(detections, root / "person_detection_results" / DET_FILE)
    for key in ("images", "instances", "keypoints_labelled"):
        summary[key] = summary["train"][key] + summary["val"][key]
    summary["detections"] = len(detections)
    _write_json({"generator": "rspose.data.synthetic", "params": params}, root / PARAMS_FILE)
    summary["seconds"] = time.perf_counter() - t0
    return summary


def _params(num_train: int, num_val: int, seed: int, image_size: tuple[int, int], max_people: int) -> dict:
    return {"num_train": int(num_train), "num_val": int(num_val), "seed": int(seed),
            "image_size": [int(image_size[0]), int(image_size[1])], "max_people": int(max_people)}


def ensure_synthetic_coco(
    out_dir: str | Path,
    num_train: int = SYNTHETIC_TRAIN_IMAGES,
    num_val: int = SYNTHETIC_VAL_IMAGES,
    seed: int = 0,
    image_size: tuple[int, int] = (320, 256),
    max_people: int = 4,
) -> bool:
    """Make ``out_dir`` hold the synthetic dataset of exactly these parameters; returns True if it was (re)written.

    Existing data is reused only when its ``rspose_synthetic.json`` records the same parameters; data of other
    parameters (or an interrupted run: no record, but rspose's annotation files) is regenerated with a warning.
    A folder that holds a COCO-layout dataset rspose did not generate is an error: it is never overwritten.
    """
    root = Path(out_dir)
    wanted = _params(num_train, num_val, seed, image_size, max_people)
    record, train_ann = root / PARAMS_FILE, root / "annotations" / "person_keypoints_train2017.json"
    if record.is_file():
        try:
            found = json.loads(record.read_text()).get("params")
        except (OSError, ValueError, AttributeError):
            found = None
        if found == wanted:
            return False
        warnings.warn(
            f"{record}: synthetic data was generated with {found}, requested {wanted}: regenerating {root}",
            stacklevel=2,
        )
    elif train_ann.exists():
        try:
            description = json.loads(train_ann.read_text())["info"]["description"]
        except (OSError, ValueError, KeyError, TypeError):
            description = ""
        if not str(description).startswith("rspose synthetic"):
            raise UserError(
                f"data.dataset.init_args.root: {root} holds {train_ann.relative_to(root)} but no {PARAMS_FILE}, so it "
                "is not synthetic data written by rspose; it is not overwritten: read it with rspose.datasets.COCO or "
                "COCOFormat, or give the synthetic data another root"
            )
        warnings.warn(f"{root}: synthetic data without {PARAMS_FILE} (interrupted or older): regenerating", stacklevel=2)
    generate_synthetic_coco(root, num_train, num_val, seed, image_size, max_people)
    return True


def main(argv: list[str] | None = None) -> int:
    """``rspose synth --out DIR --images N --val-images M --seed S``: write the synthetic dataset."""
    parser = ArgumentParser(prog="rspose synth", description="Write a synthetic COCO-format keypoint dataset.")
    parser.add_argument("--out", required=True, help="dataset root to write (mmpose/COCO layout)")
    parser.add_argument("--images", type=int, default=SYNTHETIC_TRAIN_IMAGES, help="number of train images (default %(default)s)")
    parser.add_argument("--val-images", type=int, default=SYNTHETIC_VAL_IMAGES, help="number of val images (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--max-people", type=int, default=4, help="most figures per image (default 4)")
    parser.add_argument("--image-size", type=int, nargs=2, default=(320, 256), metavar=("W", "H"),
                        help="image width and height (default 320 256)")
    args = parser.parse_args(argv)
    s = generate_synthetic_coco(args.out, args.images, args.val_images, args.seed, tuple(args.image_size),
                                args.max_people)
    rate = s["images"] / max(s["seconds"], 1e-9)
    print(f"wrote {s['train']['images']} train / {s['val']['images']} val images to {s['out_dir']}: "
          f"{s['instances']} instances ({s['train']['empty_instances'] + s['val']['empty_instances']} without "
          f"keypoints), {s['keypoints_labelled']} labelled keypoints, {s['detections']} val detections; "
          f"{s['seconds']:.1f} s ({rate:.0f} images/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
