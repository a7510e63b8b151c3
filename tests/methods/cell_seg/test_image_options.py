"""cell-seg's input by its axes and channels, its pixel size, and `--diameter` (issue 23): a
2-channel hyperstack, a z-stack and a 3D array without axes are refused in one line; `--channel`
picks the channel, a TYX hyperstack is a time-lapse; the label images carry a calibrated input's
pixel size; `--diameter` scales every size in pixels, and the same frame magnified 2x segments as
well with twice the diameter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from omegaconf import OmegaConf
from skimage.transform import rescale

from helpers import CELL_FAST, assert_one_line_error
from invrender.cli import main
from invrender.core.calibration import read_calibration
from invrender.core.io import write_tiff
from invrender.core.metrics import seg_measure
from invrender.methods.cell_seg.api import CONFIG
from invrender.methods.cell_seg.command import is_time_lapse
from invrender.methods.cell_seg.ctc import read_frames
from invrender.methods.cell_seg.sizes import SIZES, WHOLE, diameter_overrides
from invrender.methods.cell_seg.synth import write_cell_dataset


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 2-frame `synth cells` time-lapse of 64 x 64 frames, in the CTC layout."""
    out = tmp_path_factory.mktemp("movie")
    write_cell_dataset(out, frames=2, size=64, cells=3, divisions=0, seed=2)
    return out


@pytest.fixture(scope="module")
def movie(synthetic) -> np.ndarray:
    """Its frames (T, Y, X) uint16."""
    return np.stack([tifffile.imread(synthetic / "01" / f"t{t:03d}.tif") for t in range(2)])


@pytest.fixture(scope="module")
def truth(synthetic) -> np.ndarray:
    """The first frame's labels (Y, X)."""
    return tifffile.imread(synthetic / "01_GT" / "SEG" / "man_seg000.tif")


def hyperstack(path, array: np.ndarray, axes: str):
    """An ImageJ hyperstack as Fiji writes it (channels shown as a composite)."""
    mode = {"mode": "composite"} if "C" in axes else {}
    tifffile.imwrite(path, array, imagej=True, metadata={"axes": axes, **mode})
    return path


def cell_seg(*arguments) -> int:
    return main(["cell-seg", *map(str, arguments), "-q", "--threads", "1", *CELL_FAST])


# ---------------------------------------------------------------- refused, in one line


def test_two_channels_without_channel(tmp_path, capsys, movie):
    path = hyperstack(tmp_path / "two.tif", movie, "CYX")
    out = tmp_path / "out"
    code = cell_seg(path, "--out", out)
    assert_one_line_error(
        code, capsys.readouterr().err, out, str(path), "(2, 64, 64)", "axes CYX", "give --channel N (0 to 1)"
    )


def test_a_channel_out_of_range(tmp_path, capsys, movie):
    path = hyperstack(tmp_path / "two.tif", movie, "CYX")
    out = tmp_path / "out"
    code = cell_seg(path, "--channel", 2, "--out", out)
    assert_one_line_error(code, capsys.readouterr().err, out, str(path), "--channel 2 is out of range", "0 to 1")


def test_a_3d_array_without_axes_is_ambiguous(tmp_path, capsys, movie):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, movie, photometric="minisblack")
    out = tmp_path / "out"
    code = cell_seg(path, "--out", out)
    needles = ("3D array without axes", "time-lapse or z-stack?", "--axes TYX")
    assert_one_line_error(code, capsys.readouterr().err, out, str(path), *needles)


def test_a_z_stack_is_not_a_time_lapse(tmp_path, capsys, movie):
    path = tmp_path / "stack.tif"
    write_tiff(path, movie, axes="ZYX")
    out = tmp_path / "out"
    code = cell_seg(path, "--out", out)
    needles = ("a z-stack (axes ZYX", "expected YX (a 2D image) or TYX (a time-lapse)")
    assert_one_line_error(code, capsys.readouterr().err, out, str(path), *needles)


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--diameter", "0", "--diameter 0: must be a positive number of pixels"),
        ("--diameter", "-3", "--diameter -3: must be a positive"),
        ("--diameter", "nan", "--diameter nan: must be a positive"),
        ("--channel", "-1", "--channel -1: must be 0 or more"),
        ("--axes", "TTX", "--axes TTX: one letter per axis"),
        ("--axes", "TYXQ", "--axes TYXQ: one letter per axis"),
        ("--pixel-size", "0", "--pixel-size '0': expected one positive number"),
        ("--pixel-size", "1,2,3", "--pixel-size '1,2,3'"),
        ("--pixel-size", "abc", "--pixel-size 'abc'"),
    ],
)
def test_bad_option_values(tmp_path, capsys, movie, option, value, needle):
    path = tmp_path / "frame.tif"
    write_tiff(path, movie[0])
    out = tmp_path / "out"
    code = cell_seg(path, option, value, "--out", out)
    assert_one_line_error(code, capsys.readouterr().err, out, needle)


