"""Realistic worm postures for the synthetic frames (methods/spline_refine/postures.py, synth.py)."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from invrender.methods.spline_refine.postures import (
    KINDS,
    LENGTH,
    centreline,
    draw_posture,
    eigenworms,
    eigenworms_path,
    tangent_angles,
)
from invrender.methods.spline_refine.synth import body_thickness, make_frame, taper

#: The SHA-256 of WormPose's extras/EigenWorms.csv (see its ATTRIBUTION.md).
EIGENWORMS_SHA256 = "bc806b9073972f6c6f6b0c48ecf8b9278bff2433ee2b39906423d58b156d930f"


def test_the_shipped_basis_is_wormposes_file_and_orthonormal():
    assert hashlib.sha256(eigenworms_path().read_bytes()).hexdigest() == EIGENWORMS_SHA256
    full = np.loadtxt(eigenworms_path(), delimiter=",")
    assert full.shape == (100, 100)
    assert np.abs(full.T @ full - np.eye(100)).max() < 1e-4
    assert eigenworms().shape == (100, 5)


def test_mode_three_bends_the_body_into_a_c():
    """A C-shaped worm (constant curvature) projects mostly onto the third eigenworm."""
    s = (np.arange(100) + 0.5) / 100
    theta = 2 * np.pi * (s - 0.5)  # one full turn of the heading along the body
    amplitudes = eigenworms().T @ theta
    assert np.argmax(np.abs(amplitudes)) == 2
    assert np.abs(amplitudes[2]) ** 2 > 0.7 * (theta**2).sum()


def test_centreline_has_the_length_and_follows_the_angles():
    theta = np.pi * (np.arange(100) + 0.5) / 100  # a half circle, the angle at each segment's middle
    points = centreline(theta, 100.0, 200)
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    assert steps.sum() == pytest.approx(100.0, rel=1e-3)
    assert steps.std() < 1e-2 * steps.mean()  # uniform in arc length
    radius = 100.0 / np.pi
    assert np.linalg.norm(points[-1] - points[0]) == pytest.approx(2 * radius, rel=1e-2)


def test_draw_posture_gives_every_kind_with_lengths_and_widths_in_range():
    rng = np.random.default_rng(0)
    kinds, lengths = Counter(), []
    for _ in range(300):
        kind, points, width = draw_posture(rng, 100, 256)
        kinds[kind] += 1
        length = np.linalg.norm(np.diff(points, axis=0), axis=1).sum()
        lengths.append(length)
        assert 12 <= length / width <= 16 + 1e-9
    assert set(kinds) == {k.name for k in KINDS}
    for kind in KINDS:  # drawn at about their weights
        assert abs(kinds[kind.name] / 300 - kind.weight) < 0.1
    assert LENGTH[0] - 1 <= min(lengths) and max(lengths) <= LENGTH[1] + 1


def test_coils_cross_themselves_and_are_drawn_twice_as_dark_there():
    """A coil's body passes over itself; light crossing two layers is absorbed by both."""
    theta = tangent_angles(np.array([0.0, 0.0, 28.0, 0.0, 0.0]))
    points = centreline(theta, 110.0, 100) + 64
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    far_apart = np.abs(np.arange(100)[:, None] - np.arange(100)[None]) > 20
    assert (dist[far_apart] < 2.0).any()  # it crosses itself
    body = {"points": points, "widths": taper(8.0, 1.0)}
    chord = body_thickness(body, 128, supersample=1)
    assert chord.max() > 1.5 * 8.0  # two layers' chords, more than one body's width


def test_eigenworm_frames_are_deterministic_and_label_their_postures():
    image_a, bodies_a = make_frame(np.random.default_rng(3), 4, size=256, crossing=2 / 3, postures="eigenworm")
    image_b, bodies_b = make_frame(np.random.default_rng(3), 4, size=256, crossing=2 / 3, postures="eigenworm")
    np.testing.assert_array_equal(image_a, image_b)
    assert [b["posture"] for b in bodies_a] == [b["posture"] for b in bodies_b]
    assert all(b["posture"] in {k.name for k in KINDS} for b in bodies_a)
    with pytest.raises(ValueError, match="postures"):
        make_frame(np.random.default_rng(3), 1, postures="snakes")
