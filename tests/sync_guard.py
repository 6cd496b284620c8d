"""Helpers of the sync-free and compile tests: a guard that makes every Python-level tensor-to-host conversion
raise, and small training batches made by the real codecs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from rspose.codecs import MSRAHeatmap, SimCCLabel
from rspose.codecs.base import Codec

#: Tensor methods that read a value on the host.
CONVERSIONS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__", "numpy", "__array__")
#: Functions whose output size depends on the data (a host synchronisation on a GPU).
DATA_DEPENDENT = ("nonzero", "argwhere", "masked_select", "bincount", "unique", "unique_consecutive")


class HostSync(AssertionError):
    """A tensor value was read on the host inside a guarded region."""


def _is_mask(index: object) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in items)


@contextlib.contextmanager
def no_host_sync(host_data: bool = False) -> Iterator[None]:
    """Inside: ``Tensor.__bool__``, ``.item()``, ``.tolist()``, ``int()``/``float()``/``__index__``, ``.numpy()``,
    ``nonzero`` (and the other data-dependent-size functions; ``nonzero_static`` is fine) and boolean-mask
    indexing raise :class:`HostSync`.

    ``host_data=True`` also refuses ``torch.tensor`` / ``torch.as_tensor`` of host data (a list, a number, a
    numpy array): on a GPU that is a copy from pageable host memory, which waits for the device; and on CUDA it
    sets ``torch.cuda.set_sync_debug_mode("error")`` (every synchronisation raises; without ``host_data``:
    ``"warn"``)."""
    saved: list[tuple[object, str, object]] = []

    def patch(owner: object, name: str, replacement: object) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def forbid(what: str):
        def raiser(*args, **kwargs):
            raise HostSync(f"{what} inside the training step: a host synchronisation")

        return raiser

    for name in CONVERSIONS:
        patch(torch.Tensor, name, forbid(f"Tensor.{name}"))
    for name in DATA_DEPENDENT:
        patch(torch, name, forbid(f"torch.{name}"))
        if hasattr(torch.Tensor, name):
            patch(torch.Tensor, name, forbid(f"Tensor.{name}"))
    getitem, setitem = torch.Tensor.__getitem__, torch.Tensor.__setitem__

    def guarded_getitem(self, index):
        if _is_mask(index):
            raise HostSync("boolean-mask indexing inside the training step: a host synchronisation")
        return getitem(self, index)

    def guarded_setitem(self, index, value):
        if _is_mask(index):
            raise HostSync("boolean-mask assignment inside the training step: a host synchronisation")
        return setitem(self, index, value)

    if host_data:
        for name in ("tensor", "as_tensor"):
            make = getattr(torch, name)

            def guarded_make(data, *args, _make=make, _name=name, **kwargs):
                if not isinstance(data, torch.Tensor):
                    raise HostSync(f"torch.{_name} of host data inside the training step: a copy that waits on a GPU")
                return _make(data, *args, **kwargs)

            patch(torch, name, guarded_make)
    patch(torch.Tensor, "__getitem__", guarded_getitem)
    patch(torch.Tensor, "__setitem__", guarded_setitem)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if host_data else "warn")
    try:
        yield
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def heatmap_codec() -> MSRAHeatmap:
    return MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0)


def simcc_codec() -> SimCCLabel:
    return SimCCLabel(input_size=(48, 64), sigma=2.0)


#: where the guarded tests run: the GPU when there is one
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make_batch(codec: Codec, b: int = 6, k: int = 17, seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A training batch of random keypoints (some unlabelled, some off the crop) encoded by ``codec``, with an
    ``image`` (B, 3, H, W) and a ``misplaced`` flag on instance 1."""
    gen = np.random.default_rng(seed)
    w, h = codec.input_size
    kp = (gen.random((b, k, 2)) * [w + 8, h + 8] - 4).astype(np.float32)
    vis = (gen.random((b, k)) > 0.2).astype(np.float32)
    enc = [codec.encode(kp[i], vis[i]) for i in range(b)]
    batch = {key: torch.from_numpy(np.stack([e[key] for e in enc])) for key in enc[0]}
    batch.update(
        image=torch.from_numpy(gen.standard_normal((b, 3, h, w)).astype(np.float32)),
        keypoints_input=torch.from_numpy(kp),
        keypoints_visible=torch.from_numpy(vis),
        area_input=torch.full((b,), 0.4 * w * h),
        misplaced=torch.tensor([i == 1 for i in range(b)]),
    )
    return {key: value.to(device) for key, value in batch.items()}
