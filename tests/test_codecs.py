"""Codecs: encode/decode round trips, batched decoding vs slow numpy references, flip rules, weights, dtypes.

The references below are written from the mmpose 1.x rules (``codecs/utils/gaussian_heatmap.py``,
``post_processing.py``, ``refinement.py``) with per-keypoint Python loops and cv2, independently of the
vectorised torch code under test.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from rspose.codecs import MSRAHeatmap, SimCCLabel, UDPHeatmap
from rspose.codecs.gaussian import flip_heatmaps
from rspose.data.specs import COCO

W, H = 192, 256  # input crop
FLIP = list(COCO.flip_indices)
K = len(FLIP)



# ----------------------------------------------------------------------------------------------------------------
# slow references (mmpose rules, loops)


def ref_gaussian_heatmap(kp_hm: np.ndarray, visible: float, size: tuple[int, int], sigma: int, subpixel: bool):
    """One keypoint, mmpose patch rule: centre int(x + 0.5), square patch of radius 3 sigma, copied with clipping."""
    w, h = size
    if visible <= 0:
        return np.zeros((h, w), np.float32), 0.0
    r = 3 * sigma
    mu = (kp_hm + 0.5).astype(np.int64)
    left, top = mu - r
    right, bottom = mu + r + 1  # exclusive
    if left >= w or top >= h or right <= 0 or bottom <= 0:  # no pixel of the patch on the map
        return np.zeros((h, w), np.float32), 0.0
    g = np.arange(2 * r + 1, dtype=np.float64)
    x0 = r + (kp_hm[0] - mu[0] if subpixel else 0.0)
    y0 = r + (kp_hm[1] - mu[1] if subpixel else 0.0)
    patch = np.exp(-((g[None, :] - x0) ** 2 + (g[:, None] - y0) ** 2) / (2 * sigma**2))
    out = np.zeros((h, w), np.float64)
    out[max(0, top) : min(h, bottom), max(0, left) : min(w, right)] = patch[
        max(0, -top) : min(h, bottom) - top, max(0, -left) : min(w, right) - left
    ]
    return out.astype(np.float32), 1.0


def ref_simcc_label(kp: np.ndarray, visible: float, k: float, sizes: tuple[int, int], sigma: float):
    if visible <= 0:
        return np.zeros(sizes[0], np.float32), np.zeros(sizes[1], np.float32), 0.0
    outs = []
    for axis in range(2):
        mu = int(np.around(kp[axis] * k))
        v = np.zeros(sizes[axis], np.float32)
        for b in range(sizes[axis]):
            if abs(b - mu) <= 3 * sigma:
                v[b] = np.exp(-((b - mu) ** 2) / (2 * sigma**2))
        outs.append(v)
    weight = float(outs[0].any() and outs[1].any())
    return outs[0] * weight, outs[1] * weight, weight


def ref_argmax(hm: np.ndarray):
    """hm (h, w) -> (x, y) ints, value (first maximum)."""
    idx = int(np.argmax(hm))
    return idx % hm.shape[1], idx // hm.shape[1], float(hm.max())


def ref_blur(hm: np.ndarray, ks: int) -> np.ndarray:
    """mmpose gaussian_blur for one map: zero border, cv2.GaussianBlur, rescale to the original maximum.

    Where mmpose divides 0 by 0 (all-zero map) the codec skips the rescale; so does this reference.
    """
    border = (ks - 1) // 2
    h, w = hm.shape
    dr = np.zeros((h + 2 * border, w + 2 * border), np.float32)
    dr[border:-border, border:-border] = hm
    dr = cv2.GaussianBlur(dr, (ks, ks), 0)[border:-border, border:-border]
    return dr * (hm.max() / dr.max()) if hm.max() > 0 and dr.max() > 0 else dr


def ref_decode_heatmap(hm: np.ndarray, mode: str, ks: int = 11) -> tuple[np.ndarray, float]:
    """One (h, w) map -> (x, y) in heatmap px with the mmpose refinement; DARK offsets clamped to +-1 px."""
    h, w = hm.shape
    x, y, val = ref_argmax(hm)
    out = np.array([x, y], np.float64)
    if mode == "quarter":
        if 1 < x < w - 1 and 0 < y < h:
            out[0] += 0.25 * np.sign(hm[y, x + 1] - hm[y, x - 1])
        if 1 < y < h - 1 and 0 < x < w:
            out[1] += 0.25 * np.sign(hm[y + 1, x] - hm[y - 1, x])
    elif mode == "dark":
        L = np.log(np.maximum(ref_blur(hm, ks), 1e-10))
        if 1 < x < w - 2 and 1 < y < h - 2:
            dx = 0.5 * (L[y, x + 1] - L[y, x - 1])
            dy = 0.5 * (L[y + 1, x] - L[y - 1, x])
            dxx = 0.25 * (L[y, x + 2] - 2 * L[y, x] + L[y, x - 2])
            dxy = 0.25 * (L[y + 1, x + 1] - L[y - 1, x + 1] - L[y + 1, x - 1] + L[y - 1, x - 1])
            dyy = 0.25 * (L[y + 2, x] - 2 * L[y, x] + L[y - 2, x])
            hess = np.array([[dxx, dxy], [dxy, dyy]])
            if np.linalg.det(hess) != 0:
                out += np.clip(-np.linalg.inv(hess) @ np.array([dx, dy]), -1, 1)
    elif mode == "dark_udp":
        L = np.pad(np.log(np.clip(ref_blur(hm, ks), 1e-3, 50.0)), 1, mode="edge")
        px, py = x + 1, y + 1
        i0 = L[py, px]
        ix1, ix1_, iy1, iy1_ = L[py, px + 1], L[py, px - 1], L[py + 1, px], L[py - 1, px]
        dx, dy = 0.5 * (ix1 - ix1_), 0.5 * (iy1 - iy1_)
        dxx, dyy = ix1 - 2 * i0 + ix1_, iy1 - 2 * i0 + iy1_
        dxy = 0.5 * (L[py + 1, px + 1] - ix1 - iy1 + 2 * i0 - ix1_ - iy1_ + L[py - 1, px - 1])
        hess = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
        out -= np.clip(np.linalg.inv(hess) @ np.array([dx, dy]), -1, 1)
    return out, val


def encode_batch(codec, keypoints: np.ndarray, visible: np.ndarray | None = None):
    """keypoints (N, K, 2) -> head-output-like tensors (N, K, ...) and weights (N, K)."""
    visible = np.ones(keypoints.shape[:2], np.float32) if visible is None else visible
    encs = [codec.encode(kp, v) for kp, v in zip(keypoints, visible)]
    outs = [torch.from_numpy(np.stack([e[key] for e in encs])) for key in codec.target_keys]
    weights = np.stack([e["target_weight"] for e in encs])
    return (outs[0] if len(outs) == 1 else tuple(outs)), weights


def random_keypoints(rng, n: int, margin: float = 0.0) -> np.ndarray:
    return rng.uniform([margin, margin], [W - 1 - margin, H - 1 - margin], size=(n, K, 2)).astype(np.float32)


def flip_keypoints(kps: np.ndarray) -> np.ndarray:
    """Keypoints of the horizontally flipped crop: x' = W - 1 - x, permuted by the COCO flip indices."""
    out = kps[:, FLIP].copy()
    out[..., 0] = W - 1 - out[..., 0]
    return out


