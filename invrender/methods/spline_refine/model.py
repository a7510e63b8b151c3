"""The spline scene of Zdyb, Alonso & Kirkegaard: splines with width, blob, background, filter.

Parameters (each with a leading seed axis S, see MultiStartModule), positions and lengths in
normalised units (pixels divided by the image's larger side, so learning rates do not depend on
the image size):

    knots_xy   (S, N, K, 2)  knot positions [x, y] of the N splines
    knots_w    (S, N, K)     logit of the relative width w in (0, 1) at each knot
    log_width  (S,)          log of the global width W (a radius), shared by all splines
    brightness (S,), gradient (S, 2)   background: brightness + gradient . [x, y]
    bg_grid    (S, G, G)     a smooth background on a coarse G x G grid (tensor-product natural
                             cubic spline through the grid values, spanning the image), for uneven
                             illumination; G = 0 disables it
    contrast   (S,)          signed amplitude of the bodies (negative: dark bodies)
    mix_logit  (S,)          sum/max interpolation of overlapping bodies
    kernel     (S, 3, 3)     the final learned 3x3 filter
    profile    (S, M)        the blob profile f at M nodes of z in [0, 1]

Rendering: points sampled uniformly in arc length along each natural spline stamp the blob with
radius r = W * w(s) and weight ds / r (so a straight body's peak is about 1.25 whatever its width
and sampling) or, with `peak_scales_with_width`, weight ds / W (peak about 1.25 w(s): a thinner
part of a body, such as a tapered tip, is fainter, as for light absorbed along a chord through a
tube); the per-spline images are combined, scaled by the contrast, added to the background and
filtered by the 3x3 kernel. Bodies held fixed (`hold_bodies`: other bodies' images from an
earlier fit, while one body is fitted again) join the combination as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from invrender.core.geometry import splines
from invrender.core.optim.divergence import far_outside, too_wide
from invrender.core.optim.multistart import MultiStartModule, per_start
from invrender.core.render.filters import convolve3x3, gaussian_blur
from invrender.core.render.registry import get_renderer
from invrender.core.render.splat2d import combine_sum_max


def gaussian_profile(n_nodes: int) -> torch.Tensor:
    """Blob profile values for f(z) = exp(-2 ln(z)^2), i.e. a Gaussian of sigma r/2 in distance."""
    z = torch.linspace(0.0, 1.0, n_nodes, dtype=torch.float64)
    log_z = torch.log(z.clamp_min(1e-30))
    return torch.exp(-2.0 * log_z**2)


def centrelines(knots: torch.Tensor, n_points: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points uniform in arc length on the natural splines through `knots (..., K, 2)`: the points
    (..., n_points, 2), their spline parameters (..., n_points) and the curves' lengths (...)."""
    s, length = splines.arc_length_parameters(knots, n_points)
    return splines.natural_spline_basis(s, knots.shape[-2]) @ knots, s, length


