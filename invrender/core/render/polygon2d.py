"""Soft masks of closed polygons, in torch: the exact area of the polygon inside every pixel.

A pixel is the unit box centred on its integer coordinates `[x, y]` (x = column, y = row). Its value
is the mean of the polygon's winding number over the box, which Green's theorem turns into a sum
over the polygon's edges:

    coverage(pixel) = | sum_e  integral over e, y clipped to the pixel's row, of g(x) dy |,
    g(x) = clamp(x - x_left, 0, 1),

x_left the pixel's left side. An edge contributes `dy` to every pixel of its rows left of it
(g = 1), nothing to the pixels right of it (g = 0), and the exact partial area to the pixels it
crosses. For a simple polygon of either orientation the sum over pixels is its shoelace area,
whatever its convexity and sub-pixel position; a self-intersecting polygon counts each covered
point with the absolute winding number, clamped to 1 (the non-zero fill rule). The gradient with
respect to the vertices is non-zero on the pixels the edges pass through: exact anti-aliasing.

Each edge is cut into its pieces in the pixel rows it spans (at most R rows, R the tallest edge's
row count). A piece adds its whole `dy` to every pixel of its row left of its x range and nothing
right of it, so only the C columns it crosses are computed per piece (C the most any piece crosses,
a few for short edges); the whole `dy`s are dropped at the row's first column, their negatives at
the piece's first crossed column, and summed along the row. The work is polygons x edges x R x C,
plus a running sum over polygons x height x width, rather than polygons x edges x R x width. The
spread and its gradient are written out (`_RowSpread`), so that nothing of size edges x pixels is
kept for the backward pass.
"""

from __future__ import annotations

import math

import torch

from invrender.core.render.registry import RendererSpec, register_renderer

#: Below this x-extent (px) of a piece, the mean of g over it is g at its midpoint.
_FLAT = 1e-6
#: Pieces x columns handled at once (elements of the largest temporary tensor).
_CHUNK_ELEMENTS = 2**22


def _ramp(u: torch.Tensor) -> torch.Tensor:
    return u.clamp(0.0, 1.0)


def _ramp_integral(u: torch.Tensor) -> torch.Tensor:
    """G(u) = integral_0^u clamp(t, 0, 1) dt: 0 for u < 0, u^2 / 2 on [0, 1], u - 1/2 beyond."""
    inside = u.clamp(0.0, 1.0)
    return 0.5 * inside * inside + (u - 1.0).clamp_min(0.0)


def _piece_means(xs: torch.Tensor, xe: torch.Tensor, left: torch.Tensor, with_derivatives: bool):
    """Mean of g over each piece for the columns whose left sides are `left`: xs, xe (...) and left
    (..., C) -> (..., C); with its derivatives with respect to the piece's two x ends when asked."""
    us = xs[..., None] - left
    ue = xe[..., None] - left
    run = ue - us
    flat = run.abs() < _FLAT
    safe_run = torch.where(flat, torch.ones_like(run), run)
    mid = 0.5 * (us + ue)
    mean = torch.where(flat, _ramp(mid), (_ramp_integral(ue) - _ramp_integral(us)) / safe_run)
    if not with_derivatives:
        return mean
    slope_mid = 0.5 * ((mid > 0) & (mid < 1)).to(xs.dtype)
    d_end = torch.where(flat, slope_mid, (_ramp(ue) - mean) / safe_run)
    d_start = torch.where(flat, slope_mid, (mean - _ramp(us)) / safe_run)
    return mean, d_start, d_end


def _crossed_columns(xs: torch.Tensor, xe: torch.Tensor, dy: torch.Tensor, width: int) -> tuple[torch.Tensor, int]:
    """(P, N) int64 the first column in [0, width] that each piece does not cover whole (g < 1
    somewhere on it; every column left of it has g = 1), and C, the most columns from there on that
    any piece with a height crosses (g > 0 somewhere), at least 1 and at most `width`."""
    with torch.no_grad():
        first = (torch.minimum(xs, xe) + 0.5).floor().clamp(0, width)
        beyond = (torch.maximum(xs, xe) + 0.5).ceil()  # g = 0 on the piece from this column on
        crossed = torch.where(dy != 0, beyond - first, torch.zeros_like(first))
        count = int(crossed.max().clamp(1, width).item()) if crossed.numel() else 1
    return first.long(), count


def _columns(first: torch.Tensor, count: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., C) int64 the C columns from each piece's `first` (...) on, and whether each lies in the image."""
    columns = first[..., None] + torch.arange(count, device=first.device)
    return columns, columns < width


def _chunks(n_pieces_per_polygon: int, n_polygons: int, columns: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, n_pieces_per_polygon * columns))
    return [slice(i, i + step) for i in range(0, n_polygons, step)]


