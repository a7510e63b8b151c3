"""Every command's usage errors (issue 23): a bad option value, a missing input, a bad override, a
bad config name, an unreadable input. Each is exit code 2, one line on stderr of the form
`invrender: error: <file or option>: <problem>` with no traceback, and nothing created: the fresh
output paths given (`--out`, `--csv`, `--json`) and the folder they are in do not exist afterwards.

The commands, their options and the options' types are read from the CLI itself: a new command
fails `test_every_command_has_its_cases` until its cases are written here, and a new option of a
number, text or path gets a bad value in `test_a_bad_option_value` without being listed.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from pathlib import Path

import nibabel
import numpy as np
import pytest
import trimesh
import typer

from helpers import ACDR_TINY, FAST, make_input, tiny_checkpoint, write_init
from invrender.cli import _register_methods, app, main
from invrender.config import available_configs
from invrender.core.io import write_png, write_tiff
from invrender.methods.acdr.synth import write_shape_dataset
from invrender.record import write_run_record

ERROR_LINE = re.compile(r"^invrender: error: (\S.*?): \S")
#: Options that name a file or folder to write, not an input.
OUTPUT_OPTIONS = {"--out", "--csv", "--json"}
#: The commands without `--out`, and why (the README's table of shared options says the same).
WITHOUT_OUT = {
    "report": "it reads a run folder and writes its CSV there (or to --csv FILE)",
    "cell-eval": "it prints its scores; --json FILE writes them to one file",
}


@functools.cache
def cli_commands() -> dict[str, typing.Any]:
    """Every command of the CLI by its name (`synth cells` for a synth command): Typer's commands."""
    _register_methods()
    commands = {}

    def walk(group, prefix: str) -> None:
        for name, command in group.commands.items():
            path = f"{prefix}{name}"
            if hasattr(command, "commands"):
                walk(command, f"{path} ")
            else:
                commands[path] = command

    walk(typer.main.get_command(app), "")
    return commands


def option_types(command) -> dict[str, type]:
    """Each option's long flag -> the Python type of its value (Optional and Annotated taken off)."""
    hints = typing.get_type_hints(inspect.unwrap(command.callback), include_extras=True)
    kinds = {}
    for param in command.params:
        if param.param_type_name != "option":
            continue
        kind = hints[param.name]
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        kinds[max(param.opts, key=len)] = kind
    return kinds


def takes_overrides(command) -> bool:
    return any(p.param_type_name == "argument" and p.name in ("arguments", "overrides") for p in command.params)


