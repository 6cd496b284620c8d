"""MPII PCKh as a torchmetrics Metric.

A joint is correct when ||pred - gt|| / head_size <= thr (0.5; Mean@0.1 uses 0.1), counted over the
labelled joints. head_size = 0.6 x the diagonal of the annotated head box (``headboxes_src`` of
mpii_gt_val.mat, the MPII evaluation's SC_BIAS). Reported (fractions in [0, 1], not percent):
Head (head_top), Shoulder, Elbow, Wrist, Hip, Knee, Ankle (mean of the left and right joint), Mean (all
joints but pelvis and thorax, weighted by their counts, i.e. correct / labelled) and Mean@0.1.

Head size, in order of precedence: ``head_sizes`` passed to ``update``; the head boxes given to the
constructor, indexed by instance id; otherwise an APPROXIMATION (there are no head boxes in the test
fixture): the GT head segment length ||head_top - upper_neck||, which is what 0.6 x head-box diagonal
stands for in the PCKh definition (Andriluka et al. 2014). It tends to be slightly larger than
0.6 x diagonal, so approximate numbers are a little optimistic. An instance without both joints labelled
gets no head size and is left out (all its joints count as unlabelled).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from rspose.data.specs import HEAD_SIZE_FACTOR, MPII

_J = {name: i for i, name in enumerate(MPII.keypoint_names)}
GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (_J["head_top"],),
    "Shoulder": (_J["left_shoulder"], _J["right_shoulder"]),
    "Elbow": (_J["left_elbow"], _J["right_elbow"]),
    "Wrist": (_J["left_wrist"], _J["right_wrist"]),
    "Hip": (_J["left_hip"], _J["right_hip"]),
    "Knee": (_J["left_knee"], _J["right_knee"]),
    "Ankle": (_J["left_ankle"], _J["right_ankle"]),
}
EXCLUDED_FROM_MEAN = (_J["pelvis"], _J["thorax"])


def load_head_sizes(head_boxes: str | Path | Sequence | np.ndarray) -> np.ndarray:
    """Head sizes (M,) = 0.6 x diagonal, from mpii_gt_val.mat (``headboxes_src``, (2, 2, M)) or from an
    (M, 2, 2) array of [[x1, y1], [x2, y2]] boxes in annotation (instance id) order."""
    if isinstance(head_boxes, (str, Path)):
        from scipy.io import loadmat

        path = Path(head_boxes)
        if not path.is_file():
            raise FileNotFoundError(f"PCKhAccuracy: head box file {path} does not exist")
        mat = loadmat(str(path))
        if "headboxes_src" not in mat:
            raise ValueError(f"{path}: no 'headboxes_src' key (found {sorted(k for k in mat if not k.startswith('_'))})")
        boxes = np.asarray(mat["headboxes_src"], dtype=np.float64)
        if boxes.ndim != 3 or boxes.shape[:2] != (2, 2):
            raise ValueError(f"{path}: headboxes_src has shape {boxes.shape}, expected (2, 2, M)")
        boxes = boxes.transpose(2, 0, 1)
    else:
        boxes = np.asarray(head_boxes, dtype=np.float64)
        if boxes.ndim != 3 or boxes.shape[1:] != (2, 2):
            raise ValueError(f"PCKhAccuracy: head_boxes has shape {boxes.shape}, expected (M, 2, 2)")
    return HEAD_SIZE_FACTOR * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=-1)


def approximate_head_sizes(keypoints_gt: Tensor, keypoints_visible: Tensor) -> Tensor:
    """(N, 16, 2) GT joints, (N, 16) visibility -> (N,) ||head_top - upper_neck|| (NaN if either is unlabelled)."""
    top, neck = _J["head_top"], _J["upper_neck"]
    size = torch.linalg.vector_norm(keypoints_gt[:, top] - keypoints_gt[:, neck], dim=-1)
    ok = (keypoints_visible[:, top] > 0) & (keypoints_visible[:, neck] > 0) & (size > 0)
    return torch.where(ok, size, torch.full_like(size, math.nan))


class PCKhAccuracy(Metric):
    """MPII PCKh (see the module docstring).

    Args:
        head_boxes: path to mpii_gt_val.mat, or (M, 2, 2) head boxes indexed by instance id (annotation
            order of mpii_val.json); None = use ``head_sizes`` from update, else the approximation.
        thr: PCKh threshold (fraction of the head size).

    update(instance_ids (N,), keypoints_pred (N, 16, 2), keypoints_gt (N, 16, 2), keypoints_visible (N, 16),
    head_sizes (N,) or None); compute() -> {Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean, Mean@0.1}
    as python floats in [0, 1] (NaN for a group without labelled joints).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, head_boxes: str | Path | Sequence | None = None, thr: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.head_size_table = None if head_boxes is None else torch.from_numpy(load_head_sizes(head_boxes))
        self.thr = float(thr)
        for name in ("instance_ids", "norm_dist", "visible"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        instance_ids: Tensor,
        keypoints_pred: Tensor,
        keypoints_gt: Tensor,
        keypoints_visible: Tensor,
        head_sizes: Tensor | None = None,
    ) -> None:
        k = MPII.num_keypoints
        pred = torch.as_tensor(keypoints_pred).detach().to(torch.float64)
        gt = torch.as_tensor(keypoints_gt).detach().to(torch.float64).to(pred.device)
        vis = torch.as_tensor(keypoints_visible).detach().to(pred.device) > 0
        ids = torch.as_tensor(instance_ids).detach().to(device=pred.device, dtype=torch.int64)
        n = pred.shape[0]
        for name, t, shape in (("keypoints_pred", pred, (n, k, 2)), ("keypoints_gt", gt, (n, k, 2)),
                               ("keypoints_visible", vis, (n, k)), ("instance_ids", ids, (n,))):
            if tuple(t.shape) != shape:
                raise ValueError(f"PCKhAccuracy.update: {name} has shape {tuple(t.shape)}, expected {shape} (MPII K = 16)")
        if not bool(torch.isfinite(pred).all()):
            raise ValueError("PCKhAccuracy.update: keypoints_pred has NaN or inf values")
        if head_sizes is not None:
            size = torch.as_tensor(head_sizes).detach().to(device=pred.device, dtype=torch.float64).reshape(-1)
            if size.shape != (n,):
                raise ValueError(f"PCKhAccuracy.update: head_sizes has shape {tuple(size.shape)}, expected ({n},)")
        elif self.head_size_table is not None:
            if n and (int(ids.min()) < 0 or int(ids.max()) >= self.head_size_table.shape[0]):
                raise ValueError(
                    f"PCKhAccuracy.update: instance ids {int(ids.min())}..{int(ids.max())} are outside the "
                    f"{self.head_size_table.shape[0]} head boxes"
                )
            size = self.head_size_table.to(pred.device)[ids]
        else:
            size = approximate_head_sizes(gt, vis)
        ok = torch.isfinite(size) & (size > 0)
        dist = torch.linalg.vector_norm(pred - gt, dim=-1) / torch.where(ok, size, torch.ones_like(size))[:, None]
        self.instance_ids.append(ids.to(self.device))
        self.norm_dist.append(dist.to(self.device))
        self.visible.append((vis & ok[:, None]).to(self.device))

    def compute(self) -> dict[str, float]:
        if isinstance(self.instance_ids, list) and not self.instance_ids:
            return {name: math.nan for name in (*GROUPS, "Mean", "Mean@0.1")}
        ids = dim_zero_cat(self.instance_ids).cpu().numpy()
        dist = dim_zero_cat(self.norm_dist).cpu().numpy()
        vis = dim_zero_cat(self.visible).cpu().numpy()
        _, first = np.unique(ids, return_index=True)  # DistributedSampler padding
        dist, vis = dist[first], vis[first]
        count = vis.sum(0)

        def pckh(thr: float) -> tuple[np.ndarray, np.ndarray]:
            correct = ((dist <= thr) & vis).sum(0)
            with np.errstate(invalid="ignore", divide="ignore"):
                return correct / count, correct

        per_joint, correct = pckh(self.thr)
        out = {name: float(np.mean(per_joint[list(idx)])) for name, idx in GROUPS.items()}
        mask = np.ones(dist.shape[1], dtype=bool)
        mask[list(EXCLUDED_FROM_MEAN)] = False
        total = count[mask].sum()
        out["Mean"] = float(correct[mask].sum() / total) if total else math.nan
        correct01 = pckh(0.1)[1]
        out["Mean@0.1"] = float(correct01[mask].sum() / total) if total else math.nan
        return out
