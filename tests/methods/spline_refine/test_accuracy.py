"""End to end: the CLI refines a perturbed init on a synthetic frame to sub-pixel accuracy: gently
curved bodies, a coiled worm and a pair of crossing worms with real postures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from invrender.cli import main
from invrender.core.geometry.spline_io import read_splines, write_splines
from invrender.core.io import write_tiff
from invrender.core.metrics import curve_dtw, matched_dtw
from invrender.methods.spline_refine.synth import INIT_POINTS, ROTATION, make_frame, rotate, write_spline_dataset


@pytest.mark.parametrize("perturbation", ["rotation", "displacement"])
def test_cli_refines_a_perturbed_init_below_half_a_pixel(tmp_path, perturbation):
    data = tmp_path / "data"
    write_spline_dataset(data, bodies=1, frames=1, size=128, seed=11)
    init = data / "inits" / perturbation / "frame_0000.json"
    out = tmp_path / "out"
    code = main(["spline-refine", str(data / "frame_0000.tif"), "--init", str(init), "--out", str(out), "--quiet"])
    assert code == 0

    labels = [r["points"] for r in read_splines(data / "labels" / "frame_0000.json")[0]]
    before = matched_dtw(labels, [r["points"] for r in read_splines(init)[0]])[0]
    after = matched_dtw(labels, [r["points"] for r in read_splines(out / "frame_0000.splines.json")[0]])[0]
    assert before > 2.0  # the init really is off
    assert after < 0.5, f"DTW {after:.3f} px after refinement (init {before:.2f} px)"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["status"] == "done"


def _first_frame(n_bodies: int, wanted: set[str]) -> tuple:
    """The first of seeds 0, 1, ... whose 128x128 frame of `n_bodies` eigenworm postures (70-120 px
    worms) are all of the kinds `wanted`: (image, labels)."""
    for seed in range(1000):
        image, labels = make_frame(
            np.random.default_rng(seed), n_bodies, size=128, body_size=256, crossing=1.0, postures="eigenworm"
        )
        if {body["posture"] for body in labels} <= wanted:
            return image, labels
    raise AssertionError(f"no frame of {wanted} postures")


@pytest.mark.parametrize("preset", ["default", "tangled"])
@pytest.mark.parametrize(
    "case, n_bodies, kinds",
    [("coiled worm", 1, {"coil"}), ("crossing pair", 2, {"crawl", "turn"})],
)
def test_cli_refines_real_postures_below_a_pixel(tmp_path, case, n_bodies, kinds, preset):
    image, labels = _first_frame(n_bodies, kinds)
    write_tiff(tmp_path / "frame.tif", image)
    sign = [1.0, -1.0]
    init = [
        {"id": i, "points": rotate(body["points"], ROTATION * sign[i % 2])[INIT_POINTS], "widths": None}
        for i, body in enumerate(labels)
    ]
    write_splines(tmp_path / "frame.json", [init], image="frame.tif")
    out = tmp_path / "out"
    code = main(["spline-refine", str(tmp_path / "frame.tif"), "--out", str(out), "--config", preset, "--quiet"])
    assert code == 0

    refined = {r["id"]: r["points"] for r in read_splines(out / "frame.splines.json")[0]}
    for i, body in enumerate(labels):
        before = curve_dtw(body["points"], init[i]["points"])
        after = curve_dtw(body["points"], refined[i])
        assert before > 2.0  # the init really is off
        assert after < 1.0, f"{case}, worm {i}: DTW {after:.3f} px after refinement (init {before:.2f} px)"
