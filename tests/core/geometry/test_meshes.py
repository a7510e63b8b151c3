"""Mesh reading, checking and writing: the shared sample meshes, round trips, and bad meshes."""

from pathlib import Path

import numpy as np
import pytest
import trimesh

from helpers import SHARED_DATA
from invrender.core.geometry.meshes import Mesh, check_inside, read_mesh, write_mesh
from invrender.core.io import InputError

SHARED = SHARED_DATA / "meshes"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample meshes not found at {SHARED}")


@needs_shared
def test_spot_is_read_as_a_closed_genus_0_surface():
    mesh = read_mesh(SHARED / "spot.obj")
    assert mesh.vertices.shape == (2930, 3) and mesh.faces.shape == (5856, 3) and mesh.materials is None
    assert len(mesh.vertices) - 3 * len(mesh.faces) // 2 + len(mesh.faces) == 2  # Euler characteristic


@needs_shared
def test_cell4_is_read_with_its_materials():
    mesh = read_mesh(SHARED / "cell4.rec")
    assert mesh.vertices.shape == (8162, 3) and mesh.n_cells == 4
    weights = mesh.face_weights
    assert set(np.unique(weights)) == {1.0, 2.0}  # outer membranes and cell-cell interfaces


def test_round_trips(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    mesh = Mesh(
        np.asarray(sphere.vertices), np.asarray(sphere.faces, dtype=np.int64), np.tile([1, 0], (len(sphere.faces), 1))
    )
    for name in ("m.rec", "m.ply", "m.obj"):
        write_mesh(tmp_path / name, mesh)
        back = read_mesh(tmp_path / name)
        assert np.allclose(back.vertices, mesh.vertices, atol=1e-6) and (back.faces == mesh.faces).all()
    assert (read_mesh(tmp_path / "m.rec").materials == mesh.materials).all()


def write_rec(path: Path, vertices, faces) -> Path:
    lines = (
        [str(len(vertices))]
        + [" ".join(map(str, v)) for v in vertices]
        + [str(len(faces))]
        + [" ".join(map(str, f)) for f in faces]
    )
    path.write_text("\n".join(lines) + "\n")
    return path


TETRA = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]


@pytest.mark.parametrize(
    ("vertices", "faces", "needle"),
    [
        (TETRA, [], "empty"),
        (TETRA, [[0, 1, 2, 1, 0]], "not closed"),
        (
            [[0, 0, 0], [1, 0, 0], [0, "nan", 0], [0, 0, 1]],
            [[0, 2, 1, 1, 0], [0, 1, 3, 1, 0], [1, 2, 3, 1, 0], [0, 3, 2, 1, 0]],
            "NaN",
        ),
        (TETRA, [[0, 2, 1, 1, 0], [0, 1, 3, 1, 0], [1, 2, 3, 1, 0], [0, 3, 9, 1, 0]], "refers to vertex 9"),
        (
            [[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]],
            [[0, 2, 1, 1, 0], [0, 1, 3, 1, 0], [1, 2, 3, 1, 0], [0, 3, 2, 1, 0]],
            "every face has zero area",
        ),
    ],
)
def test_bad_rec_meshes(tmp_path, vertices, faces, needle):
    path = write_rec(tmp_path / "bad.rec", vertices, faces)
    with pytest.raises(InputError, match=needle) as info:
        read_mesh(path)
    assert str(path) in str(info.value)


def test_open_surface_where_a_closed_one_is_needed(tmp_path):
    open_box = trimesh.creation.box()
    open_box.faces = open_box.faces[:-2]
    path = tmp_path / "open.ply"
    path.write_bytes(open_box.export(file_type="ply"))
    with pytest.raises(InputError, match="not closed and manifold"):
        read_mesh(path)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("a.stl", b"", "empty|not a readable"),
        ("a.xyz", b"1 2 3", "unknown mesh format"),
        ("a.rec", b"3\n0 0", "not a readable .rec"),
    ],
)
def test_unreadable_meshes(tmp_path, name, content, needle):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=needle):
        read_mesh(tmp_path / name)


def test_mesh_outside_the_image(tmp_path):
    mesh = Mesh(np.array(TETRA, dtype=float) * 50, np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]]))
    with pytest.raises(InputError, match="outside the image"):
        check_inside(tmp_path / "m.obj", mesh, np.array([32.0, 32.0, 32.0]))
    check_inside(tmp_path / "m.obj", mesh, np.array([64.0, 64.0, 64.0]))
