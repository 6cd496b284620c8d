"""PoseDataModule: the data section of the CLI: a dataset object, the codec, the loaders and the augmentation.

Which files, reader, keypoint spec and metric: the dataset (:mod:`rspose.datasets`; ``data.dataset`` takes it by
class path). How the data is served: this module (crop size from the codec, batch sizes, DataLoader knobs, the
augmentation, box padding, image checks).

Setup checks every split it builds before any sample is read (docs/data.md): each image exists, is complete
(JPEG EOI / PNG IEND), decodes without libjpeg's corrupt-data warnings and has the annotated width and height
(cached; an EXIF orientation is applied or not as the annotated size says). A missing, unreadable, truncated or
corrupt image is skipped with one summary warning per split (``strict=True``: one error instead); skipped
images also leave the evaluation's ground truth, so AP is that of the images that remain. A size mismatch is
always an error, and so is a split left with no instance.
"""

from __future__ import annotations

import warnings

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, default_collate

from rspose.codecs.base import Codec
from rspose.data.dataset import TopDownDataset
from rspose.data.readers import InstanceList
from rspose.data.readers.image_check import check_images, default_cache_dir
from rspose.data.specs import DatasetSpec
from rspose.data.transforms import TopDownAugment
from rspose.datasets import PoseDataset
from rspose.datasets.base import Split
from rspose.errors import UserError, check_range

#: the default augmentation (mmpose 1.x; its values are written once, in :class:`TopDownAugment`).
MMPOSE_AUGMENT = TopDownAugment()


class PoseDataModule(LightningDataModule):
    """Top-down pose data of one dataset object (:mod:`rspose.datasets`).

    Args:
        codec: keypoints <-> targets; its ``input_size`` (W, H) is the crop size and ``use_udp`` picks the warp.
        dataset: the dataset: its files, reader, keypoint spec and metric (e.g. :class:`rspose.datasets.COCO`).
        augment: the random training augmentation (``data.augment.flip_prob`` ...; default mmpose 1.x; a
            probability of 0 switches a step off; ``misplace_prob``: moved boxes, beyond mmpose, off by default).
        bbox_padding: box padding of the crop.
        batch_size, val_batch_size: per-device batch sizes (val_batch_size also for test/predict).
        num_workers, persistent_workers, pin_memory, drop_last: DataLoader options (drop_last for training only).
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
        dataset: PoseDataset,
        augment: TopDownAugment = MMPOSE_AUGMENT,
        bbox_padding: float = 1.25,
        batch_size: int = 64,
        val_batch_size: int = 32,
        num_workers: int = 4,
        persistent_workers: bool = True,
        pin_memory: bool = True,
        drop_last: bool = False,
        check_images: bool = True,
        check_image_data: bool = True,
        strict: bool = False,
        image_check_cache: str | None = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(dataset, PoseDataset):
            raise UserError(
                f"data.dataset: {dataset!r} is not a dataset object; write data.dataset: {{class_path: "
                "rspose.datasets.COCO, init_args: {root: ...}}} (a subclass of rspose.datasets.PoseDataset)"
            )
        for key, value, low, low_open in (
            ("batch_size", batch_size, 1, False), ("val_batch_size", val_batch_size, 1, False),
            ("num_workers", num_workers, 0, False), ("bbox_padding", bbox_padding, 0, True),
        ):
            check_range(f"data.{key}", value, low, low_open=low_open)
        self.save_hyperparameters(ignore=["codec", "dataset", "augment"])
        self.codec = codec
        self.dataset = dataset
        self.augment = augment
        self.input_size = tuple(codec.input_size)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.bbox_padding = bbox_padding
        self.datasets: dict[str, TopDownDataset] = {}
        self.check_images = check_images
        self.check_image_data = check_image_data
        self.strict = strict
        self.image_check_cache = default_cache_dir() if image_check_cache == "auto" else image_check_cache
        #: split -> {image path: reason} of the images skipped at setup.
        self.skipped_images: dict[str, dict[str, str]] = {}
        self._skipped_image_ids: dict[str, set[int]] = {}

    @property
    def spec(self) -> DatasetSpec:
        """The dataset's keypoint layout."""
        return self.dataset.spec

    @property
    def num_keypoints(self) -> int:
        return self.spec.num_keypoints

    def eval_ann_file(self, stage: str) -> str | dict | None:
        """The ground truth the metric compares with (:meth:`rspose.datasets.PoseDataset.ground_truth`): val for
        "fit"/"validate"/"val", else test, less the images setup skipped."""
        split = "val" if stage in ("fit", "validate", "val") else "test"
        return self.dataset.ground_truth(split, self._skipped_image_ids.get(split))

    # ------------------------------------------------------------------------------------------- data
    def prepare_data(self) -> None:
        """The dataset's :meth:`rspose.datasets.PoseDataset.prepare` (e.g. generate the synthetic data)."""
        self.dataset.prepare()

    def read_split(self, split: Split) -> InstanceList:
        """Read the instances of a split ("train", "val" or "test") with the dataset's reader."""
        return self.dataset.read(split, self.input_size, self.bbox_padding)

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
