"""Natural cubic splines on uniform knots (invrender.core.geometry.splines) against scipy."""

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline

from invrender.core.geometry.splines import (
    arc_length_parameters,
    evaluate,
    evaluate_segments,
    fit_knots,
    natural_spline_basis,
    segment_coefficients,
)

KNOT_COUNTS = (2, 3, 4, 10)


def _scipy(values: np.ndarray) -> CubicSpline:
    """scipy's natural spline through `values` (K, ...) at uniform parameters on [0, 1]."""
    K = values.shape[0]
    return CubicSpline(np.linspace(0.0, 1.0, K), values, bc_type="natural", axis=0)


def _params(n: int = 57) -> np.ndarray:
    # Endpoints, every knot of K = 10 (and of 2, 3, 4), and points in between.
    rng = np.random.default_rng(1)
    return np.sort(np.r_[0.0, 1.0, np.linspace(0, 1, 10), np.linspace(0, 1, 4), rng.uniform(0, 1, n)])


@pytest.mark.parametrize("K", KNOT_COUNTS)
@pytest.mark.parametrize("derivative", [0, 1, 2])
def test_basis_matches_scipy(K, derivative):
    rng = np.random.default_rng(K)
    values = rng.normal(size=(K, 3)) * 10
    s = _params()
    basis = natural_spline_basis(torch.tensor(s), K, derivative).numpy()
    assert basis.shape == (len(s), K)
    expected = _scipy(values)(s, derivative)
    np.testing.assert_allclose(basis @ values, expected, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("K", KNOT_COUNTS)
def test_basis_interpolates_the_knots(K):
    basis = natural_spline_basis(torch.linspace(0.0, 1.0, K, dtype=torch.float64), K)
    np.testing.assert_allclose(basis.numpy(), np.eye(K), atol=1e-12)


@pytest.mark.parametrize("derivative", [0, 1, 2])
def test_evaluate_batched_values_and_parameters(derivative):
    rng = np.random.default_rng(3)
    K = 7
    values = rng.normal(size=(2, 5, K, 2))  # (seeds, splines, K, C)
    s = np.sort(rng.uniform(0, 1, size=(2, 5, 40)), axis=-1)  # one parameter set per spline
    out = evaluate(torch.tensor(values), torch.tensor(s), derivative).numpy()
    assert out.shape == (2, 5, 40, 2)
    for b in range(2):
        for n in range(5):
            np.testing.assert_allclose(out[b, n], _scipy(values[b, n])(s[b, n], derivative), rtol=1e-9, atol=1e-9)
    # Shared parameters (n,) broadcast over the batch.
    shared = evaluate(torch.tensor(values), torch.tensor(s[0, 0]), derivative).numpy()
    np.testing.assert_allclose(shared[1, 3], _scipy(values[1, 3])(s[0, 0], derivative), rtol=1e-9, atol=1e-9)


def test_basis_clamps_parameters_outside_the_unit_interval():
    values = torch.tensor([[0.0], [1.0], [3.0], [2.0]], dtype=torch.float64)
    out = evaluate(values, torch.tensor([-0.5, 1.5], dtype=torch.float64))
    np.testing.assert_allclose(out.numpy().ravel(), [0.0, 2.0], atol=1e-12)


@pytest.mark.parametrize("K", KNOT_COUNTS)
def test_segment_coefficients_match_scipy(K):
    rng = np.random.default_rng(10 + K)
    values = rng.normal(size=(3, 4, K))  # batch (3, 4) of scalar splines
    coefficients = segment_coefficients(torch.tensor(values))
    assert coefficients.shape == (3, 4, K - 1, 4)
    h = 1.0 / (K - 1)
    for index in np.ndindex(3, 4):
        spline = _scipy(values[index])
        # scipy: c[m, j] multiplies (x - x_j)^(3 - m); ours multiplies t^k with t = (x - x_j) / h.
        expected = np.stack([spline.c[3 - k] * h**k for k in range(4)], axis=-1)
        np.testing.assert_allclose(coefficients[index].numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("K", KNOT_COUNTS)
def test_evaluate_segments_matches_scipy_batched(K):
    rng = np.random.default_rng(20 + K)
    values = rng.normal(size=(2, 3, K))
    s = rng.uniform(0, 1, size=(2, 3, 6, 5))  # any trailing shape per spline
    s[0, 0, 0, :2] = [0.0, 1.0]
    out = evaluate_segments(segment_coefficients(torch.tensor(values)), torch.tensor(s)).numpy()
    assert out.shape == s.shape
    for index in np.ndindex(2, 3):
        np.testing.assert_allclose(out[index], _scipy(values[index])(s[index]), rtol=1e-9, atol=1e-9)


def test_evaluate_segments_unbatched_and_gradient():
    values = torch.tensor([0.0, 1.0, 0.5, 2.0, 1.0], dtype=torch.float64, requires_grad=True)
    s = torch.tensor([0.1, 0.37, 0.8], dtype=torch.float64, requires_grad=True)
    out = evaluate_segments(segment_coefficients(values), s)
    np.testing.assert_allclose(out.detach().numpy(), _scipy(values.detach().numpy())(s.detach().numpy()), rtol=1e-9)
    assert torch.autograd.gradcheck(lambda v, t: evaluate_segments(segment_coefficients(v), t), (values, s))


# ---------------------------------------------------------------- arc length


def _curved_knots(K: int = 8, radius: float = 20.0, span: float = np.pi) -> torch.Tensor:
    """Knots on a circular arc whose spacing varies, so the uniform parameter is not arc length."""
    phi = span * np.linspace(0.0, 1.0, K) ** 1.6
    return torch.tensor(np.stack([30 + radius * np.cos(phi), 30 + radius * np.sin(phi)], axis=1))


def _dense_length(knots: torch.Tensor, n: int = 200_000) -> float:
    points = evaluate(knots, torch.linspace(0.0, 1.0, n, dtype=knots.dtype)).numpy()
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def test_arc_length_parameters_give_equal_spacing_on_a_curved_spline():
    knots = _curved_knots()
    s, length = arc_length_parameters(knots, 100)
    assert s.shape == (100,) and not s.requires_grad
    assert s[0] == 0.0 and s[-1] == pytest.approx(1.0)
    assert torch.all(s[1:] > s[:-1])
    points = evaluate(knots, s).numpy()
    step = np.linalg.norm(np.diff(points, axis=0), axis=1)
    assert (step.max() - step.min()) / step.mean() < 0.01
    assert step.sum() == pytest.approx(float(length), rel=1e-3)
    # Without the reparametrisation the same curve is far from evenly sampled.
    uniform = evaluate(knots, torch.linspace(0.0, 1.0, 100, dtype=torch.float64)).numpy()
    uniform_step = np.linalg.norm(np.diff(uniform, axis=0), axis=1)
    assert (uniform_step.max() - uniform_step.min()) / uniform_step.mean() > 0.2


def test_length_of_a_straight_line():
    knots = torch.tensor(np.linspace([3.0, 4.0], [33.0, 44.0], 6))
    _, length = arc_length_parameters(knots, 10)
    assert float(length) == pytest.approx(50.0, rel=1e-9)


def test_length_of_a_semicircle_like_curve_matches_a_dense_polyline():
    knots = _curved_knots(K=10, radius=20.0)
    _, length = arc_length_parameters(knots, 10, n_fine=2048)
    assert float(length) == pytest.approx(_dense_length(knots), rel=1e-5)
    assert float(length) == pytest.approx(np.pi * 20.0, rel=0.01)  # and it is close to a semicircle


def test_arc_length_parameters_batched_and_length_differentiable():
    knots = torch.stack(
        [_curved_knots(), _curved_knots() * 0.5, torch.tensor(np.linspace([0.0, 0.0], [30.0, 40.0], 8))]
    )
    knots = knots[None].expand(2, -1, -1, -1).clone().requires_grad_(True)  # (2, 3, K, 2)
    s, length = arc_length_parameters(knots, 50)
    assert s.shape == (2, 3, 50) and length.shape == (2, 3)
    lengths = length.detach()
    assert float(lengths[0, 1]) == pytest.approx(float(lengths[0, 0]) / 2, rel=1e-9)
    assert float(lengths[1, 2]) == pytest.approx(50.0, rel=1e-9)
    length.sum().backward()
    assert torch.isfinite(knots.grad).all() and knots.grad.abs().sum() > 0


# ---------------------------------------------------------------- least-squares fit


def _even_arc_knots(K: int, radius: float = 20.0) -> torch.Tensor:
    phi = np.linspace(0.0, np.pi, K)
    return torch.tensor(np.stack([30 + radius * np.cos(phi), 30 + radius * np.sin(phi)], axis=1))


def _curve_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance from a point of `a` to the dense polyline `b` (approximated by its vertices)."""
    return float(np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).min(1).max())


def test_fit_knots_reproduces_a_natural_spline_curve():
    # Knots evenly spread on a semicircle: the spline is close to arc-length parametrised, which is
    # the parametrisation fit_knots assumes (a strongly uneven one cannot be reproduced exactly).
    true_knots = _even_arc_knots(10)
    s, _ = arc_length_parameters(true_knots, 150)
    samples = evaluate(true_knots, s)
    fitted = fit_knots(samples, 10)
    assert fitted.shape == (10, 2)
    dense = torch.linspace(0, 1, 3000, dtype=torch.float64)
    dense_true, dense_fit = evaluate(true_knots, dense).numpy(), evaluate(fitted, dense).numpy()
    # Both curves agree within a small fraction of a pixel (on a curve ~63 px long), end to end.
    assert _curve_distance(dense_fit, dense_true) < 0.03
    assert _curve_distance(dense_true, dense_fit) < 0.03
    np.testing.assert_allclose(fitted.numpy(), true_knots.numpy(), atol=0.03)


def test_fit_knots_reproduces_an_arc_length_parametrised_spline_exactly():
    # A straight line with evenly spaced knots is its own arc-length parametrisation.
    true_knots = torch.tensor(np.linspace([5.0, 7.0], [40.0, 19.0], 10))
    samples = evaluate(true_knots, torch.linspace(0.0, 1.0, 37, dtype=torch.float64))
    np.testing.assert_allclose(fit_knots(samples, 10).numpy(), true_knots.numpy(), atol=1e-9)


def test_fit_knots_from_fewer_points_than_knots():
    points = torch.tensor([[0.0, 0.0], [9.0, 12.0]], dtype=torch.float64)
    fitted = fit_knots(points, 6).numpy()
    np.testing.assert_allclose(fitted, np.linspace([0.0, 0.0], [9.0, 12.0], 6), atol=1e-9)
