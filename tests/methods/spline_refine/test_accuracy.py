"""End to end: the CLI refines a perturbed init on a synthetic frame to sub-pixel accuracy."""

from __future__ import annotations

import json

import pytest

from invrender.cli import main
from invrender.core.geometry.spline_io import read_splines
from invrender.core.metrics import matched_dtw
from invrender.methods.spline_refine.synth import write_spline_dataset


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