# ----------------------------------------------------------------------------------------------------------------
# encoding


@pytest.mark.parametrize("kind", ["msra", "msra_unbiased", "udp"])
def test_heatmap_encode_matches_reference(kind):
    rng = np.random.default_rng(0)
    codec = {"msra": MSRAHeatmap(), "msra_unbiased": MSRAHeatmap(unbiased=True), "udp": UDPHeatmap()}[kind]
    # inside, near and beyond the borders, plus unlabelled ones
    kps = rng.uniform([-40, -40], [W + 40, H + 40], size=(K, 2)).astype(np.float32)
    kps[:4] = [[0, 0], [W - 1, H - 1], [-25.0, 100.0], [W + 20.0, 3.0]]
    vis = (rng.uniform(size=K) > 0.2).astype(np.float32)
    enc = codec.encode(kps, vis)
    assert enc["heatmaps"].shape == (K, 64, 48) and enc["heatmaps"].dtype == np.float32
    for k in range(K):
        ref, weight = ref_gaussian_heatmap(kps[k] / codec.scale_factor, vis[k], (48, 64), 2, kind != "msra")
        np.testing.assert_allclose(enc["heatmaps"][k], ref, atol=1e-6, err_msg=f"keypoint {k} at {kps[k]}")
        assert enc["target_weight"][k] == weight, f"keypoint {k} at {kps[k]}"


