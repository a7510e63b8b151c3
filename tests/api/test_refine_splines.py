"""`invrender.refine_splines` on arrays: the same result as `invrender spline-refine` on the same
frame (or stack), seed and config, every form of init, and the command line's one-line errors as
exceptions."""

import json

import numpy as np
import pytest
import tifffile
import torch

import invrender
from helpers import FAST, SIZE, make_input, write_init
from invrender.cli import main
from invrender.core.geometry.spline_io import write_splines
from invrender.methods.spline_refine.api import init_frames
from invrender.methods.spline_refine.synth_movie import write_spline_movie

#: A propagated frame's short schedule, as short as FAST.
VIDEO = ["video.phases.0.steps=3", "video.phases.1.steps=2"]


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    """A synthetic frame of two bodies, its init file and the init's records."""
    folder = tmp_path_factory.mktemp("frame")
    image, records = make_input(folder, "worms")
    return image, write_init(folder / "worms.json", records), records


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """A 2-frame synthetic movie of two crawling bodies, with the first frame's init and every frame's."""
    folder = tmp_path_factory.mktemp("movie")
    write_spline_movie(folder, bodies=2, frames=2, size=64, seed=2)
    return folder


def command_line(image, init, out, *options) -> None:
    code = main(["spline-refine", str(image), "--init", str(init), "--out", str(out), "--device", "cpu", *options])
    assert code == 0


