"""Throughput of the top-down training pipeline against the raw cost of decoding and warping.

Prints a table: samples/s of ``TopDownDataset.__getitem__`` in training mode (read, decode, augment, warp,
MSRAHeatmap encode, normalise) on the fixture COCO instances at 256x192, single process, no DataLoader workers;
beside the rate of plain ``cv2.imread`` + ``cv2.warpAffine`` of the same crops; and their ratio (goal >= 0.75).

    PYTHONPATH=. .venv/bin/python benchmarks/data_pipeline.py [--iters 20] [--json] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from rspose.codecs import MSRAHeatmap
from rspose.data.dataset import TopDownDataset
from rspose.data.readers import read_coco
from rspose.data.specs import COCO

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "coco"


def best_rates(fns: dict, n_items: int, iters: int, repeats: int) -> dict[str, float]:
    """Items per second of each ``fn(i)``, best of ``repeats`` timed passes; the functions take turns in each
    repeat, so that load from other processes hits them alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                for i in range(n_items):
                    fn(i)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: n_items * iters / t for name, t in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default=str(FIXTURES), help="folder with test_coco.json and its images")
    parser.add_argument("--iters", type=int, default=10, help="passes over the fixture instances per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (best is kept)")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's malloc defaults")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    parser.add_argument("--profile", action="store_true", help="print the top functions of the pipeline")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    root = Path(args.fixtures)
    codec = MSRAHeatmap(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0)
    instances = read_coco(root / "test_coco.json", root, COCO.num_keypoints, codec.input_size, mode="train")
    torch.manual_seed(0)
    dataset = TopDownDataset(instances, COCO, codec, train=True, malloc_tuning=not args.no_malloc_tuning)
    files = [i.image_file for i in instances]
    size = codec.input_size
    # the raw baseline warps the very crops of the pipeline: the matrices of a twin dataset with the same seed
    torch.manual_seed(0)
    twin = TopDownDataset(instances, COCO, codec, train=True)
    widths = [cv2.imread(f).shape[1] for f in files]
    order = [0] + list(range(len(files))) * (args.iters * args.repeats)  # the pipeline's calls: warm-up, passes
    matrices = [twin.geometry(i, widths[i]).from_image for i in order]
    calls = iter(matrices)

    def raw(i: int) -> np.ndarray:
        return cv2.warpAffine(cv2.imread(files[i], cv2.IMREAD_COLOR), next(calls), size, flags=cv2.INTER_LINEAR)

    def decode_only(i: int) -> np.ndarray:
        return cv2.imread(files[i], cv2.IMREAD_COLOR)

    n = len(instances)
    dataset[0], raw(0)  # warm up (the dataset's malloc tuning, when on, applies to the whole process: raw too)
    rates = best_rates(
        {"decode_only_per_s": decode_only, "raw_imread_warp_per_s": raw, "pipeline_per_s": dataset.__getitem__},
        n,
        args.iters,
        args.repeats,
    )
    results = {
        "instances": n,
        "input_size": list(size),
        "iters": args.iters,
        "repeats": args.repeats,
        "malloc_tuning": not args.no_malloc_tuning,
        **rates,
    }
    results["ratio"] = results["pipeline_per_s"] / results["raw_imread_warp_per_s"]
    per_sample_us = {k: 1e6 / results[k] for k in ("decode_only_per_s", "raw_imread_warp_per_s", "pipeline_per_s")}

    print(
        f"top-down data pipeline, {n} fixture instances x {args.iters} passes (best of {args.repeats}), 1 thread, "
        f"input {size[0]}x{size[1]}, malloc tuning {'on' if results['malloc_tuning'] else 'off'}"
    )
    print(f"{'what':<44}{'samples/s':>12}{'us/sample':>12}")
    print(f"{'cv2.imread only':<44}{results['decode_only_per_s']:>12.1f}{per_sample_us['decode_only_per_s']:>12.0f}")
    print(
        f"{'raw: cv2.imread + cv2.warpAffine':<44}{results['raw_imread_warp_per_s']:>12.1f}"
        f"{per_sample_us['raw_imread_warp_per_s']:>12.0f}"
    )
    print(
        f"{'pipeline: TopDownDataset (train, MSRA)':<44}{results['pipeline_per_s']:>12.1f}"
        f"{per_sample_us['pipeline_per_s']:>12.0f}"
    )
    print(f"{'ratio pipeline / raw (goal >= 0.75)':<44}{results['ratio']:>12.3f}")
    if args.json:
        print(json.dumps(results))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.iters):
            for i in range(n):
                dataset[i]
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
