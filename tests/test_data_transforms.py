"""Transforms: warp matrices vs the mmpose constructions, the torch inverse vs cv2, flip, half body, random box,
truncated normal vs scipy, normalisation vs the plain formula.

References: the plain warp is rebuilt with mmpose's three-point construction and ``cv2.getAffineTransform``;
the UDP warp as a product of elementary matrices; the inverse with ``cv2.invertAffineTransform``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from scipy import stats

from rspose.data.specs import COCO
from rspose.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalizer,
    TopDownAugment,
    bbox_xywh_to_center_scale,
    crop_to_image,
    fix_aspect_ratio,
    flip_keypoints,
    get_udp_warp_matrix,
    get_warp_matrix,
    transform_points,
    truncated_normal,
    with_hflip,
)

SIZE = (192, 256)


def mmpose_three_point_matrix(center, scale, rot, size):
    """The plain warp as mmpose builds it: centre, a point half a width above it (rotated) and a third point."""

    def rotate(p, r):
        return np.array([p[0] * math.cos(r) - p[1] * math.sin(r), p[0] * math.sin(r) + p[1] * math.cos(r)])

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    r = math.radians(rot)
    src = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + rotate(np.array([0.0, -0.5 * scale[0]]), r)
    src[2] = third(src[0], src[1])
    dst = np.zeros((3, 2), np.float32)
    dst[0] = [size[0] * 0.5, size[1] * 0.5]
    dst[1] = dst[0] + np.array([0.0, -0.5 * size[0]])
    dst[2] = third(dst[0], dst[1])
    return cv2.getAffineTransform(src, dst)


def udp_by_products(center, scale, rot, size):
    """Translate the centre to 0, rotate by +rot, scale by (size - 1) / scale, move to the crop centre."""
    r = math.radians(rot)
    t1 = np.array([[1, 0, -center[0]], [0, 1, -center[1]], [0, 0, 1]], dtype=np.float64)
    rm = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    sm = np.diag([(size[0] - 1) / scale[0], (size[1] - 1) / scale[1], 1.0])
    t2 = np.array([[1, 0, (size[0] - 1) / 2], [0, 1, (size[1] - 1) / 2], [0, 0, 1]])
    return (t2 @ sm @ rm @ t1)[:2]


@pytest.mark.parametrize("rot", [0.0, 17.5, -63.0, 80.0])
def test_warp_matrices_match_references(rot):
    rng = np.random.default_rng(1)
    for _ in range(5):
        center = rng.uniform(50, 600, 2).astype(np.float32)
        scale = fix_aspect_ratio(rng.uniform(30, 400, 2), SIZE[0] / SIZE[1])
        plain = get_warp_matrix(center, scale, rot, SIZE)
        np.testing.assert_allclose(plain, mmpose_three_point_matrix(center, scale, rot, SIZE), rtol=1e-4, atol=2e-3)
        udp = get_udp_warp_matrix(center, scale, rot, SIZE)
        np.testing.assert_allclose(udp, udp_by_products(center, scale, rot, SIZE), rtol=1e-4, atol=2e-3)
        # the centre lands on the crop centre
        np.testing.assert_allclose(transform_points(center[None], plain)[0], [96, 128], atol=1e-3)
        np.testing.assert_allclose(transform_points(center[None], udp)[0], [95.5, 127.5], atol=1e-3)


@pytest.mark.parametrize("use_udp", [False, True])
def test_crop_to_image_is_the_inverse_warp(use_udp):
    rng = np.random.default_rng(2)
    b, k = 6, 17
    centers = rng.uniform(50, 600, (b, 2)).astype(np.float32)
    scales = fix_aspect_ratio(rng.uniform(30, 400, (b, 2)), SIZE[0] / SIZE[1])
    crop_kp = rng.uniform(-20, 260, (b, k, 2)).astype(np.float32)
    out = crop_to_image(torch.from_numpy(crop_kp), torch.from_numpy(centers), torch.from_numpy(scales), SIZE, use_udp)
    assert out.shape == (b, k, 2) and out.dtype == torch.float32
    for i in range(b):
        fn = get_udp_warp_matrix if use_udp else get_warp_matrix
        forward = fn(centers[i], scales[i], 0.0, SIZE).astype(np.float64)
        inverse = cv2.invertAffineTransform(forward)
        expected = crop_kp[i].astype(np.float64) @ inverse[:, :2].T + inverse[:, 2]
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-3)
        # and back again through the forward matrix
        np.testing.assert_allclose(expected @ forward[:, :2].T + forward[:, 2], crop_kp[i], atol=1e-3)


def test_box_centre_scale_and_aspect():
    c, s = bbox_xywh_to_center_scale(np.array([10.0, 20.0, 100.0, 50.0]), padding=1.25)
    np.testing.assert_allclose(c, [60.0, 45.0])
    np.testing.assert_allclose(s, [125.0, 62.5])
    np.testing.assert_allclose(fix_aspect_ratio(s, 0.75), [125.0, 125.0 / 0.75])  # wide: grow the height
    np.testing.assert_allclose(fix_aspect_ratio(np.array([30.0, 200.0]), 0.75), [150.0, 200.0])  # tall: grow width


def test_flip_keypoints_and_flip_folded_into_the_warp():
    kp = np.arange(34, dtype=np.float32).reshape(17, 2)
    vis = (np.arange(17) % 3 > 0).astype(np.float32)
    fk, fv = flip_keypoints(kp, vis, 100, COCO.flip_indices)
    for k, j in enumerate(COCO.flip_indices):
        assert fk[k, 0] == 99 - kp[j, 0] and fk[k, 1] == kp[j, 1] and fv[k] == vis[j]
    # warping the mirrored image == warping the original with (warp o flip)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (5, 5), 2)
    center, scale = np.array([70.0, 60.0], np.float32), np.array([90.0, 120.0], np.float32)
    flipped_center = np.array([160 - 1 - center[0], center[1]], np.float32)
    m = get_warp_matrix(flipped_center, scale, 20.0, SIZE)
    expected = cv2.warpAffine(np.ascontiguousarray(image[:, ::-1]), m, SIZE, flags=cv2.INTER_LINEAR)
    flip = np.array([[-1.0, 0.0, 159.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # x -> w - 1 - x
    composed = m.astype(np.float64) @ flip
    np.testing.assert_allclose(with_hflip(m, 160), composed, atol=1e-4)
    folded = cv2.warpAffine(image, with_hflip(m, 160), SIZE, flags=cv2.INTER_LINEAR)
    diff = np.abs(expected.astype(int) - folded.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05


def test_half_body_box():
    aug = TopDownAugment(half_body_prob=1.0, half_body_upper_prob=1.0)
    rng = np.random.default_rng(0)
    kp = np.random.default_rng(4).uniform(0, 300, (17, 2)).astype(np.float32)
    vis = np.ones(17, np.float32)
    upper = list(COCO.upper_body_ids)
    assert aug.half_body_ids(rng, vis, COCO.upper_body_ids, COCO.lower_body_ids) == upper
    lower_only = TopDownAugment(half_body_prob=1.0, half_body_upper_prob=0.0)
    assert lower_only.half_body_ids(rng, vis, COCO.upper_body_ids, COCO.lower_body_ids) == list(COCO.lower_body_ids)
    few = vis.copy()
    few[9:] = 0  # 9 visible (all upper): half body possible, but only 0 lower -> upper
    assert lower_only.half_body_ids(rng, few, COCO.upper_body_ids, COCO.lower_body_ids) == list(range(9))
    few[8] = 0  # 8 visible < 9: none
    assert aug.half_body_ids(rng, few, COCO.upper_body_ids, COCO.lower_body_ids) is None
    # the box: mean of the chosen keypoints, extent x 1.5 (no other random step)
    only_half = TopDownAugment(
        flip_prob=0, half_body_prob=1.0, half_body_upper_prob=1.0, shift_prob=0, scale_prob=0, rotate_prob=0
    )
    res = only_half(rng, np.zeros(2), np.ones(2), kp, vis, 640, COCO.flip_indices, upper, COCO.lower_body_ids)
    sel = kp[upper]
    np.testing.assert_allclose(res.center, sel.mean(0), rtol=1e-5)
    np.testing.assert_allclose(res.scale, (sel.max(0) - sel.min(0)) * 1.5, rtol=1e-5)
    assert res.rotation == 0.0 and not res.flipped


def test_random_box_ranges_and_switches():
    kp, vis = np.zeros((17, 2), np.float32), np.zeros(17, np.float32)
    center, scale = np.array([100.0, 100.0]), np.array([50.0, 80.0])
    args = (kp, vis, 640, COCO.flip_indices, COCO.upper_body_ids, COCO.lower_body_ids)
    off = TopDownAugment(flip_prob=0, half_body_prob=0, shift_prob=0, scale_prob=0, rotate_prob=0)
    rng = np.random.default_rng(0)
    res = off(rng, center, scale, *args)
    np.testing.assert_array_equal(res.center, center)
    np.testing.assert_array_equal(res.scale, scale)
    assert res.rotation == 0.0
    on = TopDownAugment(flip_prob=0, half_body_prob=0, shift_prob=1, scale_prob=1, rotate_prob=1)
    draws = [on(rng, center, scale, *args) for _ in range(400)]
    ratio = np.array([d.scale / scale for d in draws])
    shift = np.array([(d.center - center) / scale for d in draws])
    rot = np.array([d.rotation for d in draws])
    assert np.allclose(ratio[:, 0], ratio[:, 1]) and ratio.min() >= 0.5 and ratio.max() <= 1.5
    assert np.abs(shift).max() <= 0.16 + 1e-6 and np.abs(rot).max() <= 80.0
    assert rot.std() > 30  # truncated normal x 80: std 0.54 x 80 = 43
    default = TopDownAugment()
    flips = np.mean([default(rng, center, scale, *args).flipped for _ in range(1000)])
    rotated = np.mean([default(rng, center, scale, *args).rotation != 0 for _ in range(1000)])
    assert abs(flips - 0.5) < 0.06 and abs(rotated - 0.6) < 0.06


def test_truncated_normal_matches_scipy():
    z = truncated_normal(np.random.default_rng(0), 20000)
    assert z.dtype == np.float32 and np.abs(z).max() <= 1.0
    assert stats.kstest(z, stats.truncnorm(-1, 1).cdf).pvalue > 1e-3
    assert z.std() == pytest.approx(stats.truncnorm(-1, 1).std(), abs=0.01)


def test_normalizer_matches_plain_formula():
    crop = np.random.default_rng(5).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    out = Normalizer()(crop)
    assert out.shape == (3, SIZE[1], SIZE[0]) and out.dtype == np.float32
    y, x = 7, 11
    b, g, r = crop[y, x].astype(np.float64)
    expected = [
        (r - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
        (g - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
        (b - IMAGENET_MEAN[2]) / IMAGENET_STD[2],
    ]
    np.testing.assert_allclose(out[:, y, x], expected, rtol=1e-5)
    rgb = crop[:, :, ::-1].astype(np.float64)
    full = ((rgb - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)
    np.testing.assert_allclose(out, full, atol=1e-5)


def test_misplaced_box_moves_the_final_box_by_the_asked_fraction_in_any_direction():
    kp, vis = np.zeros((17, 2), np.float32), np.zeros(17, np.float32)
    center, scale = np.array([300.0, 200.0]), np.array([50.0, 80.0])
    args = (kp, vis, 640, COCO.flip_indices, COCO.upper_body_ids, COCO.lower_body_ids)
    rng = np.random.default_rng(3)
    off = dict(flip_prob=0, half_body_prob=0, shift_prob=0, scale_prob=0, rotate_prob=0)
    moved = TopDownAugment(**off, misplace_prob=1.0, misplace_shift=(0.5, 1.5))
    draws = [moved(rng, center, scale, *args) for _ in range(500)]
    assert all(d.misplaced for d in draws)
    offsets = np.array([(d.center - center) / scale for d in draws])  # in units of the box, per axis
    size = np.linalg.norm(offsets, axis=1)
    assert size.min() >= 0.5 - 1e-5 and size.max() <= 1.5 + 1e-5 and size.std() > 0.2
    angle = np.arctan2(offsets[:, 1], offsets[:, 0])
    assert np.histogram(angle, bins=4, range=(-np.pi, np.pi))[0].min() > 80  # every direction
    np.testing.assert_array_equal(np.array([d.scale for d in draws]), np.tile(scale, (500, 1)))
    # probability: about a quarter; 0 (the default) never moves a box and draws nothing for it
    quarter = TopDownAugment(**off, misplace_prob=0.25)
    share = np.mean([quarter(rng, center, scale, *args).misplaced for _ in range(2000)])
    assert abs(share - 0.25) < 0.04
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    TopDownAugment()(a, center, scale, *args)
    TopDownAugment(misplace_shift=(2.0, 3.0))(b, center, scale, *args)
    assert a.random() == b.random()
    with pytest.raises(ValueError, match="misplace_prob"):
        TopDownAugment(misplace_prob=1.5)
    with pytest.raises(ValueError, match="misplace_shift"):
        TopDownAugment(misplace_shift=(1.0, 0.5))
