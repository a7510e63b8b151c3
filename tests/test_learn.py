"""The learning core: U-Net shapes, the evolving polygon, augmentation, data layouts, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from invrender.core.io import InputError, write_png, write_tiff
from invrender.core.learn.augment import rescale_and_rotate
from invrender.core.learn.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from invrender.core.learn.datasets import load_splits
from invrender.core.learn.models import ContourNet, build_model
from invrender.core.learn.unet import UNet
from invrender.core.render.polygon2d import render_polygons

MODEL = {"widths": [4, 8], "convs": 2, "dropout": 0.0, "vertices": 16, "iterations": 2, "init_diameter": 0.25, "max_shift": 0.5}


@pytest.mark.parametrize("size", [64, 48, 50])
def test_unet_keeps_the_image_size(size):
    net = UNet(3, 2, [4, 8, 16], convs=3, dropout=0.2)
    assert net(torch.rand(2, 3, size, size)).shape == (2, 2, size, size)


def test_the_initial_polygon_is_a_16_px_circle_in_the_middle_at_64_px():
    net = ContourNet(1, [4, 8], vertices=32)
    polygon = net.initial_polygon(torch.zeros(3, 1, 64, 64))
    assert polygon.shape == (3, 32, 2)
    torch.testing.assert_close(polygon.mean(1), torch.full((3, 2), 31.5))
    torch.testing.assert_close((polygon - 31.5).norm(dim=-1), torch.full((3, 32), 8.0))


def test_vertices_move_by_the_sampled_field_and_stay_in_the_image(monkeypatch):
    net = ContourNet(1, [4, 8], vertices=8, iterations=2)
    images = torch.zeros(1, 1, 32, 32)
    field = torch.zeros(1, 2, 32, 32)
    field[:, 0] = 3.0  # 3 px to the right everywhere
    field[:, 1, :, 16:] = 100.0  # far down on the right half
    monkeypatch.setattr(net, "displacement", lambda _: field)
    start, first, second = net.evolve(images)
    left = start[0, :, 0] + 3.0 < 16 - 1e-6  # vertices that stay in the left half after the first step
    torch.testing.assert_close(first[0, :, 0], (start[0, :, 0] + 3.0))
    torch.testing.assert_close(first[0, left, 1], start[0, left, 1])
    assert float(second[..., 1].max()) == 31.5  # clamped to the image's lower side
    assert float(second[..., 0].max()) <= 31.5


def test_the_loss_sums_the_steps_and_reaches_the_network():
    net = build_model("contour", 1, MODEL)
    net.render = render_polygons
    images, masks = torch.rand(2, 1, 32, 32), torch.zeros(2, 32, 32)
    masks[:, 10:22, 8:24] = 1
    loss, terms = net.loss(images, masks, {"recon_mse": 1.0, "balloon": 0.01, "polygon_curvature": 0.5})
    loss.backward()
    assert set(terms) == {"recon_mse", "balloon", "polygon_curvature"}
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)
    assert sum(float(p.grad.abs().sum()) for p in net.unet.head.parameters()) > 0


def test_augmentation_identity_and_quarter_turn():
    images = torch.rand(1, 1, 16, 16)
    masks = torch.zeros(1, 16, 16)
    masks[0, 2:6, 3:12] = 1
    g = torch.Generator().manual_seed(0)
    same_images, same_masks = rescale_and_rotate(images, masks, [1.0], [0.0], g)
    torch.testing.assert_close(same_images, images)
    torch.testing.assert_close(same_masks, masks)
    _, turned = rescale_and_rotate(images, masks, [1.0], [90.0], g)
    assert turned.sum() == masks.sum()
    assert torch.equal(turned[0], torch.rot90(masks[0], 1, (0, 1))) or torch.equal(turned[0], torch.rot90(masks[0], -1, (0, 1)))
    _, zoomed = rescale_and_rotate(images, masks, [1.5], [0.0], g)
    assert 1.8 * masks.sum() < zoomed.sum() < 2.7 * masks.sum()


# ---------------------------------------------------------------- data layouts


def write_generic(root, names, size=(20, 24), mask_size=None):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for name in names:
        write_png(root / "images" / f"{name}.png", np.random.default_rng(0).integers(0, 255, size).astype(np.uint8))
        mask = np.zeros(mask_size or size, np.uint8)
        mask[5:12, 6:15] = 255
        write_png(root / "masks" / f"{name}.png", mask)


GENERIC = {"layout": "generic", "val_every": 3}


def test_generic_layout_splits_and_reads_masks(tmp_path):
    write_generic(tmp_path, [f"im{i}" for i in range(6)])
    splits = load_splits({**GENERIC, "root": str(tmp_path)})
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 2, 6]
    sample = splits["test"][0]
    assert sample.image.shape == (1, 20, 24) and sample.mask.sum() == 7 * 9


def test_generic_layout_with_a_split_file(tmp_path):
    write_generic(tmp_path, ["a", "b", "c"])
    (tmp_path / "split.json").write_text(json.dumps({"train": ["a.png"], "val": ["b"], "test": ["c"]}))
    splits = load_splits({**GENERIC, "root": str(tmp_path)})
    assert [[s.name for s in splits[k]] for k in ("train", "val", "test")] == [["a.png"], ["b.png"], ["c.png"]]
    (tmp_path / "split.json").write_text(json.dumps({"train": ["zz"]}))
    with pytest.raises(InputError, match="train lists 'zz'"):
        load_splits({**GENERIC, "root": str(tmp_path)})


def test_generic_layout_errors_name_the_file(tmp_path):
    write_generic(tmp_path, ["a", "b"])
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(InputError, match=r"images/b.png: no mask for this image"):
        load_splits({**GENERIC, "root": str(tmp_path)})
    write_generic(tmp_path / "other", ["a"], mask_size=(20, 20))
    with pytest.raises(InputError, match=r"masks/a.png: mask is 20x20 but its image a.png is 24x20"):
        load_splits({**GENERIC, "root": str(tmp_path / "other")})
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(InputError, match="no images found"):
        load_splits({**GENERIC, "root": str(tmp_path / "empty")})
    with pytest.raises(InputError, match="data folder not found"):
        load_splits({**GENERIC, "root": str(tmp_path / "nowhere")})


@pytest.mark.parametrize("layout, suffix", [("vaihingen", ".tif"), ("bing", ".png")])
def test_numbered_building_layouts_split_by_number(tmp_path, layout, suffix):
    for n in (1, 2, 3, 10, 11, 12, 20):  # sorted by number, not by name
        image = np.full((8, 8, 3), n, np.uint8)
        mask = np.zeros((8, 8), np.uint8)
        mask[2:5, 2:6] = 255
        if suffix == ".tif":
            write_tiff(tmp_path / f"building_{n}{suffix}", image)
            write_tiff(tmp_path / f"building_mask_{n}{suffix}", mask)
        else:
            write_png(tmp_path / f"building_{n}{suffix}", image)
            write_png(tmp_path / f"building_mask_{n}{suffix}", mask)
    splits = load_splits({"layout": layout, "root": str(tmp_path), "train_count": 4, "val_every": 2})
    names = {k: [s.name for s in v] for k, v in splits.items()}
    assert names["train"] == [f"building_1{suffix}", f"building_3{suffix}"]
    assert names["val"] == [f"building_2{suffix}", f"building_10{suffix}"]
    assert names["test"] == [f"building_11{suffix}", f"building_12{suffix}", f"building_20{suffix}"]
    assert splits["test"][0].image.shape == (3, 8, 8) and splits["test"][0].mask.sum() == 12
    (tmp_path / f"building_mask_20{suffix}").unlink()
    with pytest.raises(InputError, match="no mask for this image: expected building_mask_20"):
        load_splits({"layout": layout, "root": str(tmp_path), "train_count": 4, "val_every": 2})


def test_instance_crops_keep_test_objects_out_of_training_crops(tmp_path):
    labels = np.zeros((96, 40), np.uint16)
    centres = {1: (10, 10), 2: (30, 25), 3: (50, 12), 4: (80, 20), 5: (70, 30)}
    yy, xx = np.mgrid[0:96, 0:40]
    for label, (r, c) in centres.items():
        labels[(yy - r) ** 2 + (xx - c) ** 2 <= 9] = label
    write_tiff(tmp_path / "img.tif", (labels > 0).astype(np.float32) * 100 + 10)
    write_tiff(tmp_path / "lab.tif", labels)
    data = {"layout": "instances", "root": str(tmp_path), "image": "img.tif", "labels": "lab.tif", "size": 16, "test_from": 0.75, "val_every": 2}
    splits = load_splits(data)
    # Test: centroid rows >= 72 (objects 4); training crops must end above row 72 (objects 1, 2, 3; 5 at row 70 is neither).
    assert [s.name for s in splits["test"]] == ["img_object0004"]
    assert sorted(s.name for s in splits["train"] + splits["val"]) == ["img_object0001", "img_object0002", "img_object0003"]
    assert all(s.image.shape == (1, 16, 16) and s.mask.shape == (16, 16) for s in splits["test"])
    assert splits["test"][0].mask.sum() == (labels == 4).sum()


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_refusals(tmp_path):
    net = build_model("contour", 1, MODEL)
    info = {"kind": "contour", "channels_in": 1, "size": 32, "model": MODEL, "state_dict": net.state_dict()}
    save_checkpoint(tmp_path / "ok.pt", info)
    loaded = model_from_checkpoint(tmp_path / "ok.pt", read_checkpoint(tmp_path / "ok.pt"))
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "bad.pt")
    torch.save({"model": "something else"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not an invrender segmentation checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "mismatch.pt", {**info, "model": {**MODEL, "widths": [8, 16]}})
    with pytest.raises(InputError, match="weights do not fit"):
        model_from_checkpoint(tmp_path / "mismatch.pt", read_checkpoint(tmp_path / "mismatch.pt"))
    with pytest.raises(InputError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")
