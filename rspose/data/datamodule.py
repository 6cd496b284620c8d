"""PoseDataModule: the dataset section of the CLI (files, boxes, loaders, augmentation switches).

Reference layouts (docs/protocols.md), relative to ``root`` (default ``data/<dataset>``):

============  =======================================================  ==========  ==================================
dataset       train / val (= test) annotation files                    images      test boxes (``"auto"``)
============  =======================================================  ==========  ==================================
coco          annotations/person_keypoints_{train,val}2017.json         train2017,  person_detection_results/
                                                                        val2017     COCO_val2017_detections_AP_H_56_person.json
synthetic     same as coco (written by ``prepare_data``, see below)     same        same
crowdpose     annotations/mmpose_crowdpose_{trainval,test}.json         images      annotations/det_for_crowd_test_0.1_0.5.json
mpii          annotations/mpii_{train,val}.json (+ mpii_gt_val.mat)     images      none: GT centre/scale
custom        every path given explicitly                               given       none unless given
============  =======================================================  ==========  ==================================

Validation uses ground-truth boxes unless ``val_bbox_file`` is set; test and predict use ``test_bbox_file``
(``"auto"`` = the reference detections above, None = ground-truth boxes).

Setup checks every split it builds before any sample is read (docs/data.md): each image exists, is complete
(JPEG EOI / PNG IEND), decodes without libjpeg's corrupt-data warnings and has the annotated width and height
(cached; an EXIF orientation is applied or not as the annotated size says). A missing, unreadable, truncated or
corrupt image is skipped with one summary warning per split (``strict=True``: one error instead); skipped
images also leave the evaluation's ground truth, so AP is that of the images that remain. A size mismatch is
always an error, and so is a split left with no instance. Synthetic data is reused only when it was generated
with the requested ``synthetic_*`` size and seed (``rspose_synthetic.json``), else regenerated.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, default_collate

from rspose.codecs.base import Codec
from rspose.data.dataset import TopDownDataset
from rspose.data.readers import InstanceList, load_head_boxes, read_coco, read_detections, read_mpii
from rspose.data.readers.image_check import check_images, default_cache_dir
from rspose.data.specs import DatasetSpec, get_spec, spec_from_coco_json
from rspose.data.synthetic import SYNTHETIC_TRAIN_IMAGES, SYNTHETIC_VAL_IMAGES, ensure_synthetic_coco
from rspose.data.transforms import TopDownAugment
from rspose.errors import UserError, check_range
from rspose.json_file import load_json

DatasetName = Literal["coco", "crowdpose", "mpii", "custom", "synthetic"]
Split = Literal["train", "val", "test"]

_COCO_FILES = {
    "train_ann": "annotations/person_keypoints_train2017.json",
    "val_ann": "annotations/person_keypoints_val2017.json",
    "test_ann": "annotations/person_keypoints_val2017.json",
    "train_img_dir": "train2017",
    "val_img_dir": "val2017",
    "test_img_dir": "val2017",
    "test_bbox_file": "person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
}
REFERENCE_FILES: dict[str, dict[str, str]] = {
    "coco": _COCO_FILES,
    "synthetic": _COCO_FILES,
    "crowdpose": {
        "train_ann": "annotations/mmpose_crowdpose_trainval.json",
        "val_ann": "annotations/mmpose_crowdpose_test.json",
        "test_ann": "annotations/mmpose_crowdpose_test.json",
        "train_img_dir": "images",
        "val_img_dir": "images",
        "test_img_dir": "images",
        "test_bbox_file": "annotations/det_for_crowd_test_0.1_0.5.json",
    },
    "mpii": {
        "train_ann": "annotations/mpii_train.json",
        "val_ann": "annotations/mpii_val.json",
        "test_ann": "annotations/mpii_val.json",
        "train_img_dir": "images",
        "val_img_dir": "images",
        "test_img_dir": "images",
        "head_box_file": "annotations/mpii_gt_val.mat",
    },
    "custom": {},
}


class PoseDataModule(LightningDataModule):
    """Top-down pose data for COCO, CrowdPose, MPII, a custom COCO-format dataset or generated synthetic data.

    Args:
        codec: keypoints <-> targets; its ``input_size`` (W, H) is the crop size and ``use_udp`` picks the warp.
        dataset: which layout, spec and reader to use.
        root: dataset folder; None = ``data/<dataset>``. Relative paths below are relative to it.
        train_ann, val_ann, test_ann: annotation files (None = the reference file of ``dataset``).
        train_img_dir, val_img_dir, test_img_dir: image folders (None = the reference folder).
        val_bbox_file: person detections for validation; None = ground-truth boxes. Refused for MPII (evaluated
            on the annotated centre and scale).
        test_bbox_file: detections for test/predict; "auto" = the reference file of ``dataset`` (ground truth for
            MPII and custom), None = ground-truth boxes.
        bbox_score_thr: detections with a lower score are dropped.
        head_box_file: MPII head boxes (mpii_gt_val.mat); None = the reference file when it exists (PCKh falls
            back to an approximation without it).
        batch_size, val_batch_size: per-device batch sizes (val_batch_size also for test/predict).
        num_workers, persistent_workers, pin_memory, drop_last: DataLoader options (drop_last for training only).
        sigmas, flip_indices, upper_body_ids, lower_body_ids: the keypoint spec of a custom dataset (names and
            skeleton come from its annotation file).
        flip_prob ... rotate_prob: the random augmentation (mmpose defaults; a probability of 0 switches a step off).
        misplace_prob: **beyond mmpose and the paper**: the probability that a training box is moved off its
            person (partly or wholly out of the crop: a false or badly placed detection); 0 (default) = off. Every
            loss trains on such crops with the keypoints left inside; RankingLoss also puts them into
            Instance-Sort as low-quality members (docs/method.md).
        misplace_shift: (low, high) size of that move, a uniform fraction of the padded box, in a uniform random
            direction.
        bbox_padding: box padding of the crop.
        synthetic_train_images, synthetic_val_images, synthetic_seed: size and seed of the generated dataset.
        check_images: check every image of a split at setup (exists, complete, annotated size); False skips the
            check (a bad image is then found when first read).
        check_image_data: with ``check_images``, also decode every image once (cached) so that corrupt data
            inside a file is found ("corrupt", skipped like a truncated file); False: headers only.
        strict: a missing, unreadable or truncated image is an error instead of a counted skip.
        image_check_cache: folder of the image-check cache (JSON, keyed by path, mtime and size); "auto" =
            ``$RSPOSE_CACHE_DIR`` or ``~/.cache/rspose``; None = in memory only.
    """

    def __init__(
        self,
        codec: Codec,
        dataset: DatasetName = "coco",
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
        head_box_file: str | None = None,
        batch_size: int = 64,
        val_batch_size: int = 32,
        num_workers: int = 4,
        persistent_workers: bool = True,
        pin_memory: bool = True,
        drop_last: bool = False,
        sigmas: list[float] | None = None,
        flip_indices: list[int] | None = None,
        upper_body_ids: list[int] | None = None,
        lower_body_ids: list[int] | None = None,
        flip_prob: float = 0.5,
        half_body_prob: float = 0.3,
        half_body_min_total_keypoints: int = 9,
        half_body_min_upper_keypoints: int = 2,
        half_body_min_lower_keypoints: int = 3,
        half_body_padding: float = 1.5,
        shift_factor: float = 0.16,
        shift_prob: float = 0.3,
        scale_factor: tuple[float, float] = (0.5, 1.5),
        scale_prob: float = 1.0,
        rotate_factor: float = 80.0,
        rotate_prob: float = 0.6,
        misplace_prob: float = 0.0,
        misplace_shift: tuple[float, float] = (0.5, 1.5),
        bbox_padding: float = 1.25,
        synthetic_train_images: int = SYNTHETIC_TRAIN_IMAGES,
        synthetic_val_images: int = SYNTHETIC_VAL_IMAGES,
        synthetic_seed: int = 0,
        check_images: bool = True,
        check_image_data: bool = True,
        strict: bool = False,
        image_check_cache: str | None = "auto",
    ) -> None:
        super().__init__()
        if dataset not in REFERENCE_FILES:
            raise UserError(f"data.dataset: {dataset!r} is not one of {sorted(REFERENCE_FILES)}")
        if dataset == "mpii":
            for key, value in (("val_bbox_file", val_bbox_file), ("test_bbox_file", test_bbox_file)):
                if value not in (None, "auto"):
                    raise UserError(
                        f"data.{key}: {value!r} would be ignored: MPII is evaluated on the annotated person centre "
                        "and scale (PCKh protocol, docs/protocols.md); leave it unset"
                    )
        for key, value, low, low_open in (
            ("batch_size", batch_size, 1, False), ("val_batch_size", val_batch_size, 1, False),
            ("num_workers", num_workers, 0, False), ("bbox_padding", bbox_padding, 0, True),
            ("bbox_score_thr", bbox_score_thr, None, False),
            ("synthetic_train_images", synthetic_train_images, 0, False),  # 0: an evaluation-only set
            ("synthetic_val_images", synthetic_val_images, 1, False),
        ):
            check_range(f"data.{key}", value, low, low_open=low_open)
        for value in sigmas or ():
            check_range("data.sigmas", value, 0, low_open=True)
        self.save_hyperparameters(ignore=["codec"])
        self.codec = codec
        self.dataset_name = dataset
        self.root = Path(root if root is not None else f"data/{dataset}")
        given = {
            "train_ann": train_ann,
            "val_ann": val_ann,
            "test_ann": test_ann,
            "train_img_dir": train_img_dir,
            "val_img_dir": val_img_dir,
            "test_img_dir": test_img_dir,
            "head_box_file": head_box_file,
        }
        reference = REFERENCE_FILES[dataset]
        #: key -> configured path (None when neither given nor defined by the reference layout).
        self.paths: dict[str, Path | None] = {
            key: self._resolve(value if value is not None else reference.get(key)) for key, value in given.items()
        }
        self.paths["val_bbox_file"] = self._resolve(val_bbox_file)
        self.paths["test_bbox_file"] = self._resolve(
            reference.get("test_bbox_file") if test_bbox_file == "auto" else test_bbox_file
        )
        self._head_box_given = head_box_file is not None
        self.input_size = tuple(codec.input_size)
        self.bbox_score_thr = bbox_score_thr
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.bbox_padding = bbox_padding
        self.augment = TopDownAugment(
            flip_prob=flip_prob,
            half_body_prob=half_body_prob,
            half_body_min_total_keypoints=half_body_min_total_keypoints,
            half_body_min_upper_keypoints=half_body_min_upper_keypoints,
            half_body_min_lower_keypoints=half_body_min_lower_keypoints,
            half_body_padding=half_body_padding,
            shift_factor=shift_factor,
            shift_prob=shift_prob,
            scale_factor=tuple(scale_factor),
            scale_prob=scale_prob,
            rotate_factor=rotate_factor,
            rotate_prob=rotate_prob,
            misplace_prob=misplace_prob,
            misplace_shift=tuple(misplace_shift),
        )
        self._custom_spec_args = (sigmas, flip_indices, upper_body_ids, lower_body_ids)
        self._spec: DatasetSpec | None = None
        self.datasets: dict[str, TopDownDataset] = {}
        self.check_images = check_images
        self.check_image_data = check_image_data
        self.strict = strict
        self.image_check_cache = default_cache_dir() if image_check_cache == "auto" else image_check_cache
        #: split -> {image path: reason} of the images skipped at setup.
        self.skipped_images: dict[str, dict[str, str]] = {}
        self._skipped_image_ids: dict[str, set[int]] = {}

    # ------------------------------------------------------------------------------------------- paths
    def _resolve(self, path: str | Path | None) -> Path | None:
        if path is None:
            return None
        path = Path(path)
        return path if path.is_absolute() else self.root / path

    def path(self, key: str, must_exist: bool = True) -> Path:
        """The configured path of ``key`` (e.g. "val_ann"); errors name the CLI key."""
        path = self.paths.get(key)
        if path is None:
            raise UserError(f"data.{key}: no path given and dataset {self.dataset_name!r} has no default for it")
        if must_exist and not path.exists():
            raise FileNotFoundError(f"data.{key}: {path} does not exist")
        return path

    # ------------------------------------------------------------------------------------------- spec
    @property
    def spec(self) -> DatasetSpec:
        """The keypoint layout (a custom spec is read from the first annotation file that is configured)."""
        if self._spec is None:
            if self.dataset_name == "custom":
                sigmas, flip_indices, upper, lower = self._custom_spec_args
                key = next((k for k in ("train_ann", "val_ann", "test_ann") if self.paths[k] is not None), "train_ann")
                self._spec = spec_from_coco_json(self.path(key), sigmas, flip_indices, "custom", upper, lower)
            else:
                self._spec = get_spec("coco" if self.dataset_name == "synthetic" else self.dataset_name)
        return self._spec

    @property
    def num_keypoints(self) -> int:
        return self.spec.num_keypoints

    def eval_ann_file(self, stage: str) -> str | dict | None:
        """The ground truth the metric compares with: val_ann for "fit"/"validate"/"val", else test_ann;
        None when that split has no annotation file configured (a custom dataset without one). When setup
        skipped images of that split, the file's content without those images (a COCO dict)."""
        split = "val" if stage in ("fit", "validate", "val") else "test"
        key = f"{split}_ann"
        if self.paths[key] is None:
            return None
        path = self.path(key)
        dropped = self._skipped_image_ids.get(split)
        if not dropped or self.dataset_name == "mpii":  # PCKh reads its ground truth from the batches
            return str(path)
        data = load_json(path, "COCO annotation file")
        data["images"] = [img for img in data["images"] if int(img["id"]) not in dropped]
        data["annotations"] = [a for a in data["annotations"] if int(a.get("image_id", -1)) not in dropped]
        return data

    @property
    def eval_head_boxes(self) -> np.ndarray | None:
        """MPII (N, 2, 2) head boxes [[x1, y1], [x2, y2]] indexed by instance id (= JSON row); None otherwise."""
        if self.dataset_name != "mpii" or self.paths["head_box_file"] is None:
            return None
        path = self.paths["head_box_file"]
        if not path.exists():
            if self._head_box_given:
                raise FileNotFoundError(f"data.head_box_file: {path} does not exist")
            warnings.warn(
                f"MPII head boxes {path} not found: PCKh falls back to an approximate head size", stacklevel=2
            )
            return None
        rows = len(read_mpii(self.path("val_ann"), self.path("val_img_dir"), self.input_size, mode="eval"))
        return load_head_boxes(path, rows)

    # ------------------------------------------------------------------------------------------- data
    def prepare_data(self) -> None:
        """Synthetic data: (re)generate it unless ``root`` holds the data of exactly the requested size and seed."""
        if self.dataset_name != "synthetic":
            return

        hp = self.hparams
        ensure_synthetic_coco(self.root, hp.synthetic_train_images, hp.synthetic_val_images, hp.synthetic_seed)

    def read_split(self, split: Split) -> InstanceList:
        """Read the instances of a split ("train", "val" or "test") as configured."""
        ann, img_dir = self.path(f"{split}_ann"), self.path(f"{split}_img_dir")
        k, size, pad = self.spec.num_keypoints, self.input_size, self.bbox_padding
        if self.dataset_name == "mpii":
            head = None
            if split != "train" and self.paths["head_box_file"] is not None and self.paths["head_box_file"].exists():
                head = self.paths["head_box_file"]
            mode = "train" if split == "train" else "eval"
            return read_mpii(ann, img_dir, size, mode=mode, headbox_file=head, num_keypoints=k, padding=pad)
        bbox_key = {"val": "val_bbox_file", "test": "test_bbox_file"}.get(split)
        if bbox_key is not None and self.paths[bbox_key] is not None:
            return read_detections(self.path(bbox_key), ann, img_dir, k, size, self.bbox_score_thr, pad)
        return read_coco(ann, img_dir, k, size, mode="train" if split == "train" else "eval", padding=pad)

    def checked_split(self, split: Split) -> InstanceList:
        """:meth:`read_split`, then the image checks of setup (skip / error as in the module docstring)."""
        instances = self.read_split(split)
        if self.check_images and instances:
            report = check_images(instances, self.image_check_cache, decode=self.check_image_data)
            instances.raw_orientation = report.raw_orientation
            if report.size_mismatch:
                lines = [f"{path}: annotated {a[0]}x{a[1]} (width x height), real {r[0]}x{r[1]}"
                         for path, (a, r) in sorted(report.size_mismatch.items())]
                more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
                raise UserError(
                    f"{instances.source}: {len(lines)} images differ in size from their 'width'/'height' in "
                    f"this file: {'; '.join(lines[:3])}{more}; fix the annotation or the image"
                )
            if report.problems:
                summary = report.summary(f"data.{split}: {instances.source}")
                if self.strict:
                    raise UserError(f"{summary} (data.strict is set, so this is an error)")
                warnings.warn(summary, stacklevel=2)
                kept = [inst for inst in instances if inst.image_file not in report.problems]
                self.skipped_images[split] = dict(report.problems)
                self._skipped_image_ids[split] = {i.image_id for i in instances if i.image_file in report.problems}
                skipped = dict(instances.skipped, **{"image skipped": len(instances) - len(kept)})
                instances = InstanceList(kept, instances.source, skipped, report.raw_orientation)
        if not instances:
            detail = ", ".join(f"{n} {reason}" for reason, n in instances.skipped.items() if n)
            why = f"every annotation was filtered out: {detail}" if detail else "it has no annotation"
            raise UserError(
                f"data.{split}: {instances.source} gives no instance to {'train on' if split == 'train' else 'evaluate'}"
                f" ({why}); expected at least one usable annotation"
            )
        return instances

    def _build(self, split: Split) -> TopDownDataset:
        if split not in self.datasets:
            train = split == "train"
            self.datasets[split] = TopDownDataset(
                self.checked_split(split),
                self.spec,
                self.codec,
                train=train,
                augment=self.augment if train else None,
                bbox_padding=self.bbox_padding,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        splits: dict[str | None, tuple[Split, ...]] = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test",),
            None: ("train", "val", "test"),
        }
        for split in splits.get(stage, ("train", "val", "test")):
            self._build(split)

    def _loader(self, split: Split, shuffle: bool, batch_size: int, drop_last: bool = False) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            self._build(split),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=self.persistent_workers and workers > 0,
            pin_memory=self.pin_memory,
            drop_last=drop_last,
            collate_fn=default_collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size, self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.val_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.val_batch_size)
