"""The splatting renderer (invrender.core.render.splat2d) and the small filters around it."""

import math

import numpy as np
import pytest
import torch

from invrender.core.render.filters import convolve3x3, gaussian_blur
from invrender.core.render.splat2d import blob_values, combine_sum_max, render_curves

CUT = 2.0


def gaussian_like_profile(n_nodes: int = 9, dtype=torch.float64) -> torch.Tensor:
    """f(z) = exp(-2 ln(z)^2), i.e. a Gaussian of sigma r/2 in distance (the model's default blob)."""
    z = torch.linspace(0.0, 1.0, n_nodes, dtype=dtype)
    return torch.exp(-2.0 * torch.log(z.clamp_min(1e-30)) ** 2)


# ---------------------------------------------------------------- gradients


def _small_scene(seed: int = 0):
    """Two curves of 5 points in a 12x12 image, float64.

    The renderer stamps each point into a window of pixels around `round(center)` whose size is set
    by R = ceil(cut * max r). gradcheck's finite differences assume the set of touched pixels does
    not change under a perturbation of 1e-6, so no center may sit near a half-integer (the rounding
    would jump) and cut * max r must not be near an integer (R would change): the centers' fractional
    parts are in [0.15, 0.35] and cut * max r = 2.6. (The window covers the whole compact support of
    a stamp, so the image itself is continuous there; only the bookkeeping would change.) Centers
    also avoid integer coordinates, where the distance to that pixel is not differentiable.
    """
    g = torch.Generator().manual_seed(seed)
    whole = torch.tensor(
        [[[3, 3], [5, 4], [6, 6], [8, 7], [9, 9]], [[2, 9], [4, 8], [6, 6], [8, 4], [9, 2]]], dtype=torch.float64
    )
    frac = 0.15 + 0.2 * torch.rand(whole.shape, generator=g, dtype=torch.float64)
    centers = (whole + frac)[None]  # (1, 2, 5, 2)
    radii = (0.9 + 0.3 * torch.rand(1, 2, 5, generator=g, dtype=torch.float64)).clamp(max=1.2)
    radii[0, 0, 0] = 1.3  # cut * max r = 2.6: R = 3, far from an integer
    weights = 0.5 + torch.rand(1, 2, 5, generator=g, dtype=torch.float64)
    profile = (gaussian_like_profile() + 0.05 * torch.rand(9, generator=g, dtype=torch.float64))[None]
    return centers, radii, weights, profile


