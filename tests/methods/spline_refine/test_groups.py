"""Whole plates: bodies that cannot touch are grouped apart and fitted in their own crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invrender.config import compose_config
from invrender.core.metrics import matched_dtw
from invrender.methods.spline_refine.fit import background_nodes, fit_problems, refine_frame
from invrender.methods.spline_refine.groups import (
    Crop,
    batches_by_body_count,
    crops,
    densify,
    interacting_groups,
    local_background,
    nearest_group,
)
from invrender.methods.spline_refine.synth import make_frame, rotate


def line(x0, y0, x1, y1, n=5):
    return np.stack([np.linspace(x0, x1, n), np.linspace(y0, y1, n)], axis=1)


def test_densify_keeps_the_ends_and_spacing():
    dense = densify(line(0, 0, 10, 0, n=2), spacing=1.0)
    assert np.allclose(dense[[0, -1]], [[0, 0], [10, 0]])
    assert np.diff(dense[:, 0]).max() <= 1.0 + 1e-12


def test_groups_join_bodies_within_twice_the_reach_and_chains_of_them():
    polylines = [line(0, 0, 50, 0), line(0, 25, 50, 25), line(0, 50, 50, 50), line(200, 0, 250, 0)]
    # 0-1 and 1-2 are 25 px apart (< 2 * 15): one chain; 3 is far from all.
    assert interacting_groups(polylines, reach=15.0) == [[0, 1, 2], [3]]
    assert interacting_groups(polylines, reach=10.0) == [[0], [1], [2], [3]]


def test_groups_are_decided_by_the_closest_points_not_the_boxes():
    # Two parallel diagonal bodies whose bounding boxes overlap but whose lines stay 35.4 px apart.
    polylines = [line(0, 0, 100, 100), line(50, 0, 150, 100)]
    assert interacting_groups(polylines, reach=15.0) == [[0], [1]]
    assert interacting_groups(polylines, reach=18.0) == [[0, 1]]


def test_a_crop_is_the_groups_box_grown_by_the_reach_within_the_image():
    polylines = [line(5, 40, 60, 40), line(100, 10, 120, 90)]
    boxes = crops(polylines, [[0], [1]], reach=10.0, shape=(100, 125))
    assert (boxes[0].y0, boxes[0].y1, boxes[0].x0, boxes[0].x1) == (30, 51, 0, 71)
    assert (boxes[1].y0, boxes[1].y1, boxes[1].x0, boxes[1].x1) == (0, 100, 90, 125)


def test_a_crop_grows_about_its_centre_and_stays_within_the_image():
    grown = Crop([0], 40, 60, 20, 30).grown_to(30, 20, (100, 105))
    assert (grown.y0, grown.y1, grown.x0, grown.x1) == (35, 65, 15, 35)
    at_edges = Crop([0], 2, 12, 95, 105).grown_to(30, 40, (100, 105))  # shifted back inside
    assert (at_edges.y0, at_edges.y1, at_edges.x0, at_edges.x1) == (0, 30, 65, 105)
    assert at_edges.members == [0]


def test_crops_of_groups_of_as_many_bodies_are_fitted_side_by_side():
    boxes = [Crop(members, 0, 10, 0, 10) for members in ([0], [1, 2], [3], [4, 5], [6, 7, 8])]
    assert batches_by_body_count(boxes) == [[0, 2], [1, 3], [4]]


def test_background_nodes_keep_the_spacing_of_the_tuned_frame_size():
    assert background_nodes(6, 128, 128.0) == 6
    assert background_nodes(6, 64, 128.0) == 4  # 5 gaps of 25.6 px over 128 px: 2.5 over 64
    assert background_nodes(6, 20, 128.0) == 2
    assert background_nodes(0, 64, 128.0) == 0  # no grid stays no grid
    assert background_nodes(6, 64, None) == 6


def test_nearest_group_partitions_the_image_by_distance():
    polylines = [line(10, 10, 10, 90), line(90, 10, 90, 90)]
    labels, distance = nearest_group(polylines, [[0], [1]], (100, 100))
    assert (labels[:, :45] == 0).all() and (labels[:, 56:] == 1).all()
    brute = np.min([np.hypot(np.arange(100)[None, :] - x, 0 * np.arange(100)[:, None]) for x in (10, 90)], axis=0)
    inner = slice(10, 91)  # away from the ends, the distance is the horizontal one
    assert np.allclose(distance[inner], brute[inner], atol=0.51)


def test_local_background_fills_a_hidden_region_from_its_surroundings():
    y, x = np.mgrid[0:64, 0:64]
    background = 0.5 + 0.002 * x
    image = background.copy()
    hidden = (np.abs(x - 32) < 4) & (np.abs(y - 32) < 20)
    image[hidden] = 0.1  # a dark body
    filled = local_background(image, hidden)
    assert np.abs(filled[hidden] - background[hidden]).max() < 0.01


@pytest.fixture(scope="module")
def two_far_bodies():
    """A 256x256 plate with two bodies of a 128-px frame's size, far apart, and inits rotated 20
    degrees (the first seed whose bodies fall in two groups with crops smaller than the frame)."""
    for seed in range(50):
        image, labels = make_frame(np.random.default_rng(seed), 2, size=256, body_size=128, crossing=0.0)
        records = [{"id": i, "points": rotate(b["points"], 20.0)[::9], "widths": None} for i, b in enumerate(labels)]
        polylines = [r["points"] for r in records]
        groups = interacting_groups(polylines, 25.0)
        if len(groups) == 2 and sum(c.area for c in crops(polylines, groups, 25.0, image.shape)) < image.size:
            return image, labels, records
    raise AssertionError("no seed gives two separate bodies")


def test_a_frame_of_two_separate_bodies_is_fitted_in_two_crops_as_well_as_jointly(two_far_bodies):
    image, labels, records = two_far_bodies
    results = {}
    for enabled in (True, False):
        # The default schedule: a short one converges further in the frame's larger length unit.
        cfg = compose_config("spline_refine", "default", [f"groups.enabled={enabled}"])
        fitted = refine_frame(image, records, cfg, torch.device("cpu"), seed=0)
        results[enabled] = fitted
    grouped, joint = results[True], results[False]
    assert any(p.name.startswith("group 2/2") for p in grouped.phases)
    assert not any(p.name.startswith("group") for p in joint.phases)
    truth = [b["points"] for b in labels]
    dtw_grouped = matched_dtw(truth, [r["points"] for r in grouped.records])[1]
    dtw_joint = matched_dtw(truth, [r["points"] for r in joint.records])[1]
    before = matched_dtw(truth, [r["points"] for r in records])[1]
    assert min(before) > 1.2  # the inits are well off
    assert max(dtw_grouped) < 0.5 and max(dtw_grouped) < max(dtw_joint) + 0.1, (dtw_grouped, dtw_joint)
    assert grouped.render.shape == image.shape and np.isfinite(grouped.render).all()
    assert [r["id"] for r in grouped.records] == [0, 1]


def test_crops_fitted_side_by_side_are_fitted_as_each_alone():
    """`fit_problems` runs crops as problems of one model: each crop's result is that of the crop
    fitted alone (one schedule with two starts per crop; no gradient noise, whose draws depend on the batch;
    no restarts, each of which is a problem of its own after the side-by-side fit)."""
    cfg = compose_config("spline_refine", "default", ["render.max_points=20", "restart.enabled=false"])
    cfg.phases = [
        {"name": "background", "train": ["background"], "lr": 1e-2, "steps": 5, "options": {"draw_splines": False}},
        {
            "name": "shape",
            "train": ["splines", "background", "appearance"],
            "lr": 1e-2,
            "steps": 12,
            "seeds": 2,
            "ramps": {"blur": {"start": 2.0, "end": 0.0, "until": 0.5}},
        },
        {
            "name": "finetune",
            "train": ["splines", "background", "appearance", "filter", "blob"],
            "lr": 1e-4,
            "steps": 3,
        },
    ]
    images, inits = [], []
    for seed in (1, 2):
        image, labels = make_frame(np.random.default_rng(seed), 1, size=64, body_size=64)
        images.append(image.astype(np.float32))
        inits.append([{"id": seed, "points": rotate(labels[0]["points"], 10.0)[::9], "widths": None}])
    device = torch.device("cpu")
    together = fit_problems(images, inits, cfg, device, seed=0, polarity=-1.0, unit=128.0)
    for image, init, fitted in zip(images, inits, together):
        (alone,) = fit_problems([image], [init], cfg, device, seed=0, polarity=-1.0, unit=128.0)
        assert [p.name for p in fitted.phases] == ["background", "shape", "finetune"]
        assert fitted.phases[1].seed_losses == pytest.approx(alone.phases[1].seed_losses, rel=1e-4)
        np.testing.assert_allclose(fitted.records[0]["points"], alone.records[0]["points"], atol=1e-3)
        np.testing.assert_allclose(fitted.render, alone.render, atol=1e-4 * np.ptp(image))
        assert list(fitted.scenes) == [(init[0]["id"],)]
