"""Placing the template on every vertebra before the fit: a search over similarity transforms.

The centroids say which vertebra is where, but not exactly where its body is (a label's centroid
lies 10-15 mm behind the body's, in the canal; an annotator's click is a few mm off), nor the
vertebra's size or its rotation about the spine's axis. The gradient-based fit only corrects what
lies within its capture range, and on the way from the canal to the body it passes the posterior
elements, and in a real CT ribs and the aorta. So each vertebra is first placed by an exhaustive
search, which makes the start independent of the centroids' convention.

In the vertebra's frame from the centroids (`chain_frames`: superior s, posterior p, left l, h the
centroid spacing), a candidate is

    x = c + R (delta + h sigma Y(psi) q)        q the template in units of its centroid spacing,
                                                delta (3,) mm along (s, p, l), sigma the scale,
                                                Y(psi) a rotation by psi about s

and its score the normalised cross-correlation, over probe points around the template's surface,
between the CT (low-passed) and the template's expected appearance there: bone inside, soft tissue
outside, `1 / (1 + exp(d / width))` of the signed distance d. The centroids of one file follow one
convention, so their offsets to the bodies agree along the spine: the search first finds the offset
shared by the chain (the highest score summed over the vertebrae), then each vertebra's own within
a few mm of it. One vertebra that matches the template badly (a fracture, a transitional vertebra)
or a rib that matches it well cannot pull its vertebra away. Offsets along s stay within a quarter
of a spacing, so no candidate reaches the next vertebra. The winner gives each vertebra's new
frame (c + R delta, R Y(psi), h sigma).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from invrender.core.render.sampling import VolumeSampler
from invrender.core.render.sdf import signed_distance
from invrender.methods.spine_seg.points import sample_around_surfaces


@dataclass
class Placement:
    """Each vertebra's frame after the search, in chain order: centres (M, 3) mm, rotations (M, 3, 3),
    spacings (M,) mm; and what the search found: offsets (M, 3) mm along (s, p, l), scales (M,),
    rotations about s (M,) degrees, scores (M,) (normalised cross-correlation, -1..1)."""

    centres: np.ndarray
    rotations: np.ndarray
    spacings: np.ndarray
    offsets: np.ndarray
    scales: np.ndarray
    turns: np.ndarray
    scores: np.ndarray

    def select(self, chosen: slice) -> Placement:
        """The placement of some of the vertebrae."""
        return Placement(*(getattr(self, name)[chosen] for name in self.__dataclass_fields__))

    def summary(self, names: list[str]) -> dict:
        """Per vertebra name: what the search moved, for the metrics file."""
        return {
            name: {
                "offset_mm": [round(float(v), 2) for v in offset],
                "scale": round(float(scale), 3),
                "rotation_deg": round(float(turn), 1),
                "score": round(float(score), 3),
            }
            for name, offset, scale, turn, score in zip(names, self.offsets, self.scales, self.turns, self.scores)
        }


def probe_points(
    template_vertices: np.ndarray, faces: np.ndarray, reference_spacing: float, count: int, band: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` points (count, 3) around the template's surface in units of its centroid spacing:
    uniform on the surface by area, offset by an isotropic Gaussian of `band` / 2 mm; and their
    signed distance (count,) mm to the template (exact, libigl)."""
    vertices = torch.from_numpy(np.asarray(template_vertices, dtype=np.float64))
    points, _ = sample_around_surfaces(
        vertices[None], torch.from_numpy(np.asarray(faces)), count, [band / 2], torch.Generator().manual_seed(seed)
    )
    distance = signed_distance(points[0], vertices, faces)
    return (points[0] / reference_spacing).float(), distance.float()


