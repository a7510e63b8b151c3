"""The runner: one job per input, atomic outputs, a manifest per run, resume, exit codes.

A method turns its inputs into `Job`s: what it reads, what it writes (the job is complete when every
output exists; outputs are written atomically, so an existing output is a complete one), and a
`run` callable. The runner runs them in order, records each in `manifest.json` in the output
folder (rewritten atomically after every job, so an interrupted run leaves a valid record), and
returns the exit code: 0 all done, 1 some job failed (the others still ran), 2 every input was bad
(nothing is written then).
"""

from __future__ import annotations

import datetime as _dt
import glob
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from invrender.core.io import InputError, read_json, write_json

IMAGE_SUFFIXES = (".tif", ".tiff")
StepCallback = Callable[[str, int, int, float], None]


@dataclass
class Job:
    """One unit of work: typically one input image and its outputs."""

    name: str
    outputs: list[Path]
    run: Callable[[StepCallback], dict[str, Any]]  # returns what the manifest records (losses, ...)


@dataclass
class JobRecord:
    input: str
    status: str  # done | skipped | bad-input | failed | interrupted
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


def split_arguments(arguments: list[str]) -> tuple[list[str], list[str]]:
    """Split trailing CLI arguments into inputs and `key=value` config overrides."""
    overrides = [a for a in arguments if "=" in a and not Path(a).exists()]
    return [a for a in arguments if a not in overrides], overrides


def expand_inputs(arguments: list[str], suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Files as given, folders expanded to their images (sorted), glob patterns expanded.

    A path that does not exist is kept, so that its job reports it as a bad input.
    """
    paths: list[Path] = []
    for arg in arguments:
        path = Path(arg)
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file()))
        elif any(ch in arg for ch in "*?[") and not path.exists():
            paths.extend(sorted(Path(p) for p in glob.glob(arg) if Path(p).suffix.lower() in suffixes))
        else:
            paths.append(path)
    seen: set[Path] = set()
    return [p for p in paths if not (p.resolve() in seen or seen.add(p.resolve()))]


def package_versions(names: tuple[str, ...] = ("invrender", "torch", "numpy", "scipy", "scikit-image", "tifffile", "hydra-core")) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


class Runner:
    """Runs jobs into `out_dir` and keeps its manifest."""

    def __init__(self, out_dir: Path, run_info: dict[str, Any], resume: bool = False, quiet: bool = False):
        self.out_dir = Path(out_dir)
        self.manifest_path = self.out_dir / "manifest.json"
        self.run_info = run_info
        self.resume = resume
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.records: list[JobRecord] = []
        self.started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.previous = self._previous_records() if resume else {}

    def _previous_records(self) -> dict[str, dict]:
        if not self.manifest_path.is_file():
            return {}
        try:
            return {job["input"]: job for job in read_json(self.manifest_path).get("jobs", [])}
        except (InputError, AttributeError, KeyError, TypeError):
            return {}  # an unreadable old manifest only loses the old timings

    def run(self, jobs: list[Job]) -> int:
        show_progress = not self.quiet and self.console.is_terminal
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, disable=not show_progress, transient=True,
        )
        with progress:
            overall = progress.add_task("inputs", total=len(jobs))
            steps = progress.add_task("", total=1, visible=False)

            def on_step(phase: str, step: int, n_steps: int, loss: float) -> None:
                progress.update(steps, description=f"  {phase} loss {loss:.3g}", completed=step + 1, total=n_steps, visible=True)

            try:
                for job in jobs:
                    self.records.append(self._run_job(job, on_step))
                    progress.advance(overall)
                    self._log(self.records[-1])
                    self._write_manifest()
            except KeyboardInterrupt:
                done = {r.input for r in self.records}
                self.records += [JobRecord(j.name, "interrupted") for j in jobs if j.name not in done]
                self._write_manifest()
                raise
        statuses = {r.status for r in self.records}
        if statuses == {"bad-input"}:
            return 2
        return 1 if statuses & {"bad-input", "failed"} else 0

    def _run_job(self, job: Job, on_step: StepCallback) -> JobRecord:
        outputs = [str(p) for p in job.outputs]
        if self.resume and job.outputs and all(p.is_file() for p in job.outputs):
            old = self.previous.get(job.name, {})
            return JobRecord(job.name, "skipped", outputs, old.get("seconds", 0.0), result=old.get("result", {}))
        start = time.perf_counter()
        try:
            result = job.run(on_step)
        except InputError as err:
            return JobRecord(job.name, "bad-input", [], time.perf_counter() - start, str(err))
        except KeyboardInterrupt:
            raise
        except Exception as err:
            where = traceback.extract_tb(err.__traceback__)[-1]
            message = f"{type(err).__name__}: {err} (at {Path(where.filename).name}:{where.lineno})"
            return JobRecord(job.name, "failed", [], time.perf_counter() - start, message)
        outputs = result.pop("outputs", outputs)
        return JobRecord(job.name, "done", outputs, time.perf_counter() - start, result=result)

    def _log(self, record: JobRecord) -> None:
        if record.status in ("bad-input", "failed"):
            prefix = "" if record.error.startswith(record.input) else f"{record.input}: "
            # Escaped: messages and paths may hold brackets ("[x, y] pairs") that rich reads as markup.
            self.console.print(f"[red]error[/red]: {escape(prefix + record.error)}", highlight=False, soft_wrap=True)
        elif not self.quiet:
            loss = record.result.get("loss")
            loss_text = f", loss {loss:.3g}" if isinstance(loss, float) else ""
            self.console.print(f"{record.status}: {record.input} ({record.seconds:.1f} s{loss_text})", markup=False, highlight=False, soft_wrap=True)

    def _write_manifest(self) -> None:
        if all(r.status == "bad-input" for r in self.records):
            return  # nothing ran: leave no output at all
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.status] = counts.get(r.status, 0) + 1
        manifest = {
            **self.run_info,
            "command": sys.argv,
            "versions": package_versions(),
            "started": self.started,
            "updated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "summary": counts,
            "jobs": [r.__dict__ for r in self.records],
        }
        write_json(self.manifest_path, manifest)
