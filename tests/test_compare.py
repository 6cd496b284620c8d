"""`rspose compare` end to end on tiny synthetic data (the table, per-instance tables, plots, rows kept across
invocations, re-evaluation from checkpoints) and its statistics against hand-computed values."""

from __future__ import annotations

import json
import statistics

import cv2
import pytest

from rspose.compare import COLUMNS, Variant, load_variants, main, markdown_table, summarise
from rspose.errors import UserError
from rspose.viz import load_instances


def test_compare_writes_table_tables_and_plots(tiny_compare):
    results = json.loads((tiny_compare / "results.json").read_text())
    runs = {(r["name"], r["seed"]): r for r in results["runs"]}
    assert {("heatmap_mse", 0), ("heatmap_rs", 0), ("simcc_kl", 0), ("simcc_rs", 0)} <= set(runs)
    assert runs[("heatmap_rs", 0)]["loss"]["class_path"] == "rspose.losses.RankingLoss"
    assert runs[("simcc_kl", 0)]["loss"]["class_path"] == "rspose.losses.KLDiscretLoss"
    for (name, seed), run in runs.items():
        if name.endswith("_centroid"):
            continue
        metrics = run["metrics"]
        for key in ("AP", "AP75", "spearman", "spearman_keypoint", "spearman_before_nms"):
            assert key in metrics, (name, key)
        assert -1.0 <= metrics["AP"] <= 1.0 and metrics["wall_s"] > 0
        table = load_instances(tiny_compare / name / f"seed{seed}" / "eval.val.instances.json")
        # the per-instance table's metrics are the ones the run reported
        assert abs(table["meta"]["metrics"]["AP"] - metrics["AP"]) < 1e-6  # logged metrics are float32
    markdown = (tiny_compare / "results.md").read_text()
    assert all(column in markdown for column in COLUMNS)
    assert "| heatmap_rs | heatmap_mse | 1 |" in markdown and "| simcc_rs | simcc_kl | 1 |" in markdown
    for stem in ("score_vs_oks", "calibration", "keypoint_correlations", "ap_nms", "side_by_side"):
        image = cv2.imread(str(tiny_compare / f"{stem}.png"))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, stem


def test_a_second_invocation_keeps_earlier_rows_and_evaluation_reproduces_training(tiny_compare, tiny_compare_args):
    before = json.loads((tiny_compare / "results.json").read_text())["runs"]
    mse_ap = next(r["metrics"]["AP"] for r in before if r["name"] == "heatmap_mse")
    # re-evaluate one run from its last.ckpt: same weights, same settings -> the same metrics
    assert main(["--out", str(tiny_compare), "--pairs", "heatmap", "--only", "heatmap_mse", "--evaluate",
                 "--", *tiny_compare_args]) == 0
    after = json.loads((tiny_compare / "results.json").read_text())["runs"]
    assert len(after) == len(before)  # replaced its row, kept the others
    again = next(r for r in after if r["name"] == "heatmap_mse")
    assert again["metrics"]["AP"] == pytest.approx(mse_ap, abs=1e-12) and "eval_wall_s" in again["metrics"]
    assert {(r["name"], r["seed"]) for r in after} == {(r["name"], r["seed"]) for r in before}


def test_variants_file_checkpoint_of_evaluates_another_decoder(tiny_compare, tiny_compare_args, tmp_path):
    variants = tmp_path / "variants.yaml"
    variants.write_text(
        "- {name: heatmap_mse, config: configs/quickstart.yaml, loss: {class_path: rspose.losses.KeypointMSELoss}}\n"
        "- name: heatmap_mse_centroid\n"
        "  config: configs/quickstart.yaml\n"
        "  checkpoint_of: heatmap_mse\n"
        "  baseline: heatmap_mse\n"
        "  loss: {class_path: rspose.losses.KeypointMSELoss}\n"
        "  args: [--data.codec.init_args.decoding, centroid]\n"
    )
    assert main(["--out", str(tiny_compare), "--variants", str(variants), "--only", "heatmap_mse_centroid",
                 "--", *tiny_compare_args]) == 0
    runs = json.loads((tiny_compare / "results.json").read_text())["runs"]
    row = next(r for r in runs if r["name"] == "heatmap_mse_centroid")
    assert "--data.codec.init_args.decoding" in row["args"] and 0.0 <= row["metrics"]["AP"] <= 1.0
    assert not (tiny_compare / "heatmap_mse_centroid" / "seed0" / "lightning_logs").exists()  # nothing trained


