"""TopDownDataset: one person instance -> one normalised crop, its codec targets and its metadata.

Pipeline per sample (train order, docs/protocols.md): decode the image (cv2, BGR) -> box centre/scale (padding
1.25) -> random flip -> half body -> random shift/scale/rotation -> scale to the input aspect ratio -> one
bilinear ``cv2.warpAffine`` from the full image (the flip is folded into the matrix) -> codec.encode of the
keypoints in crop pixels -> RGB ImageNet normalisation. Validation/test use the reader's centre and scale and no
random step.

Instances are packed into flat arrays at construction (no per-instance Python objects are touched by workers,
so forked workers share the memory). Random state: each process (main or DataLoader worker) draws from its own
``numpy.random.Generator`` seeded with ``torch.initial_seed()``, which ``seed_everything(workers=True)`` makes
distinct per worker and rank and reproducible.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rspose.codecs.base import Codec
from rspose.data.readers.images import read_image
from rspose.data.readers.instance import PoseInstance
from rspose.data.specs import HEAD_SIZE_FACTOR, DatasetSpec
from rspose.data.transforms import (
    Normalizer,
    TopDownAugment,
    bbox_xywh_to_center_scale,
    fix_aspect_ratio,
    transform_points,
    warp_image,
    warp_matrix,
    with_hflip,
)
from rspose.errors import UserError

#: glibc ``mallopt`` parameters: M_TRIM_THRESHOLD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc(mmap_threshold: int = 16 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Keep image-sized buffers on the heap of this process (glibc only; returns whether it applied).

    Every sample allocates and frees a decoded image (~1 MB) and its float32 crop (~0.6 MB). With glibc's
    defaults these are often fresh mmap'd pages that fault in on first touch; the page faults cost 20-30% of
    the pipeline on a virtual machine (benchmarks/data_pipeline.py). Raising the mmap and trim thresholds
    lets freed buffers be reused; the price is up to ``trim_threshold`` bytes of idle heap per process.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        )
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class CropGeometry:
    """Where one sample's crop comes from. In training after a flip, centre and keypoints are in the mirrored
    image's frame; ``from_image`` reads the crop from the original (unmirrored) pixels."""

    center: np.ndarray  # (2,) image px
    scale: np.ndarray  # (2,) image px, at the input aspect ratio
    rotation: float  # degrees
    flipped: bool
    to_crop: np.ndarray  # (2, 3) (mirrored) image px -> crop px
    from_image: np.ndarray  # (2, 3) original image px -> crop px (the cv2.warpAffine matrix)
    keypoints: np.ndarray  # (K, 2) image px
    keypoints_visible: np.ndarray  # (K,)
    keypoints_input: np.ndarray  # (K, 2) crop px
    misplaced: bool = False  # the training box was moved off the person (TopDownAugment.misplace_prob)


