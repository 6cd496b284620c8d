"""TopDownDataset samples and PoseDataModule loaders on the real fixtures.

References: crops recomputed with cv2.imread + cv2.warpAffine + the plain normalisation formula; a flipped
sample compared with ``codec.encode`` of keypoints flipped by hand; ``crop_to_image`` round trips.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from conftest import DATA
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch import seed_everything
from torch.utils.data import DataLoader, default_collate

from rspose.codecs import MSRAHeatmap, SimCCLabel, UDPHeatmap
from rspose.data.datamodule import PoseDataModule
from rspose.data.dataset import TopDownDataset
from rspose.data.readers import read_coco, read_detections
from rspose.data.specs import COCO, CROWDPOSE, MPII
from rspose.data.transforms import (
    TopDownAugment,
    crop_to_image,
    fix_aspect_ratio,
    get_udp_warp_matrix,
    get_warp_matrix,
)
from rspose.datasets import COCO as COCODataset
from rspose.datasets import MPII as MPIIDataset
from rspose.datasets import COCOFormat, CrowdPose, Synthetic


def normalize_image(crop_bgr):
    """The plain formula: BGR uint8 -> RGB, (x - ImageNet mean) / std, channels first."""
    rgb = crop_bgr[:, :, ::-1].astype(np.float64)
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    return ((rgb - mean) / std).transpose(2, 0, 1)


FIXTURES = DATA
COCO_DIR = FIXTURES / "coco"
COCO_JSON = COCO_DIR / "test_coco.json"
NO_AUG = dict(flip_prob=0.0, half_body_prob=0.0, shift_prob=0.0, scale_prob=0.0, rotate_prob=0.0)



def coco_instances(mode="train"):
    return read_coco(COCO_JSON, COCO_DIR, 17, (192, 256), mode=mode)


@pytest.mark.parametrize("codec_cls", [MSRAHeatmap, UDPHeatmap])
def test_validation_sample_matches_a_plain_crop(codec_cls):
    codec = codec_cls()
    insts = coco_instances("eval")
    ds = TopDownDataset(insts, COCO, codec, train=False)
    for index in (0, 5):
        inst, sample = insts[index], ds[index]
        fn = get_udp_warp_matrix if codec.use_udp else get_warp_matrix
        m = fn(inst.center, inst.scale, 0.0, (192, 256))
        crop = cv2.warpAffine(cv2.imread(inst.image_file), m, (192, 256), flags=cv2.INTER_LINEAR)
        np.testing.assert_allclose(sample["image"], normalize_image(crop), atol=1e-5)
        kp_in = cv2.transform(inst.keypoints[None].astype(np.float64), m.astype(np.float64))[0]
        np.testing.assert_allclose(sample["keypoints_input"], kp_in, atol=1e-3)
        expected = codec.encode(kp_in.astype(np.float32), inst.keypoints_visible)
        for key in (*codec.target_keys, "target_weight"):
            np.testing.assert_allclose(sample[key], expected[key], atol=1e-4)  # float32 vs float64 matrix
        np.testing.assert_allclose(sample["center"], inst.center)
        np.testing.assert_allclose(sample["scale"], inst.scale)
        assert sample["instance_id"] == inst.instance_id and sample["image_id"] == inst.image_id
        w_scale, h_scale = inst.scale
        assert sample["area_input"] == pytest.approx(inst.area * 192 / w_scale * 256 / h_scale, rel=1e-5)
        # back to the image through the torch inverse
        back = crop_to_image(
            torch.from_numpy(sample["keypoints_input"])[None],
            torch.from_numpy(sample["center"])[None],
            torch.from_numpy(sample["scale"])[None],
            (192, 256),
            codec.use_udp,
        )[0]
        np.testing.assert_allclose(back.numpy(), inst.keypoints, atol=1e-3)


@pytest.mark.parametrize("codec_cls", [MSRAHeatmap, SimCCLabel])
def test_flipped_sample_targets_equal_targets_of_hand_flipped_keypoints(codec_cls):
    codec = codec_cls()
    insts = coco_instances("train")
    only_flip = TopDownAugment(**{**NO_AUG, "flip_prob": 1.0})
    ds = TopDownDataset(insts, COCO, codec, train=True, augment=only_flip)
    for index in (0, 3, 7):
        inst, sample = insts[index], ds[index]
        image = cv2.imread(inst.image_file)
        width = image.shape[1]
        # by hand: mirror the keypoints and the box, swap left/right, crop the mirrored image
        kp = inst.keypoints[list(COCO.flip_indices)].astype(np.float64)
        kp[:, 0] = width - 1 - kp[:, 0]
        vis = inst.keypoints_visible[list(COCO.flip_indices)]
        x, y, w, h = inst.bbox.astype(np.float64)
        center = np.array([width - 1 - (x + w / 2), y + h / 2])
        scale = fix_aspect_ratio(np.array([w, h]) * 1.25, 0.75)
        m = get_warp_matrix(center, scale, 0.0, (192, 256)).astype(np.float64)
        kp_in = (kp @ m[:, :2].T + m[:, 2]).astype(np.float32)
        expected = codec.encode(kp_in, vis)
        assert sample["flipped"]
        for key in (*codec.target_keys, "target_weight"):
            np.testing.assert_allclose(sample[key], expected[key], atol=1e-5)
        np.testing.assert_allclose(sample["keypoints_input"], kp_in, atol=1e-3)
        np.testing.assert_array_equal(sample["keypoints_visible"], vis)
        mirrored = cv2.warpAffine(np.ascontiguousarray(image[:, ::-1]), m.astype(np.float32), (192, 256))
        diff = np.abs(sample["image"] - normalize_image(mirrored)) * 58.0  # back to grey levels
        assert diff.max() < 3 and diff.mean() < 0.1


def test_random_state_is_reproducible_and_per_worker():
    insts = coco_instances("train")

    def run(seed):  # a fresh dataset, as in a fresh process
        torch.manual_seed(seed)
        ds = TopDownDataset(insts, COCO, MSRAHeatmap(), train=True)
        return [(s["center"], s["rotation"]) for s in (ds[i] for i in range(6))]

    a, b, c = run(0), run(0), run(1)
    assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b))
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))

    def loader_centers():
        seed_everything(7, workers=True, verbose=False)
        loader = DataLoader(ds, batch_size=3, num_workers=2, worker_init_fn=pl_worker_init_function)
        return torch.cat([b["center"] for b in loader])

    ds = TopDownDataset(insts, COCO, MSRAHeatmap(), train=True)
    first, second = loader_centers(), loader_centers()
    assert torch.equal(first, second)
    # the two workers draw different streams: batch 0 (worker 0) and batch 1 (worker 1) of the same instances
    same = TopDownDataset([insts[0]] * 6, COCO, MSRAHeatmap(), train=True)
    seed_everything(7, workers=True, verbose=False)
    loader = DataLoader(same, batch_size=3, num_workers=2, worker_init_fn=pl_worker_init_function)
    b0, b1 = list(loader)
    assert not torch.equal(b0["center"], b1["center"])


def test_detection_instances_have_no_targets():
    dets = read_detections(COCO_JSON.with_name("test_coco_det_AP_H_56.json"), COCO_JSON, COCO_DIR, 17, (192, 256))
    ds = TopDownDataset(dets, COCO, MSRAHeatmap(), train=False)
    sample = ds[0]
    assert sample["target_weight"].sum() == 0 and not sample["keypoints"].any()
    assert sample["bbox_score"] == pytest.approx(dets[0].bbox_score) and sample["instance_id"] == 0


def test_missing_image_error_names_the_file(tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(COCO_DIR, root)
    (root / "000000040083.jpg").unlink()
    insts = read_coco(root / "test_coco.json", root, 17, (192, 256))
    ds = TopDownDataset(insts, COCO, MSRAHeatmap(), train=True)
    index = next(i for i, inst in enumerate(insts) if inst.image_id == 40083)
    with pytest.raises(FileNotFoundError, match=r"000000040083\.jpg \(instance 198196\) does not exist"):
        ds[index]


def custom_dataset(**kwargs) -> COCOFormat:
    args = dict(
        root=str(COCO_DIR),
        train_ann="test_coco.json",
        val_ann="test_coco.json",
        test_ann="test_coco.json",
        train_img_dir=".",
        val_img_dir=".",
        test_img_dir=".",
        test_bbox_file="test_coco_det_AP_H_56.json",
        sigmas=list(COCO.sigmas),
        flip_indices=list(COCO.flip_indices),
        upper_body_ids=list(COCO.upper_body_ids),
        lower_body_ids=list(COCO.lower_body_ids),
    )
    args.update(kwargs)
    return COCOFormat(**args)


def custom_module(codec=None, **kwargs):
    return PoseDataModule(codec or MSRAHeatmap(), custom_dataset(**kwargs), batch_size=4, val_batch_size=5,
                          num_workers=0, pin_memory=False)


def test_datamodule_batches_have_every_key():
    dm = custom_module()
    assert dm.num_keypoints == 17 and dm.spec.flip_indices == COCO.flip_indices
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 12 and len(dm.datasets["val"]) == 14
    batch = next(iter(dm.train_dataloader()))
    shapes = {
        "image": (4, 3, 256, 192),
        "heatmaps": (4, 17, 64, 48),
        "target_weight": (4, 17),
        "instance_id": (4,),
        "image_id": (4,),
        "center": (4, 2),
        "scale": (4, 2),
        "bbox_score": (4,),
        "area": (4,),
        "area_input": (4,),
        "keypoints": (4, 17, 2),
        "keypoints_visible": (4, 17),
        "keypoints_input": (4, 17, 2),
        "crowd_index": (4,),
    }
    for key, shape in shapes.items():
        assert tuple(batch[key].shape) == shape, key
        assert batch[key].dtype == (torch.int64 if key.endswith("_id") else torch.float32), key
    assert isinstance(batch["image_file"], list) and len(batch["image_file"]) == 4
    assert (batch["crowd_index"] == -1).all()
    val = next(iter(dm.val_dataloader()))
    assert tuple(val["image"].shape) == (5, 3, 256, 192)
    dm.setup("test")
    assert len(dm.datasets["test"]) == 118
    pred = next(iter(dm.predict_dataloader()))
    assert pred["target_weight"].sum() == 0 and pred["instance_id"].tolist() == list(range(5))
    assert dm.eval_ann_file("validate") == str(COCO_JSON) and dm.eval_ann_file("test") == str(COCO_JSON)


def test_datamodule_simcc_keys_and_gt_test_boxes():
    dm = custom_module(codec=SimCCLabel(), test_bbox_file=None)
    dm.setup("test")
    assert len(dm.datasets["test"]) == 14
    batch = next(iter(dm.test_dataloader()))
    assert tuple(batch["target_x"].shape) == (5, 17, 384) and tuple(batch["target_y"].shape) == (5, 17, 512)


def test_datamodule_crowdpose_and_mpii_layouts():
    crowd = PoseDataModule(
        MSRAHeatmap(),
        CrowdPose(
            root=str(FIXTURES / "crowdpose"),
            train_ann="test_crowdpose.json",
            val_ann="test_crowdpose.json",
            test_ann="test_crowdpose.json",
            train_img_dir=".",
            val_img_dir=".",
            test_img_dir=".",
            test_bbox_file="test_crowdpose_det_AP_40.json",
        ),
        num_workers=0,
        pin_memory=False,
        val_batch_size=8,
    )
    assert crowd.spec is CROWDPOSE
    crowd.setup("fit")
    crowd.setup("test")
    assert len(crowd.datasets["train"]) == 4 and len(crowd.datasets["val"]) == 5 and len(crowd.datasets["test"]) == 6
    batch = next(iter(crowd.val_dataloader()))
    assert sorted(set(np.round(batch["crowd_index"].numpy(), 2))) == [0.33, 0.39]
    mpii = PoseDataModule(
        MSRAHeatmap(input_size=(256, 256), heatmap_size=(64, 64)),
        MPIIDataset(
            root=str(FIXTURES / "mpii"),
            train_ann="test_mpii.json",
            val_ann="test_mpii.json",
            test_ann="test_mpii.json",
            train_img_dir=".",
            val_img_dir=".",
            test_img_dir=".",
        ),
        num_workers=0,
        pin_memory=False,
    )
    assert mpii.spec is MPII
    mpii.setup("validate")
    assert len(mpii.datasets["val"]) == 5
    with pytest.warns(UserWarning, match="mpii_gt_val.mat not found"):
        assert mpii.dataset.head_boxes() is None
    batch = next(iter(mpii.val_dataloader()))
    assert tuple(batch["image"].shape) == (5, 3, 256, 256) and tuple(batch["heatmaps"].shape) == (5, 16, 64, 64)


def test_datamodule_errors_name_the_key(tmp_path):
    dm = custom_module(val_ann=str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match=r"data\.dataset\.init_args\.val_ann: .*missing\.json does not exist"):
        dm.setup("validate")
    dm = PoseDataModule(MSRAHeatmap(), COCODataset(root=str(tmp_path)), num_workers=0)
    with pytest.raises(FileNotFoundError,
                       match=r"data\.dataset\.init_args\.train_ann: .*person_keypoints_train2017\.json does not exist"):
        dm.setup("fit")
    renamed = json.loads(COCO_JSON.read_text())
    renamed["categories"][0]["keypoints"] = [f"point_{k}" for k in range(17)]  # not a known spec's names
    (tmp_path / "renamed.json").write_text(json.dumps(renamed))
    with pytest.raises(ValueError, match=r"needs sigmas and flip_indices"):
        custom_module(train_ann=str(tmp_path / "renamed.json"), sigmas=None, flip_indices=None).spec  # noqa: B018
    with pytest.raises(ValueError, match="data.dataset.init_args.train_ann: no path given and COCOFormat has no"):
        PoseDataModule(MSRAHeatmap(), COCOFormat(root=str(tmp_path)), num_workers=0).setup("fit")
    for key in ("val_bbox_file", "test_bbox_file"):  # MPII is evaluated on GT centre/scale: it takes no box files
        with pytest.raises(TypeError, match=key):
            MPIIDataset(root=str(tmp_path), **{key: "dets.json"})


def test_synthetic_dataset_is_generated_and_read_as_coco(tmp_path):
    dm = PoseDataModule(
        MSRAHeatmap(),
        Synthetic(root=str(tmp_path / "synth"), train_images=3, val_images=2, seed=1),
        num_workers=0,
        pin_memory=False,
        batch_size=2,
        val_batch_size=2,
    )
    dm.prepare_data()
    assert (tmp_path / "synth" / "annotations" / "person_keypoints_train2017.json").exists()
    dm.setup("fit")
    dm.setup("test")
    assert dm.spec is COCO and len(dm.datasets["train"]) > 0 and len(dm.datasets["test"]) > 0
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["image"].shape) == (2, 3, 256, 192)
    assert default_collate  # the loaders use torch's default_collate


def test_mpii_head_boxes_reach_the_batch(tmp_path):
    from scipy.io import savemat

    boxes = np.stack([[[10.0 * i, 5.0], [10.0 * i + 30.0, 45.0]] for i in range(5)])  # (5, 2, 2): diag 50
    savemat(tmp_path / "mpii_gt_val.mat", {"headboxes_src": boxes.transpose(1, 2, 0)})
    dm = PoseDataModule(
        MSRAHeatmap(input_size=(256, 256), heatmap_size=(64, 64)),
        MPIIDataset(
            root=str(FIXTURES / "mpii"),
            train_ann="test_mpii.json",
            val_ann="test_mpii.json",
            test_ann="test_mpii.json",
            train_img_dir=".",
            val_img_dir=".",
            test_img_dir=".",
            head_box_file=str(tmp_path / "mpii_gt_val.mat"),
        ),
        num_workers=0,
        pin_memory=False,
    )
    np.testing.assert_array_equal(dm.dataset.head_boxes(), boxes)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    np.testing.assert_allclose(batch["head_size"].numpy(), [0.6 * 50.0] * 5, rtol=1e-6)
    assert "head_size" not in next(iter(dm.train_dataloader()))  # training rows carry no head boxes
    missing = MPIIDataset(
        root=str(FIXTURES / "mpii"), val_ann="test_mpii.json", val_img_dir=".", head_box_file=str(tmp_path / "nope.mat")
    )
    with pytest.raises(FileNotFoundError, match=r"data\.dataset\.init_args\.head_box_file: .*nope\.mat does not exist"):
        missing.head_boxes()


def test_misplaced_training_sample_keeps_the_keypoints_outside_the_crop():
    """A misplaced training crop: the box moved by >= 1.2 box sizes, so the person is (mostly) out of the crop;
    keypoints_input still holds every keypoint (outside the crop), target_weight only those inside."""
    codec = MSRAHeatmap()
    insts = coco_instances("train")
    moved = TopDownAugment(**NO_AUG, misplace_prob=1.0, misplace_shift=(1.2, 1.5))
    ds = TopDownDataset(insts, COCO, codec, train=True, augment=moved)
    plain = TopDownDataset(insts, COCO, codec, train=True, augment=TopDownAugment(**NO_AUG))
    assert not TopDownDataset(insts, COCO, codec, train=False)[0]["misplaced"]
    for index in (0, 3, 7):
        sample, reference = ds[index], plain[index]
        assert sample["misplaced"] and not reference["misplaced"]
        labelled = reference["keypoints_visible"] > 0
        inside = ((sample["keypoints_input"] >= 0) & (sample["keypoints_input"] < (192, 256))).all(1)
        assert (~inside[labelled]).sum() > 0  # some labelled keypoints left the crop
        assert (sample["target_weight"][labelled & ~inside] == 0).all()
        # the same keypoints, only translated in the crop (no scale or rotation change)
        shift = sample["keypoints_input"] - reference["keypoints_input"]
        np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-3)
        # the box centre moved by 1.2-1.5 times the padded box (before the aspect-ratio fix)
        moved_by = (sample["center"] - reference["center"]) / (insts[index].bbox[2:] * 1.25)
        assert 1.2 - 1e-4 <= np.linalg.norm(moved_by) <= 1.5 + 1e-4