@pytest.mark.parametrize("k_ratio", [2.0, 3.0])
def test_simcc_encode_matches_reference(k_ratio):
    rng = np.random.default_rng(1)
    codec = SimCCLabel(sigma=(6.0, 5.0), simcc_split_ratio=k_ratio)
    assert codec.simcc_size == (int(W * k_ratio), int(H * k_ratio))
    kps = rng.uniform([-30, -30], [W + 30, H + 30], size=(K, 2)).astype(np.float32)
    vis = (rng.uniform(size=K) > 0.2).astype(np.float32)
    enc = codec.encode(kps, vis)
    for k in range(K):
        rx, _, wx = ref_simcc_label(kps[k], vis[k], k_ratio, codec.simcc_size, 6.0)
        _, ry, wy = ref_simcc_label(kps[k], vis[k], k_ratio, codec.simcc_size, 5.0)
        w = float(wx and wy)
        np.testing.assert_allclose(enc["target_x"][k], rx * w, atol=1e-6)
        np.testing.assert_allclose(enc["target_y"][k], ry * w, atol=1e-6)
        assert enc["target_weight"][k] == w


def test_weights_peak_and_truncation():
    msra, udp, simcc = MSRAHeatmap(), UDPHeatmap(), SimCCLabel()
    kps = np.array([[50.3, 70.9], [10.0, 20.0], [-100.0, 50.0], [96.0, 400.0], [3.0, 3.0]], np.float32)
    vis = np.array([1, 0, 1, 1, 1], np.float32)
    for codec in (msra, udp, simcc):
        enc = codec.encode(kps, vis)
        # unlabelled (1) and far off the map (2, 3) get weight 0 and an all-zero label
        np.testing.assert_array_equal(enc["target_weight"], [1, 0, 0, 0, 1])
        for key in codec.target_keys:
            assert not enc[key][[1, 2, 3]].any()
            assert enc[key].min() >= 0 and enc[key].max() <= 1
    # MSRA and SimCC: peak exactly 1 (integer centre), exactly 0 beyond 3 sigma of the centre, > 0 inside
    hm = msra.encode(kps, vis)["heatmaps"][0]
    cx, cy = int(50.3 / 4 + 0.5), int(70.9 / 4 + 0.5)
    assert hm.max() == 1.0 and hm[cy, cx] == 1.0
    ys, xs = np.mgrid[:64, :48]
    inside = (np.abs(xs - cx) <= 6) & (np.abs(ys - cy) <= 6)
    assert (hm[~inside] == 0).all() and (hm[inside] > 0).all()
    enc = simcc.encode(kps, vis)
    for vec, c in ((enc["target_x"][0], round(50.3 * 2)), (enc["target_y"][0], round(70.9 * 2))):
        bins = np.arange(vec.size)
        assert vec.max() == 1.0 and vec[c] == 1.0
        assert (vec[np.abs(bins - c) > 18] == 0).all() and (vec[np.abs(bins - c) <= 18] > 0).all()
    # UDP: amplitude-1 Gaussian at the sub-pixel keypoint: exactly 1 on a grid point, exp(-d^2/2s^2) otherwise
    on_grid = np.array([[udp.scale_factor[0] * 20, udp.scale_factor[1] * 30]], np.float32)
    hm = udp.encode(on_grid, np.ones(1, np.float32))["heatmaps"][0]
    assert hm.max() == pytest.approx(1.0, abs=1e-6) and hm.argmax() == 30 * 48 + 20
    inside = (np.abs(xs - 20) <= 6) & (np.abs(ys - 30) <= 6)
    assert (hm[~inside] == 0).all() and (hm[inside] > 0).all()
    # a keypoint just off the map whose patch still reaches it keeps its weight (mmpose rule)
    edge = np.array([[-10.0, 100.0]], np.float32)  # heatmap x = -2.5 -> centre int(-2.0) = -2, patch reaches 4
    for codec in (msra, udp):
        enc = codec.encode(edge, np.ones(1, np.float32))
        assert enc["target_weight"][0] == 1 and enc["heatmaps"][0].any()