class TopDownDataset(Dataset):
    """Top-down crops of person instances.

    Args:
        instances: the PoseInstance list of a reader.
        spec: keypoint layout (flip indices and body-part ids for augmentation).
        codec: turns crop-pixel keypoints into targets; its ``use_udp`` picks the warp.
        train: random augmentation on (``augment``) and centre/scale re-derived from the box per sample.
        input_size: (W, H) of the crop; None = ``codec.input_size``.
        augment: the random steps (mmpose defaults when None); ignored when ``train`` is False.
        bbox_padding: box padding of the training crop (the readers use the same for ``scale``).
        malloc_tuning: call :func:`tune_malloc` once in each process that reads samples (glibc only).

    A sample (``__getitem__``) is a dict that ``torch.utils.data.default_collate`` batches:
        image: (3, H, W) float32 RGB normalised; every key of ``codec.target_keys``; target_weight: (K,);
        instance_id, image_id: int64; image_file: str; center, scale: (2,) float32 image px, the box the
        crop was warped from (scale at the input aspect ratio); rotation: float32 degrees; flipped: bool;
        bbox_score, area: float32; area_input: float32, ``area * (W / scale_w) * (H / scale_h)``;
        keypoints: (K, 2) float32 image px; keypoints_visible: (K,) float32; keypoints_input: (K, 2) float32
        crop px (also the keypoints outside the crop); crowd_index: float32, -1 when unknown; misplaced: bool,
        the training box was moved off the person (``TopDownAugment.misplace_prob``; always False outside
        training); head_size: float32 0.6 x head-box diagonal, only when
        every instance has an MPII head box.
        In training, a flipped sample describes the mirrored image: centre, keypoints and visibility are in its
        frame (x' = w - 1 - x, keypoints permuted by the flip indices), so every keypoint array and the targets
        share one layout. Detection instances have zero keypoints and visibility (target_weight 0).
    """

    def __init__(
        self,
        instances: Sequence[PoseInstance],
        spec: DatasetSpec,
        codec: Codec,
        train: bool,
        input_size: tuple[int, int] | None = None,
        augment: TopDownAugment | None = None,
        bbox_padding: float = 1.25,
        malloc_tuning: bool = True,
    ) -> None:
        if not (np.isfinite(bbox_padding) and bbox_padding > 0):
            raise UserError(f"TopDownDataset: bbox_padding {bbox_padding}, expected a finite number > 0")
        self.spec = spec
        self.codec = codec
        self.train = train
        self.input_size = tuple(int(v) for v in (input_size or codec.input_size))
        if tuple(codec.input_size) != self.input_size:
            raise ValueError(
                f"TopDownDataset: input_size {self.input_size} differs from codec.input_size {codec.input_size}"
            )
        self.augment = (augment or TopDownAugment()) if train else None
        self.bbox_padding = float(bbox_padding)
        self.aspect_ratio = self.input_size[0] / self.input_size[1]
        self.use_udp = bool(codec.use_udp)
        self.normalize = Normalizer()
        self.flip_indices = tuple(spec.flip_indices)
        self._pack(instances)
        self._rng_key: tuple[int, int] | None = None
        self._rng: np.random.Generator | None = None
        self.malloc_tuning = malloc_tuning
        self._setup_pid: int | None = None

    def _pack(self, instances: Sequence[PoseInstance]) -> None:
        k = self.spec.num_keypoints
        n = len(instances)
        for inst in instances[:1]:
            if inst.keypoints.shape != (k, 2):
                raise ValueError(
                    f"TopDownDataset: instance {inst.instance_id} ({inst.image_file}) has keypoints of shape "
                    f"{inst.keypoints.shape}, expected ({k}, 2) for spec {self.spec.name!r}"
                )
        files = [inst.image_file for inst in instances]
        self.image_files, self.file_index = np.unique(np.asarray(files, dtype=str), return_inverse=True)
        self.file_index = self.file_index.astype(np.int64).reshape(-1)
        #: per image file: read the stored pixels, without the EXIF orientation (InstanceList.raw_orientation)
        raw = getattr(instances, "raw_orientation", None) or set()
        self.raw_orientation = np.array([str(f) in raw for f in self.image_files], dtype=bool)
        self.instance_ids = np.array([i.instance_id for i in instances], dtype=np.int64)
        self.image_ids = np.array([i.image_id for i in instances], dtype=np.int64)
        self.bboxes = np.array([i.bbox for i in instances], dtype=np.float32).reshape(n, 4)
        self.centers = np.array([i.center for i in instances], dtype=np.float32).reshape(n, 2)
        self.scales = np.array([i.scale for i in instances], dtype=np.float32).reshape(n, 2)
        self.keypoints = np.array([i.keypoints for i in instances], dtype=np.float32).reshape(n, k, 2)
        self.keypoints_visible = np.array([i.keypoints_visible for i in instances], dtype=np.float32).reshape(n, k)
        self.areas = np.array([i.area for i in instances], dtype=np.float32)
        self.bbox_scores = np.array([i.bbox_score for i in instances], dtype=np.float32)
        #: MPII (N,) head sizes, 0.6 x head-box diagonal (the PCKh normaliser), when every instance has a head box.
        self.head_sizes = None
        if n > 0 and all(i.head_box is not None for i in instances):
            boxes = np.array([i.head_box for i in instances], dtype=np.float64).reshape(n, 2, 2)
            self.head_sizes = (HEAD_SIZE_FACTOR * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=-1)).astype(np.float32)
        self.crowd_indices = np.array(
            [-1.0 if i.crowd_index is None else i.crowd_index for i in instances], dtype=np.float32
        )

    def __len__(self) -> int:
        return len(self.instance_ids)

    def rng(self) -> np.random.Generator:
        """This process's generator, (re)seeded from ``torch.initial_seed()`` when the process or seed changes."""
        key = (os.getpid(), torch.initial_seed())
        if self._rng is None or self._rng_key != key:
            self._rng = np.random.default_rng(key[1])
            self._rng_key = key
        return self._rng

    def _process_setup(self) -> None:
        """Once per process (main or worker): glibc malloc tuning when asked for."""
        pid = os.getpid()
        if self._setup_pid != pid:
            self._setup_pid = pid
            if self.malloc_tuning:
                tune_malloc()

    def geometry(self, index: int, image_width: int) -> CropGeometry:
        """The crop of sample ``index`` (random in training): box, rotation, flip, matrices and keypoints."""
        keypoints = self.keypoints[index]
        visible = self.keypoints_visible[index]
        rotation, flipped, misplaced = 0.0, False, False
        if self.augment is not None:
            center, scale = bbox_xywh_to_center_scale(self.bboxes[index], self.bbox_padding)
            aug = self.augment(
                self.rng(),
                center,
                scale,
                keypoints,
                visible,
                image_width,
                self.flip_indices,
                self.spec.upper_body_ids,
                self.spec.lower_body_ids,
            )
            center, scale, rotation, flipped = aug.center, aug.scale, aug.rotation, aug.flipped
            keypoints, visible, misplaced = aug.keypoints, aug.keypoints_visible, aug.misplaced
        else:
            center, scale = self.centers[index], self.scales[index]
        scale = fix_aspect_ratio(scale, self.aspect_ratio)
        to_crop = warp_matrix(center, scale, rotation, self.input_size, self.use_udp)
        return CropGeometry(
            center=np.asarray(center, dtype=np.float32),
            scale=scale,
            rotation=rotation,
            flipped=flipped,
            to_crop=to_crop,
            from_image=with_hflip(to_crop, image_width) if flipped else to_crop,
            keypoints=keypoints,
            keypoints_visible=visible,
            keypoints_input=transform_points(keypoints, to_crop),
            misplaced=misplaced,
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._process_setup()
        index = int(index)
        instance_id = int(self.instance_ids[index])
        file_index = self.file_index[index]
        image_file = str(self.image_files[file_index])
        image = read_image(image_file, instance_id, bool(self.raw_orientation[file_index]))
        geo = self.geometry(index, image.shape[1])
        crop = warp_image(image, geo.from_image, self.input_size)
        center, scale, keypoints_input = geo.center, geo.scale, geo.keypoints_input
        sample: dict[str, Any] = dict(self.codec.encode(keypoints_input, geo.keypoints_visible))
        w, h = self.input_size
        area = self.areas[index]
        sample.update(
            image=self.normalize(crop),
            instance_id=np.int64(instance_id),
            image_id=self.image_ids[index],
            image_file=image_file,
            center=np.asarray(center, dtype=np.float32),
            scale=scale,
            rotation=np.float32(geo.rotation),
            flipped=geo.flipped,
            bbox_score=self.bbox_scores[index],
            area=area,
            area_input=np.float32(area * (w / scale[0]) * (h / scale[1])),
            keypoints=np.asarray(geo.keypoints, dtype=np.float32),
            keypoints_visible=np.asarray(geo.keypoints_visible, dtype=np.float32),
            keypoints_input=keypoints_input,
            crowd_index=self.crowd_indices[index],
            misplaced=geo.misplaced,
        )
        if self.head_sizes is not None:
            sample["head_size"] = self.head_sizes[index]
        return sample
