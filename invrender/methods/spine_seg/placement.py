"""Placing the template on every vertebra before the fit: a search over similarity transforms.

The centroids say which vertebra is where, but not exactly where its body is (a label's centroid
lies 10-15 mm behind the body's, in the canal; an annotator's click is a few mm off), nor the
vertebra's size or its rotation about the spine's axis. The gradient-based fit only corrects what
lies within its capture range, a few mm: a template started 12 mm behind its body fits the body to
the posterior elements. So each vertebra is first placed by an exhaustive search.

In the vertebra's frame from the centroids (`vertebra_frames`: superior s, posterior p, left l, h the
centroid spacing), a candidate is

    x = c + R (delta + h sigma Y(psi) q)        q the template in units of its centroid spacing,
                                                delta (3,) mm along (s, p, l), sigma the scale,
                                                Y(psi) a rotation by psi about s

and its score the normalised cross-correlation, over probe points around the template's surface,
between the CT (low-passed) and the template's expected appearance there: bone inside, soft tissue
outside, `1 / (1 + exp(d / width))` of the signed distance d. Offsets along s stay within a quarter
of a spacing, so no candidate reaches the next vertebra. The winner gives each vertebra's new frame
(c + R delta, R Y(psi), h sigma). A vertebra whose winning offset strays from the chain's median by
more than `consensus` mm (it locked onto a rib or an organ, or is cut by the field of view) takes
its best candidate within that distance of the median instead: the centroids of one file follow one
convention, so their offsets to the bodies agree along the spine.
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

    def select(self, chosen: slice) -> "Placement":
        """The placement of some of the vertebrae."""
        return Placement(*(getattr(self, name)[chosen] for name in self.__dataclass_fields__))

    def summary(self, names: list[str]) -> dict:
        """Per vertebra name: what the search moved, for the metrics file."""
        return {name: {"offset_mm": [round(float(v), 2) for v in offset], "scale": round(float(scale), 3),
                       "rotation_deg": round(float(turn), 1), "score": round(float(score), 3)}
                for name, offset, scale, turn, score in zip(names, self.offsets, self.scales, self.turns, self.scores)}


def probe_points(template_vertices: np.ndarray, faces: np.ndarray, reference_spacing: float, count: int, band: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` points (count, 3) around the template's surface in units of its centroid spacing:
    uniform on the surface by area, offset by an isotropic Gaussian of `band` / 2 mm; and their
    signed distance (count,) mm to the template (exact, libigl)."""
    vertices = torch.from_numpy(np.asarray(template_vertices, dtype=np.float64))
    points, _ = sample_around_surfaces(vertices[None], torch.from_numpy(np.asarray(faces)), count, [band / 2], torch.Generator().manual_seed(seed))
    distance = signed_distance(points[0], vertices, faces)
    return (points[0] / reference_spacing).float(), distance.float()


def _turn(angle: torch.Tensor) -> torch.Tensor:
    """(A, 3, 3) rotations by `angle` (A,) radians about the frame's first axis (superior)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    return torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, c, -s], -1), torch.stack([zero, s, c], -1)], -2)


def _grid(reach: float, step: float) -> torch.Tensor:
    count = int(np.floor(reach / step + 1e-9))
    return torch.arange(-count, count + 1, dtype=torch.float32) * step


def _scores(sampler: VolumeSampler, centre: np.ndarray, rotation: np.ndarray, spacing: float, points: torch.Tensor, expected: torch.Tensor,
            offsets: torch.Tensor, scales: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """(S, A, D) the normalised cross-correlation of every candidate: scales (S,), turns (A,)
    radians, offsets (D, 3) mm in the frame."""
    frame = torch.as_tensor(rotation, dtype=torch.float32)
    shaped = spacing * scales[:, None, None, None] * torch.einsum("aij,nj->ani", _turn(turns), points)[None]  # (S, A, N, 3) frame mm
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


def place_vertebrae(sampler: VolumeSampler, centres: np.ndarray, rotations: np.ndarray, spacings: np.ndarray,
                    probe: tuple[torch.Tensor, torch.Tensor], cfg: DictConfig) -> Placement:
    """Search every vertebra's similarity transform (module docstring) in the CT seen by `sampler`
    (one channel, low-passed). `centres` (M, 3), `rotations` (M, 3, 3), `spacings` (M,): the
    frames from the centroids, chain order. `probe`: template points (N, 3) and their signed
    distances (N,) from `probe_points`. `cfg`: the config's `placement` section.

    Two stages: the offset alone over the whole reach (scale 1, no rotation), with the chain's
    consensus; then offset, scale and rotation together, the offset within one step of the first
    stage's."""
    points, distance = probe
    expected = torch.sigmoid(-distance / float(cfg.edge_width))
    expected = (expected - expected.mean()) / expected.std()
    step = float(cfg.step)
    unit, still = torch.ones(1), torch.zeros(1)
    scales = torch.tensor(list(cfg.scales), dtype=torch.float32)
    turns = torch.deg2rad(torch.tensor(list(cfg.rotations), dtype=torch.float32))
    coarse = []
    for centre, rotation, spacing in zip(centres, rotations, spacings):
        offsets = torch.cartesian_prod(_grid(float(cfg.superior_reach) * spacing, step), _grid(float(cfg.posterior_reach), step),
                                       _grid(float(cfg.left_reach), step))
        coarse.append((_scores(sampler, centre, rotation, float(spacing), points, expected, offsets, unit, still)[0, 0], offsets))
    starts = _consensus(coarse, float(cfg.consensus))
    local = torch.cartesian_prod(*[_grid(step, step / 2)] * 3)
    chosen = {key: [] for key in ("centres", "rotations", "spacings", "offsets", "scales", "turns", "scores")}
    for start, centre, rotation, spacing in zip(starts, centres, rotations, spacings):
        offsets = start + local
        scores = _scores(sampler, centre, rotation, float(spacing), points, expected, offsets, scales, turns)
        s, a, d = np.unravel_index(int(scores.argmax()), scores.shape)
        offset = offsets[d].double().numpy()
        chosen["centres"].append(centre + rotation @ offset)
        chosen["rotations"].append(rotation @ _turn(turns[a : a + 1].double())[0].numpy())
        chosen["spacings"].append(spacing * float(scales[s]))
        chosen["offsets"].append(offset)
        chosen["scales"].append(float(scales[s]))
        chosen["turns"].append(math.degrees(float(turns[a])))
        chosen["scores"].append(float(scores[s, a, d]))
    return Placement(**{key: np.array(value) for key, value in chosen.items()})


def _consensus(results: list[tuple[torch.Tensor, torch.Tensor]], consensus: float) -> list[torch.Tensor]:
    """Each vertebra's best offset (3,) among `results` (scores (D,), offsets (D, 3)) within
    `consensus` mm of the median of their unconstrained best offsets."""
    median = torch.stack([offsets[int(scores.argmax())] for scores, offsets in results]).median(dim=0).values
    starts = []
    for scores, offsets in results:
        allowed = (offsets - median).norm(dim=1) <= consensus
        starts.append(offsets[int(torch.where(allowed, scores, torch.tensor(-torch.inf)).argmax())])
    return starts
