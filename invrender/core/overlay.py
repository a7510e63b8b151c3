"""Drawing curves over an image, for a quick visual check of a result (PNG overlays)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

#: Colours of the paper's figures: initial guess yellow, refinement blue.
INIT_COLOUR = (255, 200, 0)
RESULT_COLOUR = (40, 120, 255)


def draw_curves(
    image: np.ndarray, curve_sets: list[tuple[list[np.ndarray], tuple[int, int, int]]], min_size: int = 512
) -> np.ndarray:
    """Grey image `(y, x)` with polylines drawn on it, upscaled to at least `min_size` pixels.

    curve_sets: (curves, rgb) pairs, curves a list of (k, 2) arrays [x, y] in pixels. Returns an
    RGB uint8 array. Upscaling by an integer factor keeps sub-pixel positions visible.
    """
    lo, hi = np.percentile(image, [0.5, 99.5])
    grey = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    factor = max(1, int(np.ceil(min_size / max(image.shape))))
    canvas = (
        Image.fromarray((grey * 255).astype(np.uint8))
        .resize((image.shape[1] * factor, image.shape[0] * factor), Image.Resampling.NEAREST)
        .convert("RGB")
    )
    draw = ImageDraw.Draw(canvas)
    for curves, colour in curve_sets:
        for curve in curves:
            xy = (np.asarray(curve, dtype=np.float64) + 0.5) * factor  # pixel centres sit at +0.5
            draw.line([tuple(p) for p in xy], fill=colour, width=max(1, factor // 2))
    return np.asarray(canvas)


def plot_series(values: list[float], size: tuple[int, int] = (480, 240)) -> np.ndarray:
    """(H, W, 3) uint8 line plot of positive values on a log scale (e.g. a loss curve), white
    background, dark line, the first and last values written in the corners."""
    width, height = size
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    finite = [v for v in values if np.isfinite(v) and v > 0]
    if len(finite) >= 2:
        logs = np.log10(finite)
        low, high = logs.min(), max(logs.max(), logs.min() + 1e-12)
        xs = np.linspace(10, width - 10, len(logs))
        ys = height - 20 - (logs - low) / (high - low) * (height - 40)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=(30, 60, 140), width=2)
        draw.text((10, 4), f"{finite[0]:.3g}", fill="black")
        draw.text((width - 80, height - 16), f"{finite[-1]:.3g}", fill="black")
    return np.asarray(canvas)


#: Colours of ACDRNet's figures: ground truth green, initial contour blue, final contour yellow.
TRUTH_COLOUR = (40, 200, 60)
START_COLOUR = (40, 120, 255)
FINAL_COLOUR = (255, 200, 0)
_SERIES_COLOURS = [(30, 60, 140), (200, 80, 30), (40, 150, 60), (150, 40, 150)]


def plot_panels(
    panels: list[tuple[str, dict[str, list[float]], bool]], size: tuple[int, int] = (480, 200)
) -> np.ndarray:
    """Line plots stacked vertically, one panel per (title, {name: values}, log scale?): (H, W, 3) uint8.
    Each panel is scaled to its finite values; the names are written with their last value."""
    width, height = size
    canvas = Image.new("RGB", (width, height * len(panels)), "white")
    draw = ImageDraw.Draw(canvas)
    for p, (title, series, log) in enumerate(panels):
        top = p * height
        values = {name: np.asarray(v, dtype=np.float64) for name, v in series.items()}
        if log:
            values = {name: np.log10(np.where(v > 0, v, np.nan)) for name, v in values.items()}
        finite = np.concatenate([v[np.isfinite(v)] for v in values.values()] or [np.zeros(0)])
        draw.text((10, top + 4), title, fill="black")
        if finite.size == 0:
            continue
        low, high = float(finite.min()), float(max(finite.max(), finite.min() + 1e-12))
        for i, (name, v) in enumerate(values.items()):
            colour = _SERIES_COLOURS[i % len(_SERIES_COLOURS)]
            xs = np.linspace(40, width - 10, max(len(v), 2))[: len(v)]
            ys = top + height - 15 - (v - low) / (high - low) * (height - 40)
            points = [(x, y) for x, y in zip(xs.tolist(), ys.tolist()) if np.isfinite(y)]
            if len(points) >= 2:
                draw.line(points, fill=colour, width=2)
            last = series[name][-1] if len(series[name]) else float("nan")
            draw.text((width - 130, top + 4 + 12 * i), f"{name} {last:.4g}", fill=colour)
    return np.asarray(canvas)


def mask_outlines(mask: np.ndarray) -> list[np.ndarray]:
    """The outlines of a binary mask as closed (k, 2) polylines [x, y] (marching squares at 1/2)."""
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float64), 1)
    return [c[:, ::-1] - 1 for c in find_contours(padded, 0.5)]


def example_sheet(
    images: np.ndarray, truths: np.ndarray, predictions: np.ndarray, polygons: np.ndarray | None, tile: int = 192
) -> np.ndarray:
    """A row per example: the image, and the image with the ground truth (green) and either the
    initial (blue) and final (yellow) polygons or the predicted mask's outline (yellow).

    images (N, S, S), truths and predictions (N, S, S) bool, polygons (N, T+1, K, 2) or None.
    """
    rows = []
    for i in range(len(images)):
        curves = [(mask_outlines(truths[i]), TRUTH_COLOUR)]
        if polygons is not None:
            closed = np.concatenate([polygons[i], polygons[i][:, :1]], axis=1)
            curves += [([closed[0]], START_COLOUR), ([closed[-1]], FINAL_COLOUR)]
        else:
            curves.append((mask_outlines(predictions[i]), FINAL_COLOUR))
        panels = [draw_curves(images[i], [], min_size=tile), draw_curves(images[i], curves, min_size=tile)]
        rows.append(np.concatenate(panels, axis=1))
    return np.concatenate(rows, axis=0) if rows else np.full((tile, 2 * tile, 3), 255, np.uint8)


def label_colours(labels: list[int]) -> list[tuple[int, int, int]]:
    """A bright colour per label, the same for a label in every frame (hues by the golden ratio)."""
    import colorsys

    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.8, 1.0)) for label in labels]
