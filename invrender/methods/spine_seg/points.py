"""Points on and around the vertebra meshes: where the CT is compared with the model (the fit) and
with the template's expected appearance (the placement)."""

from __future__ import annotations

import torch


def face_areas(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(..., F) the areas of the faces (F, 3) of meshes with vertices (..., V, 3)."""
    corners = vertices[..., faces, :]  # (..., F, 3, 3)
    return (
        torch.linalg.cross(
            corners[..., 1, :] - corners[..., 0, :], corners[..., 2, :] - corners[..., 0, :], dim=-1
        ).norm(dim=-1)
        / 2
    )


def sample_around_surfaces(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    count: int,
    sigmas: list[float],
    generator: torch.Generator,
    areas: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, count, 3) points per mesh of (M, V, 3) vertices: uniform on the surface by area, then
    offset by isotropic Gaussians, an equal share of the points for each width in `sigmas` (mm);
    and (M, count) the length of each offset, a bound on the point's distance to its own surface.

    `areas` (F,): draw the faces by these areas (e.g. the undeformed template's) instead of the
    meshes' own. The points are then a smooth function of the vertices for given random numbers, so
    that a tiny change of the vertices (the rounding of another storage order) changes them a
    little rather than swapping faces."""
    corners = vertices[:, faces]  # (M, F, 3, 3)
    weights = face_areas(vertices, faces) if areas is None else areas.expand(len(vertices), -1)
    face = torch.multinomial(weights, count, replacement=True, generator=generator)  # (M, count)
    u, v = torch.rand(2, *face.shape, 1, generator=generator)
    flip = (u + v) > 1  # fold the unit square onto the triangle
    u, v = torch.where(flip, 1 - u, u), torch.where(flip, 1 - v, v)
    chosen = torch.gather(corners, 1, face[..., None, None].expand(-1, -1, 3, 3))
    points = chosen[:, :, 0] + u * (chosen[:, :, 1] - chosen[:, :, 0]) + v * (chosen[:, :, 2] - chosen[:, :, 0])
    widths = torch.tensor(sigmas, dtype=points.dtype)[torch.arange(count) % len(sigmas)]
    offsets = torch.randn(points.shape, generator=generator, dtype=points.dtype) * widths[:, None]
    return points + offsets, offsets.norm(dim=-1)
