"""`invrender.fit_mesh` on arrays: the same result as `invrender mesh-fit` on the same stack, seed
and config, and the command line's one-line errors as exceptions."""

import json

import numpy as np
import pytest
import tifffile
import trimesh

import invrender
from helpers import ellipsoid_stack
from invrender.cli import main
from invrender.core.geometry.meshes import read_mesh
from invrender.core.io import write_tiff

SHORT = ["phases.0.steps=30", "init.subdivisions=2"]


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    """A 32^3 stack of an ellipsoid through a Gaussian PSF (sigma 1.5 voxels), voxels 2 x 1 x 1."""
    folder = tmp_path_factory.mktemp("blob")
    stack = tifffile.imread(ellipsoid_stack(folder))
    path = folder / "stack.tif"
    write_tiff(path, stack, voxel_size=(2.0, 1.0, 1.0))
    return path, stack


def test_fit_mesh_gives_what_the_command_line_writes(tmp_path, blob, capsys):
    path, stack = blob
    out = tmp_path / "out"
    assert main(["mesh-fit", str(path), "--out", str(out), "--device", "cpu", "--seed", "3", *SHORT]) == 0, (
        capsys.readouterr().err
    )
    result = invrender.fit_mesh(stack, voxel_size=(2.0, 1.0, 1.0), overrides=SHORT, device="cpu", seed=3)
    written = read_mesh(out / "stack.mesh.ply")
    assert np.allclose(result.mesh.vertices, written.vertices, atol=1e-5)
    assert np.array_equal(result.mesh.faces, written.faces)
    psf = json.loads((out / "stack.psf.json").read_text())
    assert np.allclose(result.covariance, psf["covariance_xyz"], rtol=1e-6)
    assert np.allclose(result.sigmas, psf["sigmas"], rtol=1e-6)
    assert np.allclose(result.render, tifffile.imread(out / "stack.render.tif"), atol=1e-5)
    metrics = json.loads((out / "stack.metrics.json").read_text())
    assert result.metrics["steps"] == metrics["steps"] == 30
    assert result.metrics["ssim"] == pytest.approx(metrics["ssim"], rel=1e-5)
    # physical units: the mesh spans the stack's 64 units in z, not its 32 voxels
    assert result.mesh.vertices[:, 2].max() > 32
    assert isinstance(result.mesh.to_trimesh(), trimesh.Trimesh)


def test_fit_mesh_from_a_trimesh_and_a_foam(blob):
    _, stack = blob
    start = trimesh.creation.icosphere(subdivisions=2, radius=6.0)
    start.vertices += 16.0
    steps = ["phases.0.steps=3"]
    from_trimesh = invrender.fit_mesh(stack, init=start, overrides=steps, device="cpu")
    assert len(from_trimesh.mesh.vertices) == len(start.vertices)
    foam = invrender.fit_mesh(stack, cells=2, overrides=steps, device="cpu")
    assert foam.mesh.n_cells == 2


def test_fit_mesh_reports_its_steps_to_a_callback(blob):
    steps = []
    invrender.fit_mesh(
        blob[1],
        overrides=["phases.0.steps=4", "init.subdivisions=1"],
        device="cpu",
        progress=lambda *a: steps.append(a),
    )
    assert [s[1] for s in steps] == [0, 1, 2, 3] and all(s[2] == 4 for s in steps)


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"stack": np.zeros((8, 8))}, invrender.InputError, "stack: image is 2D"),
        ({"stack": np.full((8, 8, 8), np.nan)}, invrender.InputError, "stack: image contains NaN"),
        ({"voxel_size": (1.0, 0.0, 1.0)}, invrender.InputError, "voxel_size"),
        ({"overrides": ["shape.lambda=-1"]}, invrender.ConfigError, "shape.lambda"),
        ({"overrides": "phases.0.steps=3"}, invrender.ConfigError, "a list of key=value"),
        ({"config": "nonexistent"}, invrender.ConfigError, "nonexistent"),
        ({"device": "cuda"}, invrender.ConfigError, "cuda"),
        ({"cells": 2, "init": "x.ply"}, invrender.ConfigError, "init and cells"),
        ({"init": "missing.ply"}, invrender.InputError, "missing.ply: mesh file not found"),
        ({"psf": np.ones((5, 5, 5))}, invrender.InputError, "psf: the bead stack has no signal"),
        (
            {"init": invrender.Mesh(np.full((3, 3), np.nan), np.array([[0, 1, 2]]))},
            invrender.InputError,
            "init: vertex",
        ),
        (
            {"init": invrender.Mesh(np.eye(3), np.array([[0, 1, 3]]))},
            invrender.InputError,
            "init: a face refers to vertex 3",
        ),
        ({"init": invrender.Mesh(np.eye(3)[:, :2], np.array([[0, 1, 2]]))}, invrender.InputError, "must be (V, 3)"),
        ({"init": np.eye(3)}, invrender.InputError, "init: a ndarray"),
    ],
)
def test_fit_mesh_raises_the_command_lines_errors(blob, kwargs, error, needle):
    kwargs = {"stack": blob[1], "overrides": ["phases.0.steps=1"], **kwargs}
    with pytest.raises(error, match=None) as caught:
        invrender.fit_mesh(**kwargs)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
