"""A fit that diverges (issue 20, "Divergence"): every method keeps its last finite state, writes all
its outputs from it, says so in a warning naming the input, and never writes NaN into JSON. A
parameter thrown orders of magnitude outside the image counts as diverged too."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import FAST, ellipsoid_stack, make_input, write_init
from invrender.cli import main
from invrender.core.geometry.meshes import read_mesh
from invrender.core.optim.divergence import far_outside
from invrender.core.optim.multistart import MultiStartModule
from invrender.core.optim.phases import run_phases_recorded

KEPT = "kept the state before it diverged"


def strict_json(path: Path):
    """The JSON file at `path`; NaN and Infinity (which Python's json accepts by default) fail."""

    def refuse(constant: str):
        raise AssertionError(f"{path.name} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def check_run(out: Path, err: str, code: int, input_name: str, reason: str, expected: set[str]) -> dict:
    """Exit 0, the input `done` with a warning that gives `reason`, the same warning on stderr
    naming the input, exactly the `expected` outputs, and every JSON file strict. Returns the
    manifest's record of the input."""
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("invrender: warning: ")]
    assert len(warnings) == 1 and input_name in warnings[0] and reason in warnings[0] and KEPT in warnings[0], err
    assert "Traceback" not in err
    assert {p.name for p in out.iterdir()} == expected | {"logs", "manifest.json"}
    for path in out.rglob("*.json"):
        strict_json(path)
    [record] = strict_json(out / "manifest.json")["inputs"]
    assert record["status"] == "done" and reason in record["result"]["warning"], record
    return record


# ---------------------------------------------------------------- the scheduler's guard (core/optim)


class Point(MultiStartModule):
    """One point `xy` (S, 2) px, float32, in a 10 x 10 px image, pulled towards a goal by recon_mse."""

    groups = {"xy": ("xy",)}

    def __init__(self):
        super().__init__()
        self.xy = torch.nn.Parameter(torch.tensor([[5.0, 5.0]], dtype=torch.float32))


def pull_to(goal: float):
    return lambda model, ctx: {"render": model.xy, "target": torch.full_like(model.xy, goal)}


@pytest.mark.parametrize(
    "goal, lr, reason",
    [
        (1e6, 1e6, "the point moved"),  # the bound: ~1e6 px outside after one step, the loss still finite
        (0.0, 1e308, "a parameter became non-finite"),  # the step gives inf (float32), before any loss sees it
    ],
)
def test_the_state_before_a_diverging_step_is_kept_with_every_phase_record(goal, lr, reason):
    model = Point()
    steady = {"name": "steady", "train": ["xy"], "lr": 0.1, "steps": 3}
    wild = {"name": "wild", "train": ["xy"], "lr": lr, "steps": 5}
    bound = lambda m: far_outside(m.xy.detach(), (9.0, 9.0), "the point")  # noqa: E731
    history = run_phases_recorded(model, pull_to(goal), [steady, wild, steady], {"recon_mse": 1.0}, bound=bound)
    assert reason in history.warning and "phase 'wild' at step 0" in history.warning
    # Both phases that ran are recorded, the diverged one flagged; the third never ran.
    assert [(r.name, r.diverged) for r in history.phases] == [("steady", False), ("wild", True)]
    assert torch.isfinite(model.xy).all() and (model.xy.abs() < 10).all()
    assert all(v is None or math.isfinite(v) for r in history.phases for v in r.final.values())


# ---------------------------------------------------------------- spline-refine


@pytest.mark.parametrize(
    "lr, reason",
    [
        ("1000", "spline knots moved"),  # thrown ~1000 image sizes away in one step: the loss turned NaN after it
        ("1e308", "non-finite"),  # the knots become infinite (before: an IndexError in core/geometry/splines.py)
    ],
)
def test_spline_refine_keeps_its_last_finite_splines(tmp_path, capsys, lr, reason):
    image, records = make_input(tmp_path / "data", "f0")
    init = write_init(tmp_path / "data" / "f0.json", records)
    out = tmp_path / "out"
    code = main(
        ["spline-refine", str(image), "--init", str(init), "--out", str(out), "--device", "cpu", *FAST]
        + [f"phases.1.lr={lr}"]
    )
    check_run(
        out,
        capsys.readouterr().err,
        code,
        str(image),
        reason,
        {"f0.splines.json", "f0.render.tif", "f0.overlay.png", "f0.loss.png", "f0.rois.zip"},
    )
    written = strict_json(out / "f0.splines.json")["splines"]
    assert len(written) == len(records)
    for spline in written:
        for key in ("points", "widths", "knots"):
            values = np.asarray(spline[key], dtype=float)
            assert values.size and np.isfinite(values).all(), (key, spline[key])
        assert np.abs(np.asarray(spline["points"])).max() < 10 * 48  # still about the 48 x 48 image


# ---------------------------------------------------------------- mesh-fit


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    """A 16^3 stack of an ellipsoid through a Gaussian PSF."""
    return ellipsoid_stack(tmp_path_factory.mktemp("stack"), size=16, subdivisions=2, name="ell")


@pytest.mark.parametrize(
    "override, reason",
    [
        # The PSF's log-sigmas jump by 1e30: before, NaN metrics and a "not JSON compliant" crash after
        # part of the outputs (or an empty frequency band), now the PSF of the step before.
        ("phases.0.alternate.1.lr=1e30", "the PSF sigma grew"),
        # The vertices jump to ~1e30: before, `done` with no warning and the mesh far outside the stack.
        ("phases.0.alternate.0.lr=1e30", "the mesh vertices moved"),
    ],
)
def test_mesh_fit_keeps_its_last_mesh_and_psf_within_the_stack(tmp_path, capsys, stack, override, reason):
    out = tmp_path / "out"
    code = main(
        ["mesh-fit", str(stack), "--out", str(out), "--device", "cpu", "phases.0.steps=10", "init.subdivisions=1"]
        + [override]
    )
    expected = {"ell.mesh.ply", "ell.psf.json", "ell.render.tif", "ell.loss.png", "ell.slices.png", "ell.metrics.json"}
    record = check_run(out, capsys.readouterr().err, code, str(stack), reason, expected)
    metrics = strict_json(out / "ell.metrics.json")
    assert reason in metrics["warning"] and all(metrics[k] is not None for k in ("mse", "ssim", "psnr"))
    assert record["result"]["phases"][-1]["diverged"] is True
    vertices = read_mesh(out / "ell.mesh.ply").vertices
    assert np.isfinite(vertices).all() and (vertices > -16).all() and (vertices < 32).all()
    sigmas = strict_json(out / "ell.psf.json")["sigmas"]
    assert all(0 < s < 16 for s in sigmas), sigmas


# ---------------------------------------------------------------- cell-seg


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> Path:
    """One 64 x 64 frame of three nuclei."""
    from invrender.methods.cell_seg.synth import write_cell_dataset

    folder = tmp_path_factory.mktemp("cells")
    write_cell_dataset(folder, frames=1, size=64, cells=3, divisions=0, seed=1)
    return folder / "01" / "t000.tif"


def test_cell_seg_keeps_its_last_cells_within_the_frame(tmp_path, capsys, frame):
    """The centres jump by ~1e30 px in the first shape step: before, an OverflowError in the blur of
    the render (exit 1, nothing written); now the cells of the step before, with a warning."""
    out = tmp_path / "out"
    code = main(
        ["cell-seg", str(frame), "--out", str(out), "phases.0.steps=5", "phases.1.steps=10", "phases.1.lr=1e30"]
    )
    expected = {"t000.labels.tif", "t000.overlay.png", "t000.loss.png", "t000.rois.zip", "t000.cells.json"}
    check_run(out, capsys.readouterr().err, code, str(frame), "cell centres moved", expected)
    [record] = strict_json(out / "t000.cells.json")["frames"]
    assert "cell centres moved" in record["warning"] and record["cells"]
    for cell in record["cells"]:
        points = np.asarray(cell["points"], dtype=float)
        assert np.isfinite(points).all() and (np.abs(points) < 10 * 64).all()


def test_a_frame_without_cells_has_nothing_to_diverge():
    from invrender.core.optim.divergence import too_wide

    assert far_outside(torch.zeros(0, 2), (9.0, 9.0), "cell centres") is None
    assert too_wide(torch.zeros(0), (9.0, 9.0), "PSF sigma") is None
