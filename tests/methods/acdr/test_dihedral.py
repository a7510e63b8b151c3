"""Averaging over the symmetries of the square: exact for maps that already commute with them."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from helpers import central_gradient
from invrender.methods.acdr.dihedral import SYMMETRIES, apply, dihedral_mean, undo, vector_map


def test_the_eight_symmetries_are_distinct_and_undone():
    image = torch.rand(1, 1, 7, 7, dtype=torch.float64)
    moved = [apply(g, image) for g in SYMMETRIES]
    assert len({tuple(m.flatten().tolist()) for m in moved}) == 8
    for g, m in zip(SYMMETRIES, moved):
        assert torch.equal(undo(g, m), image)


def test_vector_maps_are_orthogonal_and_mirrors_reverse_orientation():
    for turns, mirrored in SYMMETRIES:
        matrix = vector_map((turns, mirrored), 9)
        torch.testing.assert_close(matrix @ matrix.T, torch.eye(2, dtype=torch.float64))
        assert float(torch.det(matrix)) == (-1.0 if mirrored else 1.0)
    torch.testing.assert_close(vector_map((0, True), 9), torch.tensor([[-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))


def test_an_equivariant_gradient_field_is_its_own_average():
    images = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(dihedral_mean(central_gradient, images, displacement=True), central_gradient(images))


def test_an_invariant_scalar_map_is_its_own_average_and_a_shift_is_not():
    images = torch.rand(2, 1, 10, 10, dtype=torch.float64)
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64)[None, None]

    def laplacian(x):
        return F.conv2d(x, kernel, padding=1)

    def shift_right(x):
        return torch.roll(x, 1, dims=-1)

    torch.testing.assert_close(dihedral_mean(laplacian, images), laplacian(images))
    assert not torch.allclose(dihedral_mean(shift_right, images), shift_right(images))
