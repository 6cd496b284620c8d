"""Up-front image checks: every image a split refers to exists, is complete, decodes cleanly and has its
annotated size.

What is checked, per image file:

* it exists and PIL recognises it as an image ("does not exist", "not a readable image");
* a JPEG ends with its EOI marker FF D9, a PNG with its IEND chunk ("truncated"): a cut file otherwise decodes
  partly (OpenCV prints "Premature end of JPEG file" without the file name) and trains on grey pixels;
* ``decode=True`` (the default): the whole file is decoded once by OpenCV at 1/8 scale (the entropy-coded data is
  read in full, the inverse DCT mostly skipped) and any libjpeg "Corrupt JPEG data" / "Premature end" warning, or
  a failed decode, makes it "corrupt": random bytes in the middle of a JPEG otherwise decode to garbage pixels
  with only a line of libjpeg noise that names no file. About 2.5 ms per COCO image on one core, once (cached);
  ``decode=False`` reads headers only (about 1 KB per image);
* its real (width, height) equals the annotation file's ``width``/``height`` when those are given. For a JPEG
  with an EXIF orientation that swaps the axes (5 to 8), the annotated size says on which orientation the
  annotation was drawn: the stored pixels (the size PIL reports) or the rotated ones (what ``cv2.imread`` returns
  by default); :attr:`ImageReport.raw_orientation` lists the files to read with ``cv2.IMREAD_IGNORE_ORIENTATION``.
  When neither size matches, it is a size mismatch; when the size cannot tell (no annotated size, or an
  orientation that keeps the axes) the image is read as OpenCV and mmcv read it, orientation applied.

Results are cached per file, keyed by (path, modification time in ns, size in bytes): in memory for the life of
the process, and in a small JSON file per image folder under ``cache_dir`` when one is given, so a second run
re-reads no header.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rspose.data.readers.instance import PoseInstance

#: bytes read at the end of a file to look for the JPEG EOI marker / PNG IEND chunk (trailing padding allowed).
TAIL_BYTES = 64
#: problems that make an image unusable; a size mismatch is not here: it is always an error (see ``ImageReport``).
SKIP_REASONS = ("does not exist", "not a readable image", "truncated", "corrupt")
#: version of the cached results (bumped when the check changes, so old caches are not trusted).
CACHE_VERSION = 2

#: path -> (mtime_ns, size, [width, height, problem, EXIF orientation, decoded]); width x height as stored.
_MEMORY: dict[str, tuple[int, int, list]] = {}


@dataclass
class ImageReport:
    """What :func:`check_images` found.

    Attributes:
        problems: image path -> reason, one of ``SKIP_REASONS``, for the images to skip.
        size_mismatch: image path -> ((annotated width, height), (real width, height)).
        checked: number of distinct image files checked; from_cache: how many of them came from the cache.
        raw_orientation: images whose annotated size is that of the stored pixels while their EXIF orientation
            swaps the axes: to be read without applying the orientation (``cv2.IMREAD_IGNORE_ORIENTATION``).
    """

    problems: dict[str, str]
    size_mismatch: dict[str, tuple[tuple[int, int], tuple[int, int]]]
    checked: int
    from_cache: int
    raw_orientation: set[str] = field(default_factory=set)

    def summary(self, source: str, first: int = 3) -> str:
        """One line: counts per reason and the first few file names of each."""
        parts = []
        for reason in SKIP_REASONS:
            files = sorted(p for p, r in self.problems.items() if r == reason)
            if files:
                names = ", ".join(Path(p).name for p in files[:first]) + (", ..." if len(files) > first else "")
                parts.append(f"{len(files)} {reason} ({names})")
        return f"{source}: {len(self.problems)} of {self.checked} images skipped: " + "; ".join(parts)


def probe_image(path: str) -> tuple[int, int, str | None]:
    """(width, height, problem) of one image file from its header and tail; width = height = 0 if unknown."""
    width, height, problem, _ = _probe(path, decode=False)
    return width, height, problem


#: libjpeg warnings that mean the entropy-coded data is damaged (the pixels after it are garbage).
_CORRUPT_MARKERS = ("Corrupt JPEG data", "Premature end of JPEG file")


def decodes_cleanly(path: str) -> bool:
    """Decode ``path`` with OpenCV at 1/8 scale with file descriptor 2 captured: False when the decode fails or
    libjpeg warns about corrupt data. Other captured output is passed on to stderr."""
    import tempfile

    import cv2

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to capture (closed): only a failed decode can be seen
        return cv2.imread(path, cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_IGNORE_ORIENTATION) is not None
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            image = cv2.imread(path, cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_IGNORE_ORIENTATION)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode(errors="replace")
    noise = [line for line in text.splitlines() if line.strip() and not line.startswith(_CORRUPT_MARKERS)]
    if noise:
        sys.stderr.write("\n".join(noise) + "\n")
    return image is not None and not any(line.startswith(_CORRUPT_MARKERS) for line in text.splitlines())


def _probe(path: str, decode: bool) -> tuple[int, int, str | None, int]:
    """(width, height as stored, problem, EXIF orientation 1-8) of one image file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
            kind = img.format
            try:
                orientation = int(img.getexif().get(0x0112, 1) or 1)
            except Exception:  # a damaged EXIF block: OpenCV ignores it as well
                orientation = 1
    except FileNotFoundError:
        return 0, 0, "does not exist", 1
    except (UnidentifiedImageError, OSError, ValueError):
        return 0, 0, "not a readable image", 1
    if kind in ("JPEG", "MPO", "PNG"):
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            tail = f.read()
        # 0xFF in JPEG entropy-coded data is always followed by 0x00 or a restart marker, never by 0xD9
        if (b"\xff\xd9" if kind != "PNG" else b"IEND") not in tail:
            return width, height, "truncated", orientation
    if decode and not decodes_cleanly(path):
        return width, height, "corrupt", orientation
    return width, height, None, orientation


