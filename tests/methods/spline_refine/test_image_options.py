"""spline-refine's `--width`, `--pixel-size`, `--channel` and `--axes` (issue 23): the width reaches
the config, the pixel size the manifest, and images are read by their axes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from helpers import FAST, assert_one_line_error, make_input, write_init
from invrender.cli import main
from invrender.config import compose_config
from invrender.methods.spline_refine.api import width_overrides


def run(capsys, *args) -> tuple[int, str]:
    code = main(["spline-refine", *map(str, args), "--device", "cpu", "-q", "--threads", "1", *FAST])
    return code, capsys.readouterr().err


@pytest.fixture
def good(tmp_path):
    image, records = make_input(tmp_path / "in", "worms")
    return image, write_init(tmp_path / "in" / "worms.json", records)


def test_width_reaches_the_config_and_pixel_size_the_manifest(tmp_path, capsys, good):
    image, init = good
    out = tmp_path / "out"
    code, err = run(capsys, image, "--init", init, "--width", 8, "--pixel-size", "0.3,0.2", "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    default = compose_config("spline_refine", "default", [])
    assert manifest["config"]["prior"]["width"] == 8.0 != default.prior.width
    assert manifest["config"]["groups"]["reach"] == default.groups.reach + (8.0 - default.prior.width) / 2
    assert "prior.width=8.0" in manifest["overrides"]
    assert manifest["inputs"][0]["result"]["pixel_size"] == [0.3, 0.2]


def test_width_follows_the_config_it_is_given():
    """`--width` sets the width, and moves the reach by half the change from the config's own."""
    cfg = compose_config("spline_refine", "default", ["prior.width=4", "groups.reach=10"])
    assert width_overrides(cfg, 6.0) == ["prior.width=6.0", "groups.reach=11.0"]


@pytest.mark.parametrize("value", ["0", "-2", "inf"])
def test_a_bad_width(tmp_path, capsys, good, value):
    image, init = good
    out = tmp_path / "out"
    code, err = run(capsys, image, "--init", init, "--width", value, "--out", out)
    assert_one_line_error(code, err, out, f"--width {value}", "must be a positive number of pixels")


def test_channels_are_picked_and_stacks_read_by_their_axes(tmp_path, capsys, good):
    image, init = good
    frame = tifffile.imread(image)
    two = tmp_path / "in" / "two.tif"
    tifffile.imwrite(two, np.stack([frame[::-1], frame]), imagej=True, metadata={"axes": "CYX", "mode": "composite"})
    (tmp_path / "in" / "two.json").write_text(init.read_text())  # the init beside each image
    out = tmp_path / "out"
    code, err = run(capsys, two, "--out", out)
    assert_one_line_error(code, err, out, str(two), "give --channel N (0 to 1)")
    code, err = run(capsys, two, "--channel", 1, "--out", out)
    assert code == 0, err
    code, err = run(capsys, image, "--out", tmp_path / "alone")
    assert code == 0, err
    refined = json.loads((out / "two.splines.json").read_text())["splines"]
    alone = json.loads((tmp_path / "alone" / "worms.splines.json").read_text())["splines"]
    assert [s["points"] for s in refined] == [s["points"] for s in alone]  # channel 1 is the frame itself
    stack = tmp_path / "in" / "stack.tif"
    tifffile.imwrite(stack, np.stack([frame, frame]), imagej=True, metadata={"axes": "ZYX"})
    code, err = run(capsys, stack, "--init", init, "--out", tmp_path / "z")
    assert_one_line_error(code, err, tmp_path / "z", str(stack), "a z-stack (axes ZYX", "--axes TYX")