def _turn(angle: torch.Tensor) -> torch.Tensor:
    """(A, 3, 3) rotations by `angle` (A,) radians about the frame's first axis (superior)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    return torch.stack(
        [torch.stack([one, zero, zero], -1), torch.stack([zero, c, -s], -1), torch.stack([zero, s, c], -1)], -2
    )


def _grid(reach: float, step: float) -> torch.Tensor:
    count = int(np.floor(reach / step + 1e-9))
    return torch.arange(-count, count + 1, dtype=torch.float32) * step


def _scores(
    sampler: VolumeSampler,
    centre: np.ndarray,
    rotation: np.ndarray,
    spacing: float,
    points: torch.Tensor,
    expected: torch.Tensor,
    offsets: torch.Tensor,
    scales: torch.Tensor,
    turns: torch.Tensor,
) -> torch.Tensor:
    """(S, A, D) the normalised cross-correlation of every candidate: scales (S,), turns (A,)
    radians, offsets (D, 3) mm in the frame."""
    frame = torch.as_tensor(rotation, dtype=torch.float32)
    shaped = (
        spacing * scales[:, None, None, None] * torch.einsum("aij,nj->ani", _turn(turns), points)[None]
    )  # (S, A, N, 3) frame mm
    base = torch.as_tensor(centre, dtype=torch.float32) + shaped @ frame.T
    shifts = offsets @ frame.T
    scores = torch.empty(len(scales), len(turns), len(offsets))
    for s in range(len(scales)):
        for a in range(len(turns)):
            world = base[s, a][None] + shifts[:, None]  # (D, N, 3)
            values = sampler(world.reshape(-1, 3))[:, 0].reshape(len(offsets), -1)
            values = values - values.mean(dim=1, keepdim=True)
            scores[s, a] = (values * expected).mean(dim=1) / values.std(dim=1).clamp_min(1e-6)
    return scores


def place_vertebrae(
    sampler: VolumeSampler,
    centres: np.ndarray,
    rotations: np.ndarray,
    spacings: np.ndarray,
    probe: tuple[torch.Tensor, torch.Tensor],
    cfg: DictConfig,
) -> Placement:
    """Search every vertebra's similarity transform (module docstring) in the CT seen by `sampler`
    (one channel, low-passed). `centres` (M, 3), `rotations` (M, 3, 3), `spacings` (M,): the
    frames from the centroids, chain order. `probe`: template points (N, 3) and their signed
    distances (N,) from `probe_points`. `cfg`: the config's `placement` section.

    Two stages: the offset shared by the chain, over the whole reach (scale 1, no rotation), the
    one whose scores summed over the vertebrae are highest; then each vertebra's own offset within
    `cfg.refine_reach` mm of it, with its scale and rotation."""
    points, distance = probe
    expected = torch.sigmoid(-distance / float(cfg.edge_width))
    expected = (expected - expected.mean()) / expected.std()
    step = float(cfg.step)
    offsets = torch.cartesian_prod(
        _grid(float(cfg.superior_reach) * float(spacings.min()), step),
        _grid(float(cfg.posterior_reach), step),
        _grid(float(cfg.left_reach), step),
    )
    total = sum(
        _scores(sampler, centre, rotation, float(spacing), points, expected, offsets, torch.ones(1), torch.zeros(1))[
            0, 0
        ]
        for centre, rotation, spacing in zip(centres, rotations, spacings)
    )
    shared = offsets[int(total.argmax())]
    local = shared + torch.cartesian_prod(*[_grid(float(cfg.refine_reach), step / 2)] * 3)
    scales = torch.tensor(list(cfg.scales), dtype=torch.float32)
    turns = torch.deg2rad(torch.tensor(list(cfg.rotations), dtype=torch.float32))
    chosen = {key: [] for key in ("centres", "rotations", "spacings", "offsets", "scales", "turns", "scores")}
    for centre, rotation, spacing in zip(centres, rotations, spacings):
        scores = _scores(sampler, centre, rotation, float(spacing), points, expected, local, scales, turns)
        s, a, d = np.unravel_index(int(scores.argmax()), scores.shape)
        offset = local[d].double().numpy()
        chosen["centres"].append(centre + rotation @ offset)
        chosen["rotations"].append(rotation @ _turn(turns[a : a + 1].double())[0].numpy())
        chosen["spacings"].append(spacing * float(scales[s]))
        chosen["offsets"].append(offset)
        chosen["scales"].append(float(scales[s]))
        chosen["turns"].append(math.degrees(float(turns[a])))
        chosen["scores"].append(float(scores[s, a, d]))
    return Placement(**{key: np.array(value) for key, value in chosen.items()})
