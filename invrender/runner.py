"""The runner: one job per input, atomic outputs, a manifest per run, logs, resume, time limits.

A method turns its inputs into `Job`s: what it reads, what it writes (the job is complete when every
output exists; outputs are written atomically, so an existing output is a complete one), and a
`run` callable. The runner runs them in order, records each in the manifest (rewritten atomically
after every job, so an interrupted or killed run leaves a valid record), keeps one log file per job,
and returns the exit code: 0 all done, 1 some job failed (the others still ran), 2 every input was
bad (nothing is written then).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from invrender.config import ConfigError
from invrender.core.io import InputError, read_json, remove_abandoned_partials
from invrender.core.optim.loss_log import StepCallback
from invrender.cpus import job_threads
from invrender.interrupt import raise_if_stopping
from invrender.isolation import ChildBadInput, ChildFailed, failure_line, run_in_child
from invrender.messages import about, error_line, warning_line
from invrender.record import now, write_run_record

FAILED_STATUSES = {"bad-input", "failed", "timeout"}
log = logging.getLogger("invrender")


@dataclass
class Job:
    """One unit of work: typically one input image and its outputs."""

    name: str
    outputs: list[Path]
    run: Callable[[StepCallback], dict[str, Any]]  # returns what the manifest records (losses, ...)
    overrides: tuple[str, ...] = ()  # config overrides particular to this input (recorded in the manifest)
    finished: Callable[[], bool] | None = None  # whether --resume may skip it (default: all outputs exist)
    config_hash: str = ""  # what made its outputs (config, options, seed): --resume skips only the same


@dataclass
class JobRecord:
    input: str
    status: str  # done | skipped | bad-input | failed | timeout | interrupted
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    log: str | None = None
    overrides: list[str] = field(default_factory=list)
    config_hash: str = ""


class JobTimeout(BaseException):
    """A job ran past its time limit. A BaseException, so that a method's `except Exception`
    cannot swallow it."""


def exit_code(statuses: set[str]) -> int:
    """0 all done; 2 every input was bad; 1 anything else that did not finish."""
    if statuses == {"bad-input"}:
        return 2
    return 1 if statuses & (FAILED_STATUSES | {"interrupted"}) else 0


def count_statuses(statuses: list[str]) -> dict[str, int]:
    """How many of each status, e.g. {"done": 62, "failed": 2}."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


def record_lines(record: dict[str, Any]) -> list[str]:
    """What stderr says of a finished job (a `JobRecord`'s fields, or a manifest's record of one):
    the error of an input that failed, was bad or timed out, and the warning of one that finished
    with something the user must know (e.g. a fit that diverged)."""
    lines = []
    if record["status"] in FAILED_STATUSES:
        lines.append(error_line(about(record["input"], record["error"])))
    warning = (record.get("result") or {}).get("warning")
    if warning:
        lines.append(warning_line(about(record["input"], warning)))
    return lines