# ---------------------------------------------------------------- accepted


def test_channel_1_segments_what_the_channel_alone_does(tmp_path, movie):
    """The second channel of a 2-channel image gives the labels of that channel as its own file
    (the first channel holds another frame, so the wrong channel would give other labels); the
    pixel size given is recorded."""
    alone = tmp_path / "alone.tif"
    write_tiff(alone, movie[0])
    two = hyperstack(tmp_path / "two.tif", np.stack([movie[1][::-1], movie[0]]), "CYX")
    assert cell_seg(alone, "--out", tmp_path / "a") == 0
    assert cell_seg(two, "--channel", 1, "--pixel-size", "0.65", "--out", tmp_path / "b") == 0
    expected = tifffile.imread(tmp_path / "a" / "alone.labels.tif")
    assert expected.max() > 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b" / "two.labels.tif"), expected)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["inputs"][0]["result"]["pixel_size"] == [0.65, 0.65]
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["inputs"][0]["result"]["pixel_size"] is None
    # `--pixel-size` names no unit, and the plain input records none: the labels are in pixels.
    for labels in (tmp_path / "a" / "alone.labels.tif", tmp_path / "b" / "two.labels.tif"):
        assert read_calibration(labels, "YX").unit is None
    cells = json.loads((tmp_path / "b" / "two.cells.json").read_text())
    assert cells["pixel_size"] == [0.65, 0.65] and cells["pixel_unit"] is None


def test_the_labels_of_a_calibrated_image_carry_its_pixel_size(tmp_path, movie):
    """So that Fiji measures the cells in the image's unit: the label image says 0.2 nm per pixel
    as the input does (as Fiji writes it: ImageJ unit and resolution), and so does the contours'
    record, whose points stay in pixels."""
    path = tmp_path / "frame.tif"
    tifffile.imwrite(path, movie[0], imagej=True, metadata={"unit": "nm"}, resolution=(5.0, 5.0))
    assert cell_seg(path, "--out", tmp_path / "out") == 0
    recorded = read_calibration(tmp_path / "out" / "frame.labels.tif", "YX")
    assert recorded.unit == "nm" and recorded.sizes == pytest.approx((0.2, 0.2))
    cells = json.loads((tmp_path / "out" / "frame.cells.json").read_text())
    assert cells["pixel_unit"] == "nm" and cells["pixel_size"] == pytest.approx([0.2, 0.2])


def test_a_tyx_hyperstack_is_a_time_lapse(tmp_path, movie):
    """Written as Fiji writes a calibrated time-lapse: frames, unit and resolution (2 px per micron)."""
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TYX", "unit": "micron"}, resolution=(2.0, 2.0))
    out = tmp_path / "out"
    assert cell_seg(path, "--out", out) == 0
    assert sorted(p.name for p in out.glob("mask*.tif")) == ["mask000.tif", "mask001.tif"]
    assert (out / "res_track.txt").read_text().strip()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["result"]["pixel_size"] == [0.5, 0.5]
    for mask in out.glob("mask*.tif"):  # the CTC masks carry the time-lapse's calibration
        recorded = read_calibration(mask, "YX")
        assert recorded.unit == "µm" and recorded.sizes == pytest.approx((0.5, 0.5))


def test_axes_tyx_makes_a_plain_array_a_time_lapse(tmp_path, movie):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, movie, photometric="minisblack")
    assert not is_time_lapse(path) and is_time_lapse(path, "TYX")
    frames = read_frames(path, axes="TYX")
    assert frames.kind == "stack" and frames.times == [0, 1]
    np.testing.assert_array_equal(frames.images, movie)


