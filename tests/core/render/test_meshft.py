"""The exact triangle Fourier transform against brute-force quadrature, and its gradient against
finite differences, including degenerate, nearly degenerate and axis-aligned triangles and xi = 0."""

import numpy as np
import pytest
import torch

from invrender.core.render.meshft import TAU, mesh_ft, triangle_areas

TRIANGLES = {
    "generic": [[0.1, 0.2, 0.3], [1.7, 0.4, -0.2], [0.5, 1.9, 0.8]],
    "axis-aligned": [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
    "needle": [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 1e-7, 0.0]],  # nearly degenerate (area ~ 1e-7)
    "small": [[0.3, 0.3, 0.3], [0.3 + 1e-3, 0.3, 0.3], [0.3, 0.3 + 2e-3, 0.3 + 1e-3]],
    "large": [[-3.0, -2.0, 1.0], [4.0, -1.0, 0.0], [0.0, 5.0, -2.0]],
}


def brute_force(triangle: np.ndarray, freqs: np.ndarray, n: int = 96) -> np.ndarray:
    """Gauss-Legendre quadrature in collapsed coordinates: lambda = (1 - u, u (1 - s), u s), dS = 2A u du ds."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    nodes, weights = (nodes + 1) / 2, weights / 2
    u, s = np.meshgrid(nodes, nodes, indexing="ij")
    w = np.outer(weights, weights) * u
    v0, v1, v2 = triangle
    points = v0 + u[..., None] * (1 - s[..., None]) * (v1 - v0) + (u * s)[..., None] * (v2 - v0)
    area = 0.5 * np.linalg.norm(np.cross(v1 - v0, v2 - v0))
    phase = np.exp(-1j * np.einsum("ijd,kd->kij", points, freqs))
    return 2 * area * (phase * w).sum(axis=(1, 2))


def frequencies(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    freqs = [
        np.zeros(3),
        [1e-9, 0, 0],
        [0, 0, 2.5],
        [3.0, 0, 0],
        [1e-4, 2e-4, -1e-4],
        [TAU / 3, 0, 0],
        [TAU * 1.01, 0, 0],
    ]
    freqs += list(rng.normal(scale=2.0, size=(24, 3)))
    return np.array(freqs, dtype=np.float64)


def ft_of(triangle, freqs, weight: float = 1.0) -> np.ndarray:
    v = torch.tensor(triangle, dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    return mesh_ft(v, faces, torch.tensor([weight], dtype=torch.float64), torch.tensor(freqs)).numpy()


@pytest.mark.parametrize("name", TRIANGLES)
def test_exact_against_brute_force_quadrature(name):
    triangle = np.array(TRIANGLES[name])
    freqs = frequencies()
    exact, reference = ft_of(triangle, freqs), brute_force(triangle, freqs)
    scale = 0.5 * np.linalg.norm(np.cross(triangle[1] - triangle[0], triangle[2] - triangle[0]))
    np.testing.assert_allclose(exact, reference, rtol=0, atol=1e-10 * max(scale, 1e-12))


def test_zero_frequency_is_the_area():
    triangle = np.array(TRIANGLES["generic"])
    area = 0.5 * np.linalg.norm(np.cross(triangle[1] - triangle[0], triangle[2] - triangle[0]))
    assert ft_of(triangle, np.zeros((1, 3)))[0] == pytest.approx(area, rel=1e-14)


def test_every_degenerate_projection_case():
    """Projections that are pairwise equal (each pair in turn), all equal, and within/just beyond TAU."""
    triangle = np.array(TRIANGLES["axis-aligned"])  # t = (0, xi_x, xi_y)
    cases = [
        [0, 0, 1],
        [0, 1, 0],
        [1, 1, 0],
        [1, 1, 1],
        [TAU * 0.99, 0, 0],
        [TAU * 1.01, TAU * 0.5, 0],
        [2.0, 2.0 + 1e-9, 0],
        [3.0, 3.0, 0],
    ]
    freqs = np.array(cases, dtype=np.float64)
    np.testing.assert_allclose(ft_of(triangle, freqs), brute_force(triangle, freqs), rtol=0, atol=1e-11)


def test_weights_and_sums_over_faces():
    tris = [np.array(TRIANGLES[n]) for n in ("generic", "large")]
    vertices = torch.tensor(np.concatenate(tris), dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    freqs = frequencies(1)
    got = mesh_ft(vertices, faces, torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor(freqs)).numpy()
    np.testing.assert_allclose(got, brute_force(tris[0], freqs) + 2 * brute_force(tris[1], freqs), atol=1e-9)


@pytest.mark.parametrize("name", ["generic", "axis-aligned", "large"])
def test_gradient_against_finite_differences(name):
    """Float64 finite differences are reliable where the projections differ by more than ~0.1 rad
    (below, the forward's rounding over a 1e-6 step is of the size of the gradient); the
    near-degenerate frequencies are checked against high-precision differences below."""
    vertices = torch.tensor(TRIANGLES[name], dtype=torch.float64, requires_grad=True)
    faces = torch.tensor([[0, 1, 2]])
    weights = torch.tensor([1.5], dtype=torch.float64)
    freqs = torch.tensor(frequencies(2)[7:])
    assert torch.autograd.gradcheck(
        lambda v: mesh_ft(v, faces, weights, freqs), (vertices,), eps=1e-6, atol=1e-7, rtol=1e-5
    )


def _high_precision_ft(vertices, xi, weight):
    """Eq. 8 in 50-digit arithmetic (valid away from exact ties, which the callers avoid)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    v = [[mp.mpf(c) for c in row] for row in vertices]
    e1 = [v[1][d] - v[0][d] for d in range(3)]
    e2 = [v[2][d] - v[0][d] for d in range(3)]
    normal = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]]
    area = mp.sqrt(sum(c**2 for c in normal)) / 2
    z = [-1j * sum(mp.mpf(float(xi[d])) * v[p][d] for d in range(3)) for p in range(3)]
    e = sum(mp.exp(z[p]) / ((z[p] - z[(p + 1) % 3]) * (z[p] - z[(p + 2) % 3])) for p in range(3))
    return weight * 2 * area * e


