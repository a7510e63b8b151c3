"""Averaging a network's output over the 8 symmetries of the square (test-time augmentation).

A symmetry g (a quarter turn k times after an optional mirror) moves the pixels of a square image
exactly, without interpolation. For a per-pixel map f, the average is

    f_sym(I) = 1/8 sum_g  g^-1 . f(g . I),

and for a displacement field (two channels, dx and dy in pixels) each vector is also turned back:
(g^-1 . f)(p) = A_g^-1 f(g . I)(q) with q = g(p) and A_g the linear part of g. A_g^-1 = dp/dq is
read off the images of the pixel coordinates, so no sign convention of `torch.rot90` is assumed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Symmetry = tuple[int, bool]  # quarter turns, mirrored first
SYMMETRIES: tuple[Symmetry, ...] = tuple((turns, mirrored) for mirrored in (False, True) for turns in range(4))


def apply(symmetry: Symmetry, images: torch.Tensor) -> torch.Tensor:
    """g . images for (..., S, S) tensors."""
    turns, mirrored = symmetry
    return torch.rot90(images.flip(-1) if mirrored else images, turns, dims=(-2, -1))


def undo(symmetry: Symmetry, images: torch.Tensor) -> torch.Tensor:
    """g^-1 . images for (..., S, S) tensors."""
    turns, mirrored = symmetry
    turned = torch.rot90(images, -turns, dims=(-2, -1))
    return turned.flip(-1) if mirrored else turned


def vector_map(symmetry: Symmetry, size: int) -> torch.Tensor:
    """A_g^-1 (2, 2) over (dx, dy): a displacement on the moved image -> on the original one."""
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    source = apply(symmetry, torch.stack([x, y]))  # at each pixel q of the moved image: the original (x, y)
    return torch.stack([source[:, 0, 1] - source[:, 0, 0], source[:, 1, 0] - source[:, 0, 0]], dim=1)


def dihedral_mean(
    network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, displacement: bool = False
) -> torch.Tensor:
    """1/8 sum_g g^-1 . network(g . images).

    images (B, C, S, S) -> the network's output (B, D, S, S) averaged; with `displacement`, D = 2
    channels (dx, dy) in pixels that are turned back with the image.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"dihedral averaging needs square images, not {images.shape[-1]}x{images.shape[-2]}")
    total = None
    for symmetry in SYMMETRIES:
        output = network(apply(symmetry, images))
        if displacement:
            matrix = vector_map(symmetry, images.shape[-1]).to(output)
            output = torch.einsum("ij,bjhw->bihw", matrix, output)
        output = undo(symmetry, output)
        total = output if total is None else total + output
    return total / len(SYMMETRIES)