# ---------------------------------------------------------------- --diameter


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_diameter_halves_and_doubles_every_size(factor):
    device = torch.device("cpu")
    base = CONFIG.compose("default", [], device)
    scaled = CONFIG.compose("default", diameter_overrides(base, float(base.diameter) * factor), device)
    assert scaled.diameter == base.diameter * factor
    # The defaults, by name: lengths times the factor, areas (and the smoothness weight) times its square.
    assert scaled.contour.max_radius == 25.0 * factor
    assert (scaled.seeds.min_sigma, scaled.seeds.max_sigma) == (3.0 * factor, 10.0 * factor)
    assert (scaled.seeds.smooth, scaled.seeds.h, scaled.seeds.min_radius) == (factor, 1.5 * factor, 2.0 * factor)
    assert (scaled.appearance.sigma, scaled.appearance.halo.sigma) == (1.5 * factor, 8.0 * factor)
    assert scaled.prune.min_area == 20.0 * factor**2 and scaled.stage2.min_area == 20.0 * factor**2
    assert scaled.split.min_radius == 3.0 * factor and scaled.split.h is None
    assert scaled.loss.star_smoothness == 20.0 * factor**2
    assert (scaled.stage2.crop, scaled.stage2.boundary) == (int(64 * factor), int(2 * factor))
    assert scaled.merge.min_boundary == round(3 * factor)
    assert scaled.phases[1].lr_scale.centres == 10.0 * factor and "lr_scale" not in scaled.phases[0]
    # Every listed size, by the rule; and what is relative to cells, frames or intensities stays.
    for key, power in SIZES.items():
        value, got = OmegaConf.select(base, key), OmegaConf.select(scaled, key)
        if value is None:
            assert got is None, key
        elif key in WHOLE:
            assert got == max(round(value * factor**power), 1), key
        else:
            assert got == value * factor**power, key
    for key in ("tracking.max_shift", "appearance.background_grid", "seeds.blob_threshold", "stage2.tile"):
        assert OmegaConf.select(scaled, key) == OmegaConf.select(base, key), key


def test_diameter_gives_a_phase_that_moves_centres_its_own_step():
    device = torch.device("cpu")
    base = CONFIG.compose("default", ["~phases.1.lr_scale"], device)
    overrides = diameter_overrides(base, 2 * float(base.diameter))
    scaled = CONFIG.compose("default", ["~phases.1.lr_scale", *overrides], device)
    assert scaled.phases[1].lr_scale.centres == 2.0


def test_a_frame_scaled_2x_segments_as_well_with_twice_the_diameter(tmp_path, movie, truth):
    """skimage's rescale of a `synth cells` frame and its labels by 2: with --diameter twice the
    config's, its SEG is within 0.05 of the original frame's with the defaults; with the defaults
    it is not (so the test sees what --diameter does)."""
    twice = 2 * float(CONFIG.compose("default", [], torch.device("cpu")).diameter)
    image = movie[0].astype(np.float32)
    big = rescale(image, 2, order=1, preserve_range=True, anti_aliasing=False).astype(np.float32)
    big_truth = rescale(truth, 2, order=0, preserve_range=True, anti_aliasing=False).astype(np.uint16)
    write_tiff(tmp_path / "frame.tif", image)
    write_tiff(tmp_path / "big.tif", big)

    def seg_of(path, out, reference, *options) -> float:
        assert cell_seg(path, *options, "--out", out) == 0
        return seg_measure({0: tifffile.imread(out / f"{path.stem}.labels.tif")}, {0: reference})["seg"]

    seg = seg_of(tmp_path / "frame.tif", tmp_path / "a", truth)
    big_seg = seg_of(tmp_path / "big.tif", tmp_path / "b", big_truth, "--diameter", twice)
    assert seg > 0.6, seg  # a frame the defaults segment: the comparison means something
    assert abs(big_seg - seg) <= 0.05, (seg, big_seg)
    assert seg_of(tmp_path / "big.tif", tmp_path / "c", big_truth) < seg - 0.05  # the defaults' sizes do not fit
    config = json.loads((tmp_path / "b" / "manifest.json").read_text())["config"]
    assert config["diameter"] == twice and config["contour"]["max_radius"] == 50.0
