"""Realistic C. elegans postures for the synthetic frames: crawling waves, omega turns and coils.

A posture is the worm's tangent angle theta(s) along its body, written in the eigenworm basis of
Stephens, Johnson-Kerner, Bialek & Ryu (2008, PLoS Comput Biol 4: e1000028): the principal
components of the tangent angles of real crawling worms, in which four modes carry about 95% of
the variance. The basis shipped here (`invrender/templates/posture/EigenWorms.csv`, 100 segments x
100 modes, column k the (k+1)-th eigenworm, each of unit norm) is the one the same group publishes
with WormPose (Hebert, Ahamed, Costa, O'Shaughnessy & Stephens 2021), BSD-3-Clause; see the
ATTRIBUTION.md beside it.

theta = sum_k a_k e_k. Modes 1 and 2 together make the travelling wave of crawling (their
amplitudes lie near a ring, the wave's phase going round it), mode 3 bends the whole body into a C:
large |a3| makes omega turns and, beyond about 20, coils where the body crosses itself (Broekmans,
Rodgers, Ryu & Stephens 2016, eLife 5: e17227, whose coiled shapes span |a3| up to about 30, the
range WormPose's generator samples evenly). The amplitudes' distribution below is ours, not a
published one: three kinds of posture with the weights and ranges of KINDS, chosen so that coils
and omega turns are frequent enough to be measured (on a real plate they are rarer).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

#: Modes used: the first five carry nearly all of a real worm's posture variance.
MODES = 5
#: Body length range (px) and max width as a fraction of the length, for a 256-px frame.
LENGTH = (70.0, 120.0)
LENGTH_PER_WIDTH = (12.0, 16.0)  # adult C. elegans: about 1 mm long, 60-80 um wide
REFERENCE_SIZE = 256


@dataclass(frozen=True)
class PostureKind:
    """A kind of posture: how often it is drawn, the radius of (a1, a2) on the crawling ring and
    |a3| (the C-bend), each drawn uniformly in its range, and the spread of a4 and a5."""

    name: str
    weight: float
    ring: tuple[float, float]
    bend: tuple[float, float]
    higher_std: float


KINDS = (
    PostureKind("crawl", 0.5, ring=(3.5, 7.0), bend=(0.0, 4.0), higher_std=1.0),
    PostureKind("turn", 0.3, ring=(0.0, 5.0), bend=(6.0, 18.0), higher_std=1.5),
    PostureKind("coil", 0.2, ring=(0.0, 4.0), bend=(18.0, 30.0), higher_std=1.5),
)


def eigenworms_path() -> Path:
    """The shipped eigenworm basis, package data (`data/posture` links there)."""
    return Path(__file__).resolve().parents[2] / "templates" / "posture" / "EigenWorms.csv"


@cache
def eigenworms() -> np.ndarray:
    """(100, MODES) float64: column k is the (k+1)-th eigenworm over 100 body segments, head first."""
    return np.loadtxt(eigenworms_path(), delimiter=",")[:, :MODES]


def draw_modes(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A posture kind's name and its amplitudes `(MODES,)` drawn as KINDS says."""
    kind = KINDS[rng.choice(len(KINDS), p=[k.weight for k in KINDS])]
    radius, phase = rng.uniform(*kind.ring), rng.uniform(0.0, 2 * np.pi)
    modes = np.empty(MODES)
    modes[0], modes[1] = radius * np.cos(phase), radius * np.sin(phase)
    modes[2] = rng.choice([-1.0, 1.0]) * rng.uniform(*kind.bend)
    modes[3:] = rng.normal(0.0, kind.higher_std, MODES - 3)
    return kind.name, modes


def tangent_angles(modes: np.ndarray) -> np.ndarray:
    """(100,) rad: the tangent angle of each body segment for amplitudes `modes (MODES,)`."""
    return eigenworms() @ modes


def centreline(theta: np.ndarray, length: float, n_points: int) -> np.ndarray:
    """`(n_points, 2)` points [x, y] px, uniform in arc length from the head at the origin, of a
    body of `length` px whose segments (equal in length) point along the angles `theta (S,)` rad."""
    segment = length / len(theta)
    vertices = np.zeros((len(theta) + 1, 2))
    vertices[1:] = np.cumsum(segment * np.stack([np.cos(theta), np.sin(theta)], axis=1), axis=0)
    arc = np.linspace(0.0, length, len(vertices))
    wanted = np.linspace(0.0, length, n_points)
    return np.stack([np.interp(wanted, arc, vertices[:, c]) for c in range(2)], axis=1)


def draw_posture(rng: np.random.Generator, n_points: int, body_size: int) -> tuple[str, np.ndarray, float]:
    """A random worm: its posture kind, `(n_points, 2)` centreline px from the origin at a random
    heading, and its maximum width px; lengths and widths are those of a `body_size`-px frame."""
    kind, modes = draw_modes(rng)
    scale = body_size / REFERENCE_SIZE
    length = rng.uniform(*LENGTH) * scale
    theta = tangent_angles(modes) + rng.uniform(0.0, 2 * np.pi)
    return kind, centreline(theta, length, n_points), length / rng.uniform(*LENGTH_PER_WIDTH)