# ----------------------------------------------------------------------------------------------------------------
# round trips


def _round_trip_error(codec, kps: np.ndarray) -> np.ndarray:
    out, _ = encode_batch(codec, kps)
    decoded, _ = codec.decode(out)
    return np.linalg.norm(decoded.numpy() - kps, axis=-1)


def test_round_trip_msra_and_dark():
    rng = np.random.default_rng(2)
    kps = random_keypoints(rng, 40)
    plain = _round_trip_error(MSRAHeatmap(), kps)
    dark = _round_trip_error(MSRAHeatmap(unbiased=True), kps)
    assert plain.max() < 4.0  # one heatmap stride
    assert dark.max() < 4.0
    assert dark.mean() < 0.5 * plain.mean(), (dark.mean(), plain.mean())
    # on the same sub-pixel maps, DARK decoding beats the quarter shift
    out, _ = encode_batch(MSRAHeatmap(unbiased=True), kps)
    quarter = np.linalg.norm(MSRAHeatmap().decode(out)[0].numpy() - kps, axis=-1)
    assert dark.mean() < 0.5 * quarter.mean(), (dark.mean(), quarter.mean())


def test_round_trip_udp():
    rng = np.random.default_rng(3)
    # DARK-UDP is exact only away from the border (zero-padded blur, edge-padded differences): keep 3 heatmap px
    kps = random_keypoints(rng, 40, margin=3 * 4.07)
    err = np.abs(UDPHeatmap().decode(encode_batch(UDPHeatmap(), kps)[0])[0].numpy() - kps)
    assert err.max() < 0.25, err.max()
    assert err.mean() < 0.02


@pytest.mark.parametrize("k_ratio", [2.0, 3.0])
def test_round_trip_simcc(k_ratio):
    rng = np.random.default_rng(4)
    codec = SimCCLabel(simcc_split_ratio=k_ratio)
    kps = random_keypoints(rng, 40)
    err = np.abs(codec.decode(encode_batch(codec, kps)[0])[0].numpy() - kps)
    assert err.max() <= 0.5 / k_ratio + 1e-5


# ----------------------------------------------------------------------------------------------------------------
# batched decode == slow reference


def _realistic_heatmaps(rng, b: int, k: int, h: int = 64, w: int = 48) -> np.ndarray:
    """Gaussian blobs of random width / amplitude at sub-pixel centres (some on the border) plus mild noise."""
    ys, xs = np.mgrid[:h, :w].astype(np.float64)
    cx = rng.uniform(-1, w, size=(b, k))
    cy = rng.uniform(-1, h, size=(b, k))
    cx[:, :3] = [0.2, w - 1.1, 1.4]  # peaks on / next to the border
    cy[:, 3:5] = [0.3, h - 1.2]
    s = rng.uniform(1.5, 3.0, size=(b, k))
    amp = rng.uniform(0.2, 1.0, size=(b, k))
    g = amp[..., None, None] * np.exp(
        -((xs - cx[..., None, None]) ** 2 + (ys - cy[..., None, None]) ** 2) / (2 * s[..., None, None] ** 2)
    )
    return (g + 0.02 * rng.uniform(size=g.shape)).astype(np.float32)


