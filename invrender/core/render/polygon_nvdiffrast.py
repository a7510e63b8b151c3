"""Soft masks of closed polygons on CUDA, through nvdiffrast (an optional package).

The polygon is a fan of triangles (centroid, p_j, p_j+1), each with the sign of its orientation, so
that the winding number at a point is the sum of the signs of the fan triangles covering it: this
holds for concave and self-intersecting polygons alike, with no triangulation to keep valid while
the vertices move. Each triangle gets its own depth and vertices, so depth peeling visits every
triangle covering a pixel once; every layer's signs are anti-aliased by nvdiffrast (which gives the
gradients with respect to the vertices at the silhouette edges) and summed. The result is clamped
as in the torch backend: |winding number| at most 1.

nvdiffrast samples pixel centres and anti-aliases edges between neighbouring pixels, so its masks
approximate the torch backend's exact pixel coverage (`polygon2d`) rather than equal it.
"""

from __future__ import annotations

import math

import torch

from invrender.core.render.registry import RendererSpec, register_renderer

_CONTEXTS: dict[torch.device, object] = {}


def _context(device: torch.device):
    import nvdiffrast.torch as dr

    if device not in _CONTEXTS:
        _CONTEXTS[device] = dr.RasterizeCudaContext(device=device)
    return _CONTEXTS[device]


def render_polygons_nvdiffrast(vertices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Same contract as `polygon2d.render_polygons`: (*batch, K, 2) pixels -> (*batch, height, width)."""
    import nvdiffrast.torch as dr

    if vertices.ndim < 2 or vertices.shape[-1] != 2 or vertices.shape[-2] < 3:
        raise ValueError(f"vertices must have shape (..., K >= 3, 2), got {tuple(vertices.shape)}")
    batch, k = vertices.shape[:-2], vertices.shape[-2]
    points = vertices.reshape(math.prod(batch), k, 2).float()
    centre = points.mean(dim=1, keepdim=True).expand(-1, k, -1)
    following = torch.roll(points, shifts=-1, dims=1)
    corners = torch.stack([centre, points, following], dim=2)  # (P, K, 3, 2)
    edge_a, edge_b = points - centre, following - centre
    sign = torch.sign(edge_a[..., 0] * edge_b[..., 1] - edge_a[..., 1] * edge_b[..., 0]).detach()  # (P, K)
    # Clip space: the centre of pixel i sits at (2i + 1) / size - 1; nvdiffrast's row 0 is clip y = -1.
    clip_x = (2 * corners[..., 0] + 1) / width - 1
    clip_y = (2 * corners[..., 1] + 1) / height - 1
    depth = ((2 * torch.arange(k, device=points.device, dtype=points.dtype) + 1) / k - 1)[None, :, None].expand_as(
        clip_x
    )
    pos = (
        torch.stack([clip_x, clip_y, depth, torch.ones_like(clip_x)], dim=-1)
        .reshape(len(points), 3 * k, 4)
        .contiguous()
    )
    tri = torch.arange(3 * k, device=points.device, dtype=torch.int32).reshape(k, 3)
    signs = sign[..., None].expand(-1, -1, 3).reshape(len(points), 3 * k, 1).contiguous()
    topology = dr.antialias_construct_topology_hash(tri)
    winding = points.new_zeros(len(points), height, width, 1)
    with dr.DepthPeeler(_context(points.device), pos, tri, (height, width)) as peeler:
        for _ in range(k):  # a pixel is covered by at most k fan triangles
            rast, _ = peeler.rasterize_next_layer()
            if not bool((rast[..., 3] > 0).any()):
                break
            layer, _ = dr.interpolate(signs, rast, tri)  # zero where no triangle is left
            winding = winding + dr.antialias(layer, rast, pos, tri, topology_hash=topology)
    return winding[..., 0].abs().clamp_max(1.0).reshape(*batch, height, width).to(vertices.dtype)


register_renderer(
    RendererSpec(
        "nvdiffrast",
        "polygons",
        render_polygons_nvdiffrast,
        ("cuda",),
        requires="nvdiffrast.torch",
        preference=1,  # where it runs (CUDA, installed), `auto` takes it
        cost="rasterisation of 3 x edges vertices per polygon, one pass per depth layer",
    )
)
