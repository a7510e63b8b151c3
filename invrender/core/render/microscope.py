"""The differentiable fluorescence microscope: a mesh's surface density convolved with a PSF.

    I = u * h,   computed as   I^ = u^ h^   on a band of frequencies, then `Band.to_image`,

with u the fluorophore density on the surface, normalised by the (weighted) total area so that it
integrates to 1, and cell-cell interfaces of a multi-material mesh weighted 2 (a double membrane).
The mesh transform comes from one of two backends with the same signature:

- `exact`: the closed-form transform of each triangle (`meshft`), float64, cost ~ faces x band;
- `nufft`: quadrature points and a non-uniform FFT (`nufft`), cost ~ box modes log + points.
"""

from __future__ import annotations

import torch

from invrender.core.render.meshft import mesh_ft, triangle_areas
from invrender.core.render.nufft import nufft_mesh_ft
from invrender.core.render.registry import RendererSpec, register_renderer
from invrender.core.render.spectrum import Band


def _exact(vertices, faces, face_weights, band: Band, **_: object) -> torch.Tensor:  # exact: no quadrature options
    return mesh_ft(vertices, faces, face_weights, band.freqs.to(vertices.device))


def _nufft(
    vertices,
    faces,
    face_weights,
    band: Band,
    degree: int = 5,
    subdivisions: int = 1,
    max_phase: float | None = 5.0,
    accurate_up_to: float | None = None,
) -> torch.Tensor:
    return nufft_mesh_ft(vertices, faces, face_weights, band, degree, subdivisions, max_phase, accurate_up_to)


register_renderer(
    RendererSpec("exact", "mesh spectrum", _exact, ("cpu", "cuda"), cost="faces x band frequencies, float64, chunked")
)
register_renderer(
    RendererSpec(
        "nufft",
        "mesh spectrum",
        _nufft,
        ("cpu",),
        requires="finufft",
        cost="band box modes x log + quadrature points",
        preference=1,
    )
)


def surface_spectrum(
    renderer, vertices: torch.Tensor, faces: torch.Tensor, face_weights: torch.Tensor, band: Band, **options
) -> torch.Tensor:
    """u^ on the band (K,) complex128: the mesh's transform over its weighted area."""
    total = (face_weights * triangle_areas(vertices, faces)).sum()
    return renderer(vertices, faces, face_weights, band, **options) / total


def render_stack(spectrum: torch.Tensor, transfer: torch.Tensor, band: Band) -> torch.Tensor:
    """(nz, ny, nx) float64 density per unit volume of u * h, from u^ and h^ on the band."""
    return band.to_image(spectrum * transfer)
