"""Point spread functions by their transfer functions (their Fourier transforms).

`GaussianPSF`: h(x) = N(0, Sigma)(x) with a full 3x3 covariance in physical units, kept symmetric
positive-definite as Sigma = L L^T with L lower-triangular and a positive diagonal (exp of a
parameter). Its transfer function is h^(xi) = exp(-xi^T Sigma xi / 2), which is 1 at xi = 0: the
PSF integrates to 1. Coordinates are (x, y, z) like the vertices.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def cholesky_factor(log_diagonal: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """(3, 3) L with diagonal exp(log_diagonal) (3,) and below it `lower` (3,): L[1,0], L[2,0], L[2,1]."""
    rows, cols = torch.tril_indices(3, 3, offset=-1)
    return torch.diag(torch.exp(log_diagonal)).index_put((rows, cols), lower)


def gaussian_transfer(freqs: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(K,) exp(-xi^T Sigma xi / 2) at freqs (K, 3), Sigma = L L^T."""
    return torch.exp(-0.5 * (freqs @ factor).pow(2).sum(dim=-1))


class GaussianPSF(nn.Module):
    def __init__(self, sigmas_xyz: tuple[float, float, float]):
        """An axis-aligned start: standard deviations along x, y, z (physical units)."""
        super().__init__()
        self.log_diagonal = nn.Parameter(torch.log(torch.tensor(sigmas_xyz, dtype=torch.float64)))
        self.lower = nn.Parameter(torch.zeros(3, dtype=torch.float64))  # L[1,0], L[2,0], L[2,1]

    def cholesky(self) -> torch.Tensor:
        return cholesky_factor(self.log_diagonal, self.lower)

    def covariance(self) -> torch.Tensor:
        """(3, 3) float64 Sigma, physical units squared, (x, y, z)."""
        factor = self.cholesky()
        return factor @ factor.T

    def transfer(self, freqs: torch.Tensor) -> torch.Tensor:
        """(K,) float64 h^(xi) at freqs (K, 3), rad per unit."""
        return gaussian_transfer(freqs, self.cholesky())

    forward = transfer  # so that torch.func.functional_call can evaluate it with other parameters


def principal_axes(covariance) -> tuple[list[float], list[list[float]]]:
    """The sigmas along a covariance's principal axes (ascending) and the axes (unit vectors, x y z)."""
    values, vectors = np.linalg.eigh(np.asarray(covariance, dtype=np.float64))
    return np.sqrt(np.clip(values, 0, None)).tolist(), vectors.T.tolist()


def measured_transfer(bead, grid) -> torch.Tensor:
    """The transfer function of a measured PSF on `grid`'s half spectrum, flat (K_half,) complex128.

    `bead` is a stack (z, y, x) of one sub-resolution bead at the grid's voxel size: its background
    (median) is removed, it is normalised to sum 1, cropped around its intensity-weighted centre if
    larger than the grid, zero-padded to the grid, and its transform is phase-shifted so that the
    centre sits at the origin (a PSF centred on the point it images).
    """
    psf = np.clip(np.asarray(bead, dtype=np.float64) - np.median(bead), 0, None)
    if psf.sum() <= 0:
        raise ValueError("the bead stack has no signal above its median")
    centre = (
        np.array(
            [
                (psf.sum(axis=tuple(a for a in range(3) if a != axis)) * np.arange(n)).sum()
                for axis, n in enumerate(psf.shape)
            ]
        )
        / psf.sum()
    )
    starts = [int(np.clip(round(c - g / 2), 0, max(n - g, 0))) for c, g, n in zip(centre, grid.shape, psf.shape)]
    psf = psf[tuple(slice(s, s + g) for s, g in zip(starts, grid.shape))]
    centre = centre - np.array(starts)
    psf = psf / psf.sum()
    padded = np.zeros(grid.shape)
    padded[tuple(slice(0, n) for n in psf.shape)] = psf
    spectrum = torch.fft.rfftn(torch.from_numpy(padded))
    shift = torch.from_numpy(centre[::-1] * np.array(grid.spacing[::-1]))  # x, y, z physical
    phase = torch.exp(1j * (grid.half_spectrum_freqs @ shift))
    return (spectrum * phase).reshape(-1)
