"""The synthetic COCO-format dataset that ``prepare_data`` generates (:mod:`rspose.data.synthetic`)."""

from __future__ import annotations

from typing import ClassVar

from rspose.data.synthetic import SYNTHETIC_TRAIN_IMAGES, SYNTHETIC_VAL_IMAGES, ensure_synthetic_coco
from rspose.datasets.base import KEY
from rspose.datasets.coco import COCO
from rspose.errors import check_range


class Synthetic(COCO):
    """Stick figures on textured backgrounds in the COCO layout and keypoints (with a detections file at COCO's
    path), generated into ``root`` (default data/synthetic) by ``prepare_data``: reused only when ``root`` holds the
    data of exactly this size and seed (``rspose_synthetic.json``), else regenerated. Metric: OKS AP (val/AP).

    Args:
        root: where the data is (or is written).
        train_images: generated training images (0: an evaluation-only set).
        val_images: generated validation (= test) images.
        seed: the generator's seed (not the training seed).
        val_bbox_file, test_bbox_file, bbox_score_thr: as :class:`rspose.datasets.PoseDataset`.
    """

    default_root: ClassVar[str | None] = "data/synthetic"

    def __init__(
        self,
        root: str | None = None,
        train_images: int = SYNTHETIC_TRAIN_IMAGES,
        val_images: int = SYNTHETIC_VAL_IMAGES,
        seed: int = 0,
        val_bbox_file: str | None = None,
        test_bbox_file: str | None = "auto",
        bbox_score_thr: float = 0.0,
    ) -> None:
        check_range(f"{KEY}.train_images", train_images, 0)
        check_range(f"{KEY}.val_images", val_images, 1)
        super().__init__(root, val_bbox_file=val_bbox_file, test_bbox_file=test_bbox_file,
                         bbox_score_thr=bbox_score_thr)
        self.train_images = train_images
        self.val_images = val_images
        self.seed = seed

    def prepare(self) -> None:
        """(Re)generate the data unless ``root`` holds exactly this size and seed."""
        ensure_synthetic_coco(self.root, self.train_images, self.val_images, self.seed)
