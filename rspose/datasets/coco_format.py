"""A custom keypoint dataset in COCO format: every path given, the spec from its annotation file."""

from __future__ import annotations

from rspose.data.specs import DatasetSpec, spec_from_coco_json
from rspose.datasets.base import KEY, PoseDataset
from rspose.errors import check_range


class COCOFormat(PoseDataset):
    """Any COCO-format keypoint dataset: no reference layout, so every annotation file and image folder a stage
    reads is given (relative to ``root``, or as given when ``root`` is None). Metric: OKS AP (val/AP) with the
    spec's sigmas.

    The spec comes from ``categories[0]`` of the first annotation file configured (train, val, test): keypoint
    names and skeleton, with ``sigmas``, ``flip_indices`` and the body-part ids from here
    (:func:`rspose.data.specs.spec_from_coco_json`; keypoints named as COCO, CrowdPose or MPII take that spec's
    values for what is left out).

    Args:
        root ... bbox_score_thr: as :class:`rspose.datasets.PoseDataset` (``test_bbox_file: auto`` = ground truth).
        sigmas, flip_indices: one per keypoint.
        upper_body_ids, lower_body_ids: the keypoints of the half-body augmentation (default: first / second half).
        name: the spec's name (shown in messages).
    """

    def __init__(
        self,
        root: str | None = None,
        train_ann: str | None = None,
        val_ann: str | None = None,
        test_ann: str | None = None,
        train_img_dir: str | None = None,
        val_img_dir: str | None = None,
        test_img_dir: str | None = None,
        val_bbox_file: str | None = None,
        test_bbox_file: str | None = "auto",
        bbox_score_thr: float = 0.0,
        sigmas: list[float] | None = None,
        flip_indices: list[int] | None = None,
        upper_body_ids: list[int] | None = None,
        lower_body_ids: list[int] | None = None,
        name: str = "custom",
    ) -> None:
        super().__init__(root, train_ann, val_ann, test_ann, train_img_dir, val_img_dir, test_img_dir,
                         val_bbox_file, test_bbox_file, bbox_score_thr)
        for value in sigmas or ():
            check_range(f"{KEY}.sigmas", value, 0, low_open=True)
        self._spec_args = (sigmas, flip_indices, name, upper_body_ids, lower_body_ids)
        self._spec: DatasetSpec | None = None

    @property
    def spec(self) -> DatasetSpec:
        """Read (once) from the first annotation file configured."""
        if self._spec is None:
            key = next((k for k in ("train_ann", "val_ann", "test_ann") if self.paths[k] is not None), "train_ann")
            sigmas, flip_indices, name, upper, lower = self._spec_args
            self._spec = spec_from_coco_json(self.path(key), sigmas, flip_indices, name, upper, lower)
        return self._spec
