"""What mesh-fit and `synth mesh` write for other viewers: a PLY per cell beside every `.rec`, and
the render as an ImageJ z stack with its voxel size."""

import json

import numpy as np
import pytest
import tifffile
import trimesh

from helpers import ellipsoid_stack
from invrender.cli import main
from invrender.core.geometry.meshes import cell_mesh_paths, read_mesh, write_cell_meshes, write_mesh
from invrender.core.io import write_tiff
from invrender.methods.mesh_fit.foam import cuberille_mesh
from invrender.methods.mesh_fit.synth import write_mesh_dataset
from invrender.napari.readers import get_mesh_reader

SHORT = ["phases.0.steps=3", "init.subdivisions=1"]


def two_boxes():
    """A foam of two boxes sharing a wall (cells 1 and 2), z spacing 2."""
    labels = np.zeros((4, 5, 7), int)
    labels[1:3, 1:4, 1:3] = 1
    labels[1:3, 1:4, 3:6] = 2
    return cuberille_mesh(labels, (2.0, 1.0, 1.0))


def assert_cells_match(rec_path, ply_paths):
    """Each cell's PLY holds exactly the triangles of the `.rec` that bound that cell, in order."""
    rec = read_mesh(rec_path)
    assert [p.name for p in ply_paths] == [p.name for p in cell_mesh_paths(rec_path, rec.n_cells)]
    for cell, path in enumerate(ply_paths, start=1):
        ply = trimesh.load(path, process=False)
        expected = rec.vertices[rec.cell_faces(cell)]
        assert len(ply.faces) == len(expected) > 0
        np.testing.assert_allclose(ply.vertices[ply.faces], expected, atol=1e-5)
        assert len(ply.vertices) == len(np.unique(rec.cell_faces(cell)))  # only the cell's own vertices


def test_every_cell_of_a_rec_gets_its_own_ply(tmp_path):
    foam = two_boxes()
    write_mesh(tmp_path / "boxes.rec", foam)
    paths = write_cell_meshes(tmp_path / "boxes.rec", foam)
    assert [p.name for p in paths] == ["boxes.cell1.ply", "boxes.cell2.ply"]
    assert_cells_match(tmp_path / "boxes.rec", paths)
    # The wall between the cells is in both PLYs; each PLY is a closed surface a viewer shows whole.
    for path in paths:
        assert trimesh.load(path, process=False).is_watertight


def test_napari_reads_the_rec_and_leaves_its_cell_plys_alone(tmp_path):
    for name in ("e.mesh.cell1.ply", "e.truth.cell2.ply"):
        assert get_mesh_reader(str(tmp_path / name)) is None  # the .rec gives napari the same surfaces
    assert get_mesh_reader(str(tmp_path / "e.mesh.rec")) is not None


def test_synth_mesh_of_a_foam_writes_the_cells_plys(tmp_path):
    paths = write_mesh_dataset(two_boxes(), "boxes", tmp_path, size=16, sigma=1.0, noise=0.0, seed=0)
    assert [p.name for p in paths] == [
        "boxes.tif",
        "boxes.truth.rec",
        "boxes.truth.cell1.ply",
        "boxes.truth.cell2.ply",
        "boxes.psf.json",
    ]
    assert_cells_match(tmp_path / "boxes.truth.rec", paths[2:4])
    with tifffile.TiffFile(paths[0]) as tif:
        assert tif.series[0].axes == "ZYX" and tif.imagej_metadata["unit"] == "pixel"
        assert tif.imagej_metadata["spacing"] == 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return ellipsoid_stack(tmp_path_factory.mktemp("stack"), size=24, subdivisions=2)