def progress_bar(console: Console, enabled: bool = True, label: str = "{task.description}") -> Progress:
    """The progress bar of every command: label, bar, done / total, elapsed time and the estimated
    time left (from the rate so far); gone when done."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )


@contextmanager
def time_limit(seconds: float | None) -> Iterator[Callable[[], None]]:
    """Raise JobTimeout in the block once `seconds` have passed.

    In the main thread of a POSIX process a timer signal interrupts the block wherever it is (after
    the current native call returns); elsewhere the yielded `check()` raises it, and the runner
    calls it on every optimiser step.
    """
    if seconds is None:
        yield lambda: None
        return
    deadline = time.monotonic() + seconds

    def check() -> None:
        if time.monotonic() > deadline:
            raise JobTimeout

    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield check
        return

    def on_alarm(signum, frame):
        raise JobTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield check
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Runner:
    """Runs jobs, writing the manifest to `manifest_path` and one log per job into `log_dir`."""

    def __init__(
        self,
        manifest_path: Path,
        run_info: dict[str, Any],
        resume: bool = False,
        quiet: bool = False,
        timeout: float | None = None,
        log_dir: Path | None = None,
        always_record: bool = False,
        threads: int | None = None,
        fork: bool = False,
        force: bool = False,
        silent: bool = False,
    ):
        self.manifest_path = Path(manifest_path)
        self.log_dir = Path(log_dir) if log_dir is not None else self.manifest_path.parent / "logs"
        self.run_info = run_info
        self.resume = resume
        self.quiet = quiet
        self.timeout = timeout
        self.always_record = always_record  # a sweep's job reports back through its manifest, even on bad inputs only
        self.threads = threads  # torch threads for the jobs (None: torch's default)
        self.fork = fork  # run each job in a forked child that can be ended (see isolation.py)
        self.force = force  # --resume redoes finished jobs made with another config instead of refusing
        self.skip: set[str] = set()  # with --resume: the jobs already done with this config
        self.manifest_written = True  # false while the last attempt to write the manifest failed
        self.console = Console(stderr=True, quiet=silent)  # silent: not even errors (a sweep reports them)
        self.records: list[JobRecord] = []
        self.started = now()
        self.previous = self._previous_records() if resume else {}

    def _previous_records(self) -> dict[str, dict]:
        """The old manifest's records by input, those of the shape this runner writes: an unreadable
        or foreign old manifest (any JSON) only loses the old timings of a skipped input."""
        if not self.manifest_path.is_file():
            return {}
        try:
            manifest = read_json(self.manifest_path)
        except InputError:
            return {}
        records = manifest.get("inputs") if isinstance(manifest, dict) else None
        return {
            record["input"]: record
            for record in (records if isinstance(records, list) else [])
            if isinstance(record, dict)
            and isinstance(record.get("input"), str)
            and type(record.get("seconds", 0.0)) in (int, float)
            and isinstance(record.get("result", {}), dict)
            and isinstance(record.get("log"), (str, type(None)))
        }

    def run(self, jobs: list[Job]) -> int:
        if self.resume:
            self._check_resumable(jobs)
        remove_abandoned_partials([path for job in jobs for path in job.outputs])  # left by a run that was killed
        if not self.fork:
            torch.set_num_threads(job_threads(self.threads).cores)
        progress = progress_bar(self.console, not self.quiet and self.console.is_terminal)
        with progress:
            overall = progress.add_task("inputs", total=len(jobs))
            steps = progress.add_task("", total=1, visible=False)

            def show_step(phase: str, step: int, n_steps: int, loss: float) -> None:
                description = f"  {phase}" if math.isnan(loss) else f"  {phase} loss {loss:.3g}"
                progress.update(steps, description=description, completed=step + 1, total=n_steps, visible=True)

            try:
                for job in jobs:
                    raise_if_stopping()
                    self.records.append(self._run_job(job, show_step))
                    progress.advance(overall)
                    self._print(self.records[-1])
                    self._write_manifest()
            except KeyboardInterrupt:
                done = {r.input for r in self.records}
                self.records += [JobRecord(j.name, "interrupted") for j in jobs if j.name not in done]
                self._write_manifest()
                raise
        code = exit_code({r.status for r in self.records})
        return code if self.manifest_written else max(code, 1)

    def _check_resumable(self, jobs: list[Job]) -> None:
        """--resume: the finished jobs to skip; ConfigError if one was made with another config (with
        --force it is done again). A record without a hash (an older version's) is taken as it is."""
        # A job whose record says it did not finish (interrupted, failed) is done again even if its
        # outputs exist: its child may have written them all as the run was being stopped.
        finished = [
            job
            for job in jobs
            if _finished(job) and self.previous.get(job.name, {}).get("status", "done") in ("done", "skipped")
        ]
        changed = [
            job.name
            for job in finished
            if self.previous.get(job.name, {}).get("config_hash", job.config_hash) != job.config_hash
        ]
        if changed and not self.force:
            raise ConfigError(
                f"--resume: {len(changed)} finished input(s) in {self.manifest_path.parent} were made with another "
                f"config, options or seed (first: {changed[0]}); add --force to redo them, or choose another --out"
            )
        self.skip = {job.name for job in finished} - set(changed)

    def _run_job(self, job: Job, show_step: StepCallback) -> JobRecord:
        outputs = [str(p) for p in job.outputs]
        overrides = list(job.overrides)
        if job.name in self.skip:
            old = self.previous.get(job.name, {})
            return JobRecord(
                job.name,
                "skipped",
                outputs,
                old.get("seconds", 0.0),
                result=old.get("result", {}),
                log=old.get("log"),
                overrides=overrides,
                config_hash=job.config_hash,
            )
        log_path = self.log_dir / f"{Path(job.name).name}.log"
        logs_existed = self.log_dir.is_dir()
        earlier_log = log_path.stat().st_size if log_path.is_file() else None  # an earlier run's, kept
        with _job_log(log_path) as log_written:
            log.info("start %s%s", job.name, f" with {' '.join(overrides)}" if overrides else "")
            record = self._attempt(job, show_step)
            record.overrides = overrides
            record.config_hash = job.config_hash
            log.info("%s after %.1f s%s", record.status, record.seconds, f": {record.error}" if record.error else "")
        if record.status == "bad-input":
            # The manifest says why; a bad input adds no file (and a run of bad inputs, none at all).
            if earlier_log is None:
                log_path.unlink(missing_ok=True)
            else:
                os.truncate(log_path, earlier_log)
            if not logs_existed and self.log_dir.is_dir() and not any(self.log_dir.iterdir()):
                self.log_dir.rmdir()
        elif not log_written():
            record.error = (record.error + "; " if record.error else "") + f"its log {log_path} could not be written"
        else:
            record.log = str(log_path)
        return record

    def _attempt(self, job: Job, show_step: StepCallback) -> JobRecord:
        start = time.perf_counter()
        try:
            result = self._run(job, show_step)
        except (InputError, ChildBadInput) as err:
            return JobRecord(job.name, "bad-input", [], time.perf_counter() - start, str(err))
        except JobTimeout:
            remove_abandoned_partials(job.outputs)
            return JobRecord(
                job.name, "timeout", [], time.perf_counter() - start, f"stopped after {self.timeout:g} s (--timeout)"
            )
        except KeyboardInterrupt:
            remove_abandoned_partials(job.outputs)
            raise
        except ChildFailed as err:
            return JobRecord(job.name, "failed", [], time.perf_counter() - start, str(err))
        except Exception as err:
            log.error("%s", "".join(traceback.format_exception(err)))
            return JobRecord(job.name, "failed", [], time.perf_counter() - start, failure_line(err))
        outputs = result.pop("outputs", [str(p) for p in job.outputs])
        return JobRecord(job.name, "done", outputs, time.perf_counter() - start, result=result)

    def _run(self, job: Job, show_step: StepCallback) -> dict[str, Any]:
        """Run the job here or in a child, within the time limit; its result."""

        def logged_step(phase: str, step: int, n_steps: int, loss: float) -> None:
            raise_if_stopping()
            show_step(phase, step, n_steps, loss)
            if step == 0 or step + 1 == n_steps or (step + 1) % max(1, n_steps // 10) == 0:
                log.info("%s step %d/%d loss %.6g", phase, step + 1, n_steps, loss)  # NaN: no loss

        if self.fork:
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            return run_in_child(job.run, job_threads(self.threads).cores, logged_step, deadline, JobTimeout)
        grad_enabled = torch.is_grad_enabled()
        try:
            with time_limit(self.timeout) as check_time:

                def on_step(phase: str, step: int, n_steps: int, loss: float) -> None:
                    check_time()
                    logged_step(phase, step, n_steps, loss)

                return job.run(on_step)
        finally:
            # The timer's exception can land inside torch.no_grad()'s own set-up, which then never
            # restores autograd: the next job would train nothing.
            torch.set_grad_enabled(grad_enabled)

    def _print(self, record: JobRecord) -> None:
        for line in record_lines(record.__dict__):
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        if record.status not in FAILED_STATUSES and not self.quiet:
            loss = record.result.get("loss")
            loss_text = f", loss {loss:.3g}" if isinstance(loss, float) else ""
            self.console.print(
                f"{record.status}: {record.input} ({record.seconds:.1f} s{loss_text})",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    def _write_manifest(self) -> None:
        """Rewrite the manifest with every record so far. If it cannot be written (a full disk), say
        so in one line and go on: the next write records everything again."""
        if not self.always_record and all(r.status == "bad-input" for r in self.records):
            return  # nothing ran: leave no output at all
        try:
            write_run_record(
                self.manifest_path,
                "run",
                {
                    **self.run_info,
                    "started": self.started,
                    "summary": count_statuses([r.status for r in self.records]),
                    "inputs": [r.__dict__ for r in self.records],
                },
            )
            self.manifest_written = True
        except OSError as err:
            self.manifest_written = False
            self.console.print(
                warning_line(
                    f"{self.manifest_path}: cannot write it ({err.strerror}); it is written again after the next input"
                ),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def _finished(job: Job) -> bool:
    """Whether the job's outputs are complete (its own test, or every output exists)."""
    if job.finished is not None:
        return job.finished()
    return bool(job.outputs) and all(p.is_file() for p in job.outputs)


class _LogHandler(logging.StreamHandler):
    """A job log's handler: a write that fails (a full disk) is noted, not printed as a traceback."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed = True


@contextmanager
def _job_log(path: Path) -> Iterator[Callable[[], bool]]:
    """Send the `invrender` logger to `path` for the block, which gets a function saying whether
    every line reached the file. A symbolic link (the folder or the file) is refused rather than
    followed, so that a log is never written outside the output folder; a log that cannot be made
    for want of space is done without."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for link in (path.parent, path):
        if link.is_symlink():
            raise InputError(link, "is a symbolic link: a log is not written through one (remove it)")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            yield lambda: False
            return
        raise InputError(path, f"cannot write the log ({err.strerror})") from None
    handler = _LogHandler(os.fdopen(fd, "a", encoding="utf-8"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # the console shows the progress bar and one line per job, not the log
    try:
        yield lambda: not handler.failed
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
        handler.close()
        try:
            handler.stream.close()  # a StreamHandler leaves its stream open
        except OSError:
            pass  # the last buffered line did not fit on the disk either