@pytest.mark.parametrize("kind", ["msra", "msra_dark", "udp"])
def test_heatmap_decode_matches_reference(kind):
    rng = np.random.default_rng(5)
    codec = {"msra": MSRAHeatmap(), "msra_dark": MSRAHeatmap(unbiased=True), "udp": UDPHeatmap()}[kind]
    mode = {"msra": "quarter", "msra_dark": "dark", "udp": "dark_udp"}[kind]
    hms = _realistic_heatmaps(rng, 3, K)
    hms[0, 5] = 0.0  # an all-zero map (argmax (0, 0))
    hms[1, 6, 10:12, 20:22] = hms[1, 6].max() + 0.5  # ties: the first maximum wins
    kps, scores = codec.decode(torch.from_numpy(hms))
    assert kps.shape == (3, K, 2) and scores.shape == (3, K)
    for b in range(3):
        for k in range(K):
            loc, val = ref_decode_heatmap(hms[b, k], mode)
            np.testing.assert_allclose(kps[b, k].numpy(), loc * codec.scale_factor, atol=2e-3, err_msg=f"{b},{k}")
            assert scores[b, k].item() == pytest.approx(val)


def test_simcc_decode_matches_reference():
    rng = np.random.default_rng(6)
    codec = SimCCLabel()
    x = rng.normal(size=(2, K, 384)).astype(np.float32)
    y = rng.normal(size=(2, K, 512)).astype(np.float32)
    kps, scores = codec.decode((torch.from_numpy(x), torch.from_numpy(y)))
    for b in range(2):
        for k in range(K):
            assert kps[b, k, 0].item() == np.argmax(x[b, k]) / 2.0
            assert kps[b, k, 1].item() == np.argmax(y[b, k]) / 2.0
            assert scores[b, k].item() == min(x[b, k].max(), y[b, k].max())


# ----------------------------------------------------------------------------------------------------------------
# flip test rules


def _flip_round_trip(codec, kps: np.ndarray, flip_back=None) -> np.ndarray:
    """The ideal head output for the flipped crop is the encoding of the flipped keypoints; flip it back, decode."""
    out, _ = encode_batch(codec, flip_keypoints(kps))
    back = codec.flip_back(out, FLIP) if flip_back is None else flip_back(out)
    return np.abs(codec.decode(back)[0].numpy() - kps)


def test_flip_back_msra_shift_matters():
    rng = np.random.default_rng(7)
    # 1.5 strides from the left / right borders: there the 1 px shift pushes the peak off the map or, with the
    # edge column kept (mmpose), ties it with its copy at x = 0 (errors up to ~5 px, inherent to the rule)
    kps = random_keypoints(rng, 30, margin=6.0)
    for codec in (MSRAHeatmap(), MSRAHeatmap(unbiased=True)):
        err = _flip_round_trip(codec, kps)
        assert np.linalg.norm(err, axis=-1).max() < 4.0  # within one stride
        no_shift = _flip_round_trip(codec, kps, lambda o: flip_heatmaps(o, FLIP, shift=False, where="test"))
        assert err[..., 0].mean() < 0.7 * no_shift[..., 0].mean(), (err[..., 0].mean(), no_shift[..., 0].mean())


def test_flip_back_msra_manual_rule():
    """flip_back = mirror x, take channel flip_indices[k], then heatmap[..., 1:] = heatmap[..., :-1]."""
    rng = np.random.default_rng(8)
    hm = rng.uniform(size=(2, K, 64, 48)).astype(np.float32)
    expected = np.flip(hm, -1)[:, FLIP].copy()
    expected[..., 1:] = expected[..., :-1].copy()
    np.testing.assert_array_equal(MSRAHeatmap().flip_back(torch.from_numpy(hm), FLIP).numpy(), expected)
    np.testing.assert_array_equal(UDPHeatmap().flip_back(torch.from_numpy(hm), FLIP).numpy(), np.flip(hm, -1)[:, FLIP])


def test_flip_back_udp():
    rng = np.random.default_rng(9)
    kps = random_keypoints(rng, 30, margin=3 * 4.07)
    err = _flip_round_trip(UDPHeatmap(), kps)
    assert err.max() < 0.25, err.max()


