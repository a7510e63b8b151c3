"""The scene of one frame: star-convex cells with their own brightness over a smooth background,
blurred by a Gaussian PSF; and `Cells`, the fitted state carried from frame to frame.

    image(p) = background(p) + (PSF * sum_i b_i m_i)(p),   PSF = (1 - w) G_sigma + w G_halo

m_i is the exact pixel coverage of cell i's contour (a centre and R radii), b_i its brightness,
the PSF a sharp Gaussian plus a wide one of weight w (the glow of out-of-focus light around bright
nuclei, which a single Gaussian would fit by blurring every edge), and the background a coarse
grid upsampled bilinearly (uneven illumination).
The log radii are a Fourier series of the angle with a few harmonics: a smooth outline by
construction (free radii grow thin spikes that cost almost no coverage, so the image does not
stop them). Intensities are those of the frame normalised to 0..1 (`normalise_intensity`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from invrender.core.geometry.polygons import star_polygon
from invrender.core.optim.multistart import MultiStartModule
from invrender.methods.cell_seg.psf import two_gaussian_blur
from invrender.methods.cell_seg.windows import (
    PolygonRenderer,
    WindowGroup,
    areas_inside,
    paste_windows,
    render_in_windows,
    windows_to_labels,
)

#: Smallest radius a contour may shrink to, pixels: keeps every contour a valid star polygon.
MIN_RADIUS = 0.5


@dataclass
class Cells:
    """Cells of one frame and the frame's appearance, in numpy (what is carried between frames).

    labels (N,) int track labels; centres (N, 2) `[x, y]` px; radii (N, R) px; brightness (N,)
    above the background; background (gh, gw) coarse grid; the PSF: sigma, halo_sigma (standard
    deviations, px) and halo_weight.
    """

    labels: np.ndarray
    centres: np.ndarray
    radii: np.ndarray
    brightness: np.ndarray
    background: np.ndarray
    sigma: float
    halo_sigma: float
    halo_weight: float

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> Cells:
        return replace(
            self,
            labels=self.labels[keep],
            centres=self.centres[keep],
            radii=self.radii[keep],
            brightness=self.brightness[keep],
        )

    def joined(self, *others: Cells) -> Cells:
        """These cells and those of `others`, with this frame's appearance."""
        parts = (self, *others)
        return replace(
            self,
            **{
                name: np.concatenate([getattr(p, name) for p in parts])
                for name in ("labels", "centres", "radii", "brightness")
            },
        )

    def polygons(self) -> np.ndarray:
        """(N, R, 2) contour vertices `[x, y]` px."""
        return star_polygon(torch.from_numpy(self.centres), torch.from_numpy(self.radii)).numpy()


def fourier_basis(n_radii: int, harmonics: int) -> np.ndarray:
    """(2 harmonics + 1, R): 1, cos k theta, sin k theta (k = 1..harmonics) at the R contour angles."""
    angle = np.arange(n_radii) * (2 * np.pi / n_radii)
    rows = [np.ones(n_radii)] + [f(k * angle) for k in range(1, harmonics + 1) for f in (np.cos, np.sin)]
    return np.stack(rows)


def linear_upsampling(size: int, knots: int) -> torch.Tensor:
    """(size, knots) float64: linear interpolation of `knots` values evenly spaced over `size` pixels,
    the first and last knot on the first and last pixel (torch's bilinear with align_corners), as the
    hat function of each knot at each pixel's position in knot units."""
    position = torch.arange(size, dtype=torch.float64) * ((knots - 1) / max(size - 1, 1))
    return (1.0 - (position[:, None] - torch.arange(knots, dtype=torch.float64)).abs()).clamp_min(0.0)


