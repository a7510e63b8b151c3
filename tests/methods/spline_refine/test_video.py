"""Time-lapses: the synthetic movie, and refinement by propagation with lost bodies found again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import FAST
from invrender.cli import main
from invrender.core.geometry.spline_io import read_splines, write_splines
from invrender.methods.spline_refine.synth_movie import DROPPED, make_movie, write_spline_movie
from invrender.methods.spline_refine.video import is_lost, restart_records

SHORT = ["video.phases.0.steps=3", "video.phases.1.steps=2"]


def test_the_movie_is_deterministic_inside_the_frame_and_jumps_where_frames_were_dropped():
    stack, labels, drops = make_movie(np.random.default_rng(4), 2, 30, size=96)
    again, labels_again, _ = make_movie(np.random.default_rng(4), 2, 30, size=96)
    assert np.array_equal(stack, again) and stack.shape == (30, 96, 96) and len(drops) == 3
    points = np.array([[b["points"] for b in frame] for frame in labels])  # (frames, bodies, 100, 2)
    assert np.array_equal(points, np.array([[b["points"] for b in frame] for frame in labels_again]))
    assert points.min() >= 0 and points.max() <= 95
    moves = np.abs(np.diff(points, axis=0)).mean(axis=(1, 2, 3))  # mean move between frames, px
    usual = np.median(moves)
    assert all(moves[d - 1] > 3 * usual for d in drops), (moves, drops)
    assert usual < 1.5  # bodies crawl slowly between ordinary frames (the wave moves them most)
    assert DROPPED > 1


def test_is_lost_compares_the_own_loss_with_the_last_full_fit():
    assert is_lost(None, 0.01, 2.0)
    assert is_lost(0.03, 0.01, 2.0) and not is_lost(0.015, 0.01, 2.0)
    assert not is_lost(0.5, None, 2.0)  # no reference yet: nothing to compare with


def test_a_lost_body_restarts_from_the_detector_init_nearest_to_it_the_others_stay():
    line = lambda x: np.stack([np.full(10, x), np.linspace(0, 40, 10)], axis=1)  # noqa: E731
    fitted = [
        {"id": 7, "points": line(10.0), "widths": np.ones(10)},
        {"id": 9, "points": line(60.0), "widths": np.ones(10)},
    ]
    detector = [{"id": 0, "points": line(64.0)[::-1], "widths": None}, {"id": 1, "points": line(12.0), "widths": None}]
    restarts = restart_records(fitted, [9], detector)
    assert [r["id"] for r in restarts] == [7, 9]
    assert np.array_equal(restarts[0]["points"], fitted[0]["points"])  # kept its propagated result
    assert np.array_equal(restarts[1]["points"], detector[0]["points"])  # the reversed line at x = 64


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    folder = tmp_path_factory.mktemp("movie")
    write_spline_movie(folder, bodies=2, frames=4, size=64, seed=2)
    return folder


@pytest.mark.parametrize("init", ["detector", "first"])
def test_propagate_refines_every_frame_of_a_stack(tmp_path, movie, init):
    out = tmp_path / "out"
    command = ["spline-refine", str(movie / "movie.tif"), "--init", str(movie / "inits" / init / "movie.json")]
    code = main([*command, "--propagate", *FAST, *SHORT, "--out", str(out), "--device", "cpu", "-q"])
    assert code == 0
    frames = read_splines(out / "movie.splines.json")
    assert len(frames) == 4 and all(len(f) == 2 for f in frames)
    record = json.loads((out / "manifest.json").read_text())["inputs"][0]
    assert record["status"] == "done"
    assert {"refitted", "lost"} <= set(record["result"])
    assert all((out / f"movie.overlay.{f:04d}.png").is_file() for f in range(4))


def test_propagate_refuses_an_init_with_some_but_not_all_frames(tmp_path, movie, capsys):
    init = tmp_path / "two.json"
    write_splines(init, read_splines(movie / "inits" / "detector" / "movie.json")[:2], image="movie.tif")
    out = tmp_path / "out"
    code = main(["spline-refine", str(movie / "movie.tif"), "--init", str(init), "--propagate", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "2 frame(s) of splines but the image has 4" in err and "two.json" in err
    assert not (out / "movie.splines.json").exists()