@pytest.mark.parametrize("k_ratio", [2.0, 3.0])
def test_flip_back_simcc(k_ratio):
    rng = np.random.default_rng(10)
    codec = SimCCLabel(simcc_split_ratio=k_ratio)
    kps = random_keypoints(rng, 30)
    err = _flip_round_trip(codec, kps)
    assert err.max() <= 1.0 / k_ratio + 1e-5
    # keypoints on the bin grid come back exactly: x' = W - 1 - x is undone by reversal + a k - 1 bin left shift
    grid = np.round(kps * k_ratio) / k_ratio
    assert _flip_round_trip(codec, grid).max() < 1e-4

    # without the shift, x is off by exactly (k - 1) / k px (a y-only permutation needs no shift)
    def no_shift(o):
        index = torch.as_tensor(FLIP)
        return o[0][:, index].flip(-1), o[1][:, index]

    err0 = _flip_round_trip(codec, grid, no_shift)
    np.testing.assert_allclose(err0[..., 0], (k_ratio - 1) / k_ratio, atol=1e-4)
    assert err0[..., 1].max() < 1e-4


def test_flip_back_simcc_manual_rule():
    rng = np.random.default_rng(11)
    x = rng.uniform(size=(2, K, 384)).astype(np.float32)
    y = rng.uniform(size=(2, K, 512)).astype(np.float32)
    bx, by = SimCCLabel().flip_back((torch.from_numpy(x), torch.from_numpy(y)), FLIP)
    rev = np.flip(x, -1)[:, FLIP]
    expected = np.concatenate([rev[..., 1:], rev[..., -1:]], axis=-1)  # k - 1 = 1 bin left, last bin repeated
    np.testing.assert_array_equal(bx.numpy(), expected)
    np.testing.assert_array_equal(by.numpy(), y[:, FLIP])


# ----------------------------------------------------------------------------------------------------------------
# dtypes and degenerate inputs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_decodes_in_float32(dtype):
    rng = np.random.default_rng(12)
    kps = random_keypoints(rng, 4, margin=16)
    for codec in (MSRAHeatmap(), MSRAHeatmap(unbiased=True), UDPHeatmap(), SimCCLabel()):
        out, _ = encode_batch(codec, kps)
        low = out.to(dtype) if isinstance(out, torch.Tensor) else tuple(o.to(dtype) for o in out)
        dec, scores = codec.decode(low)
        assert dec.dtype == torch.float32 and scores.dtype == torch.float32
        assert torch.isfinite(dec).all() and torch.isfinite(scores).all()
        assert np.abs(dec.numpy() - kps).max() < 4.0


def test_degenerate_inputs_are_finite():
    shapes = {"heat": (2, K, 64, 48)}
    gen = torch.Generator().manual_seed(0)
    cases = {
        "zeros": lambda s: torch.zeros(s),
        "constant": lambda s: torch.full(s, 0.3),
        "negative_logits": lambda s: -5 - torch.rand(s, generator=gen),
        "logits": lambda s: 8 * torch.randn(s, generator=gen),
        "huge": lambda s: 1e30 * torch.randn(s, generator=gen),
        "fp16_extremes": lambda s: (6e4 * torch.randn(s, generator=gen).sign()).half(),
    }
    for name, make in cases.items():
        for codec in (MSRAHeatmap(), MSRAHeatmap(unbiased=True), UDPHeatmap()):
            kps, scores = codec.decode(make(shapes["heat"]))
            assert torch.isfinite(kps).all() and torch.isfinite(scores).all(), (name, type(codec).__name__)
            assert (kps >= -1 * 4.1).all() and (kps[..., 0] <= W + 4.1).all() and (kps[..., 1] <= H + 4.1).all()
        simcc = SimCCLabel()
        kps, scores = simcc.decode((make((2, K, 384)), make((2, K, 512))))
        assert torch.isfinite(kps).all() and torch.isfinite(scores).all(), name
    # all-zero maps decode to the first pixel with score 0
    kps, scores = MSRAHeatmap(unbiased=True).decode(torch.zeros(1, K, 64, 48))
    assert (kps == 0).all() and (scores == 0).all()


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="heatmap_size"):
        MSRAHeatmap().decode(torch.zeros(1, K, 32, 32))
    with pytest.raises(ValueError, match="flip_indices"):
        UDPHeatmap().flip_back(torch.zeros(1, K, 64, 48), FLIP[:-1])
    with pytest.raises(ValueError, match="simcc_size"):
        SimCCLabel().decode((torch.zeros(1, K, 100), torch.zeros(1, K, 512)))
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        SimCCLabel().encode(np.zeros((K, 3)), np.ones(K))


