"""The scene of mesh-fit: a mesh (through its Laplacian parametrisation), a Gaussian PSF, and the
intensity scale and offset that map the rendered density to the stack's grey values.

Internally lengths are in units of the smallest voxel side (`unit`), so that learning rates and
the PSF's initial sigmas are in voxels whatever the physical units; vertices and covariance are
converted back to physical units on the way out.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from invrender.core.optim.divergence import far_outside, too_wide
from invrender.core.optim.largesteps import LaplacianParametrisation
from invrender.core.optim.multistart import MultiStartModule
from invrender.core.render.microscope import render_stack, surface_spectrum
from invrender.core.render.psf import cholesky_factor, gaussian_transfer
from invrender.core.render.spectrum import Band, Grid

NEGLIGIBLE_TRANSFER = 1e-6  # frequencies where |h^| is below this add less than it to the image


class MeshScene(MultiStartModule):
    """Parameters carry a leading start axis of 1 (the scheduler's convention)."""

    groups = {"shape": ("u",), "psf": ("psf_log_diagonal", "psf_lower"), "intensity": ("log_scale", "offset")}

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        face_weights: np.ndarray,
        grid: Grid,
        unit: float,
        sigmas: tuple[float, float, float],
        lam: float,
        renderer,
        render_options: dict,
        band_threshold: float,
        measured_transfer: torch.Tensor | None = None,
    ):
        """`measured_transfer` (flat half spectrum, complex): a measured PSF, which then replaces the
        Gaussian (whose parameters are then unused)."""
        super().__init__()
        self.measured_transfer = measured_transfer
        self.grid, self.unit, self.renderer, self.render_options, self.band_threshold = (
            grid,
            unit,
            renderer,
            render_options,
            band_threshold,
        )
        self.internal_grid = Grid(grid.shape, tuple(s / unit for s in grid.spacing))
        self.faces = torch.from_numpy(np.asarray(faces, dtype=np.int64))
        self.face_weights = torch.from_numpy(np.asarray(face_weights, dtype=np.float64))
        self.parametrisation = LaplacianParametrisation(len(vertices), np.asarray(faces), lam)
        self.u = nn.Parameter(self.parametrisation.to_differential(torch.from_numpy(vertices / unit))[None])
        self.psf_log_diagonal = nn.Parameter(torch.log(torch.tensor([sigmas], dtype=torch.float64)))
        self.psf_lower = nn.Parameter(torch.zeros(1, 3, dtype=torch.float64))
        self.log_scale = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.offset = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.full_band = Band.full(self.internal_grid)

    def vertices(self) -> torch.Tensor:
        """(V, 3) in internal units."""
        return self.parametrisation.to_vertices(self.u[0])

    def psf_factor(self) -> torch.Tensor:
        return cholesky_factor(self.psf_log_diagonal[0], self.psf_lower[0])

    def band(self, threshold: float | None = None) -> Band:
        """The band of the current PSF: where |h^| >= `threshold` (default: the shape steps'
        `band_threshold`; h^(0) = 1)."""
        threshold = self.band_threshold if threshold is None else threshold
        with torch.no_grad():
            transfer = self.transfer(self.full_band).abs()
        return Band.where(self.internal_grid, (transfer >= threshold).reshape(self.internal_grid.half_shape))

    def transfer(self, band: Band) -> torch.Tensor:
        """h^ on the band: the measured PSF's, or the Gaussian's (differentiable in its parameters)."""
        if self.measured_transfer is not None:
            return self.measured_transfer[band.index]
        return gaussian_transfer(band.freqs, self.psf_factor())

    def density(self, band: Band) -> torch.Tensor:
        """(nz, ny, nx) rendered density (per internal unit volume) of the mesh through the PSF."""
        transfer = self.transfer(band)
        options = dict(self.render_options)
        if "max_phase" in options:  # the quadrature need only be accurate where the PSF lets frequencies through
            visible = transfer.detach().abs() >= NEGLIGIBLE_TRANSFER
            options["accurate_up_to"] = band.freqs[visible].norm(dim=-1).max().item() if visible.any() else 0.0
        spectrum = surface_spectrum(self.renderer, self.vertices(), self.faces, self.face_weights, band, **options)
        return render_stack(spectrum, transfer, band)

    def forward(self, band: Band) -> torch.Tensor:
        """(nz, ny, nx) the modelled stack: scale * density + offset."""
        return torch.exp(self.log_scale[0]) * self.density(band) + self.offset[0]

    def divergence(self) -> str | None:
        """Why the scene has diverged (see core/optim/divergence.py), or None: vertices far outside the
        stack, or a Gaussian PSF wider than it by orders of magnitude (internal units: voxels)."""
        (nz, ny, nx), (dz, dy, dx) = self.internal_grid.shape, self.internal_grid.spacing
        extent = (nx * dx, ny * dy, nz * dz)  # x y z, like the vertices
        with torch.no_grad():
            reason = far_outside(self.vertices(), extent, "the mesh vertices", "voxels")
            if reason is None and self.measured_transfer is None:
                sigma = torch.linalg.matrix_norm(self.psf_factor(), ord=2)  # the largest sigma of L L^T
                reason = too_wide(sigma, extent, "the PSF sigma", "voxels")
        return reason

    # ------------------------------------------------------------ outputs in physical units

    def vertices_physical(self) -> np.ndarray:
        return self.vertices().detach().numpy() * self.unit

    def covariance_physical(self) -> np.ndarray | None:
        """The Gaussian PSF's covariance (x y z, physical units squared); None with a measured PSF."""
        if self.measured_transfer is not None:
            return None
        factor = self.psf_factor().detach()
        return (factor @ factor.T).numpy() * self.unit**2
