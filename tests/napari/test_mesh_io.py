"""The napari plugin's meshes: `.mesh.ply` and multi-material `.rec` read as Surface layers in the
stack's physical coordinates, (z, y, x) as napari orders them, over the stack read with its voxel size."""

import numpy as np
import pytest
import tifffile
import trimesh

from invrender.cli import main
from invrender.core.geometry.meshes import Mesh, read_mesh, write_mesh
from invrender.core.io import write_tiff
from invrender.napari.readers import get_mesh_reader, read_mesh_file, read_tiff_file
from invrender.napari.surfaces import mesh_from_surface


def sphere(centre, radius: float, subdivisions: int = 2) -> Mesh:
    ball = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(np.asarray(ball.vertices) + centre, np.asarray(ball.faces, dtype=np.int64))


def test_a_ply_mesh_reads_as_a_surface_with_its_coordinates_reversed(tmp_path):
    path = tmp_path / "cell.mesh.ply"
    write_mesh(path, sphere([10.0, 20.0, 30.0], 4.0))
    assert get_mesh_reader(str(path)) is read_mesh_file
    [((vertices, faces), attributes, kind)] = read_mesh_file(str(path))
    mesh = read_mesh(path)
    assert kind == "surface" and attributes["name"] == "cell mesh"
    np.testing.assert_array_equal(vertices, mesh.vertices[:, ::-1])  # x, y, z -> z, y, x
    np.testing.assert_array_equal(faces, mesh.faces)
    back = mesh_from_surface((vertices, faces))
    np.testing.assert_array_equal(back.vertices, mesh.vertices)


def test_a_foam_reads_as_one_closed_surface_per_cell(tmp_path):
    cells = [sphere([8.0, 8.0, 8.0], 3.0), sphere([20.0, 9.0, 7.0], 2.5, subdivisions=1)]
    foam = Mesh(
        np.concatenate([c.vertices for c in cells]),
        np.concatenate([cells[0].faces, cells[1].faces + len(cells[0].vertices)]),
        np.concatenate([np.tile([cell, 0], (len(c.faces), 1)) for cell, c in enumerate(cells, start=1)]),
    )
    path = tmp_path / "embryo.mesh.rec"
    write_mesh(path, foam)
    layers = read_mesh_file(str(path))
    assert [attributes["name"] for _, attributes, _ in layers] == ["embryo mesh cell 1", "embryo mesh cell 2"]
    for ((vertices, faces), _, kind), cell in zip(layers, cells):
        assert kind == "surface" and faces.max() == len(vertices) - 1
        np.testing.assert_allclose(vertices, cell.vertices[:, ::-1], atol=1e-6)  # .rec keeps 9 digits
        np.testing.assert_array_equal(faces, cell.faces)
        assert trimesh.Trimesh(vertices, faces, process=False).is_watertight


def test_a_fitted_mesh_lies_over_its_anisotropic_stack(tmp_path):
    """`mesh-fit` on a stack of 2 x 1 x 1 voxels starts from a sphere on the bright region, in
    physical units; read back, the mesh's centre is where the stack's brightness is in napari's
    world coordinates (voxel index times the stack layer's scale)."""
    source = tmp_path / "blob.ply"
    blob = trimesh.creation.icosphere(subdivisions=2)
    blob.vertices *= [1.0, 0.7, 0.5]
    source.write_bytes(blob.export(file_type="ply"))
    assert (
        main(["synth", "mesh", str(source), "--size", "16", "--sigma", "1", "--noise", "0", "--out", str(tmp_path)])
        == 0
    )
    synthetic = tifffile.imread(tmp_path / "blob.tif")
    z = np.arange(16) // 2  # squeezed to 8 slices of 2 units: an anisotropic stack of the same blob
    stack = np.stack([synthetic[z == k].mean(axis=0) for k in range(8)])
    write_tiff(tmp_path / "stack.tif", stack.astype(np.float32), voxel_size=(2.0, 1.0, 1.0))
    args = ["mesh-fit", str(tmp_path / "stack.tif"), "--out", str(tmp_path / "out"), "--device", "cpu", "-q"]
    assert main([*args, "phases.0.steps=2", "init.subdivisions=1"]) == 0

    [(image, image_attributes, _)] = read_tiff_file(str(tmp_path / "stack.tif"))
    [((vertices, _), _, _)] = read_mesh_file(str(tmp_path / "out" / "stack.mesh.ply"))
    scale = np.asarray(image_attributes["scale"])
    assert scale == pytest.approx([2.0, 1.0, 1.0])
    bright = np.where(image > 0.5 * image.max(), image, 0.0)
    index = np.stack(np.meshgrid(*map(np.arange, image.shape), indexing="ij"), axis=-1)
    world_centre = (bright[..., None] * index * scale).reshape(-1, 3).sum(axis=0) / bright.sum()
    assert np.abs(vertices.mean(axis=0) - world_centre).max() < 0.5
    assert (vertices.min(axis=0) >= 0).all() and (vertices.max(axis=0) <= scale * (np.array(image.shape) - 1)).all()


def test_other_meshes_are_left_to_other_readers(tmp_path):
    assert get_mesh_reader(str(tmp_path / "spine.L1.ply")) is None  # spine-seg's, in world millimetres
    assert get_mesh_reader(str(tmp_path / "x.obj")) is None
