"""MPII Human Pose (16 keypoints, PCKh on the annotated person centre and scale)."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from rspose.data import specs
from rspose.data.readers import InstanceList, load_head_boxes, read_mpii
from rspose.datasets.base import KEY, PoseDataset, Split
from rspose.errors import UserError
from rspose.json_file import load_json
from rspose.metrics import PCKhAccuracy


class MPII(PoseDataset):
    """MPII: ``root`` (default data/mpii) holds ``annotations/mpii_{train,val}.json`` (mmpose's JSON lists),
    ``images/`` and the head boxes ``annotations/mpii_gt_val.mat``. Test = val.

    Evaluated on the annotated person centre and scale (PCKh protocol, docs/protocols.md), so it takes no person
    box files. Metric: :class:`rspose.metrics.PCKhAccuracy` (head size = 0.6 x the head-box diagonal; without the
    head-box file an approximation, with a warning), monitor val/Mean.

    Args:
        root, train_ann, val_ann, test_ann, train_img_dir, val_img_dir, test_img_dir: as
            :class:`rspose.datasets.PoseDataset`.
        head_box_file: the head boxes (mpii_gt_val.mat); None = the reference file when it exists.
    """

    default_root: ClassVar[str | None] = "data/mpii"
    files = {
        "train_ann": "annotations/mpii_train.json",
        "val_ann": "annotations/mpii_val.json",
        "test_ann": "annotations/mpii_val.json",
        "train_img_dir": "images",
        "val_img_dir": "images",
        "test_img_dir": "images",
        "head_box_file": "annotations/mpii_gt_val.mat",
    }
    keypoint_spec = specs.MPII
    monitor = "val/Mean"

    def __init__(
        self,
        root: str | None = None,
        train_ann: str | None = None,
        val_ann: str | None = None,
        test_ann: str | None = None,
        train_img_dir: str | None = None,
        val_img_dir: str | None = None,
        test_img_dir: str | None = None,
        head_box_file: str | None = None,
    ) -> None:
        super().__init__(root, train_ann, val_ann, test_ann, train_img_dir, val_img_dir, test_img_dir,
                         val_bbox_file=None, test_bbox_file=None)
        self.paths["head_box_file"] = self._resolve(head_box_file if head_box_file is not None
                                                    else self.files["head_box_file"])
        self._head_box_given = head_box_file is not None

    def read(self, split: Split, input_size: tuple[int, int], padding: float) -> InstanceList:
        """The annotated persons of ``split`` (centre and scale from the file), with head boxes for val/test when the
        head-box file exists."""
        head = self.paths["head_box_file"]
        head = head if split != "train" and head is not None and head.exists() else None
        return read_mpii(self.path(f"{split}_ann"), self.path(f"{split}_img_dir"), input_size,
                         mode="train" if split == "train" else "eval", headbox_file=head,
                         num_keypoints=self.spec.num_keypoints, padding=padding)

    def head_boxes(self) -> np.ndarray | None:
        """(N, 2, 2) head boxes [[x1, y1], [x2, y2]] of the val split, indexed by instance id (= JSON row); None (with
        a warning) when the reference file does not exist; an error when a given file does not."""
        path = self.paths["head_box_file"]
        if not path.exists():
            if self._head_box_given:
                raise FileNotFoundError(f"{KEY}.head_box_file: {path} does not exist")
            warnings.warn(
                f"MPII head boxes {path} not found: PCKh falls back to an approximate head size", stacklevel=2
            )
            return None
        return load_head_boxes(path, len(load_json(self.path("val_ann"), "MPII annotation file")))

    def ground_truth(self, split: Split, skipped_image_ids: set[int] | None = None) -> str | dict | None:
        """The annotation file; PCKh reads its ground truth from the batches, so skipped images need no filtering."""
        return None if self.paths[f"{split}_ann"] is None else str(self.path(f"{split}_ann"))

    def metric(self, ground_truth: str | dict, stage: str, options: Any) -> PCKhAccuracy:
        """PCKh (head sizes from the batches' head boxes)."""
        if getattr(options, "eval_diagnostics", False):
            raise UserError("model.eval_diagnostics: true needs a COCO-style dataset (OKS AP); MPII is evaluated by "
                            "PCKh: set it to false")
        return PCKhAccuracy()
