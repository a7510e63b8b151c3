import json

import numpy as np
import pytest

from invrender.core.geometry.spline_io import read_splines
from invrender.core.io import read_image
from invrender.methods.spline_refine.synth import (
    INIT_NAMES,
    bend,
    body_thickness,
    displace,
    make_body,
    make_frame,
    pca_compress,
    rotate,
    scale,
    straight_line,
    write_spline_dataset,
)


def _label(seed=0):
    return make_body(np.random.default_rng(seed), 128)["points"]


def test_frame_is_deterministic_for_a_seed():
    image_a, bodies_a = make_frame(np.random.default_rng(7), 3)
    image_b, bodies_b = make_frame(np.random.default_rng(7), 3)
    np.testing.assert_array_equal(image_a, image_b)
    for a, b in zip(bodies_a, bodies_b):
        np.testing.assert_array_equal(a["points"], b["points"])
        np.testing.assert_array_equal(a["widths"], b["widths"])
    image_c, _ = make_frame(np.random.default_rng(8), 3)
    assert not np.array_equal(image_a, image_c)


def test_frame_shapes_and_value_range():
    image, bodies = make_frame(np.random.default_rng(0), 3, size=96)
    assert image.shape == (96, 96) and image.dtype == np.float32
    assert -0.1 < image.min() and image.max() < 1.1
    assert len(bodies) == 3
    for body in bodies:
        assert body["points"].shape == (100, 2) and body["widths"].shape == (100,)


@pytest.mark.parametrize("size", [64, 128])
def test_bodies_have_the_specified_shape_and_stay_inside(size):
    rng = np.random.default_rng(1)
    for _ in range(10):
        for body in make_frame(rng, 3, size)[1]:
            points, widths = body["points"], body["widths"]
            length = np.linalg.norm(np.diff(points, axis=0), axis=1).sum()
            assert 0.35 * size - 1e-9 <= length <= 0.7 * size + 1e-9
            assert 4 * size / 128 <= widths.max() <= 7 * size / 128
            assert widths[0] == widths[-1] == pytest.approx(size / 128)
            margin = widths.max()
            assert points.min() >= margin - 1e-9 and points.max() <= size - 1 - margin + 1e-9


def test_two_bodies_overlap():
    rng = np.random.default_rng(2)
    overlapping = 0
    for _ in range(10):
        _, bodies = make_frame(rng, 2, size=96)
        masks = [body_thickness(b, 96, supersample=1) > 0 for b in bodies]
        overlapping += np.any(masks[0] & masks[1])
    assert overlapping >= 9


def test_image_is_darker_on_bodies():
    rng = np.random.default_rng(3)
    for n in (1, 3):
        image, bodies = make_frame(rng, n)
        thickness = sum(body_thickness(b, 128, supersample=1) for b in bodies)
        on = thickness > 0.5 * max(b["widths"].max() for b in bodies)
        off = thickness == 0
        assert image[on].mean() < image[off].mean() - 0.1


def test_displace_moves_every_point_by_the_distance():
    points = _label()
    moved = displace(points, 10.0, np.random.default_rng(0))
    step = moved - points
    np.testing.assert_allclose(np.linalg.norm(step, axis=1), 10.0)
    np.testing.assert_allclose(step, step[:1].repeat(len(points), axis=0))


def test_rotate_keeps_distances_to_the_centroid():
    points = _label()
    centre = points.mean(axis=0)
    turned = rotate(points, -20.0)
    np.testing.assert_allclose(turned.mean(axis=0), centre)
    np.testing.assert_allclose(np.linalg.norm(turned - centre, axis=1), np.linalg.norm(points - centre, axis=1))
    before, after = points[0] - centre, turned[0] - centre
    angle = np.degrees(np.arctan2(before[0] * after[1] - before[1] * after[0], before @ after))
    assert angle == pytest.approx(-20.0)


