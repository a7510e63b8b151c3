"""`invrender mesh-fit` end to end on a small synthetic stack, its bad inputs, and a diverging fit."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import trimesh
from PIL import Image

from helpers import assert_one_line_error, ellipsoid_stack
from invrender.cli import main
from invrender.core.figures import LOSS_SIZE
from invrender.core.geometry.meshes import read_mesh
from invrender.core.metrics import chamfer_distance, surface_samples
from invrender.methods.mesh_fit.slices import SLICES_SIZE

SHORT = ["phases.0.steps=40", "init.subdivisions=2"]


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    """A 32^3 stack of an ellipsoid through a Gaussian PSF (sigma 1.5 voxels), with its truth."""
    folder = tmp_path_factory.mktemp("blob")
    return ellipsoid_stack(folder), read_mesh(folder / "ellipsoid.truth.ply")


def run(capsys, *args) -> tuple[int, str]:
    code = main(["mesh-fit", *map(str, args), "--device", "cpu", *SHORT])
    return code, capsys.readouterr().err


def chamfer(a, b) -> float:
    return chamfer_distance(
        surface_samples(a.vertices, a.faces, 20000, 0), surface_samples(b.vertices, b.faces, 20000, 1)
    )[0]


def test_fit_writes_outputs_and_moves_towards_the_truth(tmp_path, blob, capsys):
    stack, truth = blob
    out = tmp_path / "out"
    code, err = run(capsys, stack, "--out", out)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "ellipsoid.loss.png",
        "ellipsoid.mesh.ply",
        "ellipsoid.metrics.json",
        "ellipsoid.psf.json",
        "ellipsoid.render.tif",
        "ellipsoid.slices.png",
        "logs",
        "manifest.json",
    ]
    fitted = read_mesh(out / "ellipsoid.mesh.ply")
    metrics = json.loads((out / "ellipsoid.metrics.json").read_text())
    psf = json.loads((out / "ellipsoid.psf.json").read_text())
    render = tifffile.imread(out / "ellipsoid.render.tif")
    assert render.shape == (32, 32, 32) and metrics["steps"] == 40 and 0 < metrics["ssim"] <= 1
    # 40 steps from the bright-region sphere: closer to the truth than a sphere can be, PSF on its way from 3 to 1.5
    sphere = trimesh.creation.icosphere(
        subdivisions=2, radius=np.linalg.norm(truth.vertices - truth.vertices.mean(0), axis=1).mean()
    )
    sphere.vertices += truth.vertices.mean(0)
    assert chamfer(fitted, truth) < 0.7 * chamfer(read_mesh_from(sphere), truth)
    assert all(1.2 < s < 2.9 for s in psf["sigmas"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["status"] == "done" and manifest["method"] == "mesh-fit"
    for name, size in (("ellipsoid.loss.png", LOSS_SIZE), ("ellipsoid.slices.png", SLICES_SIZE)):
        with Image.open(out / name) as figure:
            assert figure.format == "PNG" and figure.size == size


def test_default_fit_ends_when_converged(tmp_path, blob, capsys):
    """With the default schedule the fit stops by its convergence rule, long before its 2000 steps,
    closer to the truth than 40 steps get."""
    stack, truth = blob
    out = tmp_path / "out"
    assert main(["mesh-fit", str(stack), "--out", str(out), "-q", "init.subdivisions=2"]) == 0
    steps = json.loads((out / "ellipsoid.metrics.json").read_text())["steps"]
    assert 40 < steps < 2000
    assert chamfer(read_mesh(out / "ellipsoid.mesh.ply"), truth) < 0.5


def test_coarse_to_fine_starts_on_the_binned_stack(tmp_path, blob, capsys):
    """With `coarse_to_fine.min_side` 16 the 32^3 stack is fitted binned 2x first, then at full
    resolution from there; both levels are in the run record, and the result is as close to the
    truth as without."""
    stack, truth = blob
    out = tmp_path / "out"
    code, err = run(capsys, stack, "--out", out, "coarse_to_fine.min_side=16")
    assert code == 0, err
    phases = json.loads((out / "manifest.json").read_text())["inputs"][0]["result"]["phases"]
    assert [p["name"] for p in phases] == ["fit, binned 2x", "fit"]
    fitted = read_mesh(out / "ellipsoid.mesh.ply")
    assert len(fitted.vertices) == 162 and chamfer(fitted, truth) < 0.6
    psf = json.loads((out / "ellipsoid.psf.json").read_text())
    assert all(1.2 < s < 2.9 for s in psf["sigmas"])


def read_mesh_from(mesh: trimesh.Trimesh):
    from invrender.core.geometry.meshes import Mesh

    return Mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces))


def test_fit_from_a_given_init_mesh_with_voxel_size(tmp_path, blob, capsys):
    stack, truth = blob
    init = trimesh.creation.icosphere(subdivisions=2, radius=8.0)
    init.vertices += 15.5
    path = tmp_path / "init.obj"
    path.write_text(init.export(file_type="obj"))
    out = tmp_path / "out"
    code, err = run(capsys, stack, "--init", path, "--voxel-size", "1,1,1", "--out", out)
    assert code == 0, err
    assert len(read_mesh(out / "ellipsoid.mesh.ply").vertices) == len(init.vertices)


def test_diverging_fit_keeps_the_last_good_mesh_and_says_so(tmp_path, blob, capsys, monkeypatch):
    """The modelled stack turns NaN at the 10th evaluation, as it would if the optimisation blew up."""
    from invrender.methods.mesh_fit.model import MeshScene

    forward, calls = MeshScene.forward, []

    def failing_forward(self, band):
        calls.append(1)
        image = forward(self, band)
        return image * float("nan") if len(calls) == 10 else image

    monkeypatch.setattr(MeshScene, "forward", failing_forward)
    stack, _ = blob
    out = tmp_path / "out"
    code, err = run(capsys, stack, "--out", out)
    assert code == 0, err
    metrics = json.loads((out / "ellipsoid.metrics.json").read_text())
    assert "non-finite" in metrics["warning"]
    assert np.isfinite(read_mesh(out / "ellipsoid.mesh.ply").vertices).all()
    [record] = json.loads((out / "manifest.json").read_text())["inputs"]
    assert "non-finite" in record["result"]["warning"] and "non-finite" in Path(record["log"]).read_text()
    assert "warning" in err and metrics["steps"] < 10


# ---------------------------------------------------------------- bad inputs: exit 2, one line, nothing written


@pytest.mark.parametrize(("shape", "needle"), [((16, 16), "image is 2D"), ((2, 4, 16, 16), "image is 4D")])
def test_stack_of_wrong_dimension(tmp_path, capsys, shape, needle):
    path = tmp_path / "bad.tif"
    tifffile.imwrite(path, np.ones(shape, np.float32), photometric="minisblack")
    out = tmp_path / "out"
    code, err = run(capsys, path, "--out", out)
    assert_one_line_error(code, err, out, str(path), needle)


def test_nan_in_the_stack(tmp_path, blob, capsys):
    stack = tifffile.imread(blob[0])
    stack[3, 4, 5] = np.nan
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, stack)
    out = tmp_path / "out"
    code, err = run(capsys, path, "--out", out)
    assert_one_line_error(code, err, out, str(path), "NaN")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.write_text(""), "empty"),
        (lambda p: p.write_bytes(_open_box().export(file_type="obj").encode()), "not closed"),
        (
            lambda p: p.write_bytes(trimesh.creation.icosphere(radius=50).export(file_type="obj").encode()),
            "outside the image",
        ),
    ],
)
def test_bad_init_meshes(tmp_path, blob, capsys, make, needle):
    path = tmp_path / "init.obj"
    make(path)
    out = tmp_path / "out"
    code, err = run(capsys, blob[0], "--init", path, "--out", out)
    assert_one_line_error(code, err, out, str(path), needle)


def _open_box():
    box = trimesh.creation.box(extents=(5, 5, 5))
    box.vertices += 16
    box.faces = box.faces[:-2]
    return box


@pytest.mark.parametrize("value", ["0,1,1", "1,-2,1", "1,1", "a,b,c"])
def test_bad_voxel_size(tmp_path, blob, capsys, value):
    out = tmp_path / "out"
    code, err = run(capsys, blob[0], "--voxel-size", value, "--out", out)
    assert_one_line_error(code, err, out, "--voxel-size", value)


def test_chamfer_against_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 3)), rng.normal(size=(150, 3)) + 0.3
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    expected = (d.min(axis=1).mean() + d.min(axis=0).mean()) / 2
    assert chamfer_distance(a, b)[0] == pytest.approx(expected, rel=1e-12)


def test_exact_renderer_through_the_cli(tmp_path, blob, capsys):
    out = tmp_path / "out"
    code, err = run(capsys, blob[0], "--out", out, "render.backend=exact", "phases.0.steps=3", "init.subdivisions=1")
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["config"]["render"]["backend"] == "exact"


def test_foam_of_cells_is_written_as_a_multi_material_mesh(tmp_path, blob, capsys):
    out = tmp_path / "out"
    code, err = run(capsys, blob[0], "--cells", "2", "--out", out, "phases.0.steps=5")
    assert code == 0, err
    mesh = read_mesh(out / "ellipsoid.mesh.rec")
    assert mesh.n_cells == 2 and mesh.materials is not None
    with Image.open(out / "ellipsoid.slices.png") as slices:  # the cells in colours of their own
        assert slices.format == "PNG" and slices.size == SLICES_SIZE


@pytest.mark.parametrize(
    ("options", "needle"),
    [(["--cells", "0"], "--cells 0"), (["--cells", "2", "--init", "x.obj"], "--init and --cells")],
)
def test_bad_cell_options(tmp_path, blob, capsys, options, needle):
    out = tmp_path / "out"
    code, err = run(capsys, blob[0], *options, "--out", out)
    assert_one_line_error(code, err, out, needle)


def gaussian_bead(shape=(15, 15, 15), sigma=1.5) -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in shape), indexing="ij")
    return np.exp(-(x**2 + y**2 + z**2) / (2 * sigma**2)).astype(np.float32)


def test_measured_psf_replaces_the_gaussian(tmp_path, blob, capsys):
    from invrender.core.io import write_tiff

    bead = tmp_path / "bead.tif"
    write_tiff(bead, gaussian_bead(), voxel_size=(1.0, 1.0, 1.0))
    out = tmp_path / "out"
    code, err = run(capsys, blob[0], "--psf", bead, "--out", out)
    assert code == 0, err
    psf = json.loads((out / "ellipsoid.psf.json").read_text())
    assert psf["kind"] == "measured" and psf["file"] == str(bead)
    assert json.loads((out / "ellipsoid.metrics.json").read_text())["ssim"] > 0


@pytest.mark.parametrize(
    ("bead", "voxel_size", "needle"),
    [
        (np.ones((9, 9, 9), np.float32), (1.0, 1.0, 1.0), "no signal above its median"),
        (gaussian_bead(), (2.0, 1.0, 1.0), "voxel size"),
        (gaussian_bead()[0], None, "image is 2D"),
    ],
)
def test_bad_bead_stacks(tmp_path, blob, capsys, bead, voxel_size, needle):
    from invrender.core.io import write_tiff

    path = tmp_path / "bead.tif"
    write_tiff(path, bead, voxel_size=voxel_size)
    out = tmp_path / "out"
    code, err = run(capsys, blob[0], "--psf", path, "--out", out)
    assert_one_line_error(code, err, out, str(path), needle)


def test_a_bead_in_micrometres_fits_a_stack_in_nanometres(tmp_path, blob, capsys):
    """The bead's voxel size is compared with the image's in one unit: 1 um beside 1000 nm passes,
    2 um beside 1000 nm is refused, saying both in nm."""
    from invrender.core.io import write_tiff

    image = tmp_path / "nm.ome.tif"
    sizes = {f"PhysicalSize{axis}": 1000.0 for axis in "ZYX"} | {f"PhysicalSize{axis}Unit": "nm" for axis in "ZYX"}
    tifffile.imwrite(image, tifffile.imread(blob[0]), metadata={"axes": "ZYX", **sizes})
    bead = tmp_path / "bead.tif"
    write_tiff(bead, gaussian_bead(), voxel_size=(1.0, 1.0, 1.0), unit="micron")
    code, err = run(capsys, image, "--psf", bead, "--out", tmp_path / "out")
    assert code == 0, err
    write_tiff(bead, gaussian_bead(), voxel_size=(2.0, 1.0, 1.0), unit="micron")
    out = tmp_path / "refused"
    code, err = run(capsys, image, "--psf", bead, "--out", out)
    assert_one_line_error(code, err, out, str(bead), "2000,1000,1000 nm differs from the image's 1000,1000,1000 nm")