class _RowSpread(torch.autograd.Function):
    """Sum the pieces' contributions `dy * mean_g` into the rows they lie in.

    xs, xe, dy: (P, N) x ends and signed height of N pieces per polygon; rows: (P, N) int64 row of
    each piece. Returns (P, height, width).
    """

    @staticmethod
    def forward(ctx, xs, xe, dy, rows, height: int, width: int):
        first, count = _crossed_columns(xs, xe, dy, width)
        # The whole columns 0 .. first - 1: dy dropped at column 0 and -dy at `first`, summed along the row.
        out = xs.new_zeros(xs.shape[0], height, width)
        flat = out.view(xs.shape[0], height * width)
        whole = torch.where(first > 0, dy, torch.zeros_like(dy))
        flat.scatter_add_(1, rows * width, whole)
        ends = torch.where(first < width, -whole, torch.zeros_like(whole))
        flat.scatter_add_(1, rows * width + first.clamp_max(width - 1), ends)
        out.cumsum_(-1)
        for part in _chunks(xs.shape[1], xs.shape[0], count):
            columns, inside = _columns(first[part], count, width)
            means = _piece_means(xs[part], xe[part], columns.to(xs.dtype) - 0.5, False)
            values = torch.where(inside, dy[part, :, None] * means, torch.zeros_like(means))
            index = rows[part, :, None] * width + columns.clamp_max(width - 1)
            flat[part].scatter_add_(1, index.flatten(1), values.flatten(1))
        ctx.save_for_backward(xs, xe, dy, rows, first)
        ctx.sizes = height, width, count
        return out

    @staticmethod
    def backward(ctx, grad_out):
        xs, xe, dy, rows, first = ctx.saved_tensors
        height, width, count = ctx.sizes
        # The whole columns: each piece's dy reaches the sum of the gradient left of its first column.
        left_sums = grad_out.cumsum(-1).reshape(xs.shape[0], height * width)
        grad_dy = left_sums.gather(1, rows * width + (first - 1).clamp(0, width - 1))
        grad_dy = torch.where(first > 0, grad_dy, torch.zeros_like(grad_dy))
        grad_xs, grad_xe = torch.zeros_like(xs), torch.zeros_like(xe)
        flat = grad_out.reshape(xs.shape[0], height * width)
        for part in _chunks(xs.shape[1], xs.shape[0], count):
            columns, inside = _columns(first[part], count, width)
            mean, d_start, d_end = _piece_means(xs[part], xe[part], columns.to(xs.dtype) - 0.5, True)
            index = rows[part, :, None] * width + columns.clamp_max(width - 1)
            grad = flat[part].gather(1, index.flatten(1)).view_as(mean)
            grad = torch.where(inside, grad, torch.zeros_like(grad))
            grad_dy[part] += (grad * mean).sum(-1)
            weighted = grad * dy[part, :, None]
            grad_xs[part] = (weighted * d_start).sum(-1)
            grad_xe[part] = (weighted * d_end).sum(-1)
        return grad_xs, grad_xe, grad_dy, None, None, None


def _signed_coverage(vertices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(P, K, 2) -> (P, height, width): the mean winding number over each pixel."""
    start = vertices
    end = torch.roll(vertices, shifts=-1, dims=-2)
    xa, ya = start[..., 0], start[..., 1]  # (P, K)
    xb, yb = end[..., 0], end[..., 1]
    # Rows an edge spans, within the image: floor(y + 1/2) from its lowest to its highest point.
    with torch.no_grad():
        low = (torch.minimum(ya, yb).clamp(-0.5, height - 0.5) + 0.5).floor().clamp(0, height - 1)
        high = (torch.maximum(ya, yb).clamp(-0.5, height - 0.5) + 0.5).floor().clamp(0, height - 1)
        spans = int((high - low).max().item()) + 1 if vertices.numel() else 1
        offsets = torch.arange(spans, device=vertices.device)
        rows = (low[..., None] + offsets).clamp_max(height - 1).long()  # (P, K, R)
        valid = (low[..., None] + offsets) <= high[..., None]
    row = rows.to(vertices.dtype)
    # The piece of each edge inside its rows [r - 1/2, r + 1/2], in the edge's parameter t.
    rise = (yb - ya)[..., None]
    moving = rise != 0
    safe_rise = torch.where(moving, rise, torch.ones_like(rise))
    t0 = ((row - 0.5 - ya[..., None]) / safe_rise).clamp(0.0, 1.0)
    t1 = ((row + 0.5 - ya[..., None]) / safe_rise).clamp(0.0, 1.0)
    dy = torch.where(moving & valid, (t1 - t0).abs() * rise, torch.zeros_like(t0))  # signed, along the edge
    run = (xb - xa)[..., None]
    xs = xa[..., None] + t0 * run
    xe = xa[..., None] + t1 * run
    n = vertices.shape[0]
    return _RowSpread.apply(xs.reshape(n, -1), xe.reshape(n, -1), dy.reshape(n, -1), rows.reshape(n, -1), height, width)


def render_polygons(vertices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Soft masks of closed polygons.

    vertices: (*batch, K, 2) float, `[x, y]` in pixels, in order around the polygon (either
    orientation); the edge from the last vertex back to the first closes it. Returns
    (*batch, height, width) in [0, 1]: the fraction of each pixel inside the polygon.
    """
    if vertices.ndim < 2 or vertices.shape[-1] != 2 or vertices.shape[-2] < 3:
        raise ValueError(f"vertices must have shape (..., K >= 3, 2), got {tuple(vertices.shape)}")
    batch = vertices.shape[:-2]
    flat = vertices.reshape(math.prod(batch), *vertices.shape[-2:])
    coverage = _signed_coverage(flat, height, width)
    return coverage.abs().clamp_max(1.0).reshape(*batch, height, width)


register_renderer(
    RendererSpec(
        "polygon2d",
        "polygons",
        render_polygons,
        ("cpu", "cuda"),
        cost="polygons x (edges x rows per edge x columns per piece + height x width)",
    )
)