# ---------------------------------------------------------------- the inputs


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Small valid inputs of every command, and bad ones: `{name}` in the cases below."""
    root = tmp_path_factory.mktemp("inputs")
    frame, records = make_input(root, "frame")
    write_init(root / "frame.json", records)
    write_tiff(root / "stack.tif", np.random.default_rng(0).random((16, 16, 16)).astype(np.float32))
    cells = np.zeros((48, 48), np.float32)
    cells[10:20, 10:20] = cells[28:40, 25:37] = 1.0
    write_tiff(root / "cells.tif", cells)
    write_tiff(root / "labels.tif", (cells > 0).astype(np.uint16))
    write_png(root / "picture.png", (np.random.default_rng(1).random((32, 32)) * 255).astype(np.uint8))
    write_shape_dataset(root / "shapes", 12, size=32, seed=0)
    (root / "broken" / "images").mkdir(parents=True)
    (root / "broken" / "masks").mkdir()
    for folder in ("images", "masks"):
        (root / "broken" / folder / "a.png").write_bytes(b"not a PNG image")
    tiny_checkpoint(root / "model.pt")
    mask = np.zeros((20, 20, 30), np.uint8)
    mask[6:14, 6:14, 3:10], mask[6:14, 6:14, 14:21] = 20, 21
    nibabel.save(nibabel.Nifti1Image(mask, np.eye(4)), root / "mask.nii.gz")
    ct = np.where(mask > 0, 400.0, -1000.0).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(ct, np.eye(4)), root / "ct.nii.gz")
    (root / "centroids.csv").write_text("label,x,y,z\n20,10,10,6\n21,10,10,17\n")
    (root / "sphere.ply").write_bytes(trimesh.creation.icosphere(subdivisions=1).export(file_type="ply"))
    write_run_record(root / "run" / "manifest.json", "run", {"inputs": []})
    (root / "foreign").mkdir()
    (root / "foreign" / "manifest.json").write_text('{"what": "not a run record"}')
    for name in ("garbage.tif", "garbage.png", "garbage.nii.gz", "garbage.ply"):
        (root / name).write_bytes(b"these bytes are no image, volume or mesh " * 4)
    (root / "taken.txt").write_text("a file, not a folder\n")
    paths = {p.name.replace(".", "_"): str(p) for p in root.iterdir()}
    return {**paths, "missing": str(root / "missing"), "root": str(root)}


#: A valid call of every command (without --out): the cases change one thing in it.
BASE = {
    "spline-refine": ["{frame_tif}", "--init", "{frame_json}", *FAST, "--device", "cpu"],
    "mesh-fit": ["{stack_tif}"],
    "acdr-train": ["data.root={shapes}", *ACDR_TINY, "train.epochs=1"],
    "acdr-predict": ["{picture_png}", "--checkpoint", "{model_pt}"],
    "acdr-eval": ["--checkpoint", "{model_pt}", "--data", "{shapes}"],
    "cell-seg": ["{cells_tif}"],
    "cell-eval": ["{labels_tif}", "{labels_tif}"],
    "spine-seg": ["{ct_nii_gz}", "--centroids", "{centroids_csv}", "--centroid-space", "voxel"],
    "spine-template": ["{mask_nii_gz}"],
    "report": ["{run}"],
    "synth splines": ["--frames", "1", "--size", "32"],
    "synth splines-movie": ["--frames", "2", "--size", "64"],
    "synth mesh": ["{sphere_ply}", "--size", "16"],
    "synth shapes": ["--count", "1", "--size", "16"],
    "synth cells": ["--frames", "2", "--size", "64", "--cells", "2", "--divisions", "0"],
    "synth ct": ["--labels", "{mask_nii_gz}"],
}

#: Per command, its input cases: (what, arguments, what the line names); for a command without
#: input files, why.
INPUT_CASES: dict[str, list[tuple[str, list[str], str]] | str] = {
    "spline-refine": [
        ("missing input", ["{missing}.tif"], "missing.tif: file not found"),
        ("unreadable input", ["{garbage_tif}", "--init", "{frame_json}", *FAST], "garbage.tif"),
    ],
    "mesh-fit": [
        ("missing input", ["{missing}.tif"], "missing.tif"),
        ("unreadable input", ["{garbage_tif}"], "garbage.tif"),
    ],
    "acdr-train": [
        ("missing input", ["data.root={missing}", *ACDR_TINY], "missing"),
        ("unreadable input", ["data.root={broken}", *ACDR_TINY], "a.png"),
        ("no input", [*ACDR_TINY], "data.root"),
    ],
    "acdr-predict": [
        ("missing input", ["{missing}.png", "--checkpoint", "{model_pt}"], "missing.png"),
        ("unreadable input", ["{garbage_png}", "--checkpoint", "{model_pt}"], "garbage.png"),
        (
            "not a checkpoint",
            ["{picture_png}", "--checkpoint", "{frame_tif}"],
            "not an invrender segmentation checkpoint",
        ),
        ("no checkpoint", ["{picture_png}"], "--checkpoint: missing"),
    ],
    "acdr-eval": [
        ("missing input", ["--checkpoint", "{missing}.pt", "--data", "{shapes}"], "missing.pt"),
        ("unreadable input", ["--checkpoint", "{model_pt}", "--data", "{broken}"], "a.png"),
        ("not a checkpoint", ["--checkpoint", "{garbage_png}"], "not an invrender segmentation checkpoint"),
    ],
    "cell-seg": [
        ("missing input", ["{missing}.tif"], "missing.tif"),
        ("unreadable input", ["{garbage_tif}"], "garbage.tif"),
    ],
    "cell-eval": [
        ("missing input", ["{missing}.tif", "{labels_tif}"], "missing.tif"),
        ("unreadable input", ["{garbage_tif}", "{labels_tif}"], "garbage.tif"),
        ("no ground truth", ["{labels_tif}"], "GT: missing"),
    ],
    "spine-seg": [
        ("missing input", ["{missing}.nii.gz", "--centroids", "{centroids_csv}"], "missing.nii.gz"),
        ("unreadable input", ["{garbage_nii_gz}", "--centroids", "{centroids_csv}"], "garbage.nii.gz"),
        ("no centroids", ["{ct_nii_gz}"], "ct.nii.gz: no --centroids"),
    ],
    "spine-template": [
        ("missing input", ["{missing}.nii.gz"], "missing.nii.gz"),
        ("unreadable input", ["{garbage_nii_gz}"], "garbage.nii.gz"),
    ],
    "report": [
        ("missing input", ["{missing}"], "missing: not a folder"),
        ("unreadable input", ["{foreign}"], "not an invrender manifest"),
    ],
    "synth splines": "makes its data from nothing",
    "synth splines-movie": "makes its data from nothing",
    "synth mesh": [
        ("missing input", ["{missing}.ply"], "missing.ply"),
        ("unreadable input", ["{garbage_ply}"], "garbage.ply"),
    ],
    "synth shapes": "makes its data from nothing",
    "synth cells": "makes its data from nothing",
    "synth ct": [
        ("missing input", ["--labels", "{missing}.nii.gz"], "missing.nii.gz"),
        ("unreadable input", ["--labels", "{garbage_nii_gz}"], "garbage.nii.gz"),
    ],
}

#: Options whose text is not checked against a set of values, with why (none so far).
FREE_TEXT: dict[str, str] = {}


def run(command: str, arguments: list[str], files: dict[str, str], tmp_path: Path, capsys) -> tuple[int, str, Path]:
    """Run `command` with `arguments` (`{name}` filled in from `files`) and a fresh `--out` in a fresh
    folder, if it takes one; its exit code, stderr and that folder."""
    fresh = tmp_path / "fresh"
    kinds = option_types(cli_commands()[command])
    # Quiet, and with a time limit: a case that let the work start fails in a minute, not in hours.
    guard = [*(["-q"] if "--quiet" in kinds else []), *(["--timeout", "60"] if "--timeout" in kinds else [])]
    argv = [*command.split(), *guard, *(a.format(**files) for a in arguments)]
    for option, name in (("--out", "out"), ("--csv", "report.csv"), ("--json", "scores.json")):
        if option in kinds:
            argv += [option, str(fresh / name)]
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err, fresh


def assert_usage_error(code: int, err: str, fresh: Path, needle: str) -> None:
    """Exit 2; stderr one line `invrender: error: <name>: <problem>` holding `needle`; nothing made."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert ERROR_LINE.match(lines[0]), lines[0]
    assert "Traceback" not in err
    assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert not fresh.exists(), sorted(fresh.rglob("*"))


