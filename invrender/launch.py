"""Sweeps and batches as Hydra jobs, run by a Hydra launcher (`-m`).

`invrender METHOD -m INPUTS a=1,2 hydra/launcher=joblib hydra.launcher.n_jobs=2` expands the
overrides into sweep points with Hydra's basic-sweeper syntax (`a=1,2`, `a=range(1,5)`), splits
the inputs of each point into parts (one part per input, or `--num-parts N`), and hands one job
per (point, part) to the launcher: `basic` (this process, one job after another), `joblib` (local
worker processes), `submitit_local` / `submitit_slurm` (SLURM job arrays) or `ray` (a Ray cluster).

Each job runs the ordinary runner over its inputs, with its manifest and logs in its own folder
`OUT/jobs/<num>/` (beside Hydra's record of the job's config in `.hydra/`), and writes outputs into
`OUT/` (into `OUT/<point>/`, e.g. `OUT/schedule.seeds=8/`, when the sweep has several points).
Configs are composed and checked here before anything is launched, so a bad value in a sweep is
a usage error, not a failed job; the jobs only look up their configs. When the launcher returns
(or fails, or is interrupted) this process gathers every job's record into `OUT/manifest.json`.
"""

from __future__ import annotations

import importlib.util
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console

from invrender.config import CONFIG_ROOT, ConfigError, to_plain
from invrender.core.io import InputError, read_json
from invrender.cpus import cpu_budget
from invrender.inputs import InputItem, select_part
from invrender.isolation import forks_jobs
from invrender.method import ConfigCache, JobContext, MethodSpec, check_distinct_outputs, make_jobs, override_key
from invrender.options import SharedOptions
from invrender.record import now, write_run_record
from invrender.runner import Runner, count_statuses, exit_code, progress_bar, record_lines

#: Launcher name -> (the plugin's module, the invrender extra that installs it).
LAUNCHER_PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", None),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
}


@dataclass
class SweepJob:
    """One Hydra job: the inputs of one part, at one sweep point."""

    num: int
    overrides: list[str]  # the sweep point (config overrides)
    part: int
    num_parts: int
    out: Path  # where the outputs go
    items: list[InputItem]

    @property
    def folder_name(self) -> str:
        return str(self.num)


@dataclass
class SweepTask:
    """The task function that every launcher runs once per job, possibly in another process or on
    another machine (so it is a picklable object holding everything a job needs)."""

    spec: MethodSpec
    jobs: list[SweepJob]
    configs: ConfigCache  # every config the jobs need, composed and checked already
    jobs_dir: Path
    run_info: dict[str, Any]
    shared: SharedOptions
    options: dict[str, Any]
    threads: int

    def __call__(self, cfg: DictConfig) -> int:
        from hydra.core.hydra_config import HydraConfig

        job = self.jobs[HydraConfig.get().job.num]
        context = JobContext(job.out, self.configs.device, self.shared.seed, self.options)
        jobs = make_jobs(self.spec, job.items, job.overrides, self.configs, context)
        info = {
            **self.run_info,
            "overrides": job.overrides,
            "config": to_plain(self.configs.get(tuple(job.overrides))),
            "part": {"id": job.part, "of": job.num_parts},
            "torch_threads": self.threads,
        }
        folder = self.jobs_dir / job.folder_name
        runner = Runner(
            folder / "manifest.json",
            info,
            resume=self.shared.resume,
            quiet=True,
            timeout=self.shared.timeout,
            log_dir=folder / "logs",
            always_record=True,
            threads=self.threads,
            fork=forks_jobs(self.configs.device),
            # Silent: the sweep's process prints each input's error or warning once, from the jobs'
            # manifests (`_print_summary`); the job's own lines would repeat them with the basic
            # launcher (and with joblib's workers, which share this terminal).
            silent=True,
        )
        return runner.run(jobs)


