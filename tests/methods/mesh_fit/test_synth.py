"""`invrender synth mesh`: a stack of a known mesh, its voxel size in the TIFF, the ground truth."""

import json

import numpy as np
import tifffile
import trimesh

from invrender.cli import main
from invrender.core.calibration import read_voxel_size
from invrender.core.geometry.meshes import read_mesh
from invrender.core.io import read_image, write_tiff


def test_synth_mesh_writes_stack_truth_and_psf(tmp_path, capsys):
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    source = tmp_path / "ball.ply"
    source.write_bytes(sphere.export(file_type="ply"))
    out = tmp_path / "out"
    assert (
        main(["synth", "mesh", str(source), "--size", "32", "--sigma", "1.5", "--noise", "0.01", "--out", str(out)])
        == 0
    )
    stack = read_image(out / "ball.tif")
    truth = read_mesh(out / "ball.truth.ply")
    psf = json.loads((out / "ball.psf.json").read_text())
    assert stack.shape == (32, 32, 32) and read_voxel_size(out / "ball.tif") == (1.0, 1.0, 1.0)
    assert psf["sigmas"] == [1.5] * 3
    # the placed sphere spans 60% of the box around its centre, and the stack is brightest on it
    extent = truth.vertices.max(axis=0) - truth.vertices.min(axis=0)
    assert np.allclose(extent, 0.6 * 32, rtol=0.02) and np.allclose(truth.vertices.mean(axis=0), 15.5, atol=0.1)
    z, y, x = np.unravel_index(np.argmax(stack), stack.shape)
    assert abs(np.linalg.norm(np.array([x, y, z]) - 15.5) - 0.3 * 32) < 2.5
    assert stack.max() < 1.1 and abs(np.median(stack)) < 0.05


def test_voxel_size_metadata_round_trip(tmp_path):
    write_tiff(tmp_path / "a.tif", np.zeros((4, 5, 6), np.float32), voxel_size=(2.5, 0.5, 0.25))
    assert np.allclose(read_voxel_size(tmp_path / "a.tif"), (2.5, 0.5, 0.25))
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((4, 5, 6), np.float32), photometric="minisblack")
    assert read_voxel_size(tmp_path / "plain.tif") is None
    ome = tmp_path / "b.ome.tif"
    tifffile.imwrite(
        ome,
        np.zeros((4, 5, 6), np.float32),
        metadata={"axes": "ZYX", "PhysicalSizeZ": 3.0, "PhysicalSizeY": 0.2, "PhysicalSizeX": 0.1},
    )
    assert np.allclose(read_voxel_size(ome), (3.0, 0.2, 0.1))


def test_copies_are_separate_turned_cells_with_their_own_numbers():
    from invrender.core.geometry.meshes import Mesh
    from invrender.methods.mesh_fit.synth import side_by_side

    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    faces = np.asarray(box.faces)
    two_cells = Mesh(np.asarray(box.vertices), faces, np.stack([np.ones(len(faces)), np.zeros(len(faces))], 1))
    two_cells.materials[:2] = [1, 2]  # two faces between cell 1 and cell 2
    cluster = side_by_side(two_cells, 3, seed=0)
    assert len(cluster.vertices) == 3 * 8 and cluster.n_cells == 6
    assert sorted(np.unique(cluster.materials)) == [0, 1, 2, 3, 4, 5, 6]
    assert (cluster.materials[len(faces) : 2 + len(faces)] == [3, 4]).all()
    copies = cluster.vertices.reshape(3, 8, 3)
    for k in range(3):  # each copy is the box turned: the same pairwise distances, another orientation
        distances = np.linalg.norm(copies[k][:, None] - copies[k][None], axis=-1)
        assert np.allclose(distances, np.linalg.norm(box.vertices[:, None] - box.vertices[None], axis=-1))
    assert not np.allclose(copies[0] - copies[0].mean(0), copies[1] - copies[1].mean(0))
    gaps = [copies[k + 1][:, 0].min() - copies[k][:, 0].max() for k in range(2)]
    assert min(gaps) > 0  # apart along x, never touching
