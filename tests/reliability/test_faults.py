"""Fault injection (issue 20): the `invrender` program killed with SIGKILL in the middle of a write,
stopped with SIGTERM inside a long native call or while a job's process is forked, and a disk that
fills up during a run. After each, `--resume` finishes the rest and nothing that had finished is
lost."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import FAST, make_inputs
from invrender.cli import main

#: Runs the real program (`cli.program`, which forks its jobs), with one fault planted in the job of
#: the input named in $FAULT_INPUT: the child says where it is through the file $FAULT_MARK.
PROGRAM = """
import os, signal, sys, time
import numpy as np
from scipy import ndimage
from invrender import cli
from invrender.core.io import atomic_path
import invrender.methods.spline_refine.command as command

fault, victim, mark = os.environ["FAULT"], os.environ["FAULT_INPUT"], os.environ["FAULT_MARK"]
real_write_tiff = command.write_tiff

def write_tiff(path, *args, **kwargs):
    if victim in str(path):
        if fault == "kill-mid-write":
            with atomic_path(path) as tmp:  # half a file, then the process is killed
                tmp.write_bytes(b"II*" + bytes(1000))
                open(mark, "w").write(str(os.getpid()))
                time.sleep(600)
        if fault == "native-call":
            open(mark, "w").write(str(os.getpid()))
            ndimage.gaussian_filter(np.zeros((300, 300, 300), np.float32), 250)  # 45 s in C, no signal checks
    return real_write_tiff(path, *args, **kwargs)

def after_fork():  # SIGTERM arrives while the job after the one writing $FAULT_INPUT is forked
    if fault == "sigterm-at-fork" and os.path.exists(victim) and not os.path.exists(mark):
        open(mark, "w").write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGTERM)  # its KeyboardInterrupt is raised here, where Python ignores it

command.write_tiff = write_tiff
os.register_at_fork(after_in_parent=after_fork)
sys.argv[0] = "invrender"
cli.program()
"""


def start_program(tmp_path: Path, fault: str, victim: str, args: list) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    mark = tmp_path / "mark"
    env = {**os.environ, "FAULT": fault, "FAULT_INPUT": victim, "FAULT_MARK": str(mark)}
    argv = [sys.executable, str(script), "spline-refine", *FAST, "--device", "cpu", "-q", *map(str, args)]
    return subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True), mark


def wait_for(mark: Path, process: subprocess.Popen, seconds: float = 120) -> int:
    """The pid the child wrote into `mark` once it reached the fault."""
    deadline = time.monotonic() + seconds
    while not (mark.is_file() and mark.read_text()):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the job never reached the fault"
        time.sleep(0.1)
    return int(mark.read_text())


def gone(pid: int, seconds: float = 10) -> bool:
    """Whether process `pid` ended (a zombie waiting for its reaper counts as ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def statuses(out: Path) -> dict[str, str]:
    return {Path(r["input"]).name: r["status"] for r in manifest(out)["inputs"]}


def finished_files(out: Path, stem: str) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(out.glob(f"{stem}.*"))}