def test_summary_statistics_match_hand_computed_values():
    runs = []
    for seed, (base, other) in enumerate([(0.70, 0.60), (0.68, 0.65), (0.72, 0.62)]):
        runs.append({"name": "mse", "seed": seed, "metrics": {"AP": base, "wall_s": 10.0}})
        runs.append({"name": "rs", "seed": seed, "metrics": {"AP": other, "wall_s": 12.0}})
    runs.append({"name": "rs", "seed": 7, "metrics": {"AP": 0.93}})  # unpaired seed: in the mean, not the diff
    variants = [Variant("mse", "c.yaml", {"class_path": "x.A"}), Variant("rs", "c.yaml", {"class_path": "x.B"},
                                                                        baseline="mse")]
    rows = {row["name"]: row for row in summarise(runs, variants)}
    assert rows["mse"]["mean"]["AP"] == pytest.approx((0.70, statistics.stdev([0.70, 0.68, 0.72])))
    assert rows["rs"]["mean"]["AP"] == pytest.approx((0.70, statistics.stdev([0.60, 0.65, 0.62, 0.93])))
    diffs = [-0.10, -0.03, -0.10]
    assert rows["rs"]["diff"]["AP"] == pytest.approx((sum(diffs) / 3, statistics.stdev(diffs)))
    assert rows["rs"]["diff_seeds"] == [0, 1, 2] and rows["mse"]["diff"] == {}
    table = markdown_table(list(rows.values()))
    spread = statistics.stdev([0.60, 0.65, 0.62, 0.93])
    assert f"| rs | 4 | - | 0.700 +- {spread:.3f} |" in table and "| rs | mse | 3 | -0.077 +- 0.040 |" in table


def test_results_settings_name_the_seeds_of_every_row_not_only_the_last_call(tmp_path):
    from rspose.compare import write_results

    runs = [{"name": "mse", "seed": seed, "metrics": {"AP": 0.7}} for seed in (2, 0, 1)]
    variants = [Variant("mse", "c.yaml", {"class_path": "x.A"})]
    write_results(tmp_path, runs, variants, {"this_call": {"seeds": [2], "extra": []}, "variants": "v.yaml"})
    settings = json.loads((tmp_path / "results.json").read_text())["settings"]
    assert settings["seeds"] == [0, 1, 2] and settings["this_call"]["seeds"] == [2]
    assert '"seeds": [0, 1, 2]' in (tmp_path / "results.md").read_text()


