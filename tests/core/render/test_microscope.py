"""The microscope renderer: quadrature rules, the NUFFT backend against the exact transform, the PSF,
and a rendered sphere against the closed-form image of a spherical shell blurred by a Gaussian."""

import math

import numpy as np
import pytest
import torch
import trimesh

from invrender.core.render.meshft import mesh_ft
from invrender.core.render.microscope import render_stack, surface_spectrum
from invrender.core.render.nufft import nufft_mesh_ft, quadrature_rule
from invrender.core.render.psf import GaussianPSF, principal_axes
from invrender.core.render.registry import get_renderer
from invrender.core.render.spectrum import Band, Grid


@pytest.mark.parametrize(("degree", "subdivisions"), [(1, 1), (2, 1), (5, 1), (2, 3), (5, 2)])
def test_quadrature_rules_are_exact_to_their_degree(degree, subdivisions):
    """The integral of l1^i l2^j over the simplex (as a fraction of its area) is 2 i! j! / (i + j + 2)!."""
    points, weights = quadrature_rule(degree, subdivisions)
    assert points.shape[0] == weights.shape[0] and weights.sum().item() == pytest.approx(1.0, abs=1e-14)
    assert (points >= -1e-15).all() and torch.allclose(points.sum(dim=1), torch.ones(len(points), dtype=torch.float64))
    for i in range(degree + 1):
        for j in range(degree + 1 - i):
            got = (weights * points[:, 0] ** i * points[:, 1] ** j).sum().item()
            assert got == pytest.approx(
                2 * math.factorial(i) * math.factorial(j) / math.factorial(i + j + 2), rel=1e-12
            )


def sphere(radius: float, centre, subdivisions: int = 3):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    vertices = torch.tensor(mesh.vertices + np.asarray(centre), dtype=torch.float64, requires_grad=True)
    faces = torch.tensor(mesh.faces, dtype=torch.long)
    return vertices, faces, torch.ones(len(faces), dtype=torch.float64)