def test_render_curves_gradcheck():
    centers, radii, weights, profile = (t.requires_grad_(True) for t in _small_scene())

    def render(c, r, w, f):
        return render_curves(c, r, w, f, (12, 12), cut=CUT)

    assert render(centers, radii, weights, profile).shape == (1, 2, 12, 12)
    assert torch.autograd.gradcheck(render, (centers, radii, weights, profile), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_render_curves_gradcheck_with_a_batch_and_stamps_clipped_at_the_border():
    centers, radii, weights, profile = _small_scene(seed=1)
    centers = torch.cat([centers, centers - 2.0])  # batch of 2; the second is partly outside
    radii, weights = radii.repeat(2, 1, 1), weights.repeat(2, 1, 1)
    profile = torch.cat([profile, profile.flip(-1) * 0.5 + 0.5])
    inputs = tuple(t.clone().requires_grad_(True) for t in (centers, radii, weights, profile))
    assert torch.autograd.gradcheck(
        lambda c, r, w, f: render_curves(c, r, w, f, (12, 12), cut=CUT), inputs, eps=1e-6, atol=1e-6, rtol=1e-4
    )


def test_blob_values_gradcheck():
    g = torch.Generator().manual_seed(2)
    profile = (gaussian_like_profile() + 0.1 * torch.rand(9, generator=g, dtype=torch.float64)).requires_grad_(True)
    # Distances both inside the support (d < cut r) and beyond it, none at a segment boundary.
    distance = (0.05 + 4.0 * torch.rand(3, 17, generator=g, dtype=torch.float64)).requires_grad_(True)
    radius = (1.0 + torch.rand(3, 1, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f, d, r: blob_values(f, d, r, CUT), (profile, distance, radius))
    # A batch of profiles, one per leading index.
    profiles = torch.stack([profile.detach(), profile.detach() ** 2, 1 - profile.detach()]).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f, d, r: blob_values(f, d, r, CUT), (profiles, distance, radius))


def test_blob_is_compact_and_follows_the_profile():
    profile = gaussian_like_profile()
    distance = torch.tensor([0.0, 0.5, 1.0, 1.99, 2.0, 2.5, 10.0], dtype=torch.float64)
    values = blob_values(profile, distance, torch.tensor(1.0, dtype=torch.float64), CUT)
    assert values[0] == pytest.approx(1.0, abs=1e-9)  # f(1) * taper(0)
    assert torch.all(values[4:] == 0)
    assert torch.all(values[:4] > 0) and torch.all(values[1:4] < values[:3])


# ---------------------------------------------------------------- geometry of the image


def _stamp(center, radius=2.0, shape=(40, 40)):
    centers = torch.tensor([[[center]]], dtype=torch.float64)
    ones = torch.ones(1, 1, 1, dtype=torch.float64)
    return render_curves(centers, ones * radius, ones, gaussian_like_profile()[None], shape, cut=CUT)[0, 0]


@pytest.mark.parametrize("center", [(20.3, 17.7), (19.5, 21.25), (20.0, 20.0), (18.9, 23.49)])
def test_single_stamp_is_centred_on_its_center(center):
    image = _stamp(center).numpy()
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    total = image.sum()
    centroid = (float((xs * image).sum() / total), float((ys * image).sum() / total))  # [x, y]
    np.testing.assert_allclose(centroid, center, atol=1e-3)
    peak_y, peak_x = np.unravel_index(image.argmax(), image.shape)
    assert abs(peak_x - center[0]) <= 0.5 and abs(peak_y - center[1]) <= 0.5  # the nearest pixel (a tie at .5)


def test_stamp_is_clipped_at_the_image_border():
    image = _stamp((0.3, 39.6)).numpy()
    full = _stamp((20.3, 19.6)).numpy()
    assert 0 < image.sum() < full.sum()
    assert image[0, :].sum() == 0 and image[:, -1].sum() == 0  # nothing wrapped to the far sides


def _straight_curve_image(n_points, radius=2.5, shape=(60, 100)):
    x = torch.linspace(10.0, 90.0, n_points, dtype=torch.float64)
    centers = torch.stack([x, torch.full_like(x, 30.3)], dim=-1)[None, None]
    ds = 80.0 / (n_points - 1)
    radii = torch.full((1, 1, n_points), radius, dtype=torch.float64)
    return render_curves(centers, radii, ds / radii, gaussian_like_profile()[None], shape, cut=CUT)[0, 0].numpy()


def test_straight_curve_image_does_not_depend_on_the_sampling():
    # weights = ds / r: the image approximates the line integral of the blob along the curve.
    peaks = {}
    for n in (40, 81, 160, 333):
        image = _straight_curve_image(n)
        middle = image[:, 35:66]  # away from the curve's ends
        cross_section_peak = middle.max(axis=0)
        assert cross_section_peak.std() / cross_section_peak.mean() < 0.01  # no ripple along the curve
        peaks[n] = cross_section_peak.mean()
    values = np.array(list(peaks.values()))
    assert (values.max() - values.min()) / values.mean() < 0.02, peaks


# ---------------------------------------------------------------- combining and filters


def test_combine_sum_max_extremes():
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 5, 6, generator=g)
    np.testing.assert_allclose(combine_sum_max(images, torch.zeros(2)).numpy(), images.sum(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(combine_sum_max(images, torch.ones(2)).numpy(), images.amax(1).numpy(), rtol=1e-6)
    mixed = combine_sum_max(images, torch.tensor([0.0, 1.0]))
    np.testing.assert_allclose(mixed[0].numpy(), images[0].sum(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(mixed[1].numpy(), images[1].amax(0).numpy(), rtol=1e-6)
    half = combine_sum_max(images, torch.full((2,), 0.5))
    np.testing.assert_allclose(half.numpy(), (0.5 * images.sum(1) + 0.5 * images.amax(1)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("sigma", [0.7, 1.5, 3.0])
def test_gaussian_blur_keeps_a_constant_image_constant(sigma):
    images = torch.full((2, 3, 17, 23), 0.37, dtype=torch.float64)
    np.testing.assert_allclose(gaussian_blur(images, sigma).numpy(), 0.37, rtol=1e-12)


def test_gaussian_blur_preserves_the_sum_in_the_interior():
    image = torch.zeros(40, 40, dtype=torch.float64)
    image[18:23, 15:21] = torch.rand(5, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    blurred = gaussian_blur(image, 2.0)
    assert blurred.shape == image.shape
    assert float(blurred.sum()) == pytest.approx(float(image.sum()), rel=1e-9)
    assert float(blurred.max()) < float(image.max())
    # The blur is symmetric: a centred point stays centred.
    point = torch.zeros(21, 21, dtype=torch.float64)
    point[10, 10] = 1.0
    out = gaussian_blur(point, 1.2).numpy()
    np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-15)
    np.testing.assert_allclose(out, out.T, atol=1e-15)


@pytest.mark.parametrize("sigma", [0.6, 2.3, 4.0])  # 4.0: the support (13 px) exceeds the 11-px side
def test_gaussian_blur_is_the_convolution_with_replicated_borders(sigma):
    images = torch.rand(2, 11, 16, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    radius = max(1, math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    # Brute force: each axis in turn, every output pixel a sum over the kernel of clamped neighbours.
    out = images.numpy().copy()
    for axis in (2, 1):
        n = out.shape[axis]
        taps = [np.take(out, np.clip(np.arange(n) + k, 0, n - 1), axis=axis) for k in range(-radius, radius + 1)]
        out = sum(w * tap for w, tap in zip(kernel, taps))
    np.testing.assert_allclose(gaussian_blur(images, sigma).numpy(), out, rtol=1e-12, atol=1e-14)


def test_gaussian_blur_differentiates_a_tensor_sigma():
    images = torch.rand(1, 9, 12, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    sigma = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: gaussian_blur(images, s), (sigma,))


def test_gaussian_blur_with_nonpositive_sigma_is_the_identity():
    image = torch.rand(7, 9)
    assert gaussian_blur(image, 0.0) is image


def test_convolve3x3_identity_kernel_is_the_identity():
    images = torch.rand(3, 11, 13, generator=torch.Generator().manual_seed(5))
    kernels = torch.zeros(3, 3, 3)
    kernels[:, 1, 1] = 1.0
    np.testing.assert_array_equal(convolve3x3(images, kernels).numpy(), images.numpy())


def test_convolve3x3_uses_each_image_its_own_kernel():
    images = torch.rand(2, 8, 9, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    kernels = torch.zeros(2, 3, 3, dtype=torch.float64)
    kernels[0, 1, 1] = 2.0  # scale
    kernels[1, 1, 2] = 1.0  # out[x] = in[x + 1] (cross-correlation), replicated at the right border
    out = convolve3x3(images, kernels).numpy()
    np.testing.assert_allclose(out[0], 2 * images[0].numpy())
    np.testing.assert_allclose(out[1, :, :-1], images[1, :, 1:].numpy())
    np.testing.assert_allclose(out[1, :, -1], images[1, :, -1].numpy())
