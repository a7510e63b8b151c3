"""The Laplacian parametrisation (sparse Cholesky solves) against dense linear algebra, and AdamUniform."""

import numpy as np
import torch
import trimesh

from invrender.core.optim.adam_variants import AdamUniform
from invrender.core.optim.largesteps import LaplacianParametrisation, uniform_laplacian


def icosphere():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    return torch.tensor(mesh.vertices, dtype=torch.float64), np.asarray(mesh.faces)


def test_uniform_laplacian():
    vertices, faces = icosphere()
    lap = uniform_laplacian(len(vertices), faces).toarray()
    assert np.allclose(lap, lap.T) and np.allclose(lap.sum(axis=1), 0)
    degrees = np.bincount(np.unique(np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0).ravel())
    assert np.array_equal(np.diag(lap), degrees)


def test_parametrisation_round_trip_and_gradient_match_dense_solves():
    vertices, faces = icosphere()
    lam = 50.0
    param = LaplacianParametrisation(len(vertices), faces, lam)
    dense = np.eye(len(vertices)) + lam * uniform_laplacian(len(vertices), faces).toarray()
    u = param.to_differential(vertices)
    assert np.allclose(u.numpy(), dense @ vertices.numpy())
    u = u.clone().requires_grad_(True)
    back = param.to_vertices(u)
    assert torch.allclose(back, vertices, atol=1e-10)
    probe = torch.randn_like(vertices)
    (grad,) = torch.autograd.grad((back * probe).sum(), u)
    assert np.allclose(grad.numpy(), np.linalg.solve(dense, probe.numpy()), atol=1e-10)


def test_adam_uniform_first_step_and_convergence():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64))
    opt = AdamUniform([p], lr=0.1)
    p.grad = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    opt.step()
    # m_hat = g, v_hat = g^2: the step is lr * g / max|g|, one scale for every coordinate
    assert torch.allclose(p.detach(), torch.tensor([1.0 - 0.025, -2.0 + 0.05, 4.0 - 0.1], dtype=torch.float64))
    target = torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64)
    opt = AdamUniform([p], lr=0.05)
    for _ in range(500):
        opt.zero_grad()
        ((p - target) ** 2).sum().backward()
        opt.step()
    assert torch.allclose(p.detach(), target, atol=1e-2)
