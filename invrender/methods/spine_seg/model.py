"""The deformable spine: one template mesh per vertebra, and the appearance of the CT around it.

Vertebra m of the chain has a fixed frame from the centroids (its body centroid `c_m` (3,) mm, the
rotation `R_m` (3, 3) whose columns are the superior, posterior and left axes, and the local
centroid spacing `h_m` mm) and trainable parameters, all dimensionless (in units of `h_m`):

    Y_m = Y_0 + Phi U_m                 the shape in the template's frame: Y_0 (V, 3) the template
                                        scaled to unit centroid spacing, Phi (V, k) its Laplacian
                                        eigenbasis, U_m (k, 3) the spectral coefficients
    x_m = c_m + h_m R_m (A_m Y_m + t_m) world mm; A_m (3, 3) affine, t_m (3,) shift

Phi is scaled so that the area-weighted mean of each mode's square is 1: a coefficient of u moves
the surface by u * h_m root-mean-square. The appearance `f_theta` maps a signed distance (mm) to
an intensity: Fourier features of the distance, then a 3-layer MLP (Kim and Park).

Every parameter has a leading seed axis of size 1 (a `MultiStartModule`, for the phase scheduler).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from invrender.core.optim.multistart import MultiStartModule


class Appearance(nn.Module):
    """f_theta: signed distance d (S, N) mm -> intensity (S, N).

    Features: d / scale and sin, cos of 2 pi f d for `n_frequencies` frequencies f spaced
    geometrically from 1 / scale to `max_frequency` cycles per mm; then Linear-SiLU-Linear-SiLU-Linear.
    """

    def __init__(self, n_frequencies: int, scale: float, max_frequency: float, hidden: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer(
            "frequencies", torch.logspace(math.log10(1.0 / scale), math.log10(max_frequency), n_frequencies)
        )
        self.scale = scale
        sizes = [1 + 2 * n_frequencies, hidden, hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's initialisation, with a seed axis
            self.weights.append(nn.Parameter((torch.rand(1, fan_in, fan_out, generator=generator) * 2 - 1) * bound))
            self.biases.append(nn.Parameter((torch.rand(1, 1, fan_out, generator=generator) * 2 - 1) * bound))

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        phase = 2 * math.pi * distance[..., None] * self.frequencies
        x = torch.cat([distance[..., None] / self.scale, torch.sin(phase), torch.cos(phase)], dim=-1)
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(bias, x, weight)
            if index < len(self.weights) - 1:
                x = torch.nn.functional.silu(x)
        return x[..., 0]


class SpineModel(MultiStartModule):
    """M vertebrae sharing one template. Groups: `affine` (A, t), `shape` (U), `appearance` (f_theta)."""

    groups = {"affine": ("affine", "shift"), "shape": ("coefficients",), "appearance": ("appearance",)}

    def __init__(
        self,
        template_vertices: np.ndarray,
        faces: np.ndarray,
        eigenvectors: np.ndarray,
        eigenvalues: np.ndarray,
        masses: np.ndarray,
        reference_spacing: float,
        centres: np.ndarray,
        rotations: np.ndarray,
        spacings: np.ndarray,
        appearance: Appearance,
    ):
        super().__init__()
        n, k = len(centres), eigenvectors.shape[1]
        total_area = float(masses.sum()) / reference_spacing**2  # in units of the centroid spacing
        as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        self.register_buffer("template", as_tensor(template_vertices / reference_spacing))
        self.register_buffer("faces", torch.as_tensor(np.asarray(faces), dtype=torch.long))
        self.register_buffer("basis", as_tensor(eigenvectors * math.sqrt(total_area) * reference_spacing))
        # eigenvalues of the unit-spacing template: sum_j lambda_j |U_j|^2 is then the area-mean of the
        # squared surface gradient of the displacement Phi U
        self.register_buffer("eigenvalues", as_tensor(eigenvalues * reference_spacing**2))
        self.register_buffer("centres", as_tensor(centres))
        self.register_buffer("rotations", as_tensor(rotations))
        self.register_buffer("spacings", as_tensor(spacings))
        self.register_buffer("edges", torch.as_tensor(unique_edges(np.asarray(faces)), dtype=torch.long))
        self.affine = nn.Parameter(torch.eye(3).expand(1, n, 3, 3).clone())
        self.shift = nn.Parameter(torch.zeros(1, n, 3))
        self.coefficients = nn.Parameter(torch.zeros(1, n, k, 3))
        self.appearance = appearance

    @property
    def n_vertebrae(self) -> int:
        return self.centres.shape[0]

    def canonical(self) -> torch.Tensor:
        """(S, M, V, 3) every vertebra's shape in the template's frame, units of its centroid spacing."""
        return self.template + torch.einsum("vk,smkc->smvc", self.basis, self.coefficients)

    def local(self) -> torch.Tensor:
        """(S, M, V, 3) every vertebra after its affine and shift, in its frame, units of its centroid spacing."""
        return torch.einsum("smij,smvj->smvi", self.affine, self.canonical()) + self.shift[:, :, None]

    def world(self) -> torch.Tensor:
        """(S, M, V, 3) vertices in world mm."""
        return self.centres[:, None] + self.spacings[:, None, None] * torch.einsum(
            "mij,smvj->smvi", self.rotations, self.local()
        )

    def drift(self) -> torch.Tensor:
        """(S, M, 3) how far each vertebra's mean vertex has moved from the placed template's, in
        its frame, units of its centroid spacing: the slide along the spine that the image alone may
        not resist where a vertebra is cut by the field of view or its neighbour looks alike."""
        return self.local().mean(2) - self.template.mean(0)

    def set_spectral_step(self, alpha: float) -> None:
        """Scale the steps of mode j by (lambda_j / lambda_1)^-alpha (lambda_1 the first non-zero
        eigenvalue; the constant mode moves like the first): coarse shape first, detail later."""
        ratio = (self.eigenvalues / self.eigenvalues[1]).clamp_min(1.0)
        self.coefficients.step_scale = ratio.pow(-alpha)[:, None]


def unique_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) the undirected edges of a triangle mesh, each once."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    return np.unique(edges, axis=0)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(..., V, 3) unit area-weighted vertex normals of (..., V, 3) vertices."""
    corners = vertices[..., faces, :]  # (..., F, 3, 3)
    face_normals = torch.cross(corners[..., 1, :] - corners[..., 0, :], corners[..., 2, :] - corners[..., 0, :], dim=-1)
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals = normals.index_add(-2, faces[:, corner], face_normals)
    return torch.nn.functional.normalize(normals, dim=-1)