def assert_close(got, want, where="") -> None:
    """JSON-like values equal, their floats to float tolerance (the CLI may run on other threads)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-5), where
    else:
        assert got == want, where


def test_refine_splines_gives_what_the_command_line_writes(tmp_path, frame):
    image, init, records = frame
    out = tmp_path / "out"
    command_line(image, init, out, "--seed", "3", *FAST)
    result = invrender.refine_splines(tifffile.imread(image), records, overrides=FAST, device="cpu", seed=3)
    assert_close(result.to_json("worms.tif"), json.loads((out / "worms.splines.json").read_text()))
    assert result.render.shape == (SIZE, SIZE) and result.render.dtype == np.float32
    np.testing.assert_allclose(result.render, tifffile.imread(out / "worms.render.tif"), atol=1e-5)
    [job] = json.loads((out / "manifest.json").read_text())["inputs"]
    assert job["result"]["loss"] == pytest.approx(np.mean(result.frame_losses), rel=1e-5)
    [phases] = result.phases
    assert [(p["name"], p["steps"]) for p in job["result"]["phases"][0]] == [(p.name, p.steps) for p in phases]
    assert [p.steps for p in phases] == [2, 3, 2]
    assert len(result.losses) == 7 and all(np.isfinite(result.losses))
    assert result.warnings == [] and result.refitted is None and result.lost is None
    for spline in result.splines[0]:
        assert spline["points"].shape == (100, 2) and spline["widths"].shape == (100,)
    # A result's records start a fit again, as they are.
    again = init_frames(result.splines)[0]
    assert [r["id"] for r in again[0]] == [0, 1]
    np.testing.assert_array_equal(again[0][1]["widths"], result.splines[0][1]["widths"])


def test_the_active_contour_baseline_gives_what_the_command_line_writes(tmp_path, frame):
    image, init, records = frame
    overrides = ["method=active-contour", "active_contour.max_num_iter=50"]
    command_line(image, init, tmp_path, *overrides)
    result = invrender.refine_splines(tifffile.imread(image), str(init), overrides=overrides, device="cpu")
    assert_close(result.to_json("worms.tif"), json.loads((tmp_path / "worms.splines.json").read_text()))
    assert result.method == "active-contour" and result.render is None and result.losses == []


def test_a_result_with_numpy_ids_saves_as_json(frame):
    """Ids a user made with numpy (np.int64) are written as plain numbers."""
    image, _, records = frame
    init = [{**record, "id": np.int64(7 + i)} for i, record in enumerate(records)]
    overrides = ["method=active-contour", "active_contour.max_num_iter=5"]
    result = invrender.refine_splines(tifffile.imread(image), init, overrides=overrides, device="cpu")
    saved = json.loads(json.dumps(result.to_json("worms.tif")))
    assert [spline["id"] for spline in saved["splines"]] == [7, 8]


def test_a_propagated_stack_gives_what_the_command_line_writes(tmp_path, movie):
    stack, first = movie / "movie.tif", movie / "inits" / "first" / "movie.json"
    overrides = [*FAST, *VIDEO, "video.propagate=true"]
    command_line(stack, first, tmp_path, "--seed", "1", *overrides)
    result = invrender.refine_splines(tifffile.imread(stack), first, overrides=overrides, device="cpu", seed=1)
    assert_close(result.to_json("movie.tif"), json.loads((tmp_path / "movie.splines.json").read_text()))
    np.testing.assert_allclose(result.render, tifffile.imread(tmp_path / "movie.render.tif"), atol=1e-5)
    assert result.render.shape == (2, 64, 64) and len(result.splines) == 2
    [job] = json.loads((tmp_path / "manifest.json").read_text())["inputs"]
    assert result.refitted == job["result"]["refitted"] and result.lost == job["result"]["lost"]
    # the first frame's full schedule, then the second frame's short one (a lost body: then its full one)
    assert [p.steps for p in result.phases[0]] == [2, 3, 2]
    short_fits_replaced = 5 * len(result.refitted)
    assert len(result.losses) == sum(p.steps for phases in result.phases for p in phases) + short_fits_replaced


def test_a_stack_with_an_init_per_frame_refines_each_frame_on_its_own(frame):
    image = tifffile.imread(frame[0])
    records = frame[2]
    result = invrender.refine_splines(np.stack([image, image]), [records, records], overrides=FAST, device="cpu")
    assert result.render.shape == (2, SIZE, SIZE) and len(result.splines) == len(result.phases) == 2
    assert result.refitted is None and len(result.losses) == 2 * 7
    np.testing.assert_array_equal(result.render[1], result.render[0])  # the same frame, init and seed
    for again, first in zip(result.splines[1], result.splines[0]):
        np.testing.assert_array_equal(again["points"], first["points"])


def test_every_init_form_gives_the_same_splines(tmp_path, frame):
    _, init, records = frame
    points = [r["points"] for r in records]
    np.save(tmp_path / "init.npy", np.stack(points))
    one_frame = {
        "arrays": points,
        "point lists": [p.tolist() for p in points],
        "records": records,
        "a tuple of records": tuple(records),
        "an array": np.stack(points),
        "a parsed JSON object": json.loads(init.read_text()),
        "a JSON file": init,
        "its path as text": str(init),
        "a .npy file": tmp_path / "init.npy",
    }
    for form, value in one_frame.items():
        frames, _ = init_frames(value)
        assert len(frames) == 1, form
        assert [r["id"] for r in frames[0]] == [0, 1], form
        for got, want in zip(frames[0], points):
            np.testing.assert_array_equal(got["points"], want, err_msg=form)
    two_frames = {
        "frames of records": [records, records],
        "frames of arrays": [points, points],
        "an array of frames": np.stack([np.stack(points)] * 2),
        "a JSON object with frames": {"frames": [{"splines": records}, {"splines": records}]},
    }
    for form, value in two_frames.items():
        frames, source = init_frames(value)
        assert len(frames) == 2 and source == "init", form
        np.testing.assert_array_equal(frames[1][1]["points"], points[1], err_msg=form)
    assert init_frames(init)[1] == str(init)  # a file's errors name the file


def test_refine_splines_is_silent_reports_its_steps_and_keeps_the_random_state(frame, capsys):
    image = tifffile.imread(frame[0])
    steps = []
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    result = invrender.refine_splines(
        image, frame[2], overrides=FAST, device="cpu", progress=lambda *step: steps.append(step)
    )
    assert torch.equal(torch.rand(3), expected)
    assert [s[3] for s in steps] == result.losses
    assert [(s[0], s[1], s[2]) for s in steps[:2]] == [("background", 0, 2), ("background", 1, 2)]
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"image": np.zeros(16)}, invrender.InputError, "image: image is 1D"),
        ({"image": np.full((SIZE, SIZE), np.nan)}, invrender.InputError, "image: image contains NaN"),
        ({"init": []}, invrender.InputError, "init: no splines"),
        ({"init": 42}, invrender.InputError, "init: expected a JSON object"),
        ({"init": [np.array([[0.0, 0.0], [1.0, np.nan]])]}, invrender.InputError, "init: spline 0: points contain NaN"),
        ({"init": [np.array([[0.0, 0.0], [90.0, 0.0]])]}, invrender.InputError, "init: spline 0 has point [90.0, 0.0]"),
        ({"init": [[[[0.0, 0.0], [1.0, 1.0]]]] * 2}, invrender.InputError, "init: has 2 frame(s) of splines"),
        ({"init": np.zeros((2, 5, 3))}, invrender.InputError, "init: array of shape (2, 5, 3)"),
        ({"init": [{"points": [[0, 0], [1, 1]], "widths": [1, -1]}]}, invrender.InputError, "widths must be"),
        ({"init": "missing.json"}, invrender.InputError, "missing.json: file not found"),
        ({"overrides": "phases.0.steps=3"}, invrender.ConfigError, "a list of key=value"),
        ({"overrides": ["model.knots=1"]}, invrender.ConfigError, "model.knots 1"),
        ({"overrides": ["method=nosuch"]}, invrender.ConfigError, "nosuch"),
        ({"config": "nonexistent"}, invrender.ConfigError, "nonexistent"),
        ({"device": "tpu"}, invrender.ConfigError, "tpu"),
        ({"width": 0}, invrender.ConfigError, "width 0: must be a positive number of pixels"),
        ({"width": float("nan")}, invrender.ConfigError, "width nan: must be a positive"),
        ({"width": "5"}, invrender.ConfigError, "width '5': must be a positive"),
        ({"width": True}, invrender.ConfigError, "width True: must be a positive"),
    ],
)
def test_refine_splines_raises_the_command_lines_errors(frame, kwargs, error, needle):
    kwargs = {"image": tifffile.imread(frame[0]), "init": frame[2], "overrides": FAST, "device": "cpu", **kwargs}
    with pytest.raises(error) as caught:
        invrender.refine_splines(**kwargs)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("overrides", [FAST, ["method=active-contour", "active_contour.max_num_iter=5"]])
def test_the_inits_own_fields_reach_the_result(tmp_path, frame, overrides):
    """A detector's fields of a spline (here `score` and `track`) come out with its refined spline,
    on the command line and in Python; a key the fit writes itself keeps the fit's value."""
    image, _, records = frame
    init = [
        {**record, "score": 0.5 + i / 10, "track": f"w{i}", "loss": "the detector's"}
        for i, record in enumerate(records)
    ]
    path = tmp_path / "init.json"
    write_splines(path, [init], image="worms.tif")
    command_line(image, path, tmp_path / "out", *overrides)
    written = json.loads((tmp_path / "out" / "worms.splines.json").read_text())["splines"]
    result = invrender.refine_splines(tifffile.imread(image), init, overrides=overrides, device="cpu")
    for splines in (written, result.splines[0]):
        assert [(s["id"], s["score"], s["track"]) for s in splines] == [(0, 0.5, "w0"), (1, 0.6, "w1")]
        if overrides is FAST:  # the render method writes each spline's loss
            assert all(isinstance(s["loss"], float) for s in splines)