def test_scale_scales_distances_to_the_centroid():
    points = _label()
    centre = points.mean(axis=0)
    shrunk = scale(points, 0.7)
    np.testing.assert_allclose(shrunk.mean(axis=0), centre)
    np.testing.assert_allclose(shrunk - centre, 0.7 * (points - centre))


def test_bend_changes_the_posture_by_the_asked_rms_angle_and_keeps_lengths_and_centroid():
    points = _label()
    steps = np.diff(points, axis=0) @ [1, 1j]
    changes = []
    for seed in range(200):
        bent = bend(points, 0.2, np.random.default_rng(seed))
        np.testing.assert_allclose(bent.mean(axis=0), points.mean(axis=0), atol=1e-9)
        np.testing.assert_allclose(
            np.linalg.norm(np.diff(bent, axis=0), axis=1), np.linalg.norm(np.diff(points, axis=0), axis=1)
        )
        change = np.angle((np.diff(bent, axis=0) @ [1, 1j]) / steps)  # each segment's turn, rad
        # Smooth (a few cosine modes, no jumps between segments) and without a net turn of the heading.
        assert np.abs(np.diff(change)).max() < 0.1
        assert abs(change.mean()) < 0.05
        changes.append(change)
    rms = np.sqrt(np.mean(np.square(changes)))
    assert rms == pytest.approx(0.2, rel=0.1)
    np.testing.assert_allclose(bend(points, 0.0, np.random.default_rng(0)), points, atol=1e-9)


def test_straight_line_keeps_the_ends():
    points = _label()
    line = straight_line(points)
    assert line.shape == points.shape
    np.testing.assert_allclose(line[[0, -1]], points[[0, -1]])
    step = np.diff(line, axis=0)
    np.testing.assert_allclose(step, step[:1].repeat(len(step), axis=0), atol=1e-12)
    assert straight_line(points, k=12).shape == (12, 2)


def test_pca_compress_keeps_centroids_and_is_exact_at_full_rank():
    labels = np.stack([_label(seed) for seed in range(30)])
    compressed = pca_compress(labels, k=2)
    assert compressed.shape == labels.shape
    np.testing.assert_allclose(compressed.mean(axis=1), labels.mean(axis=1), atol=1e-9)
    assert np.abs(compressed - labels).max() > 1.0
    np.testing.assert_allclose(pca_compress(labels, k=30), labels, atol=1e-9)


def test_written_dataset_is_readable_and_deterministic(tmp_path):
    write_spline_dataset(tmp_path / "a", bodies=2, frames=2, size=64, seed=5)
    write_spline_dataset(tmp_path / "b", bodies=2, frames=2, size=64, seed=5)
    root = tmp_path / "a"
    for f in range(2):
        name = f"frame_{f:04d}"
        image = read_image(root / f"{name}.tif")
        assert image.shape == (64, 64)
        np.testing.assert_array_equal(image, read_image(tmp_path / "b" / f"{name}.tif"))
        (labels,) = read_splines(root / "labels" / f"{name}.json")
        assert [r["id"] for r in labels] == [0, 1]
        assert all(r["points"].shape == (100, 2) and r["widths"].shape == (100,) for r in labels)
        for init in INIT_NAMES:
            path = root / "inits" / init / f"{name}.json"
            (records,) = read_splines(path)
            assert [r["id"] for r in records] == [0, 1]
            assert all(r["points"].shape == (12, 2) and r["widths"] is None for r in records)
            assert path.read_bytes() == (tmp_path / "b" / "inits" / init / f"{name}.json").read_bytes()
        (straight,) = read_splines(root / "inits" / "straight" / f"{name}.json")
        for label, line in zip(labels, straight):
            np.testing.assert_allclose(line["points"][[0, -1]], label["points"][[0, -1]])
    meta = json.loads((root / "dataset.json").read_text())
    assert (meta["bodies"], meta["frames"], meta["size"], meta["seed"]) == (2, 2, 64, 5)
    assert meta["perturbations"]["rotation"]["degrees"] == 20.0