@pytest.mark.parametrize(
    "xi", [[TAU * 1.01, 0, 0], [TAU * 0.99, 0, 0], [TAU * 0.3, TAU * 0.7, 0], [1e-4, 2e-4, -1e-4], [3.0, 1e-6, 0]]
)
def test_gradient_near_degenerate_against_high_precision(xi):
    mp = pytest.importorskip("mpmath")
    base = [[0.0, 0.0, 0.0], [1.0, 3e-9, 0.0], [2e-9, 1.0, 1e-9]]  # nearly axis-aligned, no exact ties
    vertices = torch.tensor(base, dtype=torch.float64, requires_grad=True)
    out = mesh_ft(
        vertices,
        torch.tensor([[0, 1, 2]]),
        torch.tensor([1.5], dtype=torch.float64),
        torch.tensor([xi], dtype=torch.float64),
    )[0]
    for part in ("real", "imag"):
        grad = torch.autograd.grad(getattr(out, part), vertices, retain_graph=True)[0]
        step = mp.mpf("1e-25")
        for i in range(3):
            for d in range(3):
                plus = [[mp.mpf(c) for c in row] for row in base]
                minus = [[mp.mpf(c) for c in row] for row in base]
                plus[i][d] += step
                minus[i][d] -= step
                reference = (_high_precision_ft(plus, xi, 1.5) - _high_precision_ft(minus, xi, 1.5)) / (2 * step)
                expected = float(reference.real if part == "real" else reference.imag)
                assert grad[i, d].item() == pytest.approx(expected, rel=1e-6, abs=1e-12), (part, i, d)


def test_gradient_of_a_shared_vertex_mesh_in_chunks(monkeypatch):
    """A tetrahedron (shared vertices, scatter-add) with chunks of a few frequencies."""
    from invrender.core.render import meshft

    monkeypatch.setattr(meshft, "CHUNK_PAIRS", 8)
    vertices = torch.tensor(
        [[0.0, 0, 0], [1.1, 0.1, 0], [0.2, 0.9, 0.1], [0.3, 0.2, 1.2]], dtype=torch.float64, requires_grad=True
    )
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    weights = torch.ones(4, dtype=torch.float64)
    freqs = torch.tensor(frequencies(3)[:10])
    assert torch.autograd.gradcheck(
        lambda v: mesh_ft(v, faces, weights, freqs), (vertices,), eps=1e-6, atol=1e-7, rtol=1e-5
    )


def test_areas():
    v = torch.tensor(TRIANGLES["axis-aligned"], dtype=torch.float64)
    assert triangle_areas(v, torch.tensor([[0, 1, 2]])).item() == pytest.approx(0.5)