def _cache_file(cache_dir: str | Path, folder: str) -> Path:
    digest = hashlib.sha1(os.path.abspath(folder).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"image_check_v{CACHE_VERSION}_{digest}.json"


def _load_disk_cache(cache_dir: str | Path | None, folders: Iterable[str]) -> None:
    if cache_dir is None:
        return
    for folder in folders:
        path = _cache_file(cache_dir, folder)
        try:
            with path.open() as f:
                entries = json.load(f)["files"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no cache yet, or an unreadable one: it is rebuilt
        for name, (mtime, size, result) in entries.items():
            _MEMORY.setdefault(os.path.join(folder, name), (mtime, size, result))


def _save_disk_cache(cache_dir: str | Path | None, folders: Iterable[str]) -> None:
    if cache_dir is None:
        return
    for folder in folders:
        prefix = os.path.join(folder, "")
        entries = {p[len(prefix):]: v for p, v in _MEMORY.items() if p.startswith(prefix) and os.sep not in p[len(prefix):]}
        path = _cache_file(cache_dir, folder)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with tmp.open("w") as f:
                json.dump({"folder": os.path.abspath(folder), "files": entries}, f, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError as e:
            warnings.warn(f"image check cache {path} could not be written ({e}); the check will run again", stacklevel=3)


def check_images(
    instances: Iterable[PoseInstance], cache_dir: str | Path | None = None, decode: bool = True
) -> ImageReport:
    """Check every distinct image file of ``instances`` once (see the module docstring).

    Args:
        instances: reader output; ``image_size`` (width, height), when given and non-zero, is compared with the
            real size.
        cache_dir: folder for the JSON caches (one per image folder), or None for the in-memory cache only.
        decode: also decode every image once (catches corrupt data inside the file); False: headers only.
    """
    expected: dict[str, tuple[int, int] | None] = {}
    for inst in instances:
        expected.setdefault(inst.image_file, inst.image_size)
    folders = sorted({os.path.dirname(p) for p in expected})
    _load_disk_cache(cache_dir, folders)
    problems, mismatch, raw, hits, probed = {}, {}, set(), 0, 0
    for path, size in expected.items():
        try:
            st = os.stat(path)
            key = (st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        cached = _MEMORY.get(path)
        # a header-only result does not answer a decode check; a decoded one answers both
        if key is not None and cached is not None and (cached[0], cached[1]) == key and len(cached[2]) == 5 \
                and (cached[2][4] or not decode):
            width, height, problem, orientation, _ = cached[2]
            hits += 1
        else:
            width, height, problem, orientation = _probe(path, decode) if key is not None else (0, 0, "does not exist", 1)
            if key is not None:
                _MEMORY[path] = (key[0], key[1], [width, height, problem, orientation, decode])
                probed += 1
        if problem is not None:
            problems[path] = problem
            continue
        # the orientation OpenCV applies by default: 5-8 swap width and height
        shown = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        if size is not None and size[0] > 0 and size[1] > 0:
            size = (int(size[0]), int(size[1]))
            if size == (width, height) and shown != (width, height):
                raw.add(path)
            elif size != shown:
                mismatch[path] = (size, shown)
    if probed:
        _save_disk_cache(cache_dir, folders)
    return ImageReport(problems, mismatch, len(expected), hits, raw)


def default_cache_dir() -> Path:
    """``$RSPOSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/rspose``, else ``~/.cache/rspose``."""
    if os.environ.get("RSPOSE_CACHE_DIR"):
        return Path(os.environ["RSPOSE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rspose"
