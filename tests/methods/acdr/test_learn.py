"""The learning core: U-Net shapes, the evolving polygon, augmentation, data layouts, checkpoints."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from helpers import central_gradient
from invrender.core.io import InputError, write_png, write_tiff
from invrender.core.learn.unet import UNet
from invrender.core.losses import LOSSES
from invrender.core.render.polygon2d import render_polygons
from invrender.methods.acdr.augment import rescale_and_rotate
from invrender.methods.acdr.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from invrender.methods.acdr.datasets import load_splits, prepare
from invrender.methods.acdr.evaluate import full_size_mask, predict_set
from invrender.methods.acdr.models import ContourNet, build_model

MODEL = {
    "widths": [4, 8],
    "convs": 2,
    "dropout": 0.0,
    "vertices": 16,
    "iterations": 2,
    "init_diameter": 0.25,
    "max_shift": 0.5,
}


@pytest.mark.parametrize("size", [64, 48, 50])
def test_unet_keeps_the_image_size(size):
    net = UNet(3, 2, [4, 8, 16], convs=3, dropout=0.2)
    assert net(torch.rand(2, 3, size, size)).shape == (2, 2, size, size)


@pytest.mark.parametrize("widths, convs", [([4, 8], 3), ([4, 8, 16], 2)])
def test_the_field_of_view_bounds_how_far_one_pixel_reaches(widths, convs):
    # Brute force: change one input pixel and see which outputs move.
    torch.manual_seed(0)
    net = UNet(1, 1, widths, convs=convs, dropout=0.0).eval()
    image = torch.rand(1, 1, 160, 160)
    moved = image.clone()
    moved[0, 0, 80, 80] += 10.0
    with torch.no_grad():
        rows, cols = torch.nonzero((net(moved) - net(image))[0, 0].abs() > 0, as_tuple=True)
    reach = int(torch.maximum((rows - 80).abs(), (cols - 80).abs()).max())
    assert net.field_of_view / 2 < reach <= net.field_of_view


def test_the_initial_polygon_is_a_16_px_circle_in_the_middle_at_64_px():
    net = ContourNet(1, [4, 8], vertices=32)
    polygon = net.initial_polygon(torch.zeros(3, 1, 64, 64))
    assert polygon.shape == (3, 32, 2)
    torch.testing.assert_close(polygon.mean(1), torch.full((3, 2), 31.5))
    torch.testing.assert_close((polygon - 31.5).norm(dim=-1), torch.full((3, 32), 8.0))


def test_vertices_move_by_the_sampled_field_and_stay_in_the_image():
    net = ContourNet(1, [4, 8], vertices=8, iterations=2)
    images = torch.zeros(1, 1, 32, 32)
    field = torch.zeros(1, 2, 32, 32)
    field[:, 0] = 3.0  # 3 px to the right everywhere
    field[:, 1, :, 16:] = 100.0  # far down on the right half
    start, first, second = net.evolve(images, field)
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


def test_dihedral_averaging_changes_nothing_for_outputs_that_turn_with_the_image():
    # Outputs that already commute with the symmetries are their own average, if the contour net
    # turns its vectors back and the pixel net its map: the gradient field of the image, and the image.
    images = F.avg_pool2d(torch.rand(2, 1, 24, 24), 3, 1, 1)
    contour = build_model(
        "contour",
        1,
        {
            "widths": [4],
            "convs": 1,
            "dropout": 0.0,
            "vertices": 16,
            "iterations": 2,
            "init_diameter": 0.4,
            "max_shift": 0.5,
        },
    )
    contour.render = render_polygons
    contour.displacement = lambda x: 200 * central_gradient(x)
    pixel = build_model("pixel", 1, {"widths": [4], "convs": 1, "dropout": 0.0})
    pixel.unet.forward = lambda x: 20 * (x - 0.5)
    for net in (contour, pixel):
        net.dihedral_average = True
        averaged = net.predict(images)
        net.dihedral_average = False
        plain = net.predict(images)
        for key, value in plain.items():
            torch.testing.assert_close(averaged[key], value, atol=1e-4, rtol=1e-4)
    assert float((plain["masks"] - 0.5).abs().min()) < 0.4  # not saturated: the comparison means something


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
    assert torch.equal(turned[0], torch.rot90(masks[0], 1, (0, 1))) or torch.equal(
        turned[0], torch.rot90(masks[0], -1, (0, 1))
    )
    _, zoomed = rescale_and_rotate(images, masks, [1.5], [0.0], g)
    assert 1.8 * masks.sum() < zoomed.sum() < 2.7 * masks.sum()


def test_soft_dice_by_hand():
    target = torch.zeros(3, 4, 4)
    target[:, :2, :2] = 1  # 4 pixels
    render = torch.zeros(3, 4, 4)
    render[0, :2, :2] = 1  # exact
    render[1, :2, :] = 0.5  # half of 8 pixels: overlap 2, |render| 4
    value = LOSSES["mask_dice"].fn({"render": render, "target": target})
    torch.testing.assert_close(value, torch.tensor([0.0, 1 - 2 * 2 / 8, 1.0]))
    assert float(LOSSES["mask_dice"].fn({"render": torch.zeros(1, 4, 4), "target": torch.zeros(1, 4, 4)})[0]) == 0.0


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


def instances_data(folder, image: np.ndarray, labels: np.ndarray, test_from: float = 0.0) -> dict:
    """The data config of the `instances` layout over `image` and its instance `labels`, written to
    `folder` (img.tif, lab.tif): 16 x 16 crops, the objects below `test_from` (a fraction of the
    rows) for testing."""
    write_tiff(folder / "img.tif", image)
    write_tiff(folder / "lab.tif", labels)
    layout = {"layout": "instances", "root": str(folder), "image": "img.tif", "labels": "lab.tif"}
    return {**layout, "size": 16, "test_from": test_from, "val_every": 2}


def test_instance_crops_keep_test_objects_out_of_training_crops(tmp_path):
    labels = np.zeros((96, 40), np.uint16)
    centres = {1: (10, 10), 2: (30, 25), 3: (50, 12), 4: (80, 20), 5: (70, 30)}
    yy, xx = np.mgrid[0:96, 0:40]
    for label, (r, c) in centres.items():
        labels[(yy - r) ** 2 + (xx - c) ** 2 <= 9] = label
    data = instances_data(tmp_path, (labels > 0).astype(np.float32) * 100 + 10, labels, test_from=0.75)
    splits = load_splits(data)
    # Test: centroid rows >= 72 (objects 4); training crops must end above row 72 (objects 1, 2, 3;
    # 5 at row 70 is neither).
    assert [s.name for s in splits["test"]] == ["img_object0004"]
    assert sorted(s.name for s in splits["train"] + splits["val"]) == [
        "img_object0001",
        "img_object0002",
        "img_object0003",
    ]
    assert all(s.image.shape == (1, 16, 16) and s.mask.shape == (16, 16) for s in splits["test"])
    assert splits["test"][0].mask.sum() == (labels == 4).sum()


def test_crops_past_the_image_border_know_which_part_shows_the_image(tmp_path):
    from scipy import ndimage

    labels = np.zeros((40, 30), np.uint16)
    labels[0:4, 25:30] = 1  # in the top right corner
    labels[20:25, 10:15] = 2  # well inside
    data = instances_data(tmp_path, labels.astype(np.float32) + 1, labels)
    samples = load_splits(data, ("test",))["test"]
    prepared = prepare(samples, 16)
    for sample, bounds in zip(samples, prepared.bounds):
        r, c = (int(round(v)) for v in ndimage.center_of_mass(labels == int(sample.name[-4:])))
        shown = np.pad(np.ones(labels.shape, bool), 8)[
            r : r + 16, c : c + 16
        ]  # the crop's pixels that come from the image
        y, x = np.mgrid[0:16, 0:16]
        inside = (x > float(bounds[0])) & (x < float(bounds[2])) & (y > float(bounds[1])) & (y < float(bounds[3]))
        assert np.array_equal(inside, shown)
    assert prepared.bounds[0].tolist() == [
        -0.5,
        5.5,
        10.5,
        15.5,
    ]  # the corner object (centre row 2, column 27): cut off above and to the right
    assert prepared.bounds[1].tolist() == [-0.5, -0.5, 15.5, 15.5]


def test_a_labelled_region_leaves_the_rest_of_the_image_beyond_the_border(tmp_path):
    labels = np.zeros((40, 30), np.uint16)
    labels[33:39, 10:15] = 1  # reaches the last labelled row, 38; row 39 is outside the labelled region
    image = np.full(labels.shape, 5.0, np.float32)
    image[labels > 0] = 100.0
    image[39] = 100.0  # bright, but not labelled
    data = instances_data(tmp_path, image, labels)
    whole = load_splits(data, ("test",))["test"][0]
    cut = load_splits({**data, "labelled_region": [0, 39, 0, 30]}, ("test",))["test"][0]
    # The crop is centred on row 36 (crop row 8): the image ends after row 39 (crop row 11), or after
    # row 38 with the region.
    assert whole.bounds[3] == 11.5 and cut.bounds[3] == 10.5
    assert whole.image[0, 11].max() == 100.0
    assert (
        cut.image[0, 11].max() == 5.0
    )  # beyond the region: padding with the median of the region, as beyond the image
    assert np.array_equal(cut.mask, whole.mask)


@pytest.mark.parametrize(
    "region, message",
    [
        ([0, 39, 0], "expected [top, bottom, left, right]"),
        ("0123", "expected [top, bottom, left, right]"),
        ([0, 41, 0, 30], "is not a part of this 30x40 label image"),
        ([5, 5, 0, 30], "is not a part"),
    ],
)
def test_a_bad_labelled_region_is_refused_in_one_line(region, message, tmp_path):
    labels = np.zeros((40, 30), np.uint16)
    labels[20:25, 10:15] = 1
    data = {**instances_data(tmp_path, labels.astype(np.float32), labels), "labelled_region": region}
    with pytest.raises(InputError, match=re.escape(message)):
        load_splits(data)


def test_predicted_masks_are_cut_to_the_bounds_at_both_sizes():
    bounds = torch.tensor([[-0.5, 3.5, 9.5, 15.5], [-0.5, -0.5, 15.5, 15.5]])
    contour = ContourNet(1, [4], vertices=12, iterations=1, init_diameter=0.9)
    contour.render = render_polygons
    contour.displacement = lambda x: torch.zeros(len(x), 2, 16, 16)  # the circle, over most of the image
    pixel = build_model("pixel", 1, {"widths": [4], "convs": 1, "dropout": 0.0})
    pixel.unet.forward = lambda x: torch.full((len(x), 1, 16, 16), 5.0)  # everything
    for net in (contour, pixel):
        free = predict_set(net, torch.zeros(2, 1, 16, 16), 2, torch.device("cpu"))
        cut = predict_set(net, torch.zeros(2, 1, 16, 16), 2, torch.device("cpu"), bounds)
        torch.testing.assert_close(cut["masks"][1], free["masks"][1])
        torch.testing.assert_close(cut["masks"][0][4:, :10], free["masks"][0][4:, :10])
        assert float(cut["masks"][0][:4].abs().sum() + cut["masks"][0][:, 10:].abs().sum()) == 0
        doubled = full_size_mask(
            cut, 0, (32, 32), render_polygons, bounds[0]
        )  # the box on the 32 x 32 grid: x < 20, y >= 8
        assert doubled[8:, :20].sum() == full_size_mask(free, 0, (32, 32), render_polygons)[8:, :20].sum() > 0
        assert doubled[:8].sum() == doubled[:, 20:].sum() == 0


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_refusals(tmp_path):
    net = build_model("contour", 1, MODEL)
    info = {"kind": "contour", "channels_in": 1, "size": 32, "model": MODEL, "state_dict": net.state_dict()}
    save_checkpoint(tmp_path / "ok.pt", info)
    loaded = model_from_checkpoint(tmp_path / "ok.pt", read_checkpoint(tmp_path / "ok.pt"))
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="not an invrender segmentation checkpoint.*torch.save"):
        read_checkpoint(tmp_path / "bad.pt")
    torch.save({"model": "something else"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not an invrender segmentation checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "mismatch.pt", {**info, "model": {**MODEL, "widths": [8, 16]}})
    with pytest.raises(InputError, match="weights do not fit"):
        model_from_checkpoint(tmp_path / "mismatch.pt", read_checkpoint(tmp_path / "mismatch.pt"))
    with pytest.raises(InputError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")
