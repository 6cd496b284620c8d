"""Python inference API: a trained (or official) top-down model applied to any image and any person boxes.

    >>> from rspose import Inferencer
    >>> pose = Inferencer("configs/coco/simplebaseline_r50_256x192_mse.yaml", "td-hm_res50_coco-256x192.pth")
    >>> keypoints, scores = pose(cv2.imread("photo.jpg"), boxes=[[x, y, w, h, score]])   # (N, K, 2), (N, K)

The model is built from the same YAML config as ``rspose fit/test`` (backbone, head, codec, dataset spec,
``flip_test``, ``loss``) by :func:`rspose.builder.build_module` (no LightningCLI, no Trainer) and filled from
the checkpoint with :func:`rspose.models.pretrained.load_pose_weights` (rspose Lightning checkpoints and mmpose /
ViTPose files alike, strictly; only the weights: every setting is the config's). Each box is cropped exactly like an
evaluation sample (``bbox_padding``, aspect ratio of the codec's input, plain or UDP warp, ImageNet
normalisation) and decoded by :meth:`rspose.module.PoseLitModule.decode_to_image`: the evaluation code path
with flip test, the sigmoid after ranking training, the codec's decoding and the inverse warp. Instance scores
are rescored as the COCO metric does (box score x mean keypoint score above ``keypoint_score_thr``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from rspose.builder import Config, build_module
from rspose.data.readers.instance import box_center_scale
from rspose.data.transforms import Normalizer, warp_image, warp_matrix
from rspose.errors import UserError
from rspose.metrics.coco_ap import rescore


@dataclass
class PosePrediction:
    """Predictions for N boxes of one image (K keypoints, image pixels).

    keypoints: (N, K, 2) x, y; keypoint_scores: (N, K); instance_scores: (N,) box score x mean keypoint score
    above the threshold (the metric's rescoring); boxes: (N, 5) x, y, w, h, box score.
    """

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    instance_scores: np.ndarray
    boxes: np.ndarray


#: a box wider or taller than this many times the image is refused (a unit or format mistake: its crop would
#: shrink the whole image to a few pixels).
MAX_BOX_TO_IMAGE = 10.0


def as_boxes(boxes: np.ndarray | Sequence[Sequence[float]] | None, image_shape: tuple[int, ...]) -> np.ndarray:
    """(N, 4) or (N, 5) x, y, w, h[, score] -> (N, 5) float64 (score 1 when absent); None -> the whole image.

    Every box must be finite, have a positive width and height, overlap the image and be at most
    :data:`MAX_BOX_TO_IMAGE` times its width and height; else a ValueError naming the box."""
    if boxes is None:
        h, w = image_shape[:2]
        return np.array([[0.0, 0.0, float(w), float(h), 1.0]])
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except ValueError:
        raise UserError("boxes must be (N, 4) or (N, 5) x, y, w, h[, score]: every row the same length") from None
    if arr.size == 0:
        return np.zeros((0, 5))
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise UserError(f"boxes must be (N, 4) or (N, 5) x, y, w, h[, score], got shape {arr.shape}")
    if arr.shape[1] == 4:
        arr = np.concatenate([arr, np.ones((arr.shape[0], 1))], axis=1)
    if not np.isfinite(arr).all():
        raise UserError(f"boxes must be finite numbers, got {arr[~np.isfinite(arr).all(axis=1)][0].tolist()}")
    if (arr[:, 2:4] <= 0).any():
        raise UserError(f"boxes need positive width and height, got {arr[(arr[:, 2:4] <= 0).any(axis=1)][0].tolist()}")
    h, w = image_shape[:2]
    outside = (arr[:, 0] >= w) | (arr[:, 1] >= h) | (arr[:, 0] + arr[:, 2] <= 0) | (arr[:, 1] + arr[:, 3] <= 0)
    too_big = (arr[:, 2] > MAX_BOX_TO_IMAGE * w) | (arr[:, 3] > MAX_BOX_TO_IMAGE * h)
    for bad, why in ((outside, "does not overlap"), (too_big, f"is more than {MAX_BOX_TO_IMAGE:g} times the size of")):
        if bad.any():
            raise UserError(f"box {arr[bad][0].tolist()} (x, y, w, h, score) {why} the {w}x{h} image")
    return arr


class Inferencer:
    """A pose model from a config and a checkpoint, applied to images.

    Args:
        config: an ``rspose`` YAML config (the model, codec and dataset of the checkpoint), or several, or the
            config as a dict (:func:`rspose.builder.build_module`).
        ckpt: local checkpoint (rspose ``.ckpt``, mmpose 1.x / 0.x, ViTPose); ``None`` keeps the weights the
            config gives (random, or ``model.init_from``).
        device: torch device for the network ("cpu", "cuda", "cuda:1").
        overrides: extra config arguments, as on the command line.
        batch_size: boxes per forward pass.
        allow_pickle: see :func:`rspose.models.checkpoint.load_checkpoint_file` (default: ``RSPOSE_ALLOW_PICKLE``).

    Attributes:
        module: the :class:`rspose.module.PoseLitModule` (eval mode); spec: its dataset spec (keypoint names,
        skeleton); bbox_padding: the data's box padding.
    """

    def __init__(
        self,
        config: Config,
        ckpt: str | Path | None,
        device: str | torch.device = "cpu",
        overrides: Sequence[str] = (),
        batch_size: int = 32,
        allow_pickle: bool | None = None,
    ) -> None:
        from rspose.models.pretrained import load_pose_weights

        if batch_size < 1:
            raise UserError(f"Inferencer: batch_size={batch_size}, expected >= 1")
        if ckpt is not None:  # before the model is built: a missing or refused file is named at once
            ckpt = Path(ckpt).expanduser()
            if not ckpt.is_file():
                raise FileNotFoundError(f"--ckpt_path {ckpt} does not exist (expected a local .ckpt/.pth file)")
        module, datamodule = build_module(config, overrides)
        if ckpt is not None:
            self.load_report = load_pose_weights(module.model, ckpt, strict=True, allow_pickle=allow_pickle)
        else:
            self.load_report = None
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.spec = module.spec
        self.codec = module.codec
        self.bbox_padding = float(getattr(datamodule, "bbox_padding", 1.25))
        self.batch_size = int(batch_size)
        self.normalize = Normalizer()

    def crops(self, image_bgr: np.ndarray, boxes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(H, W, 3) uint8 BGR, (N, 5) boxes -> images (N, 3, h, w) normalised, centres (N, 2), scales (N, 2)."""
        size = tuple(self.codec.input_size)
        images, centers, scales = [], [], []
        for box in boxes:
            center, scale = box_center_scale(box[:4], size, self.bbox_padding)
            matrix = warp_matrix(center, scale, 0.0, size, bool(self.codec.use_udp))
            images.append(self.normalize(warp_image(image_bgr, matrix, size)))
            centers.append(center)
            scales.append(scale)
        return (torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(centers)),
                torch.from_numpy(np.stack(scales)))

    @torch.inference_mode()
    def predict(
        self,
        image: np.ndarray,
        boxes: np.ndarray | Sequence[Sequence[float]] | None = None,
        color: Literal["bgr", "rgb"] = "bgr",
    ) -> PosePrediction:
        """Keypoints of the people in ``boxes`` (x, y, w, h[, score]; None = one box over the whole image).

        ``image``: (H, W, 3) uint8, BGR (as ``cv2.imread`` gives) or RGB with ``color="rgb"``.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UserError(f"image must be (H, W, 3) uint8, got shape {image.shape} dtype {image.dtype}")
        if color not in ("bgr", "rgb"):
            raise UserError(f"color={color!r}, expected 'bgr' or 'rgb'")
        bgr = np.ascontiguousarray(image[..., ::-1]) if color == "rgb" else image
        box_arr = as_boxes(boxes, image.shape)
        k = self.spec.num_keypoints
        all_kpts, all_scores = [np.zeros((0, k, 2))], [np.zeros((0, k))]
        for start in range(0, len(box_arr), self.batch_size):
            chunk = box_arr[start:start + self.batch_size]
            crops, centers, scales = self.crops(bgr, chunk)
            batch = {"image": crops.to(self.device), "center": centers.to(self.device),
                     "scale": scales.to(self.device)}
            keypoints, scores = self.module.decode_to_image(batch)
            all_kpts.append(keypoints.double().cpu().numpy())
            all_scores.append(scores.double().cpu().numpy())
        keypoints, scores = np.concatenate(all_kpts), np.concatenate(all_scores)
        instance = rescore(scores, box_arr[:, 4], "bbox_keypoint", float(self.module.hparams.keypoint_score_thr))
        return PosePrediction(keypoints, scores, instance, box_arr)

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray | Sequence[Sequence[float]] | None = None,
        color: Literal["bgr", "rgb"] = "bgr",
    ) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints (N, K, 2), scores (N, K)) in image pixels; see :meth:`predict` (also instance scores)."""
        pred = self.predict(image, boxes, color)
        return pred.keypoints, pred.keypoint_scores
