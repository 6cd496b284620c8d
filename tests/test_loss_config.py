"""The loss as a config object: every config names one, settings that do not belong to it fail at parse time,
losses, heads and codecs that do not fit fail at start-up naming both keys, values written once (split ratio,
checkpoint monitor), and non-finite values are never hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from rspose.cli import run_lightning_cli
from rspose.codecs import MSRAHeatmap, SimCCLabel
from rspose.data.specs import COCO
from rspose.data.synthetic import generate_synthetic_coco
from rspose.losses import InstanceSortLoss, KeypointMSELoss, KLDiscretLoss, PoseLoss, RankingLoss

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml")  # compare: variant lists; _base: schedules
                 if "compare" not in p.parts and "_base" not in p.parts)
LOSSES = {"rspose.losses.KeypointMSELoss", "rspose.losses.KLDiscretLoss", "rspose.losses.RankingLoss"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_synthetic_coco(root, num_train=8, num_val=4, seed=2)
    return root


def args_for(synth: Path, tmp_path: Path, config: str = "configs/quickstart.yaml") -> list[str]:
    return ["--config", str(ROOT / config), "--data.dataset.init_args.root", str(synth), "--data.num_workers", "0",
            "--data.persistent_workers", "false", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_config_names_a_loss_object_and_no_duplicated_values(config, capsys):
    text = config.read_text()
    assert "rs_" not in text and "checkpoint:\n" not in text, "old flat loss arguments or a repeated monitor"
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (None, 0)
    printed = capsys.readouterr().out
    loss_paths = {line.split(":", 1)[1].strip() for line in printed.splitlines()
                  if line.strip().startswith("class_path: rspose.losses.")}
    assert len(loss_paths) == 1 and loss_paths <= LOSSES, loss_paths


def test_a_setting_of_another_loss_fails_at_parse_time_naming_the_key(capsys):
    config = ROOT / "configs/coco/simplebaseline_r50_256x192_mse.yaml"
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "--config", str(config), "--model.loss.delta", "0.1", "--print_config"])
    assert exit_info.value.code not in (None, 0)
    err = capsys.readouterr().err
    assert "delta" in err and "KeypointMSELoss" in err


def test_the_flat_loss_string_is_gone(capsys):
    with pytest.raises(SystemExit):
        run_lightning_cli(["fit", "--config", str(ROOT / "configs/quickstart.yaml"), "--model.rs_delta", "0.1"])
    assert "rs_delta" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"instance_sort_weight": 0.0, "instance_sort_mode": "keypoint"}, "instance_sort_weight=0"),
        ({"instance_sort_weight": 0.0, "confidence": "sigmoid"}, "instance_sort_weight=0"),
        ({"score_thr": 0.3, "confidence": "sigmoid"}, "score_thr=0.3 is only used with confidence=.score."),
        ({"positive_threshold": 1.5}, "positive_threshold"),
        ({"space": "probability"}, "space"),
        ({"instance_sort_mode": "image"}, "instance_sort_mode"),
        ({"scope": "image"}, "scope"),
    ],
)
def test_ranking_loss_refuses_settings_it_would_ignore(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RankingLoss(**kwargs)


def test_loss_and_codec_mismatch_fails_at_start_up_naming_both(synth, tmp_path):
    mse = json.dumps({"class_path": "rspose.losses.KeypointMSELoss"})
    with pytest.raises(ValueError, match=r"model.loss: KeypointMSELoss.*data.codec \(SimCCLabel\)"):
        run_lightning_cli([*args_for(synth, tmp_path, "configs/quickstart_simcc.yaml"), "--model.loss", mse],
                          run=False)


def test_head_and_codec_mismatch_fails_at_start_up_naming_both(synth, tmp_path):
    with pytest.raises(ValueError, match=r"model.head: SimCCHead outputs SimCC.*data.codec \(MSRAHeatmap\)"):
        run_lightning_cli([*args_for(synth, tmp_path), "--model.head", "rspose.models.SimCCHead"], run=False)
    with pytest.raises(ValueError, match=r"model.head: HeatmapHead makes 48x64.*heatmap_size is \(24, 32\)"):
        run_lightning_cli([*args_for(synth, tmp_path), "--model.head.init_args.deconv_out_channels", "[8]",
                           "--model.head.init_args.deconv_kernel_sizes", "[4]"], run=False)


def test_simcc_split_ratio_is_the_codecs(synth, tmp_path):
    cli = run_lightning_cli([*args_for(synth, tmp_path, "configs/quickstart_simcc.yaml"),
                             "--data.codec.init_args.simcc_split_ratio", "1.5"], run=False)
    head = cli.model.model.head
    assert head.simcc_split_ratio == 1.5 and head.num_bins == cli.datamodule.codec.simcc_size == (144, 192)
    x, y = cli.model(torch.zeros(1, 3, 128, 96))
    assert x.shape[-1] == 144 and y.shape[-1] == 192


def test_checkpoint_monitor_defaults_to_val_ap(synth, tmp_path):
    cli = run_lightning_cli(args_for(synth, tmp_path), run=False)
    best = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor is not None]
    assert [c.monitor for c in best] == ["val/AP"]


def test_mpii_monitor_resolves_to_pckh(monkeypatch):
    from rspose import cli as cli_module

    seen = {}

    def fake_instantiate(self) -> None:  # stop before building the (absent) MPII data
        seen["monitor"] = self._get(self.config, "checkpoint")["monitor"]
        raise SystemExit(0)

    monkeypatch.setattr(cli_module.RSPoseCLI, "instantiate_classes", fake_instantiate)
    with pytest.raises(SystemExit):
        run_lightning_cli(["--config", str(ROOT / "configs/mpii/simplebaseline_r50_256x256_mse.yaml")], run=False)
    assert seen["monitor"] == "val/Mean"


def _bound(loss: PoseLoss, codec) -> PoseLoss:
    loss.bind(codec, COCO)
    return loss


def _heatmap_batch(b: int = 3, k: int = 17, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    codec = MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0)
    kp = torch.rand(b, k, 2, generator=gen) * torch.tensor([40.0, 56.0]) + 4
    targets = [codec.encode(kp[i].numpy(), torch.ones(k).numpy()) for i in range(b)]
    batch = {
        "heatmaps": torch.stack([torch.as_tensor(t["heatmaps"]) for t in targets]),
        "target_weight": torch.stack([torch.as_tensor(t["target_weight"]) for t in targets]).float(),
        "keypoints_input": kp,
        "keypoints_visible": torch.ones(b, k),
        "area_input": torch.full((b,), 48.0 * 64.0),
    }
    return torch.randn(b, k, 16, 12, generator=gen), batch


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_ranking_loss_propagates_a_non_finite_logit(bad):
    loss = _bound(RankingLoss(), MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0))
    pred, batch = _heatmap_batch()
    pred[1, 3, 4, 5] = bad
    pred.requires_grad_(True)
    parts = loss(pred, batch)
    assert not torch.isfinite(parts["loss"])
    parts["loss"].backward()
    assert not torch.isfinite(pred.grad).all()
    clean, batch = _heatmap_batch()
    assert torch.isfinite(loss(clean, batch)["loss"])


def test_instance_sort_rejects_nothing_silently_on_nan_quality():
    scores = torch.tensor([0.1, 0.5, 0.9])
    quality = torch.tensor([0.2, float("nan"), 0.8])
    assert torch.isnan(InstanceSortLoss()(scores, quality))
    assert torch.isfinite(InstanceSortLoss()(scores, torch.tensor([0.2, 0.4, 0.8])))


def test_training_step_stops_on_a_non_finite_loss(synth, tmp_path):
    cli = run_lightning_cli(args_for(synth, tmp_path), run=False)
    module = cli.model
    pred, batch = _heatmap_batch()

    class NaNModel(torch.nn.Module):
        def forward(self, image):
            return torch.full((image.shape[0], 17, 32, 24), float("nan"))

    module.model = NaNModel()
    batch["heatmaps"] = torch.nn.functional.interpolate(batch["heatmaps"], size=(32, 24))
    batch["image"] = torch.zeros(3, 3, 128, 96)
    module.loss.bind(cli.datamodule.codec, COCO)
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        module.training_step(batch, 0)


def test_baseline_losses_return_their_parts():
    pred, batch = _heatmap_batch()
    parts = _bound(KeypointMSELoss(), MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16)))(pred, batch)
    assert set(parts) == {"loss"} and parts["loss"].dtype == torch.float32
    codec = SimCCLabel(input_size=(48, 64), sigma=2.0)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 17, 96, generator=gen), torch.randn(2, 17, 128, generator=gen)
    simcc_batch = {"target_x": torch.rand(2, 17, 96), "target_y": torch.rand(2, 17, 128),
                   "target_weight": torch.ones(2, 17)}
    parts = _bound(KLDiscretLoss(), codec)((x, y), simcc_batch)
    assert set(parts) == {"loss", "kl_x", "kl_y"}
    assert parts["loss"].item() == pytest.approx(0.5 * (parts["kl_x"] + parts["kl_y"]).item())


def test_anchor_term_is_the_mse_of_the_sigmoid_maps_and_off_by_default():
    codec = MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0)
    pred, batch = _heatmap_batch(seed=4)
    plain = _bound(RankingLoss(), codec)(pred, batch)
    anchored = _bound(RankingLoss(anchor_weight=2.0), codec)(pred, batch)
    assert "anchor" not in plain
    w = batch["target_weight"][:, :, None, None]
    expected = ((pred.sigmoid() - batch["heatmaps"]) ** 2 * w).mean()
    assert anchored["anchor"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert anchored["loss"].item() == pytest.approx((plain["loss"] + 2.0 * expected).item(), rel=1e-5)
    with pytest.raises(ValueError, match="anchor_weight"):
        RankingLoss(anchor_weight=-1.0)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"confidence": "sigmoid", "positive_threshold": 0.1}, {"confidence": "score", "instance_sort_weight": 0.5},
     {"space": "sigmoid", "delta": 0.1}, {"instance_sort_mode": "keypoint"}, {"instance_sort_mode": "both"}],
    ids=["default", "sigmoid+pos0.1", "score+lambda0.5", "sigmoid-space", "keypoint", "both"],
)
def test_ranking_loss_is_its_parts_composed_by_hand(kwargs):
    """RankingLoss = Spatial-RS on the (thresholded / sigmoid) maps + lambda x Instance-Sort of the chosen
    confidences against OKS of the decoded maps, built here from the separately tested parts."""
    from rspose.losses import SpatialRSLoss, instance_confidence, oks_quality

    codec = MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0)
    pred, batch = _heatmap_batch(seed=6)
    batch["target_weight"][0, :5] = 0.0  # some unlabelled keypoints
    loss = _bound(RankingLoss(**kwargs), codec)
    got = loss(pred, batch)
    args = {"delta": 0.5, "instance_sort_weight": 1.0, "confidence": "score", "positive_threshold": 0.1,
            "space": "logit", "instance_sort_mode": "instance", **kwargs}
    target = batch["heatmaps"]
    target = torch.where(target > args["positive_threshold"], target, 0.0)
    maps = pred.sigmoid() if args["space"] == "sigmoid" else pred
    spatial = SpatialRSLoss(delta=args["delta"])(maps, target, batch["target_weight"])["loss"]
    weight = batch["target_weight"]
    keypoints, _ = codec.decode(pred)
    sigmas = torch.tensor(COCO.sigmas, dtype=torch.float32)
    labelled = batch["keypoints_visible"] * (weight > 0)
    terms = []
    if args["instance_sort_mode"] in ("instance", "both"):
        oks = oks_quality(keypoints, batch["keypoints_input"], labelled, batch["area_input"], sigmas)
        conf = instance_confidence(pred, weight, kind=args["confidence"], score_thr=0.2)
        terms.append(InstanceSortLoss(delta=args["delta"])(conf, oks))
    if args["instance_sort_mode"] in ("keypoint", "both"):
        oks_k = oks_quality(keypoints, batch["keypoints_input"], labelled, batch["area_input"], sigmas,
                            per_keypoint=True)
        conf_k = instance_confidence(pred, weight, per_keypoint=True, kind=args["confidence"])
        terms.append(InstanceSortLoss(delta=args["delta"], per_keypoint=True)(conf_k, oks_k, weight))
    instance = torch.stack(terms).mean()
    assert got["spatial"].item() == pytest.approx(spatial.item(), abs=1e-6)
    assert got["instance_sort"].item() == pytest.approx(instance.item(), abs=1e-6)
    assert got["loss"].item() == pytest.approx((spatial + args["instance_sort_weight"] * instance).item(), abs=1e-6)


@pytest.mark.parametrize("confidence", ["score", "sigmoid", "max_logit"])
def test_misplaced_crops_are_low_quality_instance_sort_members(confidence):
    """Misplaced crops (data.misplace_prob) join Instance-Sort even with no keypoint inside the crop; their
    quality is OKS over all their labelled keypoints, their confidence averages over those keypoints; the
    Spatial-RS part does not change; a misplaced crop that outranks better ones is pushed down."""
    from rspose.losses import instance_confidence, oks_quality

    codec = MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0)
    pred, batch = _heatmap_batch(b=4, seed=7)
    batch["keypoints_input"][0] += 200.0  # wholly out of the crop: nothing to train Spatial-RS on
    batch["target_weight"][0] = 0.0
    batch["heatmaps"][0] = 0.0
    batch["keypoints_input"][3, :8] -= 100.0  # partly out
    batch["target_weight"][3, :8] = 0.0
    batch["heatmaps"][3, :8] = 0.0
    pred[0] += 6.0  # the empty crop looks confident
    loss = _bound(RankingLoss(confidence=confidence), codec)
    unflagged = loss(pred, batch)
    batch["misplaced"] = torch.tensor([True, False, False, True])
    pred.requires_grad_(True)
    got = loss(pred, batch)

    weight, visible = batch["target_weight"], batch["keypoints_visible"]
    member_weight = torch.where(batch["misplaced"][:, None], visible, weight)
    keypoints, _ = codec.decode(pred.detach())
    sigmas = torch.tensor(COCO.sigmas, dtype=torch.float32)
    oks = oks_quality(keypoints, batch["keypoints_input"], visible * (member_weight > 0), batch["area_input"], sigmas)
    conf = instance_confidence(pred.detach(), member_weight, kind=confidence, score_thr=0.2)
    expected = InstanceSortLoss(delta=0.5)(conf, oks)  # all four are members
    inside_only = oks_quality(keypoints, batch["keypoints_input"], visible * (weight > 0), batch["area_input"], sigmas)
    assert oks[0] < 1e-3 and oks[3] < inside_only[3]  # the keypoints out of the crop count, as at test time
    assert got["instance_sort"].item() == pytest.approx(expected.item(), abs=1e-6)
    assert got["spatial"].item() == pytest.approx(unflagged["spatial"].item(), abs=1e-7)
    assert got["instance_sort"].item() != pytest.approx(unflagged["instance_sort"].item(), abs=1e-4)
    assert got["oks_train_misplaced"].item() == pytest.approx(oks[[0, 3]].mean().item(), rel=1e-6)
    assert got["oks_train"].item() == pytest.approx(oks[1:3].mean().item(), rel=1e-6)
    got["instance_sort"].backward()
    peaks = pred.detach()[0].flatten(1).argmax(1)
    grad_at_peaks = pred.grad[0].flatten(1).gather(1, peaks[:, None])
    assert (grad_at_peaks > 0).any() and (grad_at_peaks >= 0).all()  # gradient descent lowers its confidence


@pytest.mark.parametrize("decoding", ["quarter", "dark", "softargmax", "rankfit"])
def test_instance_sort_decodes_training_maps_as_evaluation_does(decoding):
    """oks_train is the OKS of the keypoints that evaluation would decode: sigmoid of the logits, then the codec's
    decoder (hand composition with the codec and oks_quality)."""
    from rspose.losses import oks_quality

    codec = MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16), sigma=1.0, decoding=decoding)
    pred, batch = _heatmap_batch(seed=4)
    pred = pred + 4.0 * batch["heatmaps"]  # peaks near the labels: the decoders disagree at sub-pixel level
    parts = _bound(RankingLoss(), codec)(pred, batch)
    keypoints, _ = codec.decode(pred.sigmoid())
    oks = oks_quality(keypoints, batch["keypoints_input"], batch["keypoints_visible"], batch["area_input"],
                      torch.as_tensor(COCO.sigmas))
    torch.testing.assert_close(parts["oks_train"], oks.mean(), rtol=1e-6, atol=1e-6)