def test_a_foam_fit_writes_a_ply_per_cell_and_a_z_stack_render(tmp_path, stack, capsys):
    out = tmp_path / "out"
    code = main(["mesh-fit", str(stack), "--cells", "2", "--voxel-size", "2,0.5,0.5", "--out", str(out), "-q", *SHORT])
    assert code == 0, capsys.readouterr().err
    cells = [out / "ellipsoid.mesh.cell1.ply", out / "ellipsoid.mesh.cell2.ply"]
    assert_cells_match(out / "ellipsoid.mesh.rec", cells)
    with tifffile.TiffFile(out / "ellipsoid.render.tif") as tif:
        tags = tif.pages[0].tags
        assert tif.series[0].axes == "ZYX" and tif.imagej_metadata["unit"] == "micron"
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)
        x_num, x_den = tags["XResolution"].value
        assert x_den / x_num == pytest.approx(0.5)
    [job] = json.loads((out / "manifest.json").read_text())["inputs"]
    assert {str(p) for p in cells} <= set(job["outputs"])


def test_a_single_surface_fit_writes_no_cell_plys_and_a_render_in_voxels(tmp_path, stack, capsys):
    plain = tmp_path / "plain.tif"
    write_tiff(plain, tifffile.imread(stack), axes="ZYX")  # no voxel size recorded
    out = tmp_path / "out"
    assert main(["mesh-fit", str(plain), "--out", str(out), "-q", *SHORT]) == 0, capsys.readouterr().err
    assert (out / "plain.mesh.ply").is_file() and not list(out.glob("*.cell*.ply"))
    with tifffile.TiffFile(out / "plain.render.tif") as tif:
        assert tif.series[0].axes == "ZYX" and tif.imagej_metadata["unit"] == "pixel"
        assert tif.imagej_metadata["spacing"] == 1.0


def test_a_stack_in_nanometres_is_fitted_and_written_in_nanometres(tmp_path, stack, capsys):
    """An OME stack calibrated in nm (400 nm voxels) gives the fit of the same stack in voxels, 400
    times larger, and every output says nm: the render for Fiji, the PSF record, the manifest."""
    array = tifffile.imread(stack)
    in_nm, in_voxels = tmp_path / "nm.ome.tif", tmp_path / "voxels.tif"
    sizes = {f"PhysicalSize{axis}": 400.0 for axis in "ZYX"} | {f"PhysicalSize{axis}Unit": "nm" for axis in "ZYX"}
    tifffile.imwrite(in_nm, array, metadata={"axes": "ZYX", **sizes})
    write_tiff(in_voxels, array, axes="ZYX")  # no voxel size
    for path in (in_nm, in_voxels):
        code = main(["mesh-fit", str(path), "--out", str(tmp_path / path.stem), "-q", *SHORT])
        assert code == 0, capsys.readouterr().err

    nm_mesh = read_mesh(tmp_path / "nm.ome" / "nm.ome.mesh.ply")
    voxel_mesh = read_mesh(tmp_path / "voxels" / "voxels.mesh.ply")
    np.testing.assert_allclose(nm_mesh.vertices, 400 * voxel_mesh.vertices, rtol=1e-3, atol=0.05)
    with tifffile.TiffFile(tmp_path / "nm.ome" / "nm.ome.render.tif") as tif:
        assert tif.imagej_metadata["unit"] == "nm" and tif.imagej_metadata["spacing"] == pytest.approx(400)
    psf = json.loads((tmp_path / "nm.ome" / "nm.ome.psf.json").read_text())
    voxel_psf = json.loads((tmp_path / "voxels" / "voxels.psf.json").read_text())
    assert psf["unit"] == "nm" and psf["voxel_size_zyx"] == [400.0, 400.0, 400.0]
    np.testing.assert_allclose(psf["sigmas"], 400 * np.asarray(voxel_psf["sigmas"]), rtol=1e-3)
    [job] = json.loads((tmp_path / "nm.ome" / "manifest.json").read_text())["inputs"]
    assert job["result"]["unit"] == "nm"
    # a stack without a voxel size stays in voxels, and says so
    assert voxel_psf["unit"] is None
    with tifffile.TiffFile(tmp_path / "voxels" / "voxels.render.tif") as tif:
        assert tif.imagej_metadata["unit"] == "pixel"
