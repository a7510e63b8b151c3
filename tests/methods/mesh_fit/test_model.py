"""The mesh-fit scene's bands: the PSF steps' wide band against every frequency."""

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