def test_centroid_decoding_matches_a_slow_loop_and_is_decoding_only():
    from rspose.codecs.dark import heatmap_argmax, refine_centroid

    gen = torch.Generator().manual_seed(5)
    maps = torch.rand(2, 3, 7, 6, generator=gen) - 0.2  # some negative values, clamped to 0 in the window
    maps[0, 0] = 0.0
    maps[0, 0, 0, 0] = 1.0  # argmax in the corner: outside pixels count as 0
    maps[1, 2] = -1.0  # no positive mass: the argmax stays
    locs, _ = heatmap_argmax(maps)
    got = refine_centroid(locs, maps)
    for b in range(2):
        for k in range(3):
            x0, y0 = (int(v) for v in locs[b, k])
            mass = sx = sy = 0.0
            for yy in range(y0 - 1, y0 + 2):
                for xx in range(x0 - 1, x0 + 2):
                    if 0 <= yy < 7 and 0 <= xx < 6:
                        v = max(float(maps[b, k, yy, xx]), 0.0)
                        mass, sx, sy = mass + v, sx + v * xx, sy + v * yy
            expected = (sx / mass, sy / mass) if mass > 0 else (x0, y0)
            assert got[b, k].tolist() == pytest.approx(expected, abs=1e-5), (b, k)
    quarter = MSRAHeatmap(input_size=(24, 28), heatmap_size=(6, 7))
    centroid = MSRAHeatmap(input_size=(24, 28), heatmap_size=(6, 7), decoding="centroid")
    kp = np.array([[5.3, 9.1], [12.0, 20.2]], dtype=np.float32)
    vis = np.ones(2, dtype=np.float32)
    np.testing.assert_array_equal(quarter.encode(kp, vis)["heatmaps"], centroid.encode(kp, vis)["heatmaps"])
    assert MSRAHeatmap(unbiased=True).decoding == "dark" and quarter.decoding == "quarter"
    with pytest.raises(ValueError, match="decoding='argmax'"):
        MSRAHeatmap(decoding="argmax")  # type: ignore[arg-type]


def test_msra_blur_kernel_without_dark_decoding_is_refused():
    with pytest.raises(ValueError, match="blur_kernel_size=17 is only used by DARK"):
        MSRAHeatmap(blur_kernel_size=17)
    assert MSRAHeatmap(sigma=3.0, blur_kernel_size=17, decoding="dark").blur_kernel_size == 17


@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7, 9, 11, 13, 17, 25])
def test_blur_taps_are_opencvs_kernel(kernel_size):
    """DARK's blur kernel, computed in plain Python, equals cv2.getGaussianKernel(k, 0) (fixed small kernels
    included), and its banded matrix blurs a zero-padded map as cv2.GaussianBlur with a zero border does."""
    from rspose.codecs.dark import _blur_matrix, gaussian_taps

    np.testing.assert_allclose(gaussian_taps(kernel_size), cv2.getGaussianKernel(kernel_size, 0).ravel(), rtol=1e-12)
    rng = np.random.default_rng(kernel_size)
    heatmap = rng.random((16, 12))
    want = cv2.GaussianBlur(heatmap, (kernel_size, kernel_size), 0, borderType=cv2.BORDER_CONSTANT)
    my, mx = _blur_matrix(16, kernel_size, torch.device("cpu")), _blur_matrix(12, kernel_size, torch.device("cpu"))
    np.testing.assert_allclose((my @ torch.from_numpy(heatmap) @ mx.T).numpy(), want, atol=1e-12)
