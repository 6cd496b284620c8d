"""Heatmap decoders beyond mmpose's (soft-argmax of the logits, rank fit) and the DARK blur that follows sigma.

References: hand-computed offsets on small synthetic maps, and slow per-keypoint loops (numpy, scipy-free mean
ranks, numpy least squares) written independently of the batched torch code under test.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rspose.codecs import MSRAHeatmap, UDPHeatmap
from rspose.codecs.dark import blur_kernel_for_sigma, heatmap_argmax
from rspose.codecs.rank_fit import disc_offsets, disc_radius, refine_rank_fit
from rspose.codecs.softargmax import refine_softargmax

ROOT = Path(__file__).resolve().parents[1]
#: Configs whose DARK blur kernel deliberately does not follow their sigma (none today), with the reason.
KERNEL_EXCEPTIONS: dict[str, str] = {}


# ---------------------------------------------------------------------------------------------- the blur follows sigma


@pytest.mark.parametrize(("sigma", "kernel"), [(1.0, 5), (2.0, 11), (3.0, 17), (1.5, 9), (0.5, 3)])
def test_blur_kernel_follows_sigma(sigma, kernel):
    assert blur_kernel_for_sigma(sigma) == kernel
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MSRAHeatmap(sigma=sigma, decoding="dark").blur_kernel_size == kernel
        assert MSRAHeatmap(sigma=sigma, unbiased=True).blur_kernel_size == kernel
        assert UDPHeatmap(sigma=sigma).blur_kernel_size == kernel


def test_a_kernel_far_from_sigma_is_warned_about_and_kept():
    with pytest.warns(UserWarning, match=r"blur_kernel_size=11 does not follow sigma=1: the expected kernel is 5"):
        codec = MSRAHeatmap(sigma=1.0, decoding="dark", blur_kernel_size=11)
    assert codec.blur_kernel_size == 11  # a config's explicit value is used, not replaced
    with pytest.warns(UserWarning, match=r"blur_kernel_size=5 does not follow sigma=3: the expected kernel is 17"):
        UDPHeatmap(sigma=3.0, blur_kernel_size=5)
    with warnings.catch_warnings():  # one odd step away is close enough
        warnings.simplefilter("error")
        assert MSRAHeatmap(sigma=1.0, decoding="dark", blur_kernel_size=7).blur_kernel_size == 7
    with pytest.raises(ValueError, match="positive odd integer, got 4"):
        UDPHeatmap(blur_kernel_size=4)


def _config_codecs():
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        codec = config.get("data", {}).get("codec") if isinstance(config, dict) else None
        if codec is not None:
            yield path.relative_to(ROOT).as_posix(), codec


def test_every_config_blur_kernel_follows_its_sigma():
    import importlib

    seen = 0
    for name, spec in _config_codecs():
        module, cls = spec["class_path"].rsplit(".", 1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no config may trigger the kernel warning
            codec = getattr(importlib.import_module(module), cls)(**spec.get("init_args", {}))
        if not hasattr(codec, "blur_kernel_size"):
            continue  # SimCC: no blur
        seen += 1
        if name in KERNEL_EXCEPTIONS:
            continue
        assert codec.blur_kernel_size == blur_kernel_for_sigma(codec.sigma), (name, codec.sigma, codec.blur_kernel_size)
    assert seen >= 10  # the heatmap configs of coco, crowdpose, mpii and the quickstart were all checked


# -------------------------------------------------------------------------------------------------------- soft-argmax


def _logit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_softargmax_hand_computed_offset():
    t = 0.25
    z = np.full((1, 1, 9, 9), -30.0)
    z[0, 0, 4, 4] = 2.0
    z[0, 0, 4, 3] = 2.0 - t * math.log(2.0)  # left neighbour: weight 1/2 of the centre's
    z[0, 0, 3, 4] = 2.0 - t * math.log(4.0)  # upper neighbour: weight 1/4
    z[0, 0, 4, 7] = 1.9  # 3 px away: outside the 5x5 window, ignored
    probs = torch.from_numpy(_logit(z)).float()
    locs, _ = heatmap_argmax(probs)
    got = refine_softargmax(locs, probs, window=5, temperature=t, input="logit")[0, 0]
    # weights 4 : 2 : 1 (the rest ~exp(-128)): x = 4 - 2/7, y = 4 - 1/7
    assert got.tolist() == pytest.approx([4 - 2 / 7, 4 - 1 / 7], abs=1e-4)
    # a 7x7 window takes the far pixel in: weight exp((1.9 - 2) / 0.25) = exp(-0.4) relative to the centre
    got7 = refine_softargmax(locs, probs, window=7, temperature=t, input="logit")[0, 0]
    w = np.array([1.0, 0.5, 0.25, math.exp(-0.4)])
    assert got7[0].item() == pytest.approx(4 + (-1 * w[1] + 3 * w[3]) / w.sum(), abs=1e-4)


def _slow_softargmax(hm: np.ndarray, window: int, t: float, logit: bool) -> tuple[float, float]:
    h, w = hm.shape
    idx = int(np.argmax(hm))
    x0, y0 = idx % w, idx // w
    r = window // 2
    num_x = num_y = den = 0.0
    zmax = -np.inf
    cells = []
    for y in range(y0 - r, y0 + r + 1):
        for x in range(x0 - r, x0 + r + 1):
            if 0 <= x < w and 0 <= y < h:
                p = float(hm[y, x])
                if logit:
                    p = min(max(p, 1e-12), 1 - 2.0**-25)
                    z = math.log(p) - math.log1p(-p)
                else:
                    z = p
                cells.append((x, y, z / t))
                zmax = max(zmax, z / t)
    for x, y, s in cells:
        e = math.exp(s - zmax)
        num_x, num_y, den = num_x + e * x, num_y + e * y, den + e
    return num_x / den, num_y / den


@pytest.mark.parametrize("input_", ["logit", "value"])
def test_softargmax_matches_a_slow_loop(input_):
    gen = torch.Generator().manual_seed(0)
    probs = torch.sigmoid(3 * torch.randn(2, 5, 8, 7, generator=gen))
    probs[0, 0, 0, 0] = 0.9999  # argmax in a corner: pixels outside the map do not count
    probs[1, 1] = 0.0  # all zero: the first pixel
    locs, _ = heatmap_argmax(probs)
    got = refine_softargmax(locs, probs, window=5, temperature=0.25 if input_ == "logit" else 0.05, input=input_)
    for b in range(2):
        for k in range(5):
            ref = _slow_softargmax(probs[b, k].numpy(), 5, 0.25 if input_ == "logit" else 0.05, input_ == "logit")
            assert got[b, k].tolist() == pytest.approx(ref, abs=1e-5), (b, k)


# ------------------------------------------------------------------------------------------------------------ rank fit


def test_rank_fit_hand_computed_offset():
    # values ordered by the distance to u = (4.3, 4): the 13-pixel disc (radius 2.15) ranks, by hand,
    # (-2,0):0 (0,+-2):1.5 (2,0):3 (-1,+-1):4.5 (-1,0):6 (1,+-1):7.5 (0,+-1):9.5 (1,0):11 (0,0):12
    # b = sum x r / sum x^2 = 17 / 14; [13 28; 28 84] (a, e) = (78, 108) -> e = -780 / 308
    # offset = -b / (2 e) = 17 * 308 / (14 * 1560)
    yy, xx = np.mgrid[0:9, 0:9]
    hm = -((xx - 4.3) ** 2 + (yy - 4.0) ** 2)
    hm[0, 0] = -1.0  # a high value outside the disc is not read (argmax still (4, 4))
    maps = torch.from_numpy(hm[None, None]).float()
    locs, _ = heatmap_argmax(maps)
    got = refine_rank_fit(locs, maps, radius=disc_radius(1.0, 0.1))[0, 0]
    assert disc_offsets(disc_radius(1.0, 0.1), torch.device("cpu"))[0].numel() == 13
    assert got.tolist() == pytest.approx([4 + 17 * 308 / (14 * 1560), 4.0], abs=1e-5)
    # reads only the order: any increasing transform of the map decodes the same
    again = refine_rank_fit(locs, torch.sigmoid(maps * 3 + 1).double().float(), radius=2.15)[0, 0]
    assert again.tolist() == pytest.approx(got.tolist(), abs=1e-6)


def _mean_ranks(v: np.ndarray) -> np.ndarray:
    return np.array([(v < x).sum() + 0.5 * ((v == x).sum() - 1) for x in v], dtype=np.float64)


def _slow_rank_fit(hm: np.ndarray, radius: float) -> tuple[float, float]:
    h, w = hm.shape
    idx = int(np.argmax(hm))
    x0, y0 = idx % w, idx // w
    r = int(math.floor(radius))
    rows, vals = [], []
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx * dx + dy * dy <= radius * radius and 0 <= x0 + dx < w and 0 <= y0 + dy < h:
                rows.append([1.0, dx, dy, dx * dx + dy * dy])
                vals.append(hm[y0 + dy, x0 + dx])
    coef, *_ = np.linalg.lstsq(np.array(rows), _mean_ranks(np.array(vals)), rcond=None)
    if len(rows) < 4 or np.linalg.matrix_rank(np.array(rows)) < 4 or coef[3] >= -1e-9:
        return float(x0), float(y0)
    off = np.clip([-coef[1] / (2 * coef[3]), -coef[2] / (2 * coef[3])], -1, 1)
    return x0 + off[0], y0 + off[1]


def test_rank_fit_matches_a_slow_loop_with_borders_and_ties():
    gen = torch.Generator().manual_seed(1)
    maps = torch.randn(3, 6, 9, 8, generator=gen)
    maps = maps + 4 * torch.exp(-((torch.arange(8) - 3.6) ** 2)[None, :] / 4 - ((torch.arange(9) - 4.2) ** 2)[:, None] / 4)
    maps[0, 0, 0, 7] = 50.0  # argmax in a corner: the disc is cut
    maps[1, 1] = torch.round(maps[1, 1])  # many ties
    maps[2, 2] = 1.0  # constant: every rank equal, not concave -> the argmax
    locs, _ = heatmap_argmax(maps)
    got = refine_rank_fit(locs, maps, radius=2.15)
    for b in range(3):
        for k in range(6):
            ref = _slow_rank_fit(maps[b, k].numpy().astype(np.float64), 2.15)
            assert got[b, k].tolist() == pytest.approx(ref, abs=1e-4), (b, k)


# ------------------------------------------------------------------------------------ properties of every decoder


DECODERS = ["quarter", "dark", "centroid", "softargmax", "rankfit"]


def _codec(decoding: str) -> MSRAHeatmap:
    return MSRAHeatmap(input_size=(96, 128), heatmap_size=(24, 32), sigma=1.0, decoding=decoding)  # type: ignore[arg-type]


@pytest.mark.parametrize("decoding", DECODERS)
def test_an_exact_centre_map_decodes_to_the_centre(decoding):
    codec = _codec(decoding)
    centre = np.array([[40.0, 60.0]] * 17, dtype=np.float32)  # heatmap pixel (10, 15) exactly
    maps = torch.from_numpy(codec.encode(centre, np.ones(17))["heatmaps"][None])
    for m in (maps, torch.sigmoid(8 * maps - 4)):  # a Gaussian and a sigmoid map of a symmetric peak
        kps, _ = codec.decode(m)
        np.testing.assert_allclose(kps[0].numpy(), centre, atol=1e-5)


@pytest.mark.parametrize("decoding", ["softargmax", "rankfit", "dark"])
def test_sub_pixel_maps_are_decoded_toward_the_keypoint_and_mirror_exactly(decoding):
    codec = _codec(decoding)
    rng = np.random.default_rng(4)
    kps = rng.uniform(16, 80, size=(8, 17, 2)).astype(np.float32)
    truth = MSRAHeatmap(input_size=(96, 128), heatmap_size=(24, 32), sigma=1.0, unbiased=True)
    gauss = np.stack([truth.encode(kp, np.ones(17))["heatmaps"] for kp in kps])
    logits = torch.from_numpy(np.log(np.maximum(gauss, 1e-6)))  # -d^2 / 2 near the keypoint
    probs = torch.sigmoid(logits)  # what the module hands the codec after ranking training
    decoded = codec.decode(probs)[0].numpy()
    argmax = heatmap_argmax(probs)[0].numpy() * 4.0
    err, err_argmax = np.linalg.norm(decoded - kps, axis=-1), np.linalg.norm(argmax - kps, axis=-1)
    assert err.mean() < 0.7 * err_argmax.mean(), (err.mean(), err_argmax.mean())
    # flip consistency: the mirrored map decodes to the mirrored location (heatmap pixels: x -> w - 1 - x)
    mirrored = codec.decode(probs.flip(-1))[0].numpy() / 4.0
    np.testing.assert_allclose(mirrored[..., 0], 23 - decoded[..., 0] / 4.0, atol=1e-4)
    np.testing.assert_allclose(mirrored[..., 1], decoded[..., 1] / 4.0, atol=1e-4)


@pytest.mark.parametrize("decoding", DECODERS)
def test_batched_decoding_equals_one_instance_at_a_time_and_is_float32_under_autocast(decoding):
    codec = _codec(decoding)
    gen = torch.Generator().manual_seed(2)
    maps = torch.sigmoid(4 * torch.randn(5, 17, 32, 24, generator=gen))
    kps, scores = codec.decode(maps)
    assert kps.shape == (5, 17, 2) and scores.shape == (5, 17) and kps.dtype == torch.float32
    for i in range(5):
        one, _ = codec.decode(maps[i : i + 1])
        torch.testing.assert_close(one[0], kps[i], atol=1e-5, rtol=0)
    half = maps.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, got_scores = codec.decode(half)
    assert got.dtype == torch.float32 and got_scores.dtype == torch.float32
    torch.testing.assert_close(got, codec.decode(half.float())[0])


def test_decoder_options_are_typed_and_refused_where_unused():
    with pytest.raises(ValueError, match="softargmax_window must be a positive odd integer, got 4"):
        MSRAHeatmap(decoding="softargmax", softargmax_window=4)
    with pytest.raises(ValueError, match="softargmax_temperature must be > 0"):
        MSRAHeatmap(decoding="softargmax", softargmax_temperature=0.0)
    with pytest.raises(ValueError, match="only used by decoding: softargmax"):
        MSRAHeatmap(decoding="dark", softargmax_temperature=0.5)
    with pytest.raises(ValueError, match="rank_radius=3.0 is only used by decoding: rankfit"):
        MSRAHeatmap(rank_radius=3.0)
    with pytest.raises(ValueError, match="blur_kernel_size=5 is only used by DARK"):
        MSRAHeatmap(sigma=1.0, decoding="softargmax", blur_kernel_size=5)
    assert MSRAHeatmap(sigma=1.0, decoding="rankfit").rank_radius == pytest.approx(math.sqrt(2 * math.log(10)))
    with pytest.raises(ValueError, match="decoding='argmax'"):
        MSRAHeatmap(decoding="argmax")  # type: ignore[arg-type]
