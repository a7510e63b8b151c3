"""Batch processing through the CLI, for real: input lists, shards, sweeps, the joblib, submitit and
Ray launchers, bad inputs in a batch, time limits, a killed run resumed, logs and the report."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import FAST, assert_one_line_error, make_inputs
from invrender.cli import main
from invrender.core.geometry.spline_io import read_splines


def run(capsys, *args) -> tuple[int, str]:
    code = main(["spline-refine", *FAST, *map(str, args), "--device", "cpu"])  # FAST first: later overrides win
    return code, capsys.readouterr().err


def manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def sweep_records(data: dict) -> dict[str, dict]:
    """Input name -> record, over every job of a sweep manifest."""
    assert data["kind"] == "sweep"
    return {Path(r["input"]).name: r for job in data["jobs"] for r in job["inputs"]}


def assert_complete_outputs(out: Path, stems: list[str]) -> None:
    for stem in stems:
        [frame] = read_splines(out / f"{stem}.splines.json")
        assert len(frame) == 2
        assert (out / f"{stem}.render.tif").is_file() and (out / f"{stem}.overlay.png").is_file()
    assert not list(out.rglob(".*.part")), "a temporary file was left behind"


# ---------------------------------------------------------------- input lists


def test_text_input_list_with_relative_paths_and_comments(tmp_path, capsys):
    make_inputs(tmp_path / "data", 3)
    listing = tmp_path / "data" / "todo.txt"
    listing.write_text("# frames to refine\nf0.tif\n\nf2.tif\n")
    out = tmp_path / "out"
    code, err = run(capsys, listing, "--out", out)
    assert code == 0, err
    assert [Path(r["input"]).name for r in manifest(out / "manifest.json")["inputs"]] == ["f0.tif", "f2.tif"]


def test_csv_input_list_sets_init_and_overrides_per_input(tmp_path, capsys):
    make_inputs(tmp_path / "data", 2)
    (tmp_path / "inits").mkdir()
    (tmp_path / "data" / "f1.json").rename(tmp_path / "inits" / "other-name.json")
    listing = tmp_path / "list.csv"
    listing.write_text("input,init,phases.2.steps\ndata/f0.tif,,\ndata/f1.tif,inits/other-name.json,5\n")
    out = tmp_path / "out"
    code, err = run(capsys, listing, "--out", out)
    assert code == 0, err
    records = {Path(r["input"]).name: r for r in manifest(out / "manifest.json")["inputs"]}
    assert records["f0.tif"]["overrides"] == [] and records["f1.tif"]["overrides"] == ["phases.2.steps=5"]
    assert records["f1.tif"]["result"]["phases"][0][2]["steps"] == 5
    assert records["f0.tif"]["result"]["phases"][0][2]["steps"] == 2


def test_csv_input_list_without_an_input_column(tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text("path,init\na.tif,a.json\n")
    out = tmp_path / "out"
    code, err = run(capsys, listing, "--out", out)
    assert_one_line_error(code, err, out, str(listing), "no 'input' column")


def test_csv_input_list_with_a_bad_override_column(tmp_path, capsys):
    make_inputs(tmp_path, 1)
    listing = tmp_path / "list.csv"
    listing.write_text("input,phases.0.lr\nf0.tif,fast\n")
    out = tmp_path / "out"
    code, err = run(capsys, listing, "--out", out)
    assert_one_line_error(code, err, out, f"{listing} line 2", "phases.0.lr")


@pytest.mark.parametrize("override", ["phases.1.sedes=16", "+phases.1.sedes=16"])
def test_a_misspelt_phase_key_on_the_command_line_is_refused(tmp_path, capsys, override):
    make_inputs(tmp_path, 1)
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / "f0.tif", override, "--out", out)
    assert_one_line_error(code, err, out, "unknown key phases.1.sedes", "did you mean phases.1.seeds?")


def test_an_unknown_key_is_named_whole_in_its_refusal():
    """The message names the key as given, even where the unknown part ("no") also occurs inside
    another word of the message ("unknown")."""
    from invrender.config import ConfigError, compose_config

    with pytest.raises(ConfigError, match=r"^bad override: unknown key no\.such\.key \(valid here: "):
        compose_config("spline_refine", "default", ["no.such.key=1"])


def test_a_misspelt_key_in_a_csv_column_is_refused(tmp_path, capsys):
    make_inputs(tmp_path, 1)
    listing = tmp_path / "list.csv"
    listing.write_text("input,+prior.widht\nf0.tif,3\n")
    out = tmp_path / "out"
    code, err = run(capsys, listing, "--out", out)
    assert_one_line_error(code, err, out, f"{listing} line 2", "unknown key prior.widht", "did you mean prior.width?")


def test_an_unknown_key_in_a_preset_is_refused(tmp_path, capsys, monkeypatch):
    import invrender.config

    configs = tmp_path / "configs"
    shutil.copytree(invrender.config.CONFIG_ROOT, configs)
    (configs / "spline_refine" / "typo.yaml").write_text(
        "defaults:\n  - default\n  - _self_\n\nmodel:\n  backgroud_grid: 8\n"
    )
    monkeypatch.setattr(invrender.config, "CONFIG_ROOT", configs)
    invrender.config._method_default.cache_clear()
    make_inputs(tmp_path, 1)
    out = tmp_path / "out"
    try:
        code, err = run(capsys, tmp_path / "f0.tif", "--config", "typo", "--out", out)
    finally:
        invrender.config._method_default.cache_clear()
    assert_one_line_error(
        code, err, out, "config 'typo'", "unknown key model.backgroud_grid", "did you mean model.background_grid?"
    )


def test_inputs_with_the_same_name_in_two_folders(tmp_path, capsys):
    make_inputs(tmp_path / "a", 1)
    make_inputs(tmp_path / "b", 1)
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / "a", tmp_path / "b", "--out", out)
    assert_one_line_error(code, err, out, "f0.tif", "would both write")


@pytest.mark.parametrize("pattern", ["empty", "nothing-*.tif"])
def test_no_input_files_found(tmp_path, capsys, pattern):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("not an image")
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / pattern, "--out", out)
    assert_one_line_error(code, err, out, str(tmp_path / pattern), "no input files")


# ---------------------------------------------------------------- shards and the report


def test_shards_split_the_inputs_and_the_report_joins_them(tmp_path, capsys):
    make_inputs(tmp_path / "in", 5)
    out = tmp_path / "out"
    for part in (0, 1):
        code, err = run(capsys, tmp_path / "in", "--out", out, "--num-parts", 2, "--part-id", part, "-q")
        assert code == 0, err
    parts = [manifest(out / f"manifest.part-{k}-of-2.json") for k in (0, 1)]
    names = [[Path(r["input"]).name for r in p["inputs"]] for p in parts]
    assert names == [["f0.tif", "f2.tif", "f4.tif"], ["f1.tif", "f3.tif"]]
    assert not (out / "manifest.json").exists()
    assert_complete_outputs(out, [f"f{i}" for i in range(5)])

    assert main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    assert "5 input(s): 5 done" in captured.out
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["input"]).name for r in rows) == [f"f{i}.tif" for i in range(5)]
    assert {r["job"] for r in rows} == {"part 0/2", "part 1/2"}
    assert all(r["status"] == "done" and float(r["loss"]) > 0 and Path(r["log"]).is_file() for r in rows)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["--part-id", "0"], "--part-id: needs --num-parts"),
        (["--num-parts", "2"], "--num-parts: needs --part-id"),
        (["--num-parts", "2", "--part-id", "2"], "--part-id 2"),
        (["--num-parts", "0", "--part-id", "0"], "--num-parts 0"),
        (["-m", "--num-parts", "2", "--part-id", "0"], "--part-id: runs one part"),
        (["--timeout", "0"], "--timeout 0"),
    ],
)
def test_bad_batch_options(tmp_path, capsys, options, needle):
    make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / "in", "--out", out, *options)
    assert_one_line_error(code, err, out, needle)


def test_report_of_a_folder_without_a_manifest(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"invrender: error: {tmp_path}: no manifest.json or manifest.part-*.json: not an invrender run folder"
    )


# ---------------------------------------------------------------- logs and time limits


def test_each_input_has_a_log_with_its_phases(tmp_path, capsys):
    make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / "in", "--out", out)
    assert code == 0, err
    [record] = manifest(out / "manifest.json")["inputs"]
    text = Path(record["log"]).read_text()
    assert Path(record["log"]) == out / "logs" / "f0.tif.log"
    for needle in ("start ", "background step 2/2 loss", "shape step 3/3 loss", "finetune step 2/2", "done after"):
        assert needle in text, text


def test_timeout_stops_one_input_and_the_others_finish(tmp_path, capsys):
    make_inputs(tmp_path, 2)
    listing = tmp_path / "list.csv"
    # f0 would take minutes; f1 is quick.
    listing.write_text("input,phases.1.steps\nf0.tif,100000\nf1.tif,\n")
    out = tmp_path / "out"
    start = time.perf_counter()
    code, err = run(capsys, listing, "--out", out, "--timeout", 2)
    assert time.perf_counter() - start < 30
    assert code == 1, err
    records = {Path(r["input"]).name: r for r in manifest(out / "manifest.json")["inputs"]}
    assert records["f0.tif"]["status"] == "timeout" and "stopped after 2 s" in records["f0.tif"]["error"]
    assert 2 <= records["f0.tif"]["seconds"] < 10
    assert records["f1.tif"]["status"] == "done"
    assert not (out / "f0.splines.json").exists() and (out / "f1.splines.json").exists()
    assert "timeout" in Path(records["f0.tif"]["log"]).read_text()
    assert [line for line in err.splitlines() if line.startswith("invrender: error: ")] == [
        f"invrender: error: {records['f0.tif']['input']}: stopped after 2 s (--timeout)"
    ]


def test_time_limit_outside_the_main_thread_stops_at_the_next_step(tmp_path):
    """Where no timer signal can be used (a worker thread), the runner checks the limit at every step."""
    from invrender.runner import Job, Runner

    def endless(on_step):
        step = 0
        while True:
            on_step("loop", step, 10**9, 1.0)
            step += 1

    runner = Runner(tmp_path / "manifest.json", {}, quiet=True, timeout=0.3)
    codes = []
    thread = threading.Thread(target=lambda: codes.append(runner.run([Job("endless.tif", [tmp_path / "x"], endless)])))
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and codes == [1]
    [record] = manifest(tmp_path / "manifest.json")["inputs"]
    assert record["status"] == "timeout" and 0.3 <= record["seconds"] < 5


# ---------------------------------------------------------------- sweeps (-m) and launchers


def test_sweep_runs_one_job_per_value_into_its_own_folder(tmp_path, capsys):
    make_inputs(tmp_path / "in", 2)
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / "in", "--out", out, "-m", "phases.2.steps=1,3")
    assert code == 0, err
    data = manifest(out / "manifest.json")
    assert data["launcher"] == "basic" and len(data["jobs"]) == 4
    assert [p["config"]["phases"][2]["steps"] for p in data["points"]] == [1, 3]
    for steps in (1, 3):
        folder = out / f"phases.2.steps={steps}"
        assert_complete_outputs(folder, ["f0", "f1"])
        jobs = [j for j in data["jobs"] if j["out"] == str(folder)]
        assert len(jobs) == 2 and all(
            f"phases.2.steps={steps}" in j["overrides"] and j["status"] == "done" for j in jobs
        )
        for job in jobs:
            job_manifest = manifest(Path(job["folder"]) / "manifest.json")
            assert job_manifest["config"]["phases"][2]["steps"] == steps
            assert (Path(job["folder"]) / ".hydra" / "overrides.yaml").is_file()
            [record] = job["inputs"]
            assert record["result"]["phases"][0][2]["steps"] == steps


@pytest.mark.parametrize(
    ("override", "needle"), [("phases.2.steps=1,3", "add -m"), ("hydra/launcher=joblib", "need -m")]
)
def test_sweep_settings_without_multirun(tmp_path, capsys, override, needle):
    make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / "in", "--out", out, override)
    assert_one_line_error(code, err, out, override, needle)


def test_bad_value_in_a_sweep_is_refused_before_anything_runs(tmp_path, capsys):
    make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / "in", "--out", out, "-m", "phases.0.lr=0.1,fast")
    assert_one_line_error(code, err, out, "phases.0.lr")


def test_missing_launcher_plugin_names_the_extra(tmp_path, capsys, monkeypatch):
    from invrender import launch

    monkeypatch.setitem(launch.LAUNCHER_PLUGINS, "ray", ("hydra_plugins.not_installed_here", "ray"))
    make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / "in", "--out", out, "-m", "hydra/launcher=ray")
    assert_one_line_error(code, err, out, "hydra/launcher=ray", "pip install 'invrender[ray]'")


def test_unknown_launcher(tmp_path, capsys):
    make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / "in", "--out", out, "-m", "hydra/launcher=nosuch")
    assert_one_line_error(code, err, out, "hydra/launcher", "nosuch")


def test_joblib_two_workers_with_a_corrupt_input(tmp_path, capsys):
    """Real worker processes; the corrupt input is recorded, the good ones are written, exit 1."""
    make_inputs(tmp_path / "in", 4)
    (tmp_path / "in" / "f2.tif").write_bytes(b"not a TIFF" * 50)
    out = tmp_path / "out"
    code, err = run(capsys, tmp_path / "in", "--out", out, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert code == 1, err
    data = manifest(out / "manifest.json")
    assert data["launcher"] == "joblib" and data["torch_threads_per_job"] == max(1, len(os.sched_getaffinity(0)) // 2)
    records = sweep_records(data)
    assert records["f2.tif"]["status"] == "bad-input" and "not a readable TIFF" in records["f2.tif"]["error"]
    assert {records[f"f{i}.tif"]["status"] for i in (0, 1, 3)} == {"done"}, records  # the error, if one failed
    assert_complete_outputs(out, ["f0", "f1", "f3"])
    assert not (out / "f2.splines.json").exists()
    pids = {manifest(Path(j["folder"]) / "manifest.json")["pid"] for j in data["jobs"]}
    assert os.getpid() not in pids and len(pids) == 2, "the jobs did not run in two worker processes"
    assert [line for line in err.splitlines() if line.startswith("invrender: error: ")] == [
        f"invrender: error: {records['f2.tif']['error']}"  # the error names the input already
    ]


def test_submitit_local_executor(tmp_path, capsys):
    make_inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    code, err = run(
        capsys,
        tmp_path / "in",
        "--out",
        out,
        "-m",
        "--num-parts",
        2,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
    )
    assert code == 0, err
    data = manifest(out / "manifest.json")
    assert [len(j["inputs"]) for j in data["jobs"]] == [2, 1]
    assert_complete_outputs(out, ["f0", "f1", "f2"])
    pids = {manifest(Path(j["folder"]) / "manifest.json")["pid"] for j in data["jobs"]}
    assert os.getpid() not in pids


def test_ray_local_cluster(tmp_path, capsys):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    make_inputs(tmp_path / "in", 2)
    out = tmp_path / "out"
    code, err = run(
        capsys,
        tmp_path / "in",
        "--out",
        out,
        "-m",
        "hydra/launcher=ray",
        "+hydra.launcher.ray.init.num_cpus=2",
        "+hydra.launcher.ray.init.include_dashboard=false",
    )
    assert code == 0, err
    data = manifest(out / "manifest.json")
    assert data["launcher"] == "ray" and {j["status"] for j in data["jobs"]} == {"done"}
    assert_complete_outputs(out, ["f0", "f1"])
    pids = {manifest(Path(j["folder"]) / "manifest.json")["pid"] for j in data["jobs"]}
    assert os.getpid() not in pids


# ---------------------------------------------------------------- a killed run, resumed


def _start(args: list[str]) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "invrender.cli",
        "spline-refine",
        *args,
        "--device",
        "cpu",
        "--threads",
        "1",
        "phases.0.steps=20",
        "phases.1.steps=150",
        "phases.1.seeds=2",
        "phases.2.steps=20",
        "restart.enabled=false",  # resume is tested here, not restarts (see test_command.py)
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_done(path: Path, n: int, process: subprocess.Popen, limit: float = 120) -> None:
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        assert process.poll() is None, process.stderr.read()
        try:
            if sum(r["status"] == "done" for r in manifest(path)["inputs"]) >= n:
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} inputs finished in {limit} s")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_without_redoing_or_losing_inputs(tmp_path, sig):
    make_inputs(tmp_path / "in", 6)
    out = tmp_path / "out"
    process = _start([str(tmp_path / "in"), "--out", str(out)])
    _wait_for_done(out / "manifest.json", 2, process)
    process.send_signal(sig)
    code = process.wait(timeout=60)
    before = {Path(r["input"]).name: r for r in manifest(out / "manifest.json")["inputs"]}
    finished = sorted(name for name, r in before.items() if r["status"] == "done")
    err = process.stderr.read()
    assert 2 <= len(finished) < 6, (code, err, [(r["status"], r["seconds"]) for r in before.values()])
    if sig == signal.SIGTERM:  # stopped cleanly: the manifest lists the rest as interrupted
        assert code == 130 and "--resume" in err
        assert {r["status"] for name, r in before.items() if name not in finished} == {"interrupted"}
        assert len(before) == 6
    assert not list(out.rglob(".*.part")), "a temporary file was left behind"
    for name in (f"f{i}.tif" for i in range(6)):  # a splines JSON exists exactly for finished inputs
        assert (out / name.replace(".tif", ".splines.json")).exists() == (name in finished)
    stamps = {name: (out / name.replace(".tif", ".splines.json")).stat().st_mtime_ns for name in finished}

    process = _start([str(tmp_path / "in"), "--out", str(out), "--resume"])
    assert process.wait(timeout=300) == 0, process.stderr.read()
    after = {Path(r["input"]).name: r for r in manifest(out / "manifest.json")["inputs"]}
    assert sorted(after) == [f"f{i}.tif" for i in range(6)]
    assert sorted(name for name, r in after.items() if r["status"] == "skipped") == finished
    assert {r["status"] for name, r in after.items() if name not in finished} == {"done"}
    assert all(after[name]["seconds"] == before[name]["seconds"] for name in finished)
    assert stamps == {name: (out / name.replace(".tif", ".splines.json")).stat().st_mtime_ns for name in finished}
    assert_complete_outputs(out, [f"f{i}" for i in range(6)])


def test_resume_redoes_an_input_recorded_as_interrupted_even_if_its_outputs_exist(tmp_path, capsys):
    """A job's child can write its last output as the run is stopped: the record, not the files,
    says whether it finished."""
    make_inputs(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert run(capsys, tmp_path / "in", "--out", out)[0] == 0
    data = manifest(out / "manifest.json")
    data["inputs"][1] = {"input": data["inputs"][1]["input"], "status": "interrupted", "outputs": [], "seconds": 0.0}
    (out / "manifest.json").write_text(json.dumps(data))
    code, err = run(capsys, tmp_path / "in", "--out", out, "--resume")
    assert code == 0, err
    assert [r["status"] for r in manifest(out / "manifest.json")["inputs"]] == ["skipped", "done"]


def test_killed_sweep_resumes(tmp_path):
    """The same through the joblib launcher: kill the whole process group part-way, resume."""
    make_inputs(tmp_path / "in", 6)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "invrender.cli",
        "spline-refine",
        str(tmp_path / "in"),
        "--out",
        str(out),
        "--device",
        "cpu",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "--num-parts",
        "2",
        "phases.0.steps=20",
        "phases.1.steps=150",
        "phases.1.seeds=2",
        "phases.2.steps=20",
        "restart.enabled=false",  # resume is tested here, not restarts (see test_command.py)
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    start = time.perf_counter()
    while len(list(out.glob("*.splines.json"))) < 2:
        assert process.poll() is None and time.perf_counter() - start < 120, (
            process.stderr.read() if process.poll() is not None else "too slow"
        )
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and its workers
    process.wait(timeout=60)
    finished = sorted(p.name for p in out.glob("*.splines.json"))
    assert 2 <= len(finished) < 6 and not (out / "manifest.json").exists()
    stamps = {name: (out / name).stat().st_mtime_ns for name in finished}
    assert main(["report", str(out)]) == 0  # from the jobs' own manifests
    with open(out / "report.csv", newline="") as f:
        reported = sorted(f"{Path(r['input']).stem}.splines.json" for r in csv.DictReader(f) if r["status"] == "done")
    # An input killed between writing its outputs and its job's manifest is not reported yet.
    assert reported and set(reported) <= set(finished)

    assert subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300).returncode == 0
    records = sweep_records(manifest(out / "manifest.json"))
    assert sorted(records) == [f"f{i}.tif" for i in range(6)]
    assert sorted(f"{Path(n).stem}.splines.json" for n, r in records.items() if r["status"] == "skipped") == finished
    assert stamps == {name: (out / name).stat().st_mtime_ns for name in finished}
    assert_complete_outputs(out, [f"f{i}" for i in range(6)])
