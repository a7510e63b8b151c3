"""One run folder, one run (issue 20): `--out` checked before anything is written, a second run
into a folder in use refused (or waiting with --wait), --resume refusing outputs of another config,
a run never reading its own outputs, earlier logs and results never lost or mixed in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import FAST, assert_one_line_error, make_inputs, write_init
from invrender.cli import main
from invrender.core import io as core_io
from invrender.outdir import run_lock


def refine(*args) -> int:
    return main(["spline-refine", *FAST, "--device", "cpu", "-q", *map(str, args)])


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# ---------------------------------------------------------------- --out itself


def test_an_out_that_is_a_file_or_under_a_file_is_refused_before_anything_runs(tmp_path, capsys):
    [image] = make_inputs(tmp_path / "in", 1)
    a_file = tmp_path / "taken.txt"
    a_file.write_text("precious\n")
    for out in (a_file, a_file / "below"):
        code = refine(image, "--out", out)
        line = assert_one_line_error(code, capsys.readouterr().err, tmp_path / "nothing", "--out", str(out))
        assert "is a file" in line
    assert a_file.read_text() == "precious\n"


@pytest.mark.parametrize(
    "command",
    [
        ["acdr-train", "data.root=unused", "--out", "{file}"],
        ["cell-eval", "{res}", "{res}", "--json", "{folder}"],
        ["report", "{run}", "--csv", "{folder}"],
    ],
    ids=["acdr-train --out file", "cell-eval --json folder", "report --csv folder"],
)
def test_other_commands_refuse_an_output_of_the_wrong_kind_in_one_line(tmp_path, capsys, command):
    a_file, folder, run = tmp_path / "taken.txt", tmp_path / "folder", tmp_path / "run"
    a_file.write_text("x")
    folder.mkdir()
    [image] = make_inputs(tmp_path / "in", 1)
    assert refine(image, "--out", run) == 0
    res = tmp_path / "labels.tif"
    shutil.copy(image, res)
    argv = [part.format(file=a_file, folder=folder, res=res, run=run) for part in command]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert ("is a file" if "{file}" in command else "is a folder") in err
    assert not any(folder.iterdir()) and a_file.read_text() == "x"


# ---------------------------------------------------------------- one run at a time


def test_a_second_run_into_a_folder_in_use_is_refused_and_waits_with_wait(tmp_path, capsys):
    [image] = make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    with run_lock(out):  # another run holds the folder
        code = refine(image, "--out", out)
        line = assert_one_line_error(code, capsys.readouterr().err, out, str(out), "another run")
        assert "--wait" in line
    held = threading.Event()

    def hold_for_a_second():
        with run_lock(out):
            held.set()
            time.sleep(1.0)

    holder = threading.Thread(target=hold_for_a_second)
    holder.start()
    held.wait()
    started = time.monotonic()
    assert refine(image, "--out", out, "--wait") == 0
    holder.join()
    assert time.monotonic() - started >= 0.9
    assert manifest(out)["summary"] == {"done": 1}


def test_shards_of_one_run_share_a_folder_but_a_whole_run_is_kept_out(tmp_path, capsys):
    images = make_inputs(tmp_path / "in", 2)
    out = tmp_path / "out"
    with run_lock(out, shard=True):  # part 0 of 2 is running
        assert refine(*images, "--out", out, "--num-parts", 2, "--part-id", 1) == 0
        assert refine(*images, "--out", out) == 2
        assert "another run" in capsys.readouterr().err
    assert json.loads((out / "manifest.part-1-of-2.json").read_text())["summary"] == {"done": 1}


def test_a_run_that_only_met_bad_inputs_leaves_no_folder_behind(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    write_init(tmp_path / "bad.json", [{"id": 0, "points": [[1, 1], [5, 5], [9, 9]], "widths": None}])
    out = tmp_path / "out"
    assert refine(bad, "--out", out) == 2
    assert not out.exists()


# ---------------------------------------------------------------- nothing lost, nothing mixed in


def test_a_bad_input_keeps_the_log_of_an_earlier_run(tmp_path, capsys):
    [image] = make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    assert refine(image, "--out", out) == 0
    record = manifest(out)
    log = Path(record["inputs"][0]["log"])
    earlier = log.read_text()
    assert "done after" in earlier
    image.write_bytes(b"broken now")
    assert refine(image, "--out", out) == 2
    assert log.read_text() == earlier
    assert manifest(out) == record  # a run of bad inputs writes no manifest over the earlier one


def test_resume_refuses_outputs_made_with_another_config_and_redoes_them_with_force(tmp_path, capsys):
    images = make_inputs(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert refine(*images, "--out", out) == 0
    assert refine(*images, "--out", out, "--resume") == 0
    assert manifest(out)["summary"] == {"skipped": 2}
    written = {p: p.stat().st_mtime_ns for p in out.glob("*.splines.json")}
    code = refine(*images, "--out", out, "--resume", "phases.2.steps=3")
    assert_one_line_error(code, capsys.readouterr().err, tmp_path / "nothing", "--resume", "another config", "--force")
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.splines.json")} == written
    assert refine(*images, "--out", out, "--resume", "--seed", "5") == 2  # the seed made them too
    assert refine(*images, "--out", out, "--resume", "--force", "phases.2.steps=3") == 0
    assert manifest(out)["summary"] == {"done": 2}
    assert refine(*images, "--out", out, "--resume", "phases.2.steps=3") == 0
    assert manifest(out)["summary"] == {"skipped": 2}
    capsys.readouterr()
    assert refine(*images, "--out", out, "--force") == 2
    assert "--force: goes with --resume" in capsys.readouterr().err


def test_a_folder_that_is_both_input_and_out_never_feeds_a_run_its_own_outputs(tmp_path, capsys):
    folder = tmp_path / "data"
    make_inputs(folder, 2)
    assert refine(folder, "--out", folder) == 0
    assert list(folder.glob("*.render.tif"))
    assert refine(folder, "--out", folder) == 0
    assert [Path(r["input"]).name for r in manifest(folder)["inputs"]] == ["f0.tif", "f1.tif"]


def partial_file(out: Path, host: str, pid: int, age: float = 0.0) -> Path:
    """A temporary file of an atomic write as `atomic_path` names it, `age` seconds old."""
    path = out / f".f9.render.tif.{host}~{pid}.k2x8q1zb.part"
    path.write_bytes(b"half")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def ended_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_killed_runs_partial_files_are_removed_by_the_next_run(tmp_path):
    """Left by a writer of this host that has ended, by one of another host long ago, or named as
    before writers were."""
    [image] = make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    out.mkdir()
    left = [
        partial_file(out, core_io._host(), ended_pid()),
        partial_file(out, "node17", 4242, age=core_io.ABANDONED_AFTER + 60),
        out / ".f0.render.tif.abc123.part",
    ]
    left[-1].write_bytes(b"half")
    assert refine(image, "--out", out) == 0
    assert not any(p.exists() for p in left) and (out / "f0.render.tif").is_file()


def test_the_partial_files_of_writers_that_may_be_alive_stay(tmp_path):
    """A sweep's workers and a run's shards write into one folder at once: a run starting there
    must not remove their files halfway through a write (before, one good input of a joblib sweep
    was once recorded as failed when the other worker's start removed its temporary file)."""
    [image] = make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    out.mkdir()
    alive = [
        partial_file(out, core_io._host(), os.getpid()),  # a process of this host that is running
        partial_file(out, "node17", 4242, age=60),  # another node's, written to a minute ago
    ]
    assert refine(image, "--out", out) == 0
    assert all(p.exists() for p in alive) and (out / "f0.render.tif").is_file()


def test_an_atomic_write_names_its_writer(tmp_path):
    with core_io.atomic_path(tmp_path / "a.tif") as partial:
        assert partial.name.startswith(f".a.tif.{core_io._host()}~{os.getpid()}.") and partial.suffix == ".part"
        assert not core_io._abandoned(partial, time.time())
    assert not partial.exists() and (tmp_path / "a.tif").is_file()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into any folder")
def test_a_read_only_out_is_refused_in_one_line(tmp_path, capsys):
    [image] = make_inputs(tmp_path / "in", 1)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert_one_line_error(refine(image, "--out", out), capsys.readouterr().err, out, str(out), "not writable")
    finally:
        out.chmod(0o700)


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """A 4-frame synthetic time-lapse in the CTC layout (`01/t000.tif` ...)."""
    from invrender.methods.cell_seg.synth import write_cell_dataset

    data = tmp_path_factory.mktemp("movie")
    write_cell_dataset(data, frames=4, size=64, cells=3, divisions=0, seed=2)
    return data / "01"


CELL_FAST = ["phases.0.steps=5", "phases.1.steps=10"]


def test_cell_seg_never_mixes_two_sequences_in_one_folder(movie, tmp_path, capsys):
    out = tmp_path / "01_RES"
    assert main(["cell-seg", str(movie), "--out", str(out), "-q", *CELL_FAST]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = tmp_path / "two_frames"
    other.mkdir()
    for t in (0, 1):
        shutil.copy(movie / f"t{t:03d}.tif", other / f"t{t:03d}.tif")
    code = main(["cell-seg", str(other), "--out", str(out), "-q", *CELL_FAST])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "01.cells.json" in err and "another sequence" in err and str(out) in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched


def test_cell_seg_removes_the_frames_an_earlier_run_of_the_sequence_left(movie, tmp_path):
    out = tmp_path / "01_RES"
    assert main(["cell-seg", str(movie), "--out", str(out), "-q", *CELL_FAST]) == 0
    shorter = tmp_path / "again" / "01"  # the same sequence, now with two frames
    shorter.mkdir(parents=True)
    for t in (0, 1):
        shutil.copy(movie / f"t{t:03d}.tif", shorter / f"t{t:03d}.tif")
    assert main(["cell-seg", str(shorter), "--out", str(out), "-q", *CELL_FAST]) == 0
    assert sorted(p.name for p in out.glob("mask*.tif")) == ["mask000.tif", "mask001.tif"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["t000.png", "t001.png"]
    assert len(json.loads((out / "01.cells.json").read_text())["frames"]) == 2
