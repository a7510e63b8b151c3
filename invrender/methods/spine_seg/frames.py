"""The frame of every vertebra of a spine from its body centroids: shared by the synthetic CTs
(`methods/spine_seg/synth.py`, which places ribs and organs around the vertebrae) and spine-seg (whose
template lives in these frames)."""

from __future__ import annotations

import numpy as np

#: NIfTI world is RAS+: posterior is -y.
WORLD_POSTERIOR = np.array([0.0, -1.0, 0.0])
#: VerSe's extra thoracic vertebra T13 (code 28) sits between T12 (19) and L1 (20).
T13_CODE, T13_POSITION = 28, 19.5


def cranial_order(label: int) -> float:
    """Sort key: smaller = more cranial (VerSe codes run head to tail, except T13)."""
    return T13_POSITION if label == T13_CODE else float(label)


def chain_frames(points: np.ndarray, posterior: np.ndarray = WORLD_POSTERIOR) -> tuple[np.ndarray, np.ndarray]:
    """The canonical frames of a chain of vertebrae with body centroids `points` (M, 3) world mm,
    RAS+, in chain order (cranial first), at least two: rotations (M, 3, 3) and spacings h (M,) mm.

    The columns of each rotation R are the superior axis s (from the next caudal towards the next
    cranial centroid: central difference, one-sided at the ends), the posterior axis p (`posterior`,
    world -y by default, made orthogonal to s) and l = s x p (towards the patient's right). Canonical coordinates are
    q = R^T (x - c). h is the mean distance to the neighbouring centroids.
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 2:
        raise ValueError(f"{len(points)} centroid(s): the superior axis needs at least 2 vertebrae")
    rotations, spacings = [], []
    for index in range(len(points)):
        above, below = points[max(index - 1, 0)], points[min(index + 1, len(points) - 1)]
        superior = _unit(above - below)
        back = _unit(posterior - (posterior @ superior) * superior)
        rotations.append(np.column_stack([superior, back, np.cross(superior, back)]))
        neighbours = points[[i for i in (index - 1, index + 1) if 0 <= i < len(points)]]
        spacings.append(float(np.linalg.norm(neighbours - points[index], axis=1).mean()))
    return np.stack(rotations), np.array(spacings)


def vertebra_frames(
    centroids: dict[int, np.ndarray], posterior: np.ndarray = WORLD_POSTERIOR
) -> dict[int, tuple[np.ndarray, float]]:
    """`chain_frames` of body centroids `{VerSe label: (3,) world mm}`, chained in cranial order:
    `{label: (R (3, 3), h mm)}`."""
    labels = sorted(centroids, key=cranial_order)
    rotations, spacings = chain_frames(np.array([centroids[label] for label in labels]), posterior)
    return {label: (rotation, float(spacing)) for label, rotation, spacing in zip(labels, rotations, spacings)}


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    if norm < 1e-9:
        raise ValueError("two neighbouring centroids coincide, or the spine runs posterior: no frame")
    return vector / norm