# ---------------------------------------------------------------- the cases


def test_every_command_has_its_cases():
    commands = cli_commands()
    assert set(BASE) == set(commands) == set(INPUT_CASES), "a command without usage-error cases here"
    for name, command in commands.items():
        kinds = option_types(command)
        assert ("--out" in kinds) != (name in WITHOUT_OUT), f"{name}: --out, or why not in WITHOUT_OUT"
        if isinstance(INPUT_CASES[name], list):
            assert {"missing input", "unreadable input"} <= {case[0] for case in INPUT_CASES[name]}, name


@pytest.mark.parametrize(
    "command, what, arguments, needle",
    [
        pytest.param(command, what, arguments, needle, id=f"{command}: {what}")
        for command, cases in INPUT_CASES.items()
        if isinstance(cases, list)
        for what, arguments, needle in cases
    ],
)
def test_a_bad_input(files, tmp_path, capsys, command, what, arguments, needle):
    code, err, fresh = run(command, arguments, files, tmp_path, capsys)
    assert_usage_error(code, err, fresh, needle)


def bad_values() -> list:
    """(command, option, value, needle) for every option of every command that takes a number,
    a text or a path: a value that is not one, or not a valid one, or a path that does not exist."""
    cases = []
    for name, command in cli_commands().items():
        for option, kind in option_types(command).items():
            if kind is bool or option in FREE_TEXT or option in OUTPUT_OPTIONS:
                continue
            if kind in (int, float):
                values = ["abc", "-1"]  # not a number; a number out of range (every number option here is >= 0)
            elif kind is str:
                values = ["no-such-value"]
            elif kind is Path:
                values = ["{missing}-" + option.lstrip("-")]
            else:
                pytest.fail(f"{name} {option}: a value of {kind} has no bad case here")
            for value in values:
                needle = value.replace("{missing}", "missing") if kind is Path else option.lstrip("-")
                cases.append(pytest.param(name, option, value, needle, id=f"{name} {option} {needle} {value}"))
    return cases


