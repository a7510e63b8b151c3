"""Input readers refuse hostile or foreign files in one line (issue 20, readers): RGB TIFFs, deeply
nested JSON, absurd mesh coordinates and materials, inputs whose path holds '=', foreign manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import trimesh

from helpers import FAST, assert_one_line_error, make_input, write_init
from invrender.cli import main
from invrender.core.io import read_picture

# ---------------------------------------------------------------- RGB TIFFs


def _write_rgb(path: Path, layout: str) -> Path:
    """A 32 x 32 colour TIFF: interleaved RGB (y, x, 3), RGBA (y, x, 4) or planar RGB (3, y, x)."""
    rng = np.random.default_rng(0)
    if layout == "rgb":
        tifffile.imwrite(path, (rng.random((32, 32, 3)) * 255).astype(np.uint8), photometric="rgb")
    elif layout == "rgba":
        tifffile.imwrite(
            path, rng.random((32, 32, 4)).astype(np.float32), photometric="rgb", extrasamples=["unassalpha"]
        )
    else:
        tifffile.imwrite(path, rng.random((3, 32, 32)).astype(np.float32), photometric="rgb", planarconfig="separate")
    return path


@pytest.mark.parametrize("layout", ["rgb", "rgba", "planar"])
def test_an_rgb_tiff_is_refused_by_spline_refine(tmp_path, capsys, layout):
    """Before: read as a 3-frame (or 32-frame) stack, "1 frame(s) of splines but the image has 32"."""
    image = _write_rgb(tmp_path / "f0.tif", layout)
    _, records = make_input(tmp_path / "gen", "g")
    write_init(tmp_path / "f0.json", records)
    out = tmp_path / "out"
    code = main(["spline-refine", *FAST, str(image), "--out", str(out), "--device", "cpu", "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, str(image), "RGB image", "give --channel N")


def test_an_rgb_tiff_is_refused_by_mesh_fit(tmp_path, capsys):
    """Before: a (32, 32, 3) RGB picture was a stack of 32 slices of 32 x 3 voxels."""
    image = _write_rgb(tmp_path / "stack.tif", "rgb")
    out = tmp_path / "out"
    code = main(["mesh-fit", str(image), "--out", str(out), "--device", "cpu", "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, str(image), "RGB image")


def test_a_picture_reader_still_reads_an_rgb_tiff_in_colour(tmp_path):
    """acdr takes colour through read_picture: unchanged, three channels first."""
    assert read_picture(_write_rgb(tmp_path / "p.tif", "rgb")).shape == (3, 32, 32)


# ---------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # before: RecursionError
        ("[" * 200 + "]" * 200, "nested 200 levels deep"),  # parses, but nothing should walk it
        ('{"splines": [{"points": [[1e400, 2], [3, 4]]}]}', "1e400 is out of the range"),  # before: inf
        ('{"splines": [{"points": [[1' + "0" * 400 + ", 2], [3, 4]]}]}", "out of the range"),  # OverflowError
    ],
)
def test_hostile_init_json_is_refused(tmp_path, capsys, text, needle):
    image, _ = make_input(tmp_path, "f0")
    (tmp_path / "f0.json").write_text(text)
    out = tmp_path / "out"
    code = main(["spline-refine", *FAST, str(image), "--out", str(out), "--device", "cpu", "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, "f0.json", needle)


# ---------------------------------------------------------------- meshes


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    """A 16^3 stack: the mesh readers run before anything looks at its pixels."""
    path = tmp_path_factory.mktemp("stack") / "stack.tif"
    tifffile.imwrite(path, np.random.default_rng(0).random((16, 16, 16)).astype(np.float32), photometric="minisblack")
    return path


def _tetra_rec(coordinate: str = "1", material: str = "1") -> str:
    """A closed tetrahedron in the .rec format, one coordinate and one material replaceable."""
    vertices = [f"{coordinate} 1 1", "5 1 1", "1 5 1", "1 1 5"]
    faces = [f"0 2 1 {material} 0", "0 1 3 1 0", "0 3 2 1 0", "1 2 3 1 0"]
    return "\n".join(["4", *vertices, "4", *faces]) + "\n"


def _sphere_obj(scale: float) -> str:
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=3)
    sphere.vertices[0] *= scale
    return sphere.export(file_type="obj")


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("big.obj", _sphere_obj(1e30), "coordinate"),  # before: "not closed and manifold"
        ("big.rec", _tetra_rec("1e30"), "coordinate"),
        ("inf.rec", _tetra_rec("inf"), "NaN or infinity"),
        ("negative.rec", _tetra_rec(material="-5"), "material -5"),  # before: accepted
        ("fraction.rec", _tetra_rec(material="1.5"), "not a readable .rec"),
        ("vertex.rec", _tetra_rec().replace("0 2 1 1 0", "-1 2 1 1 0"), "vertex -1"),
        ("count.rec", "-1\n" + _tetra_rec().split("\n", 1)[1], "vertex count -1"),
    ],
)
def test_absurd_meshes_are_refused_for_their_own_reason(tmp_path, stack, capsys, name, text, needle):
    init = tmp_path / name
    init.write_text(text)
    out = tmp_path / "out"
    code = main(["mesh-fit", str(stack), "--init", str(init), "--out", str(out), "--device", "cpu", "-q"])
    line = assert_one_line_error(code, capsys.readouterr().err, out, str(init), needle)
    assert "manifold" not in line


# ---------------------------------------------------------------- inputs whose path holds '='


def test_a_glob_with_an_equals_sign_is_an_input_not_an_override(tmp_path, capsys, monkeypatch):
    """Before: 'eq=dir/*.tif' was taken for an override, "no input given"."""
    folder = tmp_path / "eq=dir"
    image, records = make_input(folder, "f0")
    write_init(folder / "f0.json", records)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code = main(["spline-refine", *FAST, "eq=dir/*.tif", "--out", str(out), "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    assert (out / "f0.splines.json").is_file()


def test_a_folder_with_an_equals_sign_is_an_input_and_overrides_still_apply(tmp_path, capsys):
    folder = tmp_path / "a=b"
    image, records = make_input(folder, "f0")
    write_init(folder / "f0.json", records)
    out = tmp_path / "out"
    code = main(["spline-refine", *FAST, str(folder), "phases.0.sedes=2", "--out", str(out), "--device", "cpu"])
    # The override is still an override (and checked): one line naming it, nothing run.
    assert_one_line_error(code, capsys.readouterr().err, out, "phases.0.sedes")


# ---------------------------------------------------------------- foreign manifests


FOREIGN = [
    [1, 2, 3],
    {"kind": "run", "inputs": "f0.tif"},
    {"kind": "run", "inputs": [1, "x"]},
    {"kind": "run", "inputs": [{"input": ["f0.tif"], "status": "done"}]},
    {"kind": "run", "inputs": [{"input": "INPUT", "status": "done", "seconds": "slow", "result": []}]},
    {"kind": "run", "inputs": [{"input": "INPUT", "status": "done", "result": {"loss": 1.0}, "log": 5}]},
    {"kind": "sweep", "jobs": [{"num": 0, "overrides": "x=1", "inputs": {}}]},
    {"kind": "train", "history_tail": [3], "outputs": []},
]


@pytest.mark.parametrize("manifest", FOREIGN, ids=range(len(FOREIGN)))
def test_report_of_a_foreign_manifest_is_one_line(tmp_path, capsys, manifest):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    code = main(["report", str(tmp_path)])
    line = assert_one_line_error(code, capsys.readouterr().err, tmp_path / "nothing", str(path))
    assert "not an invrender manifest" in line
    assert not (tmp_path / "report.csv").exists()


def test_report_of_a_stray_part_manifest_is_one_line(tmp_path, capsys):
    """Before: ValueError sorting `manifest.part-old-of-2.json` by its part number."""
    (tmp_path / "manifest.part-0-of-2.json").write_text(json.dumps({"kind": "run", "inputs": []}))
    stray = tmp_path / "manifest.part-old-of-2.json"
    stray.write_text(json.dumps({"kind": "run", "inputs": [{"input": "f0.tif"}]}))
    code = main(["report", str(tmp_path)])
    assert_one_line_error(code, capsys.readouterr().err, tmp_path / "nothing", str(stray), "'status'")


@pytest.mark.slow
def test_resume_over_a_foreign_manifest_starts_afresh(tmp_path, capsys):
    """Before: a list in manifest.json (or records of the wrong types) crashed --resume."""
    image, records = make_input(tmp_path / "data", "f0")
    write_init(tmp_path / "data" / "f0.json", records)
    out = tmp_path / "out"
    command = ["spline-refine", *FAST, str(image), "--out", str(out), "--device", "cpu"]
    assert main(command) == 0, capsys.readouterr().err
    for manifest in FOREIGN:
        (out / "manifest.json").write_text(json.dumps(manifest).replace("INPUT", str(image)))
        assert main([*command, "--resume"]) == 0, capsys.readouterr().err
        written = json.loads((out / "manifest.json").read_text())
        assert [r["status"] for r in written["inputs"]] == ["skipped"]
