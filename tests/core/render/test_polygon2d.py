"""The polygon renderer: exact pixel coverage (areas, brute force), gradients, backend choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.measure import points_in_poly

from invrender.core.geometry.polygons import circle, shoelace_area
from invrender.core.render.polygon2d import render_polygons
from invrender.core.render.registry import RendererUnavailable, get_renderer


def star(centre=(31.3, 30.7), radius=12.0, wobble=5.0, lobes=5, k=40) -> torch.Tensor:
    """A concave star-shaped polygon (k, 2), float64."""
    angle = torch.linspace(0, 2 * math.pi, k + 1, dtype=torch.float64)[:-1]
    r = radius + wobble * torch.cos(lobes * angle)
    return torch.stack([centre[0] + r * torch.cos(angle), centre[1] + r * torch.sin(angle)], dim=-1)


def supersampled(vertices: np.ndarray, height: int, width: int, n: int = 32) -> np.ndarray:
    """Brute force: the fraction of n x n sample points of each pixel inside the polygon (even-odd)."""
    offsets = (np.arange(n) + 0.5) / n - 0.5
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    sx = (xs[..., None, None] + offsets[None, :]).repeat(n, axis=-2)
    sy = (ys[..., None, None] + offsets[:, None]).repeat(n, axis=-1)
    inside = points_in_poly(np.stack([sx.ravel(), sy.ravel()], axis=-1), vertices)
    return inside.reshape(height, width, n * n).mean(-1)


@pytest.mark.parametrize("shape", ["convex", "concave"])
@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.13, 0.0), (0.0, 0.37), (0.5, 0.5), (0.71, 0.29)])
def test_mask_area_is_the_shoelace_area_under_subpixel_moves(shape, shift):
    polygon = circle(torch.tensor([30.2, 33.9], dtype=torch.float64), 11.0, 32) if shape == "convex" else star()
    moved = polygon + torch.tensor(shift, dtype=torch.float64)
    mask = render_polygons(moved, 64, 64)
    assert float(mask.sum()) == pytest.approx(abs(float(shoelace_area(polygon))), rel=1e-12)
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1


def test_either_orientation_gives_the_same_mask():
    polygon = star()
    torch.testing.assert_close(render_polygons(polygon, 64, 64), render_polygons(polygon.flip(0), 64, 64))


def test_pixel_values_match_brute_force_supersampling():
    polygon = star(centre=(15.4, 14.8), radius=8.0, wobble=3.5, lobes=4, k=24)
    exact = render_polygons(polygon, 32, 32).numpy()
    brute = supersampled(polygon.numpy(), 32, 32)
    # 32 x 32 samples per pixel: the brute force is off by about one sample row along an edge.
    assert np.abs(exact - brute).max() < 0.04
    assert abs(exact.sum() - brute.sum()) < 0.01 * exact.sum()


def test_a_polygon_partly_outside_covers_only_its_part_inside_the_image():
    polygon = circle(torch.tensor([2.0, 27.0], dtype=torch.float64), 9.0, 48)  # crosses the left and bottom sides
    exact = render_polygons(polygon, 30, 40).numpy()
    brute = supersampled(polygon.numpy(), 30, 40)
    assert np.abs(exact - brute).max() < 0.04
    assert exact.sum() < 0.5 * abs(float(shoelace_area(polygon)))


#: Long, nearly horizontal edges (one row's piece crosses many columns), a nearly vertical edge on a
#: pixel boundary, and parts beyond the image's left and right sides.
SLIVERS = torch.tensor(
    [[-6.3, 2.2], [29.5, 6.9], [29.5 + 1e-9, 12.3], [45.6, 12.6], [45.6, 17.4], [20.2, 17.45], [-6.3, 14.1]],
    dtype=torch.float64,
)


def test_long_flat_and_steep_edges_and_both_sides_outside_match_brute_force():
    exact = render_polygons(SLIVERS, 20, 40).numpy()
    brute = supersampled(SLIVERS.numpy(), 20, 40, n=64)
    assert np.abs(exact - brute).max() < 0.03
    assert abs(exact.sum() - brute.sum()) < 1e-3 * exact.sum()


def test_a_self_intersecting_polygon_fills_both_lobes():
    # A figure eight: two triangles of opposite orientation meeting at a pixel corner, (19.5, 9.5).
    # (A pixel holding parts of both would count them as cancelling: the documented limit of the rule.)
    eight = torch.tensor([[9.5, 3.5], [29.5, 15.5], [29.5, 3.5], [9.5, 15.5]], dtype=torch.float64)
    mask = render_polygons(eight, 24, 40)
    assert float(mask.sum()) == pytest.approx(2 * 0.5 * 10 * 12, rel=1e-9)


def test_batches_render_each_polygon():
    polygons = torch.stack([star(), star(centre=(20.0, 40.0), radius=6.0)])
    batch = render_polygons(polygons[None], 64, 64)
    assert batch.shape == (1, 2, 64, 64)
    torch.testing.assert_close(batch[0, 1], render_polygons(polygons[1], 64, 64))


@pytest.mark.parametrize(
    "polygon",
    [
        star(centre=(9.6, 10.3), radius=5.0, wobble=2.0, lobes=3, k=9),
        circle(torch.tensor([10.2, 9.1], dtype=torch.float64), 6.3, 7),
        SLIVERS * torch.tensor([0.5, 1.0], dtype=torch.float64) + torch.tensor([0.0, 0.5], dtype=torch.float64),
    ],
)
def test_gradients_match_finite_differences(polygon):
    polygon = (
        polygon + 0.013 * torch.randn(polygon.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: render_polygons(v, 20, 21), (polygon,), eps=1e-6, atol=1e-6)


def test_gradient_of_the_rendered_area_is_the_gradient_of_the_shoelace_area():
    polygon = star(k=24).requires_grad_(True)
    render_polygons(polygon, 64, 64).sum().backward()
    reference = polygon.detach().requires_grad_(True)
    shoelace_area(reference).abs().backward()
    torch.testing.assert_close(polygon.grad, reference.grad, atol=1e-9, rtol=1e-9)


def polygon_renderer(name: str, device: torch.device):
    return get_renderer(name, device, "polygons")


def test_auto_backend_is_polygon2d_on_cpu_and_nvdiffrast_is_refused_there():
    assert polygon_renderer("auto", torch.device("cpu")) is render_polygons
    assert polygon_renderer("polygon2d", torch.device("cpu")) is render_polygons
    with pytest.raises(RendererUnavailable, match="runs on cuda, not on cpu"):
        polygon_renderer("nvdiffrast", torch.device("cpu"))
    with pytest.raises(
        RendererUnavailable,
        match="'opengl' is unknown, not a polygons renderer; polygons renderers: auto, nvdiffrast, polygon2d",
    ):
        polygon_renderer("opengl", torch.device("cpu"))


def _nvdiffrast_runs() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _nvdiffrast_runs(), reason="needs CUDA and nvdiffrast")
def test_nvdiffrast_backend_agrees_with_the_torch_backend():
    cuda = torch.device("cuda")
    polygons = torch.stack([star(k=32), circle(torch.tensor([30.2, 33.9], dtype=torch.float64), 11.0, 32)]).float()
    exact = render_polygons(polygons.double(), 64, 64).float()
    raster = polygon_renderer("nvdiffrast", cuda)(polygons.to(cuda), 64, 64).cpu()
    assert polygon_renderer("auto", cuda) is not render_polygons
    torch.testing.assert_close(raster.sum((-2, -1)), exact.sum((-2, -1)), rtol=0.02, atol=0)
    assert (raster - exact).abs().mean() < 0.02
    # Gradients of the same loss, with the polygons moved off their target, point the same way.
    target = (exact > 0.5).float()
    grads = []
    for render, device in ((render_polygons, torch.device("cpu")), (polygon_renderer("nvdiffrast", cuda), cuda)):
        p = (polygons + 1.5).to(device).requires_grad_(True)
        (render(p, 64, 64) - target.to(device)).pow(2).sum().backward()
        grads.append(p.grad.cpu().flatten())
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) > 0.8
