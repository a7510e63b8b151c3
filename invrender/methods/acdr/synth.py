"""Synthetic object-segmentation images with perfect masks: one star-shaped, often concave, object
near the middle of each image, a smaller distractor beside it, on an uneven background, blurred and
noisy. For fast tests of the polygon methods, and as a data set in the generic layout.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from invrender.core.io import write_png
from invrender.core.render.polygon2d import render_polygons

#: Vertices of the polygons the shapes are drawn with (fine enough to look smooth at 64 px).
_VERTICES = 128


def _star(rng: np.random.Generator, centre: np.ndarray, radius: float) -> np.ndarray:
    """A star-shaped outline (K, 2): r(a) = radius (1 + sum_k c_k cos(k a + phi_k)), k = 2..4."""
    angle = np.linspace(0.0, 2 * math.pi, _VERTICES, endpoint=False)
    profile = np.ones_like(angle)
    for k in (2, 3, 4):
        profile += rng.uniform(-0.35, 0.35) / k * np.cos(k * angle + rng.uniform(0, 2 * math.pi))
    r = radius * profile
    return np.stack([centre[0] + r * np.cos(angle), centre[1] + r * np.sin(angle)], axis=-1)


def make_shape_image(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One image (size, size) float32 in about 0..1 and its object's mask (size, size) bool."""
    middle = np.array([(size - 1) / 2, (size - 1) / 2])
    outline = _star(rng, middle + rng.normal(0, 0.04 * size, 2), rng.uniform(0.14, 0.3) * size)
    angle = rng.uniform(0, 2 * math.pi)
    away = middle + 0.42 * size * np.array([math.cos(angle), math.sin(angle)])
    distractor = _star(rng, away, rng.uniform(0.06, 0.12) * size)
    cover = render_polygons(torch.from_numpy(np.stack([outline, distractor])), size, size).numpy()
    mask = cover[0] > 0.5
    yy, xx = np.mgrid[0:size, 0:size] / size
    background = 0.15 + 0.1 * rng.uniform(-1, 1) * xx + 0.1 * rng.uniform(-1, 1) * yy
    image = background + rng.uniform(0.4, 0.8) * cover[0] + rng.uniform(0.3, 0.7) * cover[1]
    image = gaussian_filter(image, rng.uniform(0.6, 1.5)) + rng.normal(0, 0.04, image.shape)
    return image.astype(np.float32), mask


def write_shape_dataset(out: Path, count: int, size: int = 64, seed: int = 0) -> None:
    """`images/shape_NNNN.png` and `masks/shape_NNNN.png` (0/255): the generic layout."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, mask = make_shape_image(rng, size)
        grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
        write_png(out / "images" / f"shape_{i:04d}.png", grey)
        write_png(out / "masks" / f"shape_{i:04d}.png", (mask * 255).astype(np.uint8))