def test_bad_variants_files_name_the_problem(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("- {name: a, config: c.yaml, loss: {class_path: x.A}, baseline: nope}\n")
    with pytest.raises(ValueError, match="baseline 'nope', not in the file"):
        load_variants(path)
    path.write_text("- {name: a, config: c.yaml, loss: rs}\n")
    with pytest.raises(ValueError, match="loss must be a mapping with class_path"):
        load_variants(path)
    path.write_text("- {name: a, config: c.yaml, loss: {class_path: x.A}, lr: 3}\n")
    with pytest.raises(ValueError, match=r"unknown keys: \['lr'\]"):
        load_variants(path)


def test_choose_decoder_takes_the_best_tuning_ap_first_listed_on_ties():
    from rspose.compare import choose_decoder

    assert choose_decoder({"quarter": 0.5, "dark": 0.7, "softargmax": 0.7}, ["quarter", "dark", "softargmax"]) == "dark"
    assert choose_decoder({"quarter": 0.5, "dark": 0.7, "softargmax": 0.7}, ["softargmax", "dark"]) == "softargmax"
    assert choose_decoder({"quarter": 0.5, "dark": float("nan")}, ["dark", "quarter"]) == "quarter"
    with pytest.raises(RuntimeError, match="no decoder gave a finite tuning AP"):
        choose_decoder({"dark": float("nan")}, ["dark"])


def test_decoder_rule_chooses_on_the_tuning_split_and_reports_validation(tiny_compare, tiny_compare_args, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(tiny_compare, out)  # the session's folder stays as the other tests expect it
    decoders = ["quarter", "softargmax", "rankfit"]
    assert main(["--out", str(out), "--pairs", "heatmap", "--evaluate", "--decoders", *decoders,
                 "--tuning-seed", "11", "--tuning-images", "3", "--", *tiny_compare_args]) == 0
    params = json.loads((out / "tuning_data" / "rspose_synthetic.json").read_text())["params"]
    assert params["seed"] == 11 and params["num_val"] == 3 and params["num_train"] == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["decoder_rule"]["decoders"] == decoders
    for name in ("heatmap_mse", "heatmap_rs"):
        row = next(r for r in results["runs"] if r["name"] == name)
        found = row["decoders"]
        assert set(found) == set(decoders) and all(set(found[d]) == {"tune", "val"} for d in decoders)
        tune_ap = {d: found[d]["tune"]["AP"] for d in decoders}
        best = max(tune_ap.values())
        assert row["decoder"] == next(d for d in decoders if tune_ap[d] == best)  # first listed among equals
        assert row["metrics"]["AP"] == found[row["decoder"]]["val"]["AP"]  # the row reports validation
        # the tuning split is other images: its evaluation is not the validation's
        assert any(found[d]["tune"] != {**found[d]["val"], "eval_wall_s": found[d]["tune"]["eval_wall_s"]}
                   for d in decoders)
        table = load_instances(out / name / "seed0" / "eval.val.instances.json")
        assert abs(table["meta"]["metrics"]["AP"] - row["metrics"]["AP"]) < 1e-6
    markdown = (out / "results.md").read_text()
    assert "| heatmap_rs | softargmax |" in markdown and "tuning AP" in markdown
    chosen = next(r for r in results["runs"] if r["name"] == "heatmap_rs")["decoder"]
    assert f"| heatmap_rs | 1 | {chosen} |" in markdown
    image = cv2.imread(str(out / "decoders.png"))
    assert image is not None and image.shape[0] > 100
    # the error quantiles of each run are those of its chosen decoder's kept predictions
    from rspose.compare import val_annotation_file
    from rspose.data.specs import COCO
    from rspose.metrics.keypoint_errors import error_quantiles_of_run

    quantiles = json.loads((out / "error_quantiles.json").read_text())
    row = next(r for r in results["runs"] if r["name"] == "heatmap_rs")
    direct = error_quantiles_of_run(out / "heatmap_rs" / "seed0" / "eval.val.keypoints.json",
                                    val_annotation_file(row), COCO.sigmas)
    assert [q[0] for q in quantiles["heatmap_rs"][0]["q"]] == pytest.approx(direct[0]["q"], nan_ok=True)
    assert "| heatmap_mse | legs | occluded |" in (out / "error_quantiles.md").read_text()


def test_decoder_rule_refuses_what_it_cannot_do(tiny_compare, tiny_compare_args):
    with pytest.raises(UserError, match="variant 'simcc_kl' uses the codec 'rspose.codecs.SimCCLabel'"):
        main(["--out", str(tiny_compare), "--pairs", "simcc", "--evaluate", "--decoders", "dark", "--",
              *tiny_compare_args])
    with pytest.raises(UserError, match="--tuning-seed 3 is the data seed of variant 'heatmap_mse'"):
        main(["--out", str(tiny_compare), "--pairs", "heatmap", "--evaluate", "--decoders", "dark",
              "--tuning-seed", "3", "--", *tiny_compare_args])
    with pytest.raises(UserError, match="expected distinct names among"):
        main(["--out", str(tiny_compare), "--pairs", "heatmap", "--decoders", "dark", "argmax"])
