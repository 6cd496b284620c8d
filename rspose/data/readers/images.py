"""Image decoding with errors that name the file, and an up-front check of every image of a dataset."""

from __future__ import annotations

import os
from collections.abc import Iterable

import cv2
import numpy as np

from rspose.data.readers.instance import PoseInstance
from rspose.errors import UserError


def read_image(path: str, instance_id: int | None = None, ignore_orientation: bool = False) -> np.ndarray:
    """Decode an image with cv2 -> (h, w, 3) uint8 BGR; FileNotFoundError / ValueError naming the file.

    ``ignore_orientation``: the stored pixels, without the EXIF orientation that ``cv2.imread`` applies by default
    (for annotations drawn on the stored pixels; see :mod:`rspose.data.readers.image_check`)."""
    flags = cv2.IMREAD_COLOR | (cv2.IMREAD_IGNORE_ORIENTATION if ignore_orientation else 0)
    image = cv2.imread(path, flags)
    if image is None:
        who = f" (instance {instance_id})" if instance_id is not None else ""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file {path}{who} does not exist")
        raise UserError(f"image file {path}{who} could not be decoded (corrupt or not an image)")
    return image


def verify_images(instances: Iterable[PoseInstance], decode: bool = True) -> list[str]:
    """Check every distinct image of ``instances`` once; returns one line per problem (empty when all is well).

    The dataset checks lazily in ``__getitem__`` (an up-front check of 150k images is slow); call this before
    a long run. ``decode=False`` only checks existence.
    """
    problems = []
    for path in sorted({inst.image_file for inst in instances}):
        if not os.path.isfile(path):
            problems.append(f"{path}: does not exist")
        elif decode and cv2.imread(path, cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
            problems.append(f"{path}: could not be decoded")
    return problems
