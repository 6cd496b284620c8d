"""DDP: 2 CPU processes (gloo, 127.0.0.1) with DistributedSampler padding give exactly the single-process result.

The workers are started by torch.multiprocessing with the "fork" start method: "spawn" re-imports torch,
torchmetrics and pycocotools in every child (about 30 s on a 2-core machine), fork takes well under a second.
Each worker sets one intra-op thread first, as DataLoader workers do.
"""

from __future__ import annotations

import json
import math
import socket
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from rspose.data.specs import COCO
from rspose.metrics import OKSMeanAP, PCKhAccuracy

try:
    from test_metrics_coco_ap import COCO_DET, COCO_GT, _load, _perturbed_predictions
except ImportError:  # tests/ imported as a package
    from tests.test_metrics_coco_ap import COCO_DET, COCO_GT, _load, _perturbed_predictions

WORLD = 2
TIMEOUT_S = 120


def _dataset() -> dict[str, torch.Tensor]:
    return _perturbed_predictions(_load(COCO_GT), _load(COCO_DET), seed=3)


def _pckh_data(n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(n, 16, 2, generator=g, dtype=torch.float64) * 200
    return dict(
        instance_ids=torch.arange(n),
        keypoints_pred=gt + torch.randn(n, 16, 2, generator=g, dtype=torch.float64) * 8,
        keypoints_gt=gt,
        keypoints_visible=(torch.rand(n, 16, generator=g) > 0.1).float(),
        head_sizes=torch.full((n,), 30.0, dtype=torch.float64),
    )


def _run(indices_per_batch: list[list[int]], prefix: str | None = None) -> dict[str, dict[str, float]]:
    data = _dataset()
    pck = _pckh_data(len(data["image_ids"]))
    metric, pckh = OKSMeanAP(COCO_GT, spec=COCO, diagnostics=True, outfile_prefix=prefix), PCKhAccuracy()
    for idx in indices_per_batch:
        metric.update(**{k: v[idx] for k, v in data.items()})
        pckh.update(**{k: v[idx] for k, v in pck.items()})
    return {"ap": metric.compute(), "pckh": pckh.compute()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    try:
        n = len(_dataset()["image_ids"])
        indices = list(DistributedSampler(range(n), num_replicas=WORLD, rank=rank, shuffle=True, seed=0))
        batches = [indices[i : i + 16] for i in range(0, len(indices), 16)]
        out = _run(batches, prefix=str(Path(out_dir) / f"eval{rank}"))
        out["n_seen"] = len(indices)
        with (Path(out_dir) / f"rank{rank}.json").open("w") as f:
            json.dump(out, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_two_process_gloo_equals_single_process(tmp_path):
    n = len(_dataset()["image_ids"])
    assert n % WORLD == 1  # DistributedSampler will pad with a repeated sample
    ctx = mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False,
                             start_method="fork")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=1):
            assert time.monotonic() < deadline, "DDP workers did not finish in time"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.json", "rank1.json"]  # compute() wrote nothing
    single = _run([list(range(n))])
    assert "AP_oracle" in single["ap"] and "kpt_error" in single["ap"]
    for rank in range(WORLD):
        got = _load(tmp_path / f"rank{rank}.json")
        assert got["n_seen"] * WORLD == n + 1
        for group in ("ap", "pckh"):
            assert set(got[group]) == set(single[group])
            for key, value in single[group].items():
                assert _same(got[group][key], value), (group, key, got[group][key], value)
    assert 0.0 < single["ap"]["AP"] < 1.0 and np.isfinite(single["ap"]["spearman"])
