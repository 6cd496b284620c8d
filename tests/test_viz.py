"""rspose.viz: correlations from instance tables, plot files, format errors, skeleton drawing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import matplotlib.image as mpimg
import numpy as np
import pytest
from conftest import DATA

from rspose.data.specs import COCO
from rspose.viz import (
    calibration_curve,
    correlation_summary,
    draw_predictions_on_images,
    draw_skeleton,
    format_summary,
    load_instances,
    load_runs,
    plot_ap_before_after_nms,
    plot_calibration,
    plot_keypoint_correlations,
    plot_runs_side_by_side,
    plot_score_vs_oks,
)
from rspose.viz.skeleton import CENTRE_BGR, LEFT_BGR, RIGHT_BGR

FIXTURES = DATA
K = 5
NAMES = ["nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip"]


def make_table(n: int = 300, sign: int = 1, seed: int = 0, ap_before: float | None = 0.65) -> dict:
    """n instances; kept ones have oks = monotone(score) (sign +1) or anti-monotone (-1); dropped ones are noise.

    Keypoint j: oks term increases with the keypoint score for even j, decreases for odd j; some entries are
    null (unlabelled), placed where they would break the monotone relation if they were read as 0.
    """
    rng = np.random.default_rng(seed)
    score = rng.permutation(np.linspace(0.02, 0.98, n))
    kept = np.arange(n) % 5 != 0
    oks = score**2 if sign > 0 else 1.0 - score
    oks = np.where(kept, oks, rng.uniform(0, 1, n))
    kscore = rng.uniform(0.05, 0.95, (n, K))
    koks = np.where(np.arange(K) % 2 == 0, 0.5 + 0.5 * kscore, 1.0 - kscore)
    instances = []
    for i in range(n):
        kp_oks: list | None = [float(v) for v in koks[i]]
        if i % 11 == 3:
            kp_oks = None  # unmatched prediction: no per-keypoint terms
        elif i % 7 == 1:
            kp_oks[i % K] = None
        instances.append({
            "instance_id": i, "image_id": i // 4, "score": float(score[i]), "bbox_score": 0.9,
            "oks": float(oks[i]), "kept": bool(kept[i]), "keypoint_scores": kscore[i].tolist(),
            "keypoint_oks": kp_oks,
        })
    metrics = {"AP": 0.7, "AP50": 0.9, "spearman": float(sign), "spearman_before_nms": 0.1}
    if ap_before is not None:
        metrics["AP_before_nms"] = ap_before
    return {"meta": {"keypoint_names": NAMES, "sigmas": [0.05] * K, "metrics": metrics}, "instances": instances}


def write(tmp_path: Path, name: str, table: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(table))
    return path


@pytest.fixture()
def runs(tmp_path: Path) -> dict:
    pos = write(tmp_path, "rspose.instances.json", make_table(sign=1))
    neg = write(tmp_path, "baseline.instances.json", make_table(sign=-1, seed=1, ap_before=None))
    return load_runs([neg, pos])


def ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(np.float64)  # no ties in the synthetic data


def test_correlation_summary_known_values(runs):
    rows = {r["run"]: r for r in correlation_summary(runs)}
    assert list(rows) == ["baseline", "rspose"]
    for label, sign in (("rspose", 1.0), ("baseline", -1.0)):
        r = rows[label]
        assert r["n"] == 240 and r["n_total"] == 300
        assert r["spearman"] == pytest.approx(sign, abs=1e-12)
        assert r["kendall"] == pytest.approx(sign, abs=1e-12)
        inst = runs[label]["instances"]
        s = np.array([d["score"] for d in inst if d["kept"]])
        q = np.array([d["oks"] for d in inst if d["kept"]])
        assert r["pearson"] == pytest.approx(np.corrcoef(s, q)[0, 1], abs=1e-9)
        s_all = np.array([d["score"] for d in inst])
        q_all = np.array([d["oks"] for d in inst])
        assert r["spearman_before_nms"] == pytest.approx(np.corrcoef(ranks(s_all), ranks(q_all))[0, 1], abs=1e-9)
        assert abs(r["spearman_before_nms"]) < 0.95  # the dropped predictions are noise
        # keypoints: +1 for even j, -1 for odd j -> mean over K = 5 types is 1/5 (nulls must be skipped)
        assert r["spearman_keypoint"] == pytest.approx(1 / 5, abs=1e-12)
    assert rows["rspose"]["AP_before_nms"] == 0.65 and rows["baseline"]["AP_before_nms"] is None
    text = format_summary(list(rows.values()))
    assert "n/a" in text and "-1.000" in text and "rspose" in text


def test_calibration_curve_matches_loop(runs):
    table = runs["rspose"]
    cal = calibration_curve(table, bins=7)
    kept = [d for d in table["instances"] if d["kept"]]
    edges = np.linspace(0.0, 1.0, 8)
    ece = 0.0
    for b in range(7):
        inside = [d for d in kept if edges[b] <= d["score"] < edges[b + 1] or (b == 6 and d["score"] == 1.0)]
        assert cal["count"][b] == len(inside)
        if inside:
            ms = sum(d["score"] for d in inside) / len(inside)
            mo = sum(d["oks"] for d in inside) / len(inside)
            assert cal["mean_score"][b] == pytest.approx(ms) and cal["mean_oks"][b] == pytest.approx(mo)
            ece += len(inside) / len(kept) * abs(ms - mo)
    assert cal["ece"] == pytest.approx(ece)


@pytest.mark.parametrize(
    ("fn", "size_in"),
    [
        (plot_score_vs_oks, (9.0, 4.0)),  # 4.5 in per run
        (plot_keypoint_correlations, (6.0, 4.0)),
        (plot_calibration, (5.0, 4.5)),
        (plot_ap_before_after_nms, (5.2, 4.0)),
        (plot_runs_side_by_side, (15.0, 9.0)),
    ],
)
def test_plots_write_png_of_expected_size(runs, tmp_path, fn, size_in):
    out = tmp_path / "plots" / f"{fn.__name__}.png"
    fig = fn(runs, out=out)
    assert out.stat().st_size > 1000
    image = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert image is not None
    expected = (round(size_in[1] * 100), round(size_in[0] * 100))
    assert image.shape[:2] == expected
    assert mpimg.imread(out).shape[:2] == expected
    assert tuple(fig.get_size_inches()) == pytest.approx(size_in)
    assert image.std() > 5  # something was drawn


def test_plots_accept_one_table_and_say_na(runs):
    fig = plot_ap_before_after_nms(runs)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("n/a") == 1 and "0.650" in texts and texts.count("0.700") == 2
    fig = plot_score_vs_oks(runs["rspose"])
    assert len(fig.axes) == 1 and "Spearman 1.000" in fig.axes[0].get_title()


@pytest.mark.parametrize(
    ("breakage", "key"),
    [
        (lambda t: t["instances"][3].pop("oks"), "'oks'"),
        (lambda t: t["meta"].pop("sigmas"), "meta.sigmas"),
        (lambda t: t.pop("instances"), "'instances'"),
        (lambda t: t["instances"][4]["keypoint_scores"].pop(), "instances[4].keypoint_scores"),
    ],
)
def test_malformed_table_names_file_and_key(tmp_path, breakage, key):
    table = make_table(n=20)
    breakage(table)
    path = write(tmp_path, "broken.instances.json", table)
    with pytest.raises(ValueError) as err:
        load_instances(path)
    assert str(path) in str(err.value) and key in str(err.value)
    if key == "'oks'":
        assert "instances[3]" in str(err.value)


def segment_distance(h: int, w: int, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(H, W) distance from each pixel centre to the segment p-q."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    d = q - p
    t = np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / (d @ d), 0.0, 1.0)
    return np.hypot(xx - (p[0] + t * d[0]), yy - (p[1] + t * d[1]))


@pytest.mark.parametrize("antialias", [False, True])
def test_draw_skeleton_only_links_above_threshold(antialias):
    h, w = 64, 96
    image = np.full((h, w, 3), 40, np.uint8)
    kpts = np.array([[[10.0, 10.0], [50.0, 12.0], [52.0, 50.0], [85.0, 55.0], [20.0, 55.0]]])
    scores = np.array([[0.9, 0.8, 0.5, 0.1, 0.2]])  # keypoints 3 and 4 fail kpt_thr = 0.3
    skeleton = [(0, 1), (1, 2), (2, 3), (4, 0)]
    thickness = 2
    names = ["left_shoulder", "left_elbow", "right_wrist", "right_hip", "nose"]
    out = draw_skeleton(image, kpts, scores, skeleton, kpt_thr=0.3, keypoint_names=names, radius=0,
                        thickness=thickness, antialias=antialias)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == 40).all()  # input untouched
    changed = (out != image).any(axis=2)
    p = kpts[0]
    d_on = np.minimum(segment_distance(h, w, p[0], p[1]), segment_distance(h, w, p[1], p[2]))
    assert not changed[d_on > thickness / 2 + 1.5].any()  # nothing off the drawn links
    assert changed[d_on <= 0.5].all()  # every pixel on them
    d_off = np.minimum(segment_distance(h, w, p[2], p[3]), segment_distance(h, w, p[4], p[0]))
    assert not changed[(d_off <= 1.0) & (d_on > thickness / 2 + 1.5)].any()
    if not antialias:  # exact colours: left-left link is left, left-right link is centre
        assert tuple(out[11, 30]) == LEFT_BGR
        assert tuple(out[31, 51]) == CENTRE_BGR


def test_draw_skeleton_dots_and_sides():
    h, w = 40, 60
    image = np.zeros((h, w, 3), np.uint8)
    kpts = np.array([[10.0, 10.0], [30.0, 10.0], [50.0, 30.0], [10.0, 30.0], [30.0, 30.0]])  # one instance (K, 2)
    scores = np.array([0.9, 0.9, 0.9, 0.1, 0.9])
    out = draw_skeleton(image, kpts, scores, [], kpt_thr=0.3, keypoint_names=NAMES, radius=3, antialias=False)
    yy, xx = np.mgrid[0:h, 0:w]
    changed = (out != 0).any(axis=2)
    near = np.zeros((h, w), bool)
    for j in (0, 1, 2, 4):
        near |= np.hypot(xx - kpts[j, 0], yy - kpts[j, 1]) <= 3 + 1.5  # cv2 sub-pixel discs: +-1 px
        assert changed[int(kpts[j, 1]), int(kpts[j, 0])]
    assert not changed[~near].any()  # keypoint 3 (below threshold) has no dot
    assert tuple(out[10, 30]) == LEFT_BGR and tuple(out[30, 50]) == RIGHT_BGR and tuple(out[10, 10]) == CENTRE_BGR


def test_draw_predictions_on_fixture_images(tmp_path):
    ann = json.loads((FIXTURES / "coco" / "test_coco.json").read_text())
    results = []
    for a in ann["annotations"]:
        kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        kp[:, 2] = np.where(kp[:, 2] > 0, 0.9, 0.0)
        results.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 0.8})
    paths = {im["id"]: str(FIXTURES / "coco" / im["file_name"]) for im in ann["images"]}
    written = draw_predictions_on_images(results, paths, COCO, tmp_path / "vis")
    assert [p.name for p in written] == [Path(paths[i]).stem + "_pose.jpg" for i in sorted(paths)]
    for image_id, out_path in zip(sorted(paths), written):
        src, out = cv2.imread(paths[image_id]), cv2.imread(str(out_path))
        assert out.shape == src.shape
        has_kpts = any(r["image_id"] == image_id and max(r["keypoints"][2::3]) > 0 for r in results)
        diff = np.abs(out.astype(np.int16) - src.astype(np.int16)).max(axis=2)
        assert (diff > 60).any() == has_kpts  # JPEG noise stays well below a drawn colour
    with pytest.raises(ValueError, match=r"results\[0\].*expected 3 x 17"):
        draw_predictions_on_images([{"image_id": 1, "keypoints": [0.0] * 6, "score": 1.0}], {}, COCO, tmp_path)


def test_keypoint_plot_rejects_mixed_layouts(runs):
    other = make_table(n=10)
    other["meta"]["sigmas"] = [0.05] * 3
    other["meta"]["keypoint_names"] = None
    for d in other["instances"]:
        d["keypoint_scores"], d["keypoint_oks"] = d["keypoint_scores"][:3], None
    with pytest.raises(ValueError, match="different numbers of keypoints"):
        plot_keypoint_correlations({"a": runs["rspose"], "b": other})
    assert math.isnan(correlation_summary({"b": other})[0]["spearman_keypoint"])


def test_plot_decomposition_bars_and_gaps_from_a_hand_made_results_dict(tmp_path):
    from rspose.viz import plot_decomposition

    results = {"runs": [
        {"name": "heatmap_mse", "loss": "mse", "seed": 0,
         "metrics": {"AP": 0.5, "AP_oracle": 0.75, "scoring_gap": 0.25, "oks_median": 0.6, "spearman": 0.3}},
        {"name": "heatmap_rs", "loss": "rs", "seed": 0, "metrics": {"AP": 0.625, "AP_oracle": 0.7}},
    ]}
    fig = plot_decomposition(results, out=tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 0
    ax = fig.axes[0]
    assert sorted(round(b.get_height(), 6) for b in ax.patches) == [0.5, 0.625, 0.7, 0.75]
    texts = {t.get_text() for t in ax.texts}
    assert {"gap +0.250", "gap +0.075"} <= texts  # the second gap is computed from AP_oracle - AP
    assert "heatmap_mse s0\noks_median 0.600\nspearman 0.300" in [t.get_text() for t in ax.get_xticklabels()]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert len(plot_decomposition(path).axes[0].patches) == 4


def test_plot_decomposition_names_the_missing_key():
    from rspose.viz import plot_decomposition

    with pytest.raises(ValueError, match=r"runs\[0\] is missing key 'metrics'"):
        plot_decomposition({"runs": [{"name": "x"}]})


def test_viz_correlation_is_the_metric_spearman_on_finite_pairs():
    from rspose.metrics import spearman
    from rspose.viz import correlation

    x = np.array([0.1, 0.4, np.nan, 0.3, 0.9])
    y = np.array([1.0, 3.0, 2.0, 2.0, np.inf])
    assert correlation(x, y) == spearman([0.1, 0.4, 0.3], [1.0, 3.0, 2.0]) == pytest.approx(1.0)