def narrow_band(grid: Grid, psf: GaussianPSF, threshold: float = 0.01) -> Band:
    nz, ny, nx = grid.shape
    transfer = psf.transfer(grid.half_spectrum_freqs.reshape(-1, 3)).reshape(nz, ny, nx // 2 + 1)
    return Band.where(grid, transfer >= threshold * transfer.max())


def test_nufft_matches_exact_transform_and_gradient():
    """On the spectrum of the image (the mesh's transform times the PSF's), as rendering uses it."""
    grid = Grid((32, 32, 32), (1.0, 1.0, 1.0))
    psf = GaussianPSF((1.5, 1.5, 1.5))
    band = narrow_band(grid, psf)
    vertices, faces, weights = sphere(9.0, (16.3, 15.8, 16.1), subdivisions=3)
    transfer = psf.transfer(band.freqs).detach()
    exact = mesh_ft(vertices, faces, weights, band.freqs) * transfer
    approx = nufft_mesh_ft(vertices, faces, weights, band, degree=5) * transfer
    assert ((approx - exact).abs().norm() / exact.abs().norm()).item() < 1e-5
    probe = torch.randn(len(band.freqs), dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    g_exact = torch.autograd.grad((probe * exact).real.sum(), vertices)[0].flatten()
    g_approx = torch.autograd.grad((probe * approx).real.sum(), vertices)[0].flatten()
    assert (g_exact @ g_approx / g_exact.norm() / g_approx.norm()).item() > 0.99999
    assert ((g_approx - g_exact).norm() / g_exact.norm()).item() < 1e-4


def shell_image(r: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """A uniform spherical shell of total mass 1 blurred by an isotropic Gaussian, at distance r."""
    return (np.exp(-((r - radius) ** 2) / (2 * sigma**2)) - np.exp(-((r + radius) ** 2) / (2 * sigma**2))) / (
        4 * math.pi * radius * r * sigma * math.sqrt(2 * math.pi)
    )


@pytest.mark.parametrize("backend", ["exact", "nufft"])
def test_rendered_sphere_matches_the_blurred_shell_with_anisotropic_voxels(backend):
    """Full band (every frequency), z spacing 2: units, normalisation and voxel geometry end to end."""
    grid = Grid((20, 40, 40), (2.0, 1.0, 1.0))  # a 40 x 40 x 40 box in physical units
    psf = GaussianPSF((1.8, 1.8, 1.8))
    centre, radius = np.array([20.0, 19.5, 20.5]), 10.0
    vertices, faces, weights = sphere(radius, centre, subdivisions=4)
    band = Band.full(grid)
    renderer = get_renderer(backend, torch.device("cpu"), "mesh spectrum")
    image = (
        render_stack(surface_spectrum(renderer, vertices, faces, weights, band), psf.transfer(band.freqs), band)
        .detach()
        .numpy()
    )
    z, y, x = np.meshgrid(*(np.arange(n) * d for n, d in zip(grid.shape, grid.spacing)), indexing="ij")
    r = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    expected = shell_image(r, radius, 1.8)
    assert np.linalg.norm(image - expected) / np.linalg.norm(expected) < 0.01
    assert image.sum() * grid.voxel_volume == pytest.approx(1.0, rel=1e-6)


def test_gaussian_psf():
    psf = GaussianPSF((1.0, 2.0, 3.0))
    with torch.no_grad():
        psf.lower.copy_(torch.tensor([0.3, -0.2, 0.5]))
    cov = psf.covariance()
    assert torch.allclose(cov, cov.T) and (torch.linalg.eigvalsh(cov) > 0).all()
    xi = torch.randn(50, 3, dtype=torch.float64)
    expected = torch.exp(-0.5 * torch.einsum("ki,ij,kj->k", xi, cov, xi))
    assert (
        torch.allclose(psf.transfer(xi), expected)
        and psf.transfer(torch.zeros(1, 3, dtype=torch.float64)).item() == 1.0
    )
    sigmas, _ = principal_axes(cov.detach().numpy())
    assert np.allclose(sorted(sigmas), np.sqrt(np.linalg.eigvalsh(cov.detach().numpy())))
    parameters = (psf.log_diagonal.detach().clone().requires_grad_(), psf.lower.detach().clone().requires_grad_())
    transfer = lambda d, low: torch.func.functional_call(psf, {"log_diagonal": d, "lower": low}, (xi[:5],))
    assert torch.autograd.gradcheck(transfer, parameters)


def test_measured_psf_of_a_gaussian_bead_matches_the_gaussian_transfer():
    """A bead stack that is a sampled Gaussian (off-centre, on a background) gives the Gaussian's transfer."""
    from invrender.core.render.psf import measured_transfer

    grid = Grid((32, 32, 32), (2.0, 1.0, 1.0))
    sigma = np.array([1.5, 1.8, 2.2])  # x, y, z physical
    z, y, x = np.meshgrid(np.arange(21) * 2.0, np.arange(25) * 1.0, np.arange(25) * 1.0, indexing="ij")
    centre = np.array([12.3, 11.6, 20.4])  # x, y, z physical
    bead = (
        np.exp(
            -0.5
            * (
                ((x - centre[0]) / sigma[0]) ** 2
                + ((y - centre[1]) / sigma[1]) ** 2
                + ((z - centre[2]) / sigma[2]) ** 2
            )
        )
        + 0.001
    )
    transfer = measured_transfer(bead, grid).reshape(32, 32, 17)
    freqs = grid.half_spectrum_freqs
    expected = torch.exp(-0.5 * ((freqs * torch.tensor(sigma)) ** 2).sum(-1))
    # compare where the Gaussian is not negligible; sampling (z at 2 units for sigma 2.2) limits the match
    keep = expected > 0.05
    assert torch.allclose(transfer[keep].real, expected[keep], atol=0.03) and transfer[keep].imag.abs().max() < 0.03
    assert transfer[0, 0, 0].real.item() == pytest.approx(1.0) and abs(transfer[0, 0, 0].imag.item()) < 1e-12


def test_nufft_subdivides_each_triangle_by_its_own_size():
    """A large and a small triangle at high frequency: the large one is subdivided, the result stays accurate."""
    vertices = torch.tensor(
        [[0.0, 0, 0], [9.0, 0.5, 0.2], [1.0, 8.0, 0.4], [20.0, 20, 5], [20.6, 20.1, 5], [20.2, 20.7, 5.1]],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    weights = torch.ones(2, dtype=torch.float64)
    grid = Grid((32, 32, 32), (1.0, 1.0, 1.0))
    band = narrow_band(grid, GaussianPSF((1.0, 1.0, 1.0)))
    exact = mesh_ft(vertices, faces, weights, band.freqs)
    plain = nufft_mesh_ft(vertices, faces, weights, band, degree=5)
    adaptive = nufft_mesh_ft(vertices, faces, weights, band, degree=5, max_phase=5.0)
    error = lambda s: ((s - exact).abs().norm() / exact.abs().norm()).item()  # noqa: E731
    assert error(adaptive) < 1e-4 and error(plain) > 10 * error(adaptive)