def run_sweep(
    spec: MethodSpec,
    items: list[InputItem],
    overrides: list[str],
    shared: SharedOptions,
    options: dict[str, Any],
    configs: ConfigCache,
) -> int:
    """Compose and check every job's config, launch the jobs, gather the manifest; the exit code."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.plugins import Plugins

    hydra_overrides = [o for o in overrides if override_key(o).startswith("hydra")]
    task_overrides = [o for o in overrides if o not in hydra_overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(task_overrides)
        [points] = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    except Exception as err:  # Hydra's parser raises several types
        raise ConfigError(f"bad sweep: {' '.join(str(err).split())}") from None
    swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
    num_parts = min(shared.num_parts or len(items), len(items)) or 1
    out = shared.out.resolve()
    jobs: list[SweepJob] = []
    out_dirs = [
        out / ",".join(o for o in point if override_key(o) in swept).replace("/", "_") if len(points) > 1 else out
        for point in points
    ]
    for point, point_out in zip(points, out_dirs):
        for part in range(num_parts):
            part_items = [replace(item, path=item.path.resolve()) for item in select_part(items, num_parts, part)]
            jobs.append(SweepJob(len(jobs), point, part, num_parts, point_out, part_items))
    # Compose and check every config now (a bad value is a usage error, not a failed job), and
    # check that no two inputs of a sweep point write the same file.
    for point_out in dict.fromkeys(job.out for job in jobs):  # in order: the first bad point is reported
        point_jobs = [job for job in jobs if job.out == point_out]
        context = JobContext(point_out, configs.device, shared.seed, options)
        check_distinct_outputs(
            [j for job in point_jobs for j in make_jobs(spec, job.items, job.overrides, configs, context)]
        )

    launcher_name = next((o.split("=", 1)[1] for o in hydra_overrides if override_key(o) == "hydra/launcher"), "basic")
    _check_plugin(launcher_name)
    run_id = uuid.uuid4().hex
    run_info = {
        "method": spec.name,
        "config_name": shared.config,
        "device": str(configs.device),
        "seed": shared.seed,
        "run_id": run_id,
    }
    jobs_dir = out / "jobs"
    jobs_dir_existed = jobs_dir.exists()
    sweep = {
        **run_info,
        "launcher": launcher_name,
        "overrides": overrides,
        "started": now(),
        "points": [
            {"overrides": point, "out": str(out_dirs[i]), "config": to_plain(configs.get(tuple(point)))}
            for i, point in enumerate(points)
        ],
    }
    with _hydra(spec, shared.config, hydra_overrides, jobs_dir) as (hydra_cfg, hydra_context):
        threads = shared.threads or threads_per_worker(hydra_cfg.hydra.launcher, len(jobs))
        sweep["torch_threads_per_job"] = threads
        task = SweepTask(spec, jobs, configs, jobs_dir, run_info, shared, options, threads)
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task, config=hydra_cfg
        )
        returns, error, interrupted = {}, None, False
        with _progress(jobs, jobs_dir, run_id, quiet=shared.quiet):
            try:
                for num, ret in enumerate(launcher.launch([job.overrides for job in jobs], initial_job_idx=0)):
                    returns[num] = ret
            except KeyboardInterrupt:
                interrupted = True
            except Exception as err:  # e.g. a worker process died, a SLURM job was cancelled
                error = f"{type(err).__name__}: {' '.join(str(err).split())}"
    entries = [_gather(job, jobs_dir, run_id, returns.get(job.num), error, interrupted) for job in jobs]
    records = [r for entry in entries for r in entry["inputs"]]
    counts = count_statuses([r["status"] for r in records])
    sweep.update(summary=counts, jobs=entries)
    if any(r["status"] != "bad-input" for r in records):
        write_run_record(out / "manifest.json", "sweep", sweep)
    elif not jobs_dir_existed:  # every input was bad: leave nothing behind, as a single run does
        shutil.rmtree(jobs_dir, ignore_errors=True)
    _print_summary(entries, counts, shared.quiet)
    if interrupted:
        raise KeyboardInterrupt
    return exit_code(set(counts))


def threads_per_worker(launcher_cfg: DictConfig, n_jobs: int) -> int:
    """Torch threads per job, so that workers times threads does not exceed the cores."""
    target = str(launcher_cfg.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        n = int(launcher_cfg.n_jobs)
        workers = n if n > 0 else max(1, cpu_budget().cores + 1 + n)  # joblib: -1 means every core
        return max(1, cpu_budget().cores // max(1, min(workers, n_jobs)))
    if "submitit" in target:
        return int(launcher_cfg.get("cpus_per_task") or 1)
    if "ray" in target:
        return int(launcher_cfg.ray.remote.get("num_cpus") or 1)
    return cpu_budget().cores  # the basic launcher runs one job at a time, here


def _check_plugin(name: str) -> None:
    if name not in LAUNCHER_PLUGINS:
        return  # Hydra's own (basic) or a launcher we do not know of: Hydra reports a missing one
    module, extra = LAUNCHER_PLUGINS[name]
    if importlib.util.find_spec(module) is None:
        hint = (
            f"pip install 'invrender[{extra}]'" if extra else f"pip install {module.split('.')[-1].replace('_', '-')}"
        )
        raise ConfigError(f"hydra/launcher={name}: the launcher plugin is not installed; {hint}")


@contextmanager
def _hydra(
    spec: MethodSpec, config_name: str, hydra_overrides: list[str], jobs_dir: Path
) -> Iterator[tuple[DictConfig, Any]]:
    """Hydra set up for a multirun over the method's configs, as `@hydra.main` would: yields the
    composed Hydra config (launcher, sweep folder) and the context a launcher needs."""
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import HydraContext, RunMode

    # Hydra's own console logging is off: this process prints one summary, each job has its log.
    overrides = [
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
        *hydra_overrides,
        f"hydra.sweep.dir={_quote(str(jobs_dir))}",
    ]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(
            config_dir=str(CONFIG_ROOT / spec.config.config_dir), job_name=f"invrender-{spec.name}", version_base="1.3"
        ):
            loader = GlobalHydra.instance().config_loader()
            try:
                cfg = loader.load_configuration(config_name, overrides, run_mode=RunMode.MULTIRUN)
            except Exception as err:  # Hydra raises several types for a bad override
                raise ConfigError(f"bad launcher setting: {' '.join(str(err).split())}") from None
            HydraConfig.instance().set_config(cfg)
            yield cfg, HydraContext(config_loader=loader, callbacks=Callbacks(cfg))
    finally:
        GlobalHydra.instance().clear()


def _quote(value: str) -> str:
    """A Hydra override value that is read literally (paths may hold commas or `=`)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _job_manifest(job: SweepJob, jobs_dir: Path, run_id: str) -> dict | None:
    """The job's manifest if this run wrote it (not one left by an earlier run)."""
    path = jobs_dir / job.folder_name / "manifest.json"
    try:
        manifest = read_json(path) if path.is_file() else None
    except InputError:
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("run_id") == run_id else None


