"""Drawing curves over an image, for a quick visual check of a result (PNG overlays)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

#: Colours of the paper's figures: initial guess yellow, refinement blue.
INIT_COLOUR = (255, 200, 0)
RESULT_COLOUR = (40, 120, 255)


def draw_curves(image: np.ndarray, curve_sets: list[tuple[list[np.ndarray], tuple[int, int, int]]], min_size: int = 512) -> np.ndarray:
    """Grey image `(y, x)` with polylines drawn on it, upscaled to at least `min_size` pixels.

    curve_sets: (curves, rgb) pairs, curves a list of (k, 2) arrays [x, y] in pixels. Returns an
    RGB uint8 array. Upscaling by an integer factor keeps sub-pixel positions visible.
    """
    lo, hi = np.percentile(image, [0.5, 99.5])
    grey = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    factor = max(1, int(np.ceil(min_size / max(image.shape))))
    canvas = Image.fromarray((grey * 255).astype(np.uint8)).resize(
        (image.shape[1] * factor, image.shape[0] * factor), Image.Resampling.NEAREST
    ).convert("RGB")
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
