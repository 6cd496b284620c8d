"""PoseDataset: what one keypoint dataset is (its files, reader, keypoint spec, metric and headline metric).

``data.dataset`` of a config names one by class path, like the loss::

    data:
      dataset:
        class_path: rspose.datasets.COCO
        init_args: {root: data/coco, val_bbox_file: person_detection_results/COCO_val2017_detections_AP_H_56_person.json}

A new dataset is a subclass in the user's own module (docs/data.md: OCHuman in about 15 lines); nothing else in
rspose asks for a dataset by its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from rspose.data.readers import InstanceList, read_coco, read_detections
from rspose.data.specs import DatasetSpec
from rspose.errors import UserError, check_range
from rspose.json_file import load_json
from rspose.metrics import OKSMeanAP, PCKhAccuracy

Split = Literal["train", "val", "test"]

#: the config key of a dataset's constructor arguments (errors name it).
KEY = "data.dataset.init_args"

#: the file keys of a dataset's layout (``files``), in the order errors and docs list them.
FILE_KEYS = ("train_ann", "val_ann", "test_ann", "train_img_dir", "val_img_dir", "test_img_dir")


class PoseDataset:
    """A top-down keypoint dataset in COCO format: the base of every dataset (override what differs).

    What belongs to the dataset (its constructor) and what stays on
    :class:`rspose.data.datamodule.PoseDataModule`: the dataset owns everything that says *which* data and *how
    it is scored*: its folder (``root``), annotation files, image folders, person-box files and their score
    threshold, MPII's head-box file, a custom dataset's keypoint spec (sigmas, flip indices, body-part ids) and the
    synthetic set's sizes and seed. The datamodule owns *how the data is served*: the codec (crop size), batch
    sizes, DataLoader knobs, the augmentation, the box padding, the image checks (``check_images``,
    ``check_image_data``, ``strict``, ``image_check_cache``).

    A subclass sets (class attributes):

    * ``default_root``: the folder used when ``root`` is None (None: the paths are used as given).
    * ``files``: the reference layout relative to ``root``: keys ``train_ann``, ``val_ann``, ``test_ann``,
      ``train_img_dir``, ``val_img_dir``, ``test_img_dir`` and ``test_bbox_file`` (the detections that
      ``test_bbox_file: auto`` means); a key it leaves out has no default and must be given.
    * ``keypoint_spec``: its :class:`rspose.data.specs.DatasetSpec` (or override :attr:`spec`).
    * ``iou_type``: the OKS AP of its metric, "keypoints" (COCO) or "keypoints_crowd" (CrowdPose).
    * ``monitor``: the headline metric, which ``checkpoint.monitor: auto`` keeps the best checkpoint by.

    and overrides, where it is not COCO-format: :meth:`read` (the reader), :meth:`metric`, :meth:`ground_truth`
    and :meth:`prepare` (generate or download before setup).

    Args:
        root: dataset folder; None = ``default_root``. Relative paths below are relative to it.
        train_ann, val_ann, test_ann: annotation files (None = the reference file of ``files``).
        train_img_dir, val_img_dir, test_img_dir: image folders (None = the reference folder).
        val_bbox_file: person detections for validation; None = ground-truth boxes.
        test_bbox_file: detections for test/predict; "auto" = the reference file of ``files`` (ground truth when
            there is none), None = ground-truth boxes.
        bbox_score_thr: detections with a lower score are dropped.
    """

    default_root: ClassVar[str | None] = None
    files: ClassVar[Mapping[str, str]] = {}
    keypoint_spec: ClassVar[DatasetSpec | None] = None
    iou_type: ClassVar[Literal["keypoints", "keypoints_crowd"]] = "keypoints"
    monitor: ClassVar[str] = "val/AP"

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
    ) -> None:
        check_range(f"{KEY}.bbox_score_thr", bbox_score_thr)
        root = root if root is not None else self.default_root
        self.root = Path(root) if root is not None else None
        given = dict(zip(FILE_KEYS, (train_ann, val_ann, test_ann, train_img_dir, val_img_dir, test_img_dir)))
        #: key -> configured path (None when neither given nor defined by the reference layout).
        self.paths: dict[str, Path | None] = {
            key: self._resolve(value if value is not None else self.files.get(key)) for key, value in given.items()
        }
        self.paths["val_bbox_file"] = self._resolve(val_bbox_file)
        self.paths["test_bbox_file"] = self._resolve(
            self.files.get("test_bbox_file") if test_bbox_file == "auto" else test_bbox_file
        )
        self.bbox_score_thr = bbox_score_thr

    # ------------------------------------------------------------------------------------------- paths
    def _resolve(self, path: str | Path | None) -> Path | None:
        if path is None:
            return None
        path = Path(path)
        return path if path.is_absolute() or self.root is None else self.root / path

    def path(self, key: str, must_exist: bool = True) -> Path:
        """The configured path of ``key`` (e.g. "val_ann"); errors name the config key."""
        path = self.paths.get(key)
        if path is None:
            raise UserError(f"{KEY}.{key}: no path given and {type(self).__name__} has no default for it")
        if must_exist and not path.exists():
            raise FileNotFoundError(f"{KEY}.{key}: {path} does not exist")
        return path

    # ------------------------------------------------------------------------------------------- spec
    @property
    def spec(self) -> DatasetSpec:
        """The keypoint layout: names, flip indices, OKS sigmas, body-part ids, skeleton."""
        if self.keypoint_spec is None:
            raise NotImplementedError(f"{type(self).__name__} sets no keypoint_spec and does not override spec")
        return self.keypoint_spec

    # ------------------------------------------------------------------------------------------- data
    def prepare(self) -> None:
        """Make the files exist before setup (called once, by ``prepare_data``); nothing for a dataset on disk."""

    def read(self, split: Split, input_size: tuple[int, int], padding: float) -> InstanceList:
        """The instances of ``split``: annotated boxes, or the configured detections for val/test (COCO format).

        input_size: the crop (W, H); padding: the box padding of the crop."""
        ann, img_dir = self.path(f"{split}_ann"), self.path(f"{split}_img_dir")
        k = self.spec.num_keypoints
        bbox_key = {"val": "val_bbox_file", "test": "test_bbox_file"}.get(split)
        if bbox_key is not None and self.paths[bbox_key] is not None:
            return read_detections(self.path(bbox_key), ann, img_dir, k, input_size, self.bbox_score_thr, padding)
        return read_coco(ann, img_dir, k, input_size, mode="train" if split == "train" else "eval", padding=padding)

    # ------------------------------------------------------------------------------------------- evaluation
    def ground_truth(self, split: Split, skipped_image_ids: set[int] | None = None) -> str | dict | None:
        """What the metric of ``split`` ("val" or "test") compares with: its annotation file; None when none is
        configured. Without the images setup skipped (``skipped_image_ids``): the file's content less those images
        (a COCO dict)."""
        key = f"{split}_ann"
        if self.paths[key] is None:
            return None
        path = self.path(key)
        if not skipped_image_ids:
            return str(path)
        data = load_json(path, "COCO annotation file")
        data["images"] = [img for img in data["images"] if int(img["id"]) not in skipped_image_ids]
        data["annotations"] = [a for a in data["annotations"] if int(a.get("image_id", -1)) not in skipped_image_ids]
        return data

    def metric(self, ground_truth: str | dict, stage: str, options: Any) -> OKSMeanAP | PCKhAccuracy:
        """The metric of ``stage`` ("val" or "test") against ``ground_truth`` (:meth:`ground_truth`): OKS AP of
        ``iou_type``. ``options``: the module's evaluation hyperparameters (``keypoint_score_thr``, ``eval_nms``,
        ``eval_nms_thr``, ``eval_outfile_prefix``, ``eval_ap_before_nms``, ``eval_backend``, ``eval_diagnostics``)."""
        prefix = getattr(options, "eval_outfile_prefix", None)
        return OKSMeanAP(
            ground_truth,
            spec=self.spec,
            iou_type=self.iou_type,
            keypoint_score_thr=options.keypoint_score_thr,
            nms=options.eval_nms,
            nms_thr=options.eval_nms_thr,
            outfile_prefix=f"{prefix}.{stage}" if prefix else None,
            report_ap_before_nms=getattr(options, "eval_ap_before_nms", False),
            backend=getattr(options, "eval_backend", "pycocotools"),
            diagnostics=bool(getattr(options, "eval_diagnostics", False)),
        )
