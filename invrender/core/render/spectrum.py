"""The frequencies at which a 3D image is rendered, and the way back from them to voxels.

A stack of shape (nz, ny, nx) with voxel size (dz, dy, dx) in physical units, the centre of voxel
[0, 0, 0] at the origin, is rendered from its spectrum on the half grid of `torch.fft.irfftn`:
xi = 2 pi (rfftfreq(nx, dx), fftfreq(ny, dy), fftfreq(nz, dz)), in radians per physical unit and
ordered (x, y, z) like vertex coordinates. For a density u integrating to 1 and a PSF h integrating
to 1, the image of u * h at the voxel centres is

    I(x_n) = (1 / V) sum_k u^(xi_k) h^(xi_k) exp(i xi_k . x_n) = irfftn(u^ h^) / voxel volume,

the Fourier series of the (periodic) box of volume V; the image is a density per unit volume.
A `Band` keeps only the frequencies where the PSF's transfer function is not negligible, which is
where a mesh's transform is worth computing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]  # (nz, ny, nx)
    spacing: tuple[float, float, float]  # (dz, dy, dx), physical units per voxel

    @property
    def voxel_volume(self) -> float:
        return math.prod(self.spacing)

    @property
    def half_shape(self) -> tuple[int, int, int]:
        """(nz, ny, nx // 2 + 1): the shape of the half spectrum."""
        nz, ny, nx = self.shape
        return nz, ny, nx // 2 + 1

    @cached_property  # computed once per grid: bands are rebuilt from it at every shape step
    def half_spectrum_freqs(self) -> torch.Tensor:
        """(nz, ny, nx // 2 + 1, 3) float64: xi = (xi_x, xi_y, xi_z) of every half-grid entry."""
        (nz, ny, nx), (dz, dy, dx) = self.shape, self.spacing
        kx = 2 * math.pi * torch.fft.rfftfreq(nx, dx, dtype=torch.float64)
        ky = 2 * math.pi * torch.fft.fftfreq(ny, dy, dtype=torch.float64)
        kz = 2 * math.pi * torch.fft.fftfreq(nz, dz, dtype=torch.float64)
        z, y, x = torch.meshgrid(kz, ky, kx, indexing="ij")
        return torch.stack([x, y, z], dim=-1)

    @cached_property
    def half_spectrum_modes(self) -> torch.Tensor:
        """(nz, ny, nx // 2 + 1, 3) long: the signed integer mode numbers (mx, my, mz) of each entry."""
        nz, ny, nx = self.shape
        mx = torch.arange(nx // 2 + 1)
        my = torch.fft.fftfreq(ny, 1 / ny).round().long()
        mz = torch.fft.fftfreq(nz, 1 / nz).round().long()
        z, y, x = torch.meshgrid(mz, my, mx, indexing="ij")
        return torch.stack([x, y, z], dim=-1)


@dataclass
class Band:
    """The half-grid entries at which a spectrum is computed."""

    grid: Grid
    index: torch.Tensor  # (K,) flat indices into the half grid
    freqs: torch.Tensor  # (K, 3) float64, rad per unit, (x, y, z)
    modes: torch.Tensor  # (K, 3) long, signed mode numbers (x, y, z)

    @classmethod
    def where(cls, grid: Grid, keep: torch.Tensor) -> Band:
        """The entries where `keep` (a boolean half grid) is true."""
        index = torch.nonzero(keep.reshape(-1)).squeeze(1)
        return cls(
            grid, index, grid.half_spectrum_freqs.reshape(-1, 3)[index], grid.half_spectrum_modes.reshape(-1, 3)[index]
        )

    @classmethod
    def full(cls, grid: Grid) -> Band:
        return cls.where(grid, torch.ones(grid.half_shape, dtype=torch.bool))

    def to_image(self, spectrum: torch.Tensor) -> torch.Tensor:
        """(nz, ny, nx) float64 image from the spectrum (K,) complex on this band (zero elsewhere)."""
        half = torch.zeros(math.prod(self.grid.half_shape), dtype=spectrum.dtype, device=spectrum.device)
        half = half.index_put((self.index.to(spectrum.device),), spectrum)
        return torch.fft.irfftn(half.reshape(self.grid.half_shape), s=self.grid.shape) / self.grid.voxel_volume

    @cached_property  # read by every NUFFT forward and backward on this band
    def max_modes(self) -> tuple[int, int, int]:
        """The largest |mode number| along x, y, z: the box a non-uniform FFT must cover."""
        return tuple(int(m) for m in self.modes.abs().amax(dim=0))
