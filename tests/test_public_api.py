"""The public API of docs/api.md, used as a user would: nothing below is imported from a private module path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from lightning.pytorch import Trainer

import rspose
from rspose.codecs import MSRAHeatmap
from rspose.datasets import Synthetic
from rspose.losses import RankingLoss
from rspose.models import HeatmapHead, TinyConvBackbone

ROOT = Path(__file__).resolve().parents[1]


def _trainer(tmp_path: Path) -> Trainer:
    return Trainer(accelerator="cpu", devices=1, max_steps=2, limit_val_batches=1, num_sanity_val_steps=0,
                   logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path)


def test_train_and_evaluate_in_plain_python(tmp_path):
    data = rspose.PoseDataModule(
        MSRAHeatmap(input_size=(96, 128), heatmap_size=(24, 32), sigma=1.0),
        Synthetic(root=str(tmp_path / "synthetic"), train_images=8, val_images=4), batch_size=4,
        val_batch_size=8, num_workers=0, persistent_workers=False, pin_memory=False)
    module = rspose.PoseLitModule(
        TinyConvBackbone(width=8), HeatmapHead(deconv_out_channels=(), deconv_kernel_sizes=()),
        codec=data.codec, spec=data.spec, loss=RankingLoss(), lr=1e-3, warmup_iters=1)
    trainer = _trainer(tmp_path)
    trainer.fit(module, data)
    (metrics,) = trainer.validate(module, data, verbose=False)
    assert 0.0 <= metrics["val/AP"] <= 1.0 and "val/spearman" in metrics
    assert trainer.global_step == 2


def test_build_module_then_infer_with_the_saved_checkpoint(tmp_path):
    config = ROOT / "configs" / "quickstart.yaml"
    overrides = ["--data.dataset.init_args.root", str(tmp_path / "synthetic"), "--data.dataset.init_args.train_images", "8",
                 "--data.dataset.init_args.val_images", "4", "--data.num_workers", "0", "--data.batch_size", "4"]
    module, data = rspose.build_module(config, overrides)
    assert isinstance(module, rspose.PoseLitModule) and isinstance(data, rspose.PoseDataModule)
    trainer = _trainer(tmp_path)
    trainer.fit(module, data)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)

    pose = rspose.Inferencer(config, ckpt, overrides=overrides)
    ann = json.loads((tmp_path / "synthetic" / "annotations" / "person_keypoints_val2017.json").read_text())
    image = cv2.imread(str(tmp_path / "synthetic" / "val2017" / ann["images"][0]["file_name"]))
    boxes = [a["bbox"] for a in ann["annotations"] if a["image_id"] == ann["images"][0]["id"]]
    keypoints, scores = pose(image, boxes)
    assert keypoints.shape == (len(boxes), 17, 2) and scores.shape == (len(boxes), 17)
    assert np.isfinite(keypoints).all() and ((scores > 0) & (scores < 1)).all()  # sigmoid of ranking logits
    # the same weights as the trained module: the loaded network's parameters equal the trained ones
    for (name, a), b in zip(module.model.state_dict().items(), pose.module.model.state_dict().values()):
        assert (a == b.to(a.device)).all(), name
