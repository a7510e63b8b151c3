"""Point spread functions by their transfer functions (their Fourier transforms).

`GaussianPSF`: h(x) = N(0, Sigma)(x) with a full 3x3 covariance in physical units, kept symmetric
positive-definite as Sigma = L L^T with L lower-triangular and a positive diagonal (exp of a
parameter). Its transfer function is h^(xi) = exp(-xi^T Sigma xi / 2), which is 1 at xi = 0: the
PSF integrates to 1. Coordinates are (x, y, z) like the vertices.
"""

from __future__ import annotations

import math

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

    def axes(self) -> tuple[list[float], list[list[float]]]:
        return principal_axes(self.covariance().detach().numpy())

    def band_limit(self, threshold: float) -> torch.Tensor:
        """(3,) the largest |xi| along x, y, z at which h^ still reaches `threshold`: the band
        {xi : xi^T Sigma xi <= 2 ln(1/threshold)} is an ellipsoid with these half-extents."""
        inverse = torch.linalg.inv(self.covariance().detach())
        return torch.sqrt(2 * math.log(1 / threshold) * torch.diagonal(inverse))


def principal_axes(covariance) -> tuple[list[float], list[list[float]]]:
    """The sigmas along a covariance's principal axes (ascending) and the axes (unit vectors, x y z)."""
    import numpy as np

    values, vectors = np.linalg.eigh(np.asarray(covariance, dtype=np.float64))
    return np.sqrt(np.clip(values, 0, None)).tolist(), vectors.T.tolist()
