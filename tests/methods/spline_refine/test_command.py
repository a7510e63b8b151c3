"""End-to-end tests of `invrender spline-refine` (and `synth`, `--version`) through the CLI.

The CLI runs in-process through `invrender.cli.main`; one test runs the installed console script.
Fits use a tiny schedule: accuracy is tested elsewhere, here only behaviour (exit codes, one-line
errors, outputs, manifest, resume, determinism).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from helpers import FAST, FAST_RESTARTS, SIZE, assert_one_line_error, make_input, write_init
from invrender.cli import main
from invrender.core.figures import LOSS_SIZE, OVERLAY_SIZE
from invrender.core.geometry.spline_io import write_splines
from invrender.core.io import write_tiff
from invrender.methods.spline_refine.synth import make_frame


@pytest.fixture
def good(tmp_path):
    """A valid input image and its init JSON in `tmp_path/in`."""
    image, records = make_input(tmp_path / "in", "worms")
    return image, write_init(tmp_path / "in" / "worms.json", records)


def run(capsys, *args, fast: bool = True) -> tuple[int, str]:
    """Run `invrender spline-refine ARGS` in-process; returns (exit code, stderr)."""
    argv = ["spline-refine", *map(str, args), "--device", "cpu", *(FAST if fast else [])]
    code = main(argv)
    return code, capsys.readouterr().err


# ---------------------------------------------------------------- bad inputs: exit 2, one line, nothing written


def test_missing_image_file(tmp_path, good, capsys):
    _, init = good
    missing = tmp_path / "in" / "nosuch.tif"
    out = tmp_path / "out"
    code, err = run(capsys, missing, "--init", init, "--out", out)
    assert_one_line_error(code, err, out, str(missing), "not found")


def test_unreadable_image_file(tmp_path, good, capsys):
    _, init = good
    garbage = tmp_path / "in" / "garbage.tif"
    garbage.write_bytes(b"\x00\x01\x02 definitely not a TIFF " * 20)
    out = tmp_path / "out"
    code, err = run(capsys, garbage, "--init", init, "--out", out)
    assert_one_line_error(code, err, out, str(garbage), "not a readable TIFF")


@pytest.mark.parametrize(("shape", "dims"), [((16,), "1D"), ((2, 3, 16, 16), "4D")])
def test_image_of_wrong_dimension(tmp_path, good, capsys, shape, dims):
    _, init = good
    path = tmp_path / "in" / f"image{dims}.tif"
    tifffile.imwrite(path, np.ones(shape, np.float32), photometric="minisblack" if len(shape) > 2 else None)
    out = tmp_path / "out"
    code, err = run(capsys, path, "--init", init, "--out", out)
    assert_one_line_error(code, err, out, str(path), f"image is {dims}")


def test_nan_in_the_image(tmp_path, good, capsys):
    image, init = good
    array = tifffile.imread(image)
    array[5, 7] = np.nan
    tifffile.imwrite(image, array)
    out = tmp_path / "out"
    code, err = run(capsys, image, "--init", init, "--out", out)
    assert_one_line_error(code, err, out, str(image), "NaN")


def _bad_init(tmp_path, capsys, good, text: str, name: str = "bad.json") -> tuple[str, Path]:
    image, _ = good
    init = tmp_path / "in" / name
    init.write_text(text)
    out = tmp_path / "out"
    code, err = run(capsys, image, "--init", init, "--out", out)
    return assert_one_line_error(code, err, out, str(init)), init


def test_empty_init_json(tmp_path, good, capsys):
    line, _ = _bad_init(tmp_path, capsys, good, "")
    assert "empty" in line


def test_malformed_init_json(tmp_path, good, capsys):
    line, _ = _bad_init(tmp_path, capsys, good, '{"splines": [{"points": [[1, 2], [3, 4]]}\n')
    assert "malformed JSON" in line and "line 2" in line


def test_spline_with_one_point(tmp_path, good, capsys):
    line, _ = _bad_init(tmp_path, capsys, good, json.dumps({"splines": [{"id": 4, "points": [[10, 10]]}]}))
    assert "spline 4" in line and "1 point" in line


def test_points_far_outside_the_image(tmp_path, good, capsys):
    line, _ = _bad_init(tmp_path, capsys, good, json.dumps([[[10, 10], [20, 20], [400, 30]]]))
    assert "[400.0, 30.0] far outside" in line and f"{SIZE}x{SIZE}" in line


def test_points_that_are_not_pairs(tmp_path, good, capsys):
    # Regression: the message's "[x, y]" was swallowed as rich markup.
    line, _ = _bad_init(tmp_path, capsys, good, json.dumps([[[10, 10, 1], [20, 20, 1]]]))
    assert "points must be a list of [x, y] pairs" in line


def test_nan_in_the_init(tmp_path, good, capsys):
    line, _ = _bad_init(tmp_path, capsys, good, '{"splines": [{"id": 0, "points": [[10, 10], [NaN, 20], [30, 30]]}]}')
    assert "NaN" in line


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "1e999"])
def test_infinite_values_in_the_init(tmp_path, good, capsys, number):
    line, _ = _bad_init(tmp_path, capsys, good, f"[[[10, 10], [{number}, 20], [30, 30]]]")
    assert "Infinity" in line or "infinite" in line


def test_init_with_fewer_frames_than_the_stack(tmp_path, capsys):
    stack = tmp_path / "in" / "stack.tif"
    stack.parent.mkdir()
    write_tiff(stack, np.random.default_rng(0).random((3, SIZE, SIZE)).astype(np.float32), axes="TYX")
    records = [{"id": 0, "points": np.array([[10.0, 10.0], [30.0, 30.0]]), "widths": None}]
    init = tmp_path / "in" / "stack.json"
    write_splines(init, [records, records], image="stack.tif")
    out = tmp_path / "out"
    code, err = run(capsys, stack, "--init", init, "--out", out)
    assert_one_line_error(code, err, out, str(init), "2 frame(s)", "has 3")


def test_missing_init_file(tmp_path, good, capsys):
    image, _ = good
    missing = tmp_path / "in" / "nosuch.json"
    out = tmp_path / "out"
    code, err = run(capsys, image, "--init", missing, "--out", out)
    assert_one_line_error(code, err, out, str(missing), "not found")


def test_no_init_beside_the_image(tmp_path, capsys):
    image, _ = make_input(tmp_path / "in", "alone")
    out = tmp_path / "out"
    code, err = run(capsys, image, "--out", out)
    assert_one_line_error(code, err, out, str(image), "alone.json")


# ---------------------------------------------------------------- usage errors: exit 2, one line


def test_unknown_option(tmp_path, good, capsys):
    image, init = good
    out = tmp_path / "out"
    code, err = run(capsys, image, "--init", init, "--out", out, "--frobnicate")
    assert_one_line_error(code, err, out, "--frobnicate")


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("phases.0.lr=abc", "phases.0.lr"),
        ("nonexistent.key=1", "nonexistent.key"),
        ("phases.0.lr=nan", "finite"),
        ("prior.width=inf", "finite"),
    ],
)
def test_bad_override(tmp_path, good, capsys, override, needle):
    image, init = good
    out = tmp_path / "out"
    code, err = run(capsys, image, "--init", init, "--out", out, override)
    assert_one_line_error(code, err, out, needle)


def test_unknown_config_name(tmp_path, good, capsys):
    image, init = good
    out = tmp_path / "out"
    code, err = run(capsys, image, "--init", init, "--out", out, "--config", "nosuch")
    assert_one_line_error(code, err, out, "--config nosuch", "default")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_device_without_cuda(tmp_path, good, capsys):
    image, init = good
    out = tmp_path / "out"
    code = main(["spline-refine", str(image), "--init", str(init), "--out", str(out), "--device", "cuda"])
    assert_one_line_error(code, capsys.readouterr().err, out, "--device cuda", "CUDA is not available")


def test_bad_device_name(tmp_path, good, capsys):
    image, init = good
    out = tmp_path / "out"
    code = main(["spline-refine", str(image), "--init", str(init), "--out", str(out), "--device", "tpu"])
    assert_one_line_error(code, capsys.readouterr().err, out, "tpu")


def test_unknown_method(tmp_path, good, capsys):
    image, init = good
    out = tmp_path / "out"
    code, err = run(capsys, image, "--init", init, "--out", out, "--method", "nosuch")
    assert_one_line_error(code, err, out, "--method", "nosuch")


def test_unknown_loss(tmp_path, good, capsys):
    image, init = good
    out = tmp_path / "out"
    code, err = run(capsys, image, "--init", init, "--out", out, "+loss.nosuch=1")
    assert_one_line_error(code, err, out, "unknown loss 'nosuch'")


def test_no_input(tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run(capsys, "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_file_init_with_several_inputs(tmp_path, good, capsys):
    image, init = good
    other, _ = make_input(tmp_path / "in", "other", seed=1)
    out = tmp_path / "out"
    code, err = run(capsys, image, other, "--init", init, "--out", out)
    assert_one_line_error(code, err, out, "--init", "folder")


# ---------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """One short successful run on a 2-body frame: (input image, init records, out folder, code, stderr)."""
    root = tmp_path_factory.mktemp("one_run")
    image, records = make_input(root / "in", "worms", seed=3)
    init = write_init(root / "in" / "worms.json", records)
    out = root / "out"
    import io
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stderr(err):
        code = main(
            [
                "spline-refine",
                str(image),
                "--init",
                str(init),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--seed",
                "5",
                *FAST,
            ]
        )
    return image, records, out, code, err.getvalue()


def test_run_succeeds_with_one_status_line(one_run):
    image, _, _, code, err = one_run
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"done: {image}")


def test_run_writes_the_splines_json(one_run):
    image, records, out, _, _ = one_run
    assert sorted(p.name for p in out.iterdir()) == [
        "logs",
        "manifest.json",
        "worms.loss.png",
        "worms.overlay.png",
        "worms.render.tif",
        "worms.rois.zip",
        "worms.splines.json",
    ]
    data = json.loads((out / "worms.splines.json").read_text())
    n_knots = json.loads((out / "manifest.json").read_text())["config"]["model"]["knots"]
    assert data["format"] == "invrender.splines" and data["version"] == 1
    assert data["image"] == image.name and data["method"] == "render"
    assert [s["id"] for s in data["splines"]] == [r["id"] for r in records]
    for spline in data["splines"]:
        points = np.array(spline["points"])
        assert points.shape == (100, 2) and np.all(np.isfinite(points))
        widths = np.array(spline["widths"])
        assert widths.shape == (100,) and np.all(widths > 0)
        assert np.array(spline["knots"]).shape == (n_knots, 2)
        assert spline["loss"] is None or (isinstance(spline["loss"], float) and spline["loss"] >= 0)
        # A short run does not move the curve far from its init.
        init = records[spline["id"]]["points"]
        assert np.linalg.norm(points[[0, -1]] - init[[0, -1]], axis=1).max() < 10


def test_every_spline_is_checked_and_doubted_ones_are_fitted_again(tmp_path, good, capsys):
    image, init = good
    out = tmp_path / "out"
    doubt_all = ["restart.when.loss_ratio=1e-9"]  # every spline's own loss exceeds a billionth of the noise's
    code = main(["spline-refine", str(image), "--init", str(init), "--out", str(out), "-q", *FAST_RESTARTS, *doubt_all])
    assert code == 0, capsys.readouterr().err
    splines = json.loads((out / "worms.splines.json").read_text())["splines"]
    for spline in splines:
        assert isinstance(spline["suspect"], bool)
        for check in ("loss_ratio", "shared", "unexplained", "posture_change", "start_spread"):
            assert spline[check] >= 0.0, check
    [job] = json.loads((out / "manifest.json").read_text())["inputs"]
    names = [p["name"] for p in job["result"]["phases"][0]]
    restart = ["shape", "finetune", "polish", "finetune"]
    assert names == ["background", "shape", "finetune", *(f"restart of 0, 1: {name}" for name in restart)]
    # kept only if better: then both splines say so, else neither
    assert len({bool(spline.get("restarted")) for spline in splines}) == 1


def test_run_writes_render_and_overlay(one_run):
    image, _, out, _, _ = one_run
    render = tifffile.imread(out / "worms.render.tif")
    assert render.shape == tifffile.imread(image).shape == (SIZE, SIZE)
    assert render.dtype == np.float32 and np.all(np.isfinite(render))
    for name, size in (("worms.overlay.png", OVERLAY_SIZE), ("worms.loss.png", LOSS_SIZE)):
        with Image.open(out / name) as figure:
            assert figure.format == "PNG" and figure.mode == "RGB" and figure.size == size


def test_run_writes_the_manifest(one_run):
    image, _, out, _, _ = one_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "spline-refine" and manifest["device"] == "cpu" and manifest["seed"] == 5
    config = manifest["config"]
    assert config["method"] == "render"
    assert [p["steps"] for p in config["phases"]] == [2, 3, 2] and config["phases"][1]["seeds"] == 2
    assert config["loss"]["recon_mse"] == 1.0  # the resolved config, defaults included
    assert manifest["overrides"] == FAST
    for package in ("invrender", "torch", "numpy", "python"):
        assert manifest["versions"][package]
    assert manifest["summary"] == {"done": 1}
    [job] = manifest["inputs"]
    assert job["input"] == str(image) and job["status"] == "done" and job["error"] is None
    assert job["seconds"] > 0
    assert isinstance(job["result"]["loss"], float) and np.isfinite(job["result"]["loss"])
    names = [p["name"] for p in job["result"]["phases"][0]]
    assert names[: len(config["phases"])] == [p["name"] for p in config["phases"]]
    assert all(name.startswith("restart of ") for name in names[len(config["phases"]) :])  # doubted splines
    assert sorted(Path(p).name for p in job["outputs"]) == [
        "worms.loss.png",
        "worms.overlay.png",
        "worms.render.tif",
        "worms.rois.zip",
        "worms.splines.json",
    ]


def test_inits_as_schema_bare_list_and_npy(tmp_path, capsys):
    inputs, inits = tmp_path / "in", tmp_path / "inits"
    inits.mkdir()
    for seed, (stem, kind) in enumerate([("a", "schema"), ("b", "list"), ("c", "npy")]):
        _, records = make_input(inputs, stem, seed=seed, bodies=1 if kind == "npy" else 2)
        if kind == "schema":
            write_init(inits / "a.json", records)
        elif kind == "list":
            (inits / "b.json").write_text(json.dumps([r["points"].tolist() for r in records]))
        else:
            np.save(inits / "c.npy", np.stack([r["points"] for r in records]))  # (n, k, 2)
    out = tmp_path / "out"
    code, err = run(capsys, inputs, "--init", inits, "--out", out, "-q")
    assert code == 0, err
    assert err.strip() == ""  # --quiet: nothing unless something fails
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(j["input"]).name for j in manifest["inputs"]] == ["a.tif", "b.tif", "c.tif"]
    assert {j["status"] for j in manifest["inputs"]} == {"done"}
    for stem, n in (("a", 2), ("b", 2), ("c", 1)):
        data = json.loads((out / f"{stem}.splines.json").read_text())
        assert len(data["splines"]) == n and len(data["splines"][0]["points"]) == 100


def test_batch_with_a_corrupt_input(tmp_path, capsys):
    inputs = tmp_path / "in"
    for seed, stem in enumerate(["a", "c"]):
        _, records = make_input(inputs, stem, seed=seed)
        write_init(inputs / f"{stem}.json", records)  # inits beside the images
    (inputs / "b.tif").write_bytes(b"this is not a TIFF file" * 10)
    write_init(inputs / "b.json", records)
    out = tmp_path / "out"
    code, err = run(capsys, inputs, "--out", out)
    assert code == 1, err
    error_lines = [line for line in err.splitlines() if line.startswith("invrender: error: ")]
    assert len(error_lines) == 1 and "b.tif" in error_lines[0] and "Traceback" not in err
    assert (out / "a.splines.json").is_file() and (out / "c.splines.json").is_file()
    assert not list(out.glob("b.*"))
    manifest = json.loads((out / "manifest.json").read_text())
    jobs = {Path(j["input"]).name: j for j in manifest["inputs"]}
    assert jobs["a.tif"]["status"] == jobs["c.tif"]["status"] == "done"
    assert jobs["b.tif"]["status"] == "bad-input"
    assert "b.tif" in jobs["b.tif"]["error"] and "not a readable TIFF" in jobs["b.tif"]["error"]
    assert manifest["summary"] == {"done": 2, "bad-input": 1}


def test_resume_skips_finished_inputs(tmp_path, capsys):
    inputs = tmp_path / "in"
    _, records = make_input(inputs, "a", seed=0)
    write_init(inputs / "a.json", records)
    out = tmp_path / "out"
    code, err = run(capsys, inputs, "--out", out)
    assert code == 0, err
    outputs = sorted(p for p in out.iterdir() if p.name not in ("manifest.json", "logs"))
    assert [p.name for p in outputs] == ["a.loss.png", "a.overlay.png", "a.render.tif", "a.rois.zip", "a.splines.json"]
    mtimes = {p: p.stat().st_mtime_ns for p in outputs}
    first = json.loads((out / "manifest.json").read_text())["inputs"][0]

    # A second input appears; the first one's outputs are complete.
    _, records = make_input(inputs, "b", seed=1)
    write_init(inputs / "b.json", records)
    code, err = run(capsys, inputs, "--out", out, "--resume")
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in outputs} == mtimes
    jobs = {Path(j["input"]).name: j for j in json.loads((out / "manifest.json").read_text())["inputs"]}
    assert jobs["a.tif"]["status"] == "skipped" and jobs["b.tif"]["status"] == "done"
    assert jobs["a.tif"]["seconds"] == first["seconds"] and jobs["a.tif"]["result"] == first["result"]
    assert (out / "b.splines.json").is_file()

    # Without --resume everything runs again.
    code, err = run(capsys, inputs / "a.tif", "--out", out)
    assert code == 0 and (out / "a.splines.json").stat().st_mtime_ns != mtimes[out / "a.splines.json"]


def test_resume_reruns_an_input_whose_outputs_are_missing(tmp_path, capsys):
    image, records = make_input(tmp_path / "in", "a")
    init = write_init(tmp_path / "in" / "a.json", records)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.overlay.png").write_bytes(b"stale")  # not the marker of a complete output set
    code, err = run(capsys, image, "--init", init, "--out", out, "--resume")
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["inputs"][0]["status"] == "done"
    assert (out / "a.overlay.png").read_bytes()[:4] == b"\x89PNG"


def test_stack_with_frames_init(tmp_path, capsys):
    frames, records = [], []
    for seed in range(2):
        image, labels = make_frame(np.random.default_rng(seed), 1, size=SIZE)
        frames.append(image)
        records.append([{"id": 0, "points": labels[0]["points"][::9], "widths": None}])
    stack = tmp_path / "stack.tif"
    write_tiff(stack, np.stack(frames), axes="TYX")
    init = tmp_path / "stack.json"
    write_splines(init, records, image="stack.tif")
    assert "frames" in json.loads(init.read_text())
    out = tmp_path / "out"
    code, err = run(capsys, stack, "--init", init, "--out", out)
    assert code == 0, err
    data = json.loads((out / "stack.splines.json").read_text())
    assert "splines" not in data and len(data["frames"]) == 2
    for frame in data["frames"]:
        assert len(frame["splines"]) == 1 and len(frame["splines"][0]["points"]) == 100
    assert tifffile.imread(out / "stack.render.tif").shape == (2, SIZE, SIZE)
    assert (out / "stack.overlay.0000.png").is_file() and (out / "stack.overlay.0001.png").is_file()
    assert (out / "stack.loss.png").is_file()  # one loss figure per input, its frames one after the other
    [job] = json.loads((out / "manifest.json").read_text())["inputs"]
    assert job["result"]["frames"] == 2 and len(job["result"]["phases"]) == 2


def test_active_contour_method(tmp_path, good, capsys):
    image, init = good
    out = tmp_path / "out"
    code, err = run(
        capsys, image, "--init", init, "--out", out, "--method", "active-contour", "active_contour.max_num_iter=50"
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "logs",
        "manifest.json",
        "worms.overlay.png",
        "worms.rois.zip",
        "worms.splines.json",
    ]
    data = json.loads((out / "worms.splines.json").read_text())
    assert data["method"] == "active-contour" and len(data["splines"]) == 2
    assert all(np.array(s["points"]).shape == (100, 2) for s in data["splines"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["method"] == "active-contour" and manifest["inputs"][0]["status"] == "done"


def test_same_seed_gives_identical_output(tmp_path, good, capsys):
    image, init = good
    texts = []
    for name in ("first", "second"):
        code, err = run(capsys, image, "--init", init, "--out", tmp_path / name, "--seed", "3")
        assert code == 0, err
        texts.append((tmp_path / name / "worms.splines.json").read_text())
    assert texts[0] == texts[1]
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "first" / "worms.render.tif"),
        tifffile.imread(tmp_path / "second" / "worms.render.tif"),
    )


# ---------------------------------------------------------------- other commands


def test_synth_splines_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "data"
    code = main(["synth", "splines", "--bodies", "2", "--frames", "2", "--size", "64", "--out", str(out)])
    assert code == 0
    assert "2 frame(s)" in capsys.readouterr().err
    assert (out / "frame_0000.tif").is_file() and (out / "frame_0001.tif").is_file()
    assert tifffile.imread(out / "frame_0001.tif").shape == (64, 64)
    assert len(json.loads((out / "labels" / "frame_0001.json").read_text())["splines"]) == 2
    for name in ("rotation", "displacement", "scaling", "pca", "straight"):
        assert (out / "inits" / name / "frame_0000.json").is_file()
    assert json.loads((out / "dataset.json").read_text())["frames"] == 2


def test_version(capsys):
    from importlib import metadata

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"invrender {metadata.version('invrender')}"


@pytest.mark.parametrize("argv", [[], ["synth"]])
def test_bare_command_shows_help(capsys, argv):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Usage" in captured.out and "error" not in captured.err


def test_unknown_command(capsys):
    assert main(["nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "invrender: error: nosuch: no such command (`invrender --help` lists them)"


def _console_script() -> str:
    script = Path(sys.executable).with_name("invrender")
    return str(script) if script.is_file() else shutil.which("invrender")


def test_console_script(tmp_path, good):
    script = _console_script()
    assert script, "the invrender console script is not installed"
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run([script, "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("invrender ")
    # A bad input gives exit code 2 and one line through the real entry point too.
    _, init = good
    missing = tmp_path / "nosuch.tif"
    out = tmp_path / "out"
    done = subprocess.run(
        [script, "spline-refine", str(missing), "--init", str(init), "--out", str(out), "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert_one_line_error(done.returncode, done.stderr, out, str(missing), "not found")
