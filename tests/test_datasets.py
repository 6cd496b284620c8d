"""Datasets as objects (rspose.datasets): a user's subclass runs through the real CLI, the old spelling is refused
with the new one, the checkpoint monitor and the metric come from the dataset, and no other file compares a
dataset's name."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DATA

from rspose.cli import run_lightning_cli
from rspose.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def docs_blocks(language: str) -> str:
    """The first ``language`` code block of docs/data.md's OCHuman section (the test runs what the docs show)."""
    text = (ROOT / "docs" / "data.md").read_text()
    section = text[text.index("### Your own dataset: OCHuman"):]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_ochuman_subclass_from_the_docs_validates_through_the_cli(tmp_path):
    (tmp_path / "ochuman.py").write_text(docs_blocks("python"))
    root = tmp_path / "ochuman"
    (root / "images").mkdir(parents=True)
    for image in (DATA / "coco").glob("*.jpg"):
        shutil.copy(image, root / "images")
    for split in ("val", "test"):
        shutil.copy(DATA / "coco" / "test_coco.json", root / f"ochuman_coco_format_{split}_range_0.00_1.00.json")
    config = yaml.safe_load(docs_blocks("yaml"))
    assert config["data"]["dataset"]["class_path"] == "ochuman.OCHuman"
    config["data"]["dataset"]["init_args"]["root"] = str(root)
    (tmp_path / "ochuman.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "rspose.main", "validate", "--config", str(ROOT / "configs/quickstart.yaml"),
         "--config", str(tmp_path / "ochuman.yaml"), "--allow_random_weights", "true",
         "--data.num_workers", "0", "--data.persistent_workers", "false", "--data.val_batch_size", "8",
         "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.default_root_dir", str(tmp_path / "run"), "--model.eval_outfile_prefix", str(tmp_path / "ev")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ap = re.search(r"val/AP\s*\S?\s*([0-9.]+)", proc.stdout)
    assert ap is not None and 0.0 <= float(ap.group(1)) <= 1.0, proc.stdout[-3000:]
    results = json.loads((tmp_path / "ev.val.keypoints.json").read_text())
    gt_images = {img["id"] for img in json.loads((DATA / "coco" / "test_coco.json").read_text())["images"]}
    assert results and {r["image_id"] for r in results} <= gt_images  # OCHuman's files were read


def test_old_data_spelling_is_one_error_with_the_new_spelling(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(
        "data:\n  dataset: coco\n  root: data/coco\n  synthetic_seed: 2\n  flip_prob: 0.3\n"
        "  codec: {class_path: rspose.codecs.MSRAHeatmap}\n"
    )
    with pytest.raises(UserError) as error:
        run_lightning_cli(["--config", str(ROOT / "configs/quickstart.yaml"), "--config", str(old)], run=False)
    message = str(error.value)
    assert message.startswith(f"{old}: data uses the old spelling (dataset: 'coco', root, synthetic_seed, flip_prob)")
    # synthetic_seed is the Synthetic set's `seed`: COCO has no such argument, so it is named and left out
    assert ("write data: {dataset: {class_path: rspose.datasets.COCO, init_args: {root: data/coco}}, "
            "augment: {flip_prob: 0.3}} (synthetic_seed: not an argument of rspose.datasets.COCO, left out)") in message
    old.write_text("data:\n  dataset: synthetic\n  synthetic_seed: 2\n")
    with pytest.raises(UserError, match=r"init_args: \{seed: 2\}\}\} \(the other"):
        run_lightning_cli(["--config", str(ROOT / "configs/quickstart.yaml"), "--config", str(old)], run=False)
    with pytest.raises(UserError, match=r"--data\.root, --data\.flip_prob: .*write --data\.dataset\.init_args\.root, "
                                        r"--data\.augment\.flip_prob"):
        run_lightning_cli(["--config", str(ROOT / "configs/quickstart.yaml"), "--data.root", "x",
                           "--data.flip_prob=0"], run=False)


def test_every_augmentation_knob_is_in_the_config(capsys):
    with pytest.raises(SystemExit):
        run_lightning_cli(["fit", "--config", str(ROOT / "configs/quickstart.yaml"), "--print_config"])
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    from dataclasses import asdict

    from rspose.data.transforms import TopDownAugment

    assert data["augment"].keys() == asdict(TopDownAugment()).keys()
    assert "half_body_upper_prob" in data["augment"] and "misplace_prob" in data["augment"]
    cli = run_lightning_cli(["--config", str(ROOT / "configs/quickstart.yaml"),
                             "--data.augment.half_body_upper_prob", "0.25"], run=False)
    assert cli.datamodule.augment.half_body_upper_prob == 0.25 and cli.datamodule.augment.flip_prob == 0.5


@pytest.mark.parametrize(("dataset", "monitor"), [("MPII", "val/Mean"), ("CrowdPose", "val/AP")])
def test_checkpoint_monitor_auto_is_the_datasets(dataset, monitor):
    cli = run_lightning_cli(["--config", str(ROOT / "configs/quickstart.yaml"),
                             "--data.dataset", f"rspose.datasets.{dataset}"], run=False)
    assert cli.config.checkpoint.monitor == monitor


def test_metric_comes_from_the_dataset():
    from types import SimpleNamespace

    from rspose.datasets import MPII, CrowdPose
    from rspose.metrics import OKSMeanAP, PCKhAccuracy

    options = SimpleNamespace(keypoint_score_thr=0.2, eval_nms="oks", eval_nms_thr=0.9)
    crowd = CrowdPose(root=str(DATA / "crowdpose")).metric(str(DATA / "crowdpose" / "test_crowdpose.json"), "val",
                                                            options)
    assert isinstance(crowd, OKSMeanAP) and crowd.iou_type == "keypoints_crowd"
    assert isinstance(MPII().metric("unused", "val", options), PCKhAccuracy)


def test_no_file_outside_rspose_datasets_compares_a_dataset_name():
    pattern = re.compile(r"""(==|!=|\bin\b|\bnot in\b)\s*\(?\s*["'](coco|crowdpose|mpii|synthetic|custom)["']|"""
                         r"""["'](coco|crowdpose|mpii|synthetic|custom)["']\s*(==|!=)""")
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sorted((ROOT / "rspose").rglob("*.py")) if "datasets" not in path.parts
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found


def test_mpii_refuses_eval_diagnostics_with_a_user_error():
    from types import SimpleNamespace

    from rspose.datasets import MPII

    with pytest.raises(UserError, match=r"model.eval_diagnostics: true needs a COCO-style dataset"):
        MPII().metric(None, "val", SimpleNamespace(eval_diagnostics=True))


def test_a_dataset_class_path_that_is_no_dataset_is_a_user_error():
    from rspose.datasets import dataset_class

    with pytest.raises(UserError, match=r"data.dataset: 'rspose.losses.RankingLoss' is not a subclass"):
        dataset_class("rspose.losses.RankingLoss")
