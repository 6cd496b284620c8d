"""Cost of OKSMeanAP's own work (dedup, rescoring, OKS-NMS, correlations) against COCOeval, at COCO-val scale.

Generates a synthetic COCO-val-sized evaluation (5,000 images, 6,352 keypoint GT instances plus 4,652
GTs without keypoints, 104,125 predicted instances plus 7 DistributedSampler duplicates) and runs
``rspose.metrics.evaluate_predictions`` once per backend (pycocotools, and faster-coco-eval when installed),
timing each step. Goal: everything but COCOeval <= 25% of COCOeval's time. The faster-coco-eval backend is
only worth adopting if every number is identical.

    PYTHONPATH=. .venv/bin/python benchmarks/metric.py [--json] [--threads 1] [--seed 0] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time

import numpy as np
import torch

from rspose.data.specs import COCO
from rspose.metrics.coco_ap import KeypointPredictions, evaluate_predictions
from rspose.metrics.coco_eval import load_ground_truth

N_IMAGES, N_PERSON_IMAGES, N_GT, N_GT_NO_KPT, N_PRED, N_PAD = 5000, 2693, 6352, 4652, 104_125, 7
OWN_STEPS = ("dedup", "rescore", "nms", "correlations", "results")


def make_gt(rng: np.random.Generator) -> dict:
    """A COCO-format GT dict of COCO-val size (boxes, areas, 17 keypoints, some crowd / unlabelled)."""
    images = [{"id": i + 1, "width": 640, "height": 480, "file_name": f"{i + 1:012d}.jpg"} for i in range(N_IMAGES)]
    person_images = rng.choice(N_IMAGES, N_PERSON_IMAGES, replace=False) + 1
    img = np.concatenate([person_images, rng.choice(person_images, N_GT + N_GT_NO_KPT - N_PERSON_IMAGES)])
    n = img.size
    w = np.exp(rng.normal(4.3, 0.8, n)).clip(8, 600)
    h = (w * rng.uniform(1.2, 2.8, n)).clip(8, 470)
    x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
    kx = x[:, None] + rng.uniform(0, 1, (n, 17)) * w[:, None]
    ky = y[:, None] + rng.uniform(0, 1, (n, 17)) * h[:, None]
    v = np.where(rng.uniform(size=(n, 17)) < 0.7, 2, 0)
    v[N_GT:] = 0  # GTs without keypoints (small people / crowd regions)
    kx, ky = kx * (v > 0), ky * (v > 0)
    crowd = np.zeros(n, dtype=int)
    crowd[N_GT:][rng.uniform(size=N_GT_NO_KPT) < 0.02] = 1
    kp = np.stack([kx, ky, v], -1).reshape(n, 51)
    anns = [
        {"id": j + 1, "image_id": int(img[j]), "category_id": 1, "iscrowd": int(crowd[j]),
         "bbox": [float(x[j]), float(y[j]), float(w[j]), float(h[j])], "area": float(0.6 * w[j] * h[j]),
         "num_keypoints": int((v[j] > 0).sum()), "keypoints": kp[j].tolist()}
        for j in range(n)
    ]
    cats = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO.keypoint_names),
             "skeleton": [[a + 1, b + 1] for a, b in COCO.skeleton]}]
    return {"images": images, "annotations": anns, "categories": cats}


def make_predictions(gt: dict, rng: np.random.Generator) -> KeypointPredictions:
    """104,125 detections: noisy copies of labelled GTs (several per person, so NMS works), the rest background."""
    anns = [a for a in gt["annotations"] if a["num_keypoints"] > 0]
    g_kp = np.asarray([a["keypoints"] for a in anns]).reshape(-1, 17, 3)
    g_box = np.asarray([a["bbox"] for a in anns])
    g_img = np.asarray([a["image_id"] for a in anns])
    n_true = 3 * len(anns)
    src = rng.integers(0, len(anns), n_true)
    scale = np.sqrt(g_box[src, 2] * g_box[src, 3])[:, None, None]
    fill = g_box[src, None, :2] + rng.uniform(0, 1, (n_true, 17, 2)) * g_box[src, None, 2:]
    base = np.where(g_kp[src, :, 2:] > 0, g_kp[src, :, :2], fill)
    true_kp = base + rng.normal(0, 1, (n_true, 17, 2)) * scale * rng.choice([0.01, 0.04, 0.15], (n_true, 1, 1))
    n_bg = N_PRED - n_true
    bg_img = rng.integers(1, N_IMAGES + 1, n_bg)
    bw = np.exp(rng.normal(3.5, 0.9, n_bg)).clip(8, 600)
    bh = bw * rng.uniform(1, 2.5, n_bg)
    bx, by = rng.uniform(0, 640, n_bg), rng.uniform(0, 480, n_bg)
    bg_kp = np.stack([bx, by], -1)[:, None] + rng.uniform(0, 1, (n_bg, 17, 2)) * np.stack([bw, bh], -1)[:, None]
    keypoints = np.concatenate([true_kp, bg_kp])
    image_ids = np.concatenate([g_img[src], bg_img])
    areas = np.concatenate([g_box[src, 2] * g_box[src, 3], bw * bh])
    kscores = 1 / (1 + np.exp(-rng.normal(0.5, 1.5, (N_PRED, 17))))
    bscores = np.concatenate([rng.uniform(0.3, 1, n_true), rng.uniform(0, 0.6, n_bg)])
    ids = rng.permutation(N_PRED)
    pad = rng.choice(N_PRED, N_PAD, replace=False)  # DistributedSampler padding: repeated samples
    cat = lambda a: np.concatenate([a, a[pad]])  # noqa: E731
    return KeypointPredictions(cat(ids), cat(image_ids), cat(keypoints), cat(kscores), cat(bscores), cat(areas))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="runs per backend; the best time of each step is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    gt_dict = make_gt(rng)
    preds = make_predictions(gt_dict, rng)
    gt = load_ground_truth(gt_dict)
    per_image = np.bincount(preds.image_ids)
    print(f"images {N_IMAGES}, GT {len(gt_dict['annotations'])} ({int(gt.valid.sum())} non-ignored), "
          f"predictions {preds.image_ids.size} (max {per_image.max()} per image)")

    backends = ["pycocotools"]
    if importlib.util.find_spec("faster_coco_eval") is not None:
        backends.append("faster_coco_eval")
    runs: dict[str, dict] = {}
    for _ in range(args.repeats):  # backends take turns; each step keeps its best time (the machine is shared)
        for backend in backends:
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            metrics, _ = evaluate_predictions(preds, gt, np.asarray(COCO.sigmas), backend=backend, timings=timings)
            timings["total"] = time.perf_counter() - t0
            run = runs.setdefault(backend, {"timings": timings, "metrics": metrics})
            run["timings"] = {k: min(v, run["timings"][k]) for k, v in timings.items()}

    ref = runs["pycocotools"]
    rows = []
    for backend, run in runs.items():
        t = run["timings"]
        own = sum(t[s] for s in OWN_STEPS)
        same = all(
            (math.isnan(v) and math.isnan(ref["metrics"][k])) or v == ref["metrics"][k]
            for k, v in run["metrics"].items()
        )
        rows.append({"backend": backend, **{s: t[s] for s in (*OWN_STEPS, "cocoeval")},
                     "own": own, "own_pct_of_cocoeval": 100 * own / t["cocoeval"], "total": t["total"],
                     "AP": run["metrics"]["AP"], "identical_to_pycocotools": same})
    cols = ("backend", *OWN_STEPS, "own", "cocoeval", "own_pct_of_cocoeval", "total", "AP",
            "identical_to_pycocotools")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.3f}" if isinstance(r[c], float) and c != "own_pct_of_cocoeval" else
                 (f"{r[c]:.1f}%" if c == "own_pct_of_cocoeval" else str(r[c])) for c in cols]
        print("| " + " | ".join(cells) + " |")
    print("seconds (best of --repeats); own = everything but COCOeval: dedup + rescore + nms + correlations + "
          "results (the list of result dicts); cocoeval = loadRes + evaluate + accumulate + summarize; "
          "goal own <= 25% of cocoeval")
    for k in ("AP", "AP50", "AR", "spearman", "spearman_keypoint", "spearman_before_nms"):
        print(f"  {k}: {ref['metrics'][k]:.4f}")
    if args.json:
        print(json.dumps({"rows": rows, "metrics": ref["metrics"]}))


if __name__ == "__main__":
    main()
