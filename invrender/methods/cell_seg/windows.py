"""Many small polygons in one large image: render each in its own window, paste the windows.

A polygon renderer spreads every polygon over the whole image it is asked for (the torch renderer
over full rows), so N cells in an H x W frame cost N x H x W. A cell covers a few hundred pixels:
rendering each in a window just larger than the largest cell's bounding box, then adding the
windows into the frame, costs N x window area instead, and the memory no longer grows with the
frame. The windows sit at integer offsets, so shifting a polygon into its window is exact and
the gradient passes straight through.
"""

from __future__ import annotations

import torch

from invrender.core.render.registry import PolygonRenderer


def render_in_windows(
    render: PolygonRenderer, vertices: torch.Tensor, margin: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render polygons (N, K, 2), `[x, y]` in image pixels, each in a window of its own.

    All windows have one size (h, w): the largest bounding box plus `margin` pixels on every side.
    Returns the coverage (N, h, w) and each window's top-left pixel `origins` (N, 2) int64 `[x, y]`
    in the image (it may lie outside the image).
    """
    with torch.no_grad():
        low = vertices.amin(dim=-2).floor().long() - margin  # (N, 2) x, y
        high = vertices.amax(dim=-2).ceil().long() + margin
        width, height = (high - low).amax(dim=0).tolist() if len(vertices) else (1, 1)
    local = vertices - low.to(vertices.dtype)[:, None, :]
    return render(local, int(height) + 1, int(width) + 1), low


def paste_windows(windows: torch.Tensor, origins: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Add windows (N, h, w) at `origins` (N, 2) `[x, y]` into a (height, width) image; the parts of
    a window outside the image are dropped."""
    n, h, w = windows.shape
    ys = origins[:, 1, None] + torch.arange(h, device=windows.device)  # (N, h)
    xs = origins[:, 0, None] + torch.arange(w, device=windows.device)  # (N, w)
    inside = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None, :]
    index = ys.clamp(0, height - 1)[:, :, None] * width + xs.clamp(0, width - 1)[:, None, :]
    values = torch.where(inside, windows, torch.zeros_like(windows))
    image = windows.new_zeros(height * width)
    return image.index_add(0, index.reshape(-1), values.reshape(-1)).reshape(height, width)


def areas_inside(windows: torch.Tensor, origins: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N,) each window's summed coverage over the pixels inside the (height, width) image."""
    n, h, w = windows.shape
    ys = origins[:, 1, None] + torch.arange(h, device=windows.device)
    xs = origins[:, 0, None] + torch.arange(w, device=windows.device)
    inside = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None, :]
    return (windows * inside).sum((1, 2))


def windows_to_labels(
    windows: torch.Tensor, origins: torch.Tensor, labels: torch.Tensor, height: int, width: int, threshold: float = 0.5
) -> torch.Tensor:
    """An instance label image (height, width) int64: each pixel takes the label (N,) of the polygon
    covering most of it, where that coverage is at least `threshold`; 0 elsewhere."""
    best = windows.new_zeros(height, width)
    result = torch.zeros(height, width, dtype=torch.int64, device=windows.device)
    n, h, w = windows.shape
    for i in range(n):  # a pass per cell (not per pixel) to resolve overlaps by the larger coverage
        x0, y0 = origins[i].tolist()
        ys, xs = slice(max(y0, 0), min(y0 + h, height)), slice(max(x0, 0), min(x0 + w, width))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        piece = windows[i, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        wins = (piece > best[ys, xs]) & (piece >= threshold)
        best[ys, xs] = torch.where(wins, piece, best[ys, xs])
        result[ys, xs] = torch.where(wins, labels[i], result[ys, xs])
    return result