class CellScene(MultiStartModule):
    """The differentiable frame model; parameters carry a leading seed axis S."""

    groups = {
        "centres": ("centres",),
        "radii": ("shape_coefficients",),
        "brightness": ("log_brightness",),
        "background": ("background",),
        "psf": ("log_sigma", "log_halo_sigma", "halo_logit"),
    }

    def __init__(
        self, cells: Cells, shape: tuple[int, int], render: PolygonRenderer, harmonics: int, max_radius: float
    ):
        super().__init__()
        as_param = lambda a: torch.nn.Parameter(torch.as_tensor(np.asarray(a), dtype=torch.float64)[None].clone())  # noqa: E731
        self.centres = as_param(cells.centres)
        basis = fourier_basis(cells.radii.shape[1], harmonics)
        self.register_buffer("basis", torch.from_numpy(basis))
        log_radii = np.log(np.clip(cells.radii, MIN_RADIUS + 1e-3, max_radius) - MIN_RADIUS)
        # (N, 2 harmonics + 1); the width is given, not inferred, so that a frame without cells (N = 0) works
        self.shape_coefficients = as_param(
            np.linalg.lstsq(basis.T, log_radii.T, rcond=None)[0].T.reshape(len(cells), len(basis))
        )
        self.log_brightness = as_param(np.log(np.maximum(cells.brightness, 1e-3)))
        self.background = as_param(cells.background)
        # Bilinear upsampling of the grid is separable: rows and columns each a (size, knots) matrix.
        self.register_buffer("upsample_rows", linear_upsampling(shape[0], cells.background.shape[0]))
        self.register_buffer("upsample_cols", linear_upsampling(shape[1], cells.background.shape[1]))
        self.log_sigma = as_param(np.log([cells.sigma]))
        self.log_halo_sigma = as_param(np.log([cells.halo_sigma]))
        self.halo_logit = as_param(np.log([cells.halo_weight / (1.0 - cells.halo_weight)]))
        self.labels = cells.labels
        self.shape = shape
        self.render = render
        self.max_radius = max_radius
        self._still: dict[int, tuple[torch.Tensor, list[WindowGroup]]] = {}  # seed -> contours, their windows

    def log_radii(self) -> torch.Tensor:
        """(S, N, R) log(radius - MIN_RADIUS)."""
        return self.shape_coefficients @ self.basis

    def radii(self) -> torch.Tensor:
        return (MIN_RADIUS + self.log_radii().exp()).clamp_max(self.max_radius)

    def forward(self) -> dict[str, torch.Tensor]:
        """The rendered frames (S, H, W) and what the priors read."""
        height, width = self.shape
        renders, coverages = [], []
        polygons = star_polygon(self.centres, self.radii())  # (S, N, R, 2)
        for s in range(self.n_seeds):
            background = self.upsample_rows @ self.background[s] @ self.upsample_cols.T
            if len(self.labels) == 0:
                renders.append(background)
                coverages.append(torch.zeros_like(background))
                continue
            windows = self.windows(s, polygons[s])
            cells = paste_windows(windows, height, width, self.log_brightness[s].exp())
            psf_image = two_gaussian_blur(
                cells,
                self.log_sigma[s].exp().squeeze(),
                self.log_halo_sigma[s].exp().squeeze(),
                torch.sigmoid(self.halo_logit[s]).squeeze(),
            )
            renders.append(background + psf_image)
            coverages.append(paste_windows(windows, height, width))
        return {"render": torch.stack(renders), "coverage": torch.stack(coverages), "log_radii": self.log_radii()}

    def windows(self, seed: int, polygons: torch.Tensor) -> list[WindowGroup]:
        """The cells' contours (N, R, 2) of one seed rendered in windows. Contours that are not trained
        (a phase of brightness, background and PSF only) and have not changed since the last call
        are not rendered again."""
        if polygons.requires_grad:
            return render_in_windows(self.render, polygons)
        still = self._still.get(seed)
        if still is None or not torch.equal(still[0], polygons):
            still = self._still[seed] = (polygons, render_in_windows(self.render, polygons))
        return still[1]

    @torch.no_grad()
    def cells(self) -> Cells:
        """The current state (seed 0) as numpy."""
        return Cells(
            self.labels.copy(),
            self.centres[0].numpy().copy(),
            self.radii()[0].numpy().copy(),
            self.log_brightness[0].exp().numpy().copy(),
            self.background[0].numpy().copy(),
            float(self.log_sigma[0].exp()),
            float(self.log_halo_sigma[0].exp()),
            float(torch.sigmoid(self.halo_logit[0])),
        )

    @torch.no_grad()
    def labels_and_areas(self) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) int64: each pixel labelled by the cell covering most of it (at least half); and (N,)
        the cells' areas inside the image, px^2."""
        if len(self.labels) == 0:
            return np.zeros(self.shape, dtype=np.int64), np.zeros(0)
        polygons = star_polygon(self.centres[0], self.radii()[0])
        windows = self.windows(0, polygons)
        labels = windows_to_labels(windows, torch.from_numpy(self.labels), *self.shape).numpy()
        return labels, areas_inside(windows, len(self.labels), *self.shape).numpy()
