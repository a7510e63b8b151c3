"""The foam initialisation: the cuberille multi-material mesh of a label volume, and the foam of a stack."""

import numpy as np
import pytest

from invrender.core.geometry.meshes import check_mesh
from invrender.methods.mesh_fit.foam import cuberille_mesh, foam_labels, foam_mesh


def face_areas(mesh, faces):
    c = mesh.vertices[faces]
    return 0.5 * np.linalg.norm(np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0]), axis=1)


def test_cuberille_of_two_boxes_sharing_a_wall():
    labels = np.zeros((4, 5, 7), int)
    labels[1:3, 1:4, 1:3] = 1  # 2 (z) x 3 (y) x 2 (x) cells
    labels[1:3, 1:4, 3:6] = 2  # 2 x 3 x 3, touching cell 1 along x
    mesh = cuberille_mesh(labels, (2.0, 1.0, 1.0))  # z spacing 2
    check_mesh("boxes", mesh)
    pairs = {tuple(p) for p in np.sort(mesh.materials, axis=1)}
    assert pairs == {(0, 1), (0, 2), (1, 2)}
    # cell 1 is a box of 2 x 3 x 4 physical units (x, y, z): area 2 (2*3 + 3*4 + 2*4) = 52
    assert face_areas(mesh, mesh.cell_faces(1)).sum() == pytest.approx(52.0)
    shared = (np.sort(mesh.materials, axis=1) == [1, 2]).all(axis=1)
    assert face_areas(mesh, mesh.faces[shared]).sum() == pytest.approx(3 * 4)  # the wall: y 3 x z 4
    # voxel centres: cell 1 spans x in [0.5, 2.5] (voxels 1 and 2), z in [1, 5] (voxels 1, 2 at spacing 2)
    cell1 = mesh.vertices[np.unique(mesh.cell_faces(1))]
    assert np.allclose(cell1.min(axis=0), [0.5, 0.5, 1.0]) and np.allclose(cell1.max(axis=0), [2.5, 3.5, 5.0])


def shell_stack(centres, radius, size=40):
    z, y, x = np.meshgrid(*(np.arange(size),) * 3, indexing="ij")
    stack = np.zeros((size,) * 3)
    for c in centres:
        r = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
        stack += np.exp(-((r - radius) ** 2) / 2)
    return stack


def test_foam_of_two_touching_cells_finds_two_cells():
    stack = shell_stack([(14, 20, 20), (26, 20, 20)], 6.5)
    labels = foam_labels(stack, 2, 0.3, 1, seed=0)
    assert set(np.unique(labels)) == {0, 1, 2}
    # the two cells split left and right
    xs = [np.argwhere(labels == c)[:, 2].mean() for c in (1, 2)]
    assert sorted(xs)[0] < 18 and sorted(xs)[1] > 22
    mesh = foam_mesh(stack, (1.0, 1.0, 1.0), 2, 0.3, 2, 5, seed=0)
    check_mesh("foam", mesh)
    assert mesh.n_cells == 2


def test_foam_of_an_empty_stack():
    with pytest.raises(ValueError, match="fewer than"):
        foam_labels(np.zeros((20, 20, 20)), 3, 0.2, 2, seed=0)


def test_separate_clusters_share_the_cells_by_volume():
    """Two clusters of two touching cells each: 4 cells split 2 + 2, never one cell across both
    clusters, whatever the k-means seed."""
    stack = shell_stack([(8, 12, 20), (16, 12, 20), (28, 30, 20), (36, 30, 20)], 4.5, size=48)
    for seed in range(5):
        labels = foam_labels(stack, 4, 0.3, 1, seed=seed)
        left = set(np.unique(labels[:, :, :22])) - {0}
        right = set(np.unique(labels[:, :, 22:])) - {0}
        assert len(left) == 2 and len(right) == 2 and not left & right


def test_cells_are_shared_in_proportion_to_size():
    from invrender.methods.mesh_fit.foam import share_cells

    assert share_cells(np.array([100, 100]), 8).tolist() == [4, 4]
    assert share_cells(np.array([300, 100]), 4).tolist() == [3, 1]
    assert share_cells(np.array([500, 3, 2]), 3).tolist() == [3, 0, 0]  # specks get no cell
    assert share_cells(np.array([1, 1000]), 5).tolist() == [0, 5]
    assert share_cells(np.array([2, 2]), 4).tolist() == [2, 2]
    shares = share_cells(np.array([7, 5, 3, 1]), 6)
    assert shares.sum() == 6 and (shares <= [7, 5, 3, 1]).all()