def resume_finishes_the_rest(images: list[Path], out: Path, kept: dict[Path, bytes]) -> None:
    assert (
        main(["spline-refine", *FAST, "--device", "cpu", "-q", *map(str, images), "--out", str(out), "--resume"]) == 0
    )
    assert statuses(out) == {"f0.tif": "skipped", "f1.tif": "done", "f2.tif": "done"}
    assert finished_files(out, "f0") == kept  # what had finished is untouched
    assert not list(out.glob(".*.part"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jobs run in forked children on Linux")
def test_sigkill_in_the_middle_of_a_write_loses_nothing_finished(tmp_path):
    images = make_inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    process, mark = start_program(tmp_path, "kill-mid-write", "f1.", [*images, "--out", out])
    child = wait_for(mark, process)
    process.kill()  # SIGKILL: no handler runs in the program
    process.wait(30)
    assert gone(child), "the job's process outlived the killed program"
    assert statuses(out) == {"f0.tif": "done"}  # the manifest as it was after the last finished input
    assert not (out / "f1.render.tif").exists() and list(out.glob(".f1.render.tif.*.part"))
    kept = finished_files(out, "f0")
    assert kept
    resume_finishes_the_rest(images, out, kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jobs run in forked children on Linux")
def test_sigterm_during_a_long_native_call_stops_the_run_at_once(tmp_path):
    images = make_inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    process, mark = start_program(tmp_path, "native-call", "f1.", [*images, "--out", out])
    child = wait_for(mark, process)
    time.sleep(0.5)  # well inside the filter, which alone takes 45 s or more
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(60)
    seconds = time.monotonic() - sent
    err = process.stderr.read()
    assert seconds < 10, f"SIGTERM took {seconds:.1f} s"
    assert code == 130 and "Traceback" not in err and "--resume" in err, err
    assert gone(child)
    assert statuses(out) == {"f0.tif": "done", "f1.tif": "interrupted", "f2.tif": "interrupted"}
    resume_finishes_the_rest(images, out, finished_files(out, "f0"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jobs run in forked children on Linux")
def test_sigterm_while_a_job_is_forked_stops_the_run(tmp_path):
    """The CI failure of 2026-12-06: a SIGTERM whose KeyboardInterrupt was raised in an at-fork
    callback (logging's, after every fork) was lost, and the run went on to the end with code 0."""
    images = make_inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    process, mark = start_program(tmp_path, "sigterm-at-fork", out / "f0.splines.json", [*images, "--out", out])
    code = process.wait(120)
    err = process.stderr.read()
    assert mark.is_file(), "the signal was never sent"
    assert code == 130 and "Traceback" not in err and "--resume" in err, err
    assert statuses(out) == {"f0.tif": "done", "f1.tif": "interrupted", "f2.tif": "interrupted"}
    resume_finishes_the_rest(images, out, finished_files(out, "f0"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jobs run in forked children on Linux")
def test_timeout_ends_a_job_inside_a_long_native_call(tmp_path):
    images = make_inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    process, _ = start_program(tmp_path, "native-call", "f1.", [*images, "--out", out, "--timeout", "20"])
    code = process.wait(180)
    err = process.stderr.read()
    assert code == 1 and "invrender: error: " in err and "(--timeout)" in err and "Traceback" not in err, err
    assert statuses(out) == {"f0.tif": "done", "f1.tif": "timeout", "f2.tif": "done"}
    assert manifest(out)["inputs"][1]["seconds"] < 30


def test_a_disk_that_fills_up_costs_only_the_inputs_it_hit(tmp_path, capsys, monkeypatch):
    """No space while the second input runs: its outputs, its log lines and the manifest after it
    fail to be written. One line per failure, no traceback; the third input runs when space is back,
    and the manifest then records all three."""
    import invrender.runner as runner

    images = make_inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    full = {"now": False}
    real_replace, real_run_job, real_flush = os.replace, runner.Runner._run_job, runner._LogHandler.flush

    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def replace(src, dst, *args, **kwargs):
        (no_space if full["now"] else real_replace)(src, dst, *args, **kwargs)

    def run_job(self, job, show_step):
        full["now"] = job.name.endswith("f1.tif")  # space runs out for f1, and is back for f2
        return real_run_job(self, job, show_step)

    def flush(self):
        if full["now"]:
            no_space()
        real_flush(self)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(runner.Runner, "_run_job", run_job)
    monkeypatch.setattr(runner._LogHandler, "flush", flush)
    code = main(["spline-refine", *FAST, "--device", "cpu", "-q", *map(str, images), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and "Logging error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "f1.tif" in lines[0] and "No space left" in lines[0], err
    assert "cannot write" in lines[1] and "manifest.json" in lines[1], err
    assert statuses(out) == {"f0.tif": "done", "f1.tif": "failed", "f2.tif": "done"}
    assert not list(out.glob("f1.*")) and not list(out.glob(".*.part"))
    kept = finished_files(out, "f0")
    monkeypatch.undo()
    assert (
        main(["spline-refine", *FAST, "--device", "cpu", "-q", *map(str, images), "--out", str(out), "--resume"]) == 0
    )
    assert statuses(out) == {"f0.tif": "skipped", "f1.tif": "done", "f2.tif": "skipped"}
    assert finished_files(out, "f0") == kept
