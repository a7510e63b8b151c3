"""The mesh-fit scene's bands (the PSF steps' wide band against every frequency) and the binned
levels of the coarse-to-fine fit."""

import numpy as np
import pytest
import torch
import trimesh

from invrender.core.render.registry import get_renderer
from invrender.core.render.spectrum import Grid
from invrender.methods.mesh_fit.model import MeshScene


def sphere_scene(sigma: float) -> MeshScene:
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=7.0)
    grid = Grid((32, 32, 32), (1.0, 1.0, 1.0))
    return MeshScene(
        np.asarray(sphere.vertices) + 15.5,
        np.asarray(sphere.faces),
        np.ones(len(sphere.faces)),
        grid,
        1.0,
        (sigma,) * 3,
        20.0,
        get_renderer("nufft", torch.device("cpu"), "mesh spectrum"),
        {"degree": 5, "subdivisions": 1, "max_phase": 5.0},
        0.01,
    )


@pytest.mark.parametrize("model_sigma", [1.5, 2.5, 3.0])  # narrower and wider than the data's
def test_psf_gradient_on_the_wide_band_is_that_of_every_frequency(model_sigma):
    """The PSF steps' L2 loss on the band where h^ >= 1e-3 differs from the loss on every frequency
    by the data's energy beyond the band (a constant), so its gradient is nearly the same."""
    with torch.no_grad():
        data = sphere_scene(2.0)(sphere_scene(2.0).full_band)
    data = data + 0.05 * data.max() * torch.randn(data.shape, generator=torch.Generator().manual_seed(0))
    gradients = []
    for band in ("full", "wide"):
        scene = sphere_scene(model_sigma)
        scene.u.requires_grad_(False)
        chosen = scene.full_band if band == "full" else scene.band(1e-3)
        ((scene(chosen) - data) ** 2).mean().backward()
        gradients.append(torch.cat([scene.psf_log_diagonal.grad.flatten(), scene.psf_lower.grad.flatten()]))
        if band == "wide":
            assert len(chosen.freqs) < 0.5 * len(scene.full_band.freqs)  # and so cheaper
    full, wide = gradients
    assert (wide - full).norm() < 2e-3 * full.norm()


def test_bin_factors_go_coarse_while_the_smallest_side_allows():
    from invrender.methods.mesh_fit.fit import bin_factors

    assert bin_factors((200, 200, 200), 96) == [2, 1]
    assert bin_factors((128, 128, 128), 96) == [1]
    assert bin_factors((40, 512, 512), 16) == [2, 1]  # the smallest side decides
    assert bin_factors((512, 512, 512), 96) == [4, 2, 1]
    assert bin_factors((512, 512, 512), 0) == [1]


def test_binned_stack_is_the_render_on_the_binned_grid():
    """The block means of a stack are (nearly) the same mesh rendered on the binned grid, with the
    mesh moved to the binned grid's origin and the binning's box added to the PSF's variance; placed
    without the origin shift, half a fine voxel off, they are not."""
    from invrender.core.geometry.meshes import Mesh
    from invrender.core.render.microscope import render_stack, surface_spectrum
    from invrender.core.render.psf import GaussianPSF
    from invrender.core.render.spectrum import Band
    from invrender.methods.mesh_fit.fit import bin_stack, binned_origin

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=6.0)
    mesh = Mesh(np.asarray(sphere.vertices) * [1.0, 0.8, 1.2] + [16.0, 15.0, 17.0], np.asarray(sphere.faces))
    renderer = get_renderer("nufft", torch.device("cpu"), "mesh spectrum")

    def render(vertices, shape, spacing, variance):
        band = Band.full(Grid(shape, spacing))
        psf = GaussianPSF((float(np.sqrt(variance)),) * 3)
        v, f = torch.from_numpy(vertices), torch.from_numpy(mesh.faces)
        spectrum = surface_spectrum(renderer, v, f, torch.ones(len(f), dtype=torch.float64), band)
        return render_stack(spectrum, psf.transfer(band.freqs), band).detach().numpy()

    full = render(mesh.vertices, (32, 32, 32), (1.0, 1.0, 1.0), 1.5**2)
    expected = bin_stack(full, 2)
    assert expected.shape == (16, 16, 16) and np.isclose(expected.mean(), full.mean())
    box = (2**2 - 1) / 12
    shifted = render(mesh.vertices - binned_origin((1.0, 1.0, 1.0), 2), (16, 16, 16), (2.0, 2.0, 2.0), 1.5**2 + box)
    unshifted = render(mesh.vertices, (16, 16, 16), (2.0, 2.0, 2.0), 1.5**2 + box)
    error = lambda image: np.linalg.norm(image - expected) / np.linalg.norm(expected)  # noqa: E731
    assert error(shifted) < 0.02 and error(unshifted) > 5 * error(shifted)  # measured: 1.0% and 22%