class SplineScene(MultiStartModule):
    groups = {
        "splines": ("knots_xy", "knots_w", "log_width"),
        "background": ("brightness", "gradient", "bg_grid"),
        "appearance": ("contrast", "mix_logit"),
        "filter": ("kernel",),
        "blob": ("profile",),
    }

    def __init__(
        self,
        knots_xy: torch.Tensor,
        knots_w: torch.Tensor,
        width: float,
        image_shape: tuple[int, int],
        brightness: float,
        contrast: float,
        profile_nodes: int = 9,
        mix: float = 0.5,
        points_per_spline: int = 128,
        cut: float = 2.0,
        background_grid: int = 0,
        peak_scales_with_width: bool = False,
        renderer: str = "splat2d",
        device: torch.device | str = "cpu",
        scale: float | None = None,
    ):
        """knots_xy (N, K, 2) in pixels; knots_w (N, K) in (0, 1); width: the radius W in pixels.

        `renderer` names a registered curve renderer (invrender.core.render.registry) able to run
        on `device`; the module is not moved there (call `.to(device)`). `scale`: the length unit (px)
        of positions, lengths and widths (default: the image's larger side).
        """
        super().__init__()
        self.render_curves = get_renderer(renderer, torch.device(device), "curves")
        self.image_shape = tuple(image_shape)
        self.scale = float(scale or max(image_shape))
        self.points_per_spline = int(points_per_spline)
        self.cut = float(cut)
        self.peak_scales_with_width = bool(peak_scales_with_width)
        dtype = torch.float32
        self.knots_xy = nn.Parameter((knots_xy / self.scale).to(dtype)[None])
        self.knots_w = nn.Parameter(torch.logit(knots_w.clamp(1e-3, 1 - 1e-3)).to(dtype)[None])
        self.log_width = nn.Parameter(torch.tensor([math.log(width / self.scale)], dtype=dtype))
        self.brightness = nn.Parameter(torch.tensor([brightness], dtype=dtype))
        self.gradient = nn.Parameter(torch.zeros(1, 2, dtype=dtype))
        G = int(background_grid)
        if G == 1 or G < 0:
            raise ValueError(f"background_grid must be 0 (off) or >= 2, got {G}")
        self.bg_grid = nn.Parameter(torch.zeros(1, G, G, dtype=dtype))
        self.contrast = nn.Parameter(torch.tensor([contrast], dtype=dtype))
        self.mix_logit = nn.Parameter(torch.tensor([math.log(mix / (1 - mix))], dtype=dtype))
        identity = torch.zeros(1, 3, 3, dtype=dtype)
        identity[:, 1, 1] = 1.0
        self.kernel = nn.Parameter(identity)
        self.profile = nn.Parameter(gaussian_profile(profile_nodes).to(dtype)[None])
        self.held: torch.Tensor | None = None  # (P, M, H, W) images of bodies held fixed, see hold_bodies
        # The last multi-start phase's starts, kept for the checks (see starts_ended).
        self.starts: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None
        H, W = self.image_shape
        ys, xs = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(W, dtype=dtype), indexing="ij")
        self.register_buffer("grid", torch.stack([xs - (W - 1) / 2, ys - (H - 1) / 2]) / self.scale, persistent=False)
        # Smooth background = basis_y @ bg_grid @ basis_x^T, the grid's nodes spread evenly from the
        # first to the last pixel of each axis.
        for name, n in (("basis_y", H), ("basis_x", W)):
            basis = (
                splines.natural_spline_basis(torch.linspace(0.0, 1.0, n, dtype=torch.float64), G)
                if G
                else torch.zeros(n, 0, dtype=torch.float64)
            )
            self.register_buffer(name, basis.to(dtype), persistent=False)

    # ------------------------------------------------------------ geometry

    def knots_px(self) -> torch.Tensor:
        """Knot positions in pixels, (S, N, K, 2)."""
        return self.knots_xy * self.scale

    @torch.no_grad()
    def spread_seeds(self, distance: float, n_seeds: int, generator: torch.Generator) -> None:
        """Shift every body of every start but each problem's first by `distance` px, each body in a
        random direction: other positions to start from than a misplaced init's."""
        angle = 2 * math.pi * torch.rand(self.knots_xy.shape[:2], generator=generator, device=self.knots_xy.device)
        shift = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1) * distance / self.scale
        shift[::n_seeds] = 0.0
        self.knots_xy += shift[:, :, None, :].to(self.knots_xy.dtype)

    def width_px(self) -> torch.Tensor:
        """The global width W (a radius) in pixels, (S,)."""
        return torch.exp(self.log_width) * self.scale

    @torch.no_grad()
    def starts_ended(self, losses: torch.Tensor, kept: Sequence[int]) -> None:
        """Keep the knots of every start of every problem, (P * n, N, K, 2) px, their `losses (P, n)`
        and the start each problem keeps (see MultiStartModule): where other starts that explain the
        image about as well put a body says how sure its fit is."""
        self.starts = (self.knots_px().detach().clone(), losses.detach().clone(), list(kept))

    def sample(self, n_points: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Points uniform in arc length: centres (S, N, P, 2) px, radii (S, N, P) px, lengths (S, N) px."""
        knots = self.knots_px()
        centers, s, length = centrelines(knots, n_points)
        relative = splines.evaluate(torch.sigmoid(self.knots_w).unsqueeze(-1), s).squeeze(-1)
        radii = self.width_px()[:, None, None] * relative.clamp_min(0.05)
        return centers, radii, length

    def divergence(self) -> str | None:
        """Why the scene has diverged (see core/optim/divergence.py), or None: knots far outside the
        image, or a body wider than it by orders of magnitude."""
        H, W = self.image_shape
        size = (W - 1.0, H - 1.0)  # the pixel centres span [0, W - 1] x [0, H - 1]
        return far_outside(self.knots_px().detach(), size, "spline knots") or too_wide(
            self.width_px().detach(), size, "the body width"
        )

    # ------------------------------------------------------------ rendering

    def background(self) -> torch.Tensor:
        """(S, H, W)."""
        image = self.brightness[:, None, None] + torch.einsum("sc,chw->shw", self.gradient, self.grid)
        if self.bg_grid.shape[-1]:
            image = image + self.basis_y @ self.bg_grid @ self.basis_x.T
        return image

    def render_bodies(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-spline images (S, N, H, W) before contrast, spline lengths (S, N) in pixels and the
        sample points (S, N, P, 2) in pixels."""
        centers, radii, length = self.sample(self.points_per_spline)
        step = (length / (self.points_per_spline - 1))[..., None]
        trapezoid = torch.ones_like(radii)
        trapezoid[..., 0] = trapezoid[..., -1] = 0.5
        divisor = self.width_px()[:, None, None] if self.peak_scales_with_width else radii
        weights = step * trapezoid / divisor
        images = self.render_curves(centers, radii, weights, self.profile, self.image_shape, self.cut)
        return images, length, centers

    def outside_distance(self, centers: torch.Tensor) -> torch.Tensor:
        """How far (px) each point (..., 2) lies outside the image's pixel centres, 0 inside."""
        H, W = self.image_shape
        upper = centers.new_tensor([W - 1.0, H - 1.0])
        return (-centers).clamp_min(0.0).norm(dim=-1) + (centers - upper).clamp_min(0.0).norm(dim=-1)

    def hold_bodies(self, images: torch.Tensor) -> None:
        """Combine the images `(P, M, H, W)` (per problem, before contrast, as render_bodies gives
        them) of M bodies fitted before with this scene's own, unchanged from now on."""
        self.held = images.detach()

    def compose(self, bodies: torch.Tensor | None) -> torch.Tensor:
        """The rendered image (S, H, W) from per-spline images, or the background alone if None;
        held bodies (hold_bodies) join the spline images."""
        image = self.background()
        if self.held is not None and bodies is not None:
            bodies = torch.cat([bodies, per_start(self.held, bodies.shape[0])], dim=1)
        if bodies is not None:
            image = image + self.contrast[:, None, None] * combine_sum_max(bodies, torch.sigmoid(self.mix_logit))
        return convolve3x3(image, self.kernel)

    def forward(
        self, target: torch.Tensor, priors: dict[str, torch.Tensor], draw_splines: bool = True, blur: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """Quantities for the loss registry (see invrender.core.losses). `target (P, H, W)` and each
        prior `(P, ...)` are given per problem (P 1, or one per crop fitted side by side)."""
        bodies, length, centers = self.render_bodies() if draw_splines else (None, None, None)
        render = self.compose(bodies)
        priors = {name: per_start(value, self.n_seeds) for name, value in priors.items()}
        quantities = {
            "render": gaussian_blur(render, blur),
            "target": per_start(gaussian_blur(target, blur), self.n_seeds),
            "width": torch.exp(self.log_width),
            "min_width_ratio": torch.sigmoid(self.knots_w).amin(-1),
            "bending": splines.bending_energy(self.knots_xy),
            "knot_gaps": splines.knot_gaps(self.knots_xy),
            "knots": self.knots_xy,
            **priors,
        }
        if length is not None:
            quantities["length"] = length / self.scale
            quantities["outside"] = self.outside_distance(centers) / self.scale
        else:  # background-only phase: the shape terms do not depend on trained parameters
            quantities["length"] = priors["length_prior"].expand(render.shape[0], -1)
            quantities["outside"] = render.new_zeros(render.shape[0], 1, 1)
        return quantities