def _gather(job: SweepJob, jobs_dir: Path, run_id: str, ret: Any, launch_error: str | None, interrupted: bool) -> dict:
    """The sweep manifest's entry for one job: its setting and the record of each of its inputs.
    Inputs without a record (the job died or never ran) are recorded as failed or interrupted."""
    manifest = _job_manifest(job, jobs_dir, run_id)
    records = list(manifest["inputs"]) if manifest else []
    error = launch_error
    if ret is not None and getattr(ret, "status", None) is not None and ret.status.name == "FAILED":
        error = f"{type(ret._return_value).__name__}: {ret._return_value}"
    seen = {r["input"] for r in records}
    for item in job.items:
        if str(item.path) not in seen:
            status = "interrupted" if interrupted and error is None else "failed"
            records.append(
                {
                    "input": str(item.path),
                    "status": status,
                    "outputs": [],
                    "seconds": 0.0,
                    "error": None
                    if status == "interrupted"
                    else f"job {job.num} did not finish: {error or 'no record'}",
                    "result": {},
                    "log": None,
                    "overrides": list(item.overrides),
                }
            )
    statuses = {r["status"] for r in records}
    status = "done" if statuses <= {"done", "skipped"} else "interrupted" if statuses == {"interrupted"} else "failed"
    return {
        "num": job.num,
        "overrides": job.overrides,
        "part": job.part,
        "num_parts": job.num_parts,
        "out": str(job.out),
        "folder": str(jobs_dir / job.folder_name),
        "status": status,
        "inputs": records,
    }


class _progress:
    """An overall progress bar (inputs finished over all jobs), read from the jobs' manifests by a
    background thread: the jobs may run in other processes or on other machines."""

    def __init__(self, jobs: list[SweepJob], jobs_dir: Path, run_id: str, quiet: bool):
        self.jobs, self.jobs_dir, self.run_id = jobs, jobs_dir, run_id
        console = Console(stderr=True)
        self.enabled = not quiet and console.is_terminal
        self.bar = progress_bar(console, label="inputs")
        self.stop = threading.Event()

    def _watch(self) -> None:
        task = self.bar.add_task("", total=sum(len(job.items) for job in self.jobs))
        finished: dict[int, int] = {}
        while not self.stop.wait(1.0):
            for job in self.jobs:
                if finished.get(job.num, 0) < len(job.items):
                    manifest = _job_manifest(job, self.jobs_dir, self.run_id)
                    finished[job.num] = len(manifest["inputs"]) if manifest else 0
            self.bar.update(task, completed=sum(finished.values()))

    def __enter__(self):
        if self.enabled:
            self.bar.start()
            self.thread = threading.Thread(target=self._watch, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.stop.set()
            self.thread.join()
            self.bar.stop()
        return False


def _print_summary(entries: list[dict], counts: dict[str, int], quiet: bool) -> None:
    console = Console(stderr=True)
    for entry in entries:
        for r in entry["inputs"]:
            for line in record_lines(r):  # as the runner prints them
                console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not quiet and set(counts) != {"bad-input"}:  # a sweep of bad inputs says only what is wrong, as a run does
        text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        console.print(f"{len(entries)} job(s): {text}", markup=False, highlight=False)