@pytest.mark.parametrize("command, option, value, needle", bad_values())
def test_a_bad_option_value(files, tmp_path, capsys, command, option, value, needle):
    code, err, fresh = run(command, [*BASE[command], option, value], files, tmp_path, capsys)
    assert_usage_error(code, err, fresh, needle)


@pytest.mark.parametrize("command", [name for name, command in cli_commands().items() if takes_overrides(command)])
def test_a_bad_override(files, tmp_path, capsys, command):
    code, err, fresh = run(command, [*BASE[command], "no.such.key=1"], files, tmp_path, capsys)
    assert_usage_error(code, err, fresh, "no.such.key")


@pytest.mark.parametrize("command", [name for name in sorted(BASE) if name not in WITHOUT_OUT])
def test_an_out_that_is_a_file(files, tmp_path, capsys, command):
    """A bad value of the one option `test_a_bad_option_value` leaves out: `--out` itself."""
    code = main([*command.split(), *(a.format(**files) for a in BASE[command]), "--out", files["taken_txt"]])
    err = capsys.readouterr().err
    assert_usage_error(code, err, tmp_path / "fresh", f"--out {files['taken_txt']}: is a file")
    assert Path(files["taken_txt"]).read_text() == "a file, not a folder\n"


# ---------------------------------------------------------------- --help


#: The config folder (configs/<folder>/) of every command that takes --config.
CONFIG_FOLDERS = {
    "spline-refine": "spline_refine",
    "mesh-fit": "mesh_fit",
    "acdr-train": "acdr",
    "acdr-predict": "acdr",
    "acdr-eval": "acdr",
    "cell-seg": "cell_seg",
    "spine-seg": "spine_seg",
}


@pytest.mark.parametrize("command", sorted(BASE))
def test_config_help_lists_the_presets(capsys, monkeypatch, command):
    if "--config" not in option_types(cli_commands()[command]):
        assert command not in CONFIG_FOLDERS
        return
    monkeypatch.setenv("COLUMNS", "200")
    assert main([*command.split(), "--help"]) == 0
    text = re.sub(r"[\s│]+", " ", capsys.readouterr().out)
    listed = re.search(r"Presets: ([^.]*)\.", text)
    assert listed, text
    assert listed.group(1).split(", ") == available_configs(CONFIG_FOLDERS[command])
