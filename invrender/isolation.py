"""Run a job in a forked child process, so that a time limit, SIGTERM or Ctrl-C stops it within a
bounded time even inside a long native call (an FFT, a filter, a solver), which no signal handler of
the computing process can interrupt: the runner waits and ends the child instead.

The parent must not have run a parallel region of torch's OpenMP pool: GNU OpenMP's worker threads
do not survive fork, and a child of such a parent hangs on its first parallel region. So only the
`invrender` program forks jobs (`allow_forking` at its start, before anything is computed), and a
command that runs jobs first lowers its own torch threads to one (`prepare_parent`); each child gets
the jobs' thread count. Any other caller (tests calling `cli.main`, the Python API, a sweep's worker
process), a CUDA device (CUDA does not survive fork either) or a platform without fork runs the jobs
in its own process, stoppable between native calls (see `runner.time_limit`).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from invrender.core.io import InputError
from invrender.core.optim.loss_log import StepCallback
from invrender.interrupt import stop_deferred

_forking_allowed = False
_parent_prepared = False

#: Seconds a child has to end after SIGTERM before it is killed.
GRACE = 2.0

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def allow_forking() -> None:
    """Called by the `invrender` program at its start, when nothing has been computed yet."""
    global _forking_allowed
    _forking_allowed = True


def prepare_parent() -> None:
    """Called by a command before it reads its inputs: if this process may fork jobs, it does its
    own torch work on one thread from now on (its jobs get theirs in their children)."""
    global _parent_prepared
    if _forking_allowed and not _parent_prepared:
        _parent_prepared = True
        torch.set_num_threads(1)


def forks_jobs(device: torch.device) -> bool:
    """Whether jobs on `device` run in forked children (see the module docstring)."""
    return _parent_prepared and device.type == "cpu" and sys.platform.startswith("linux")


class ChildFailed(Exception):
    """The job failed in its child; the message is the one line for the console (the traceback is
    in the job's log)."""


class ChildBadInput(Exception):
    """The job refused its input in its child (an InputError there); the message is its line."""


def run_in_child(
    run: Callable[[StepCallback], dict[str, Any]],
    threads: int,
    on_step: StepCallback,
    deadline: float | None,
    on_timeout: type[BaseException],
) -> dict[str, Any]:
    """Run `run(on_step)` in a forked child with `threads` torch threads; return its result.

    The child's steps reach `on_step` here. At `deadline` (time.monotonic seconds) the child is
    ended and `on_timeout` raised; an exception here (Ctrl-C, SIGTERM) ends it too. A job that
    raised in the child raises ChildBadInput (an InputError) or ChildFailed here.
    """
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child_main, args=(run, threads, sender, os.getpid()), name="invrender-job")
    try:
        # A stop requested while the child is forked raises once it is known here, so that it is
        # ended (see interrupt.py). The child is forked with SIGTERM and SIGINT blocked, for it
        # starts with this process's handlers; it unblocks them once it has set its own.
        with stop_deferred():
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                child.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        sender.close()  # so that the child's end closing (it ended) shows as EOF here
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and (remaining <= 0 or not receiver.poll(remaining)):
                raise on_timeout
            try:
                kind, *payload = receiver.recv()
            except EOFError:
                child.join()
                reason = _exit_reason(child.exitcode)
                raise ChildFailed(f"the job's process ended without a result ({reason})") from None
            if kind == "step":
                on_step(*payload)
            elif kind == "done":
                result, imported = payload
                _import_here(imported)
                return result
            elif kind == "bad-input":
                raise ChildBadInput(payload[0])
            else:
                raise ChildFailed(payload[0])
    finally:
        sender.close()
        _end(child)
        receiver.close()


def _child_main(run, threads: int, sender, parent: int) -> None:
    # Inherited handlers would turn SIGTERM into an exception that waits for the native call to
    # return; the default ends the child at once. Ctrl-C reaches the whole process group: the parent
    # handles it and ends the child.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # a SIGTERM sent meanwhile ends it now
    _end_with_parent(parent)
    torch.set_num_threads(threads)
    modules = set(sys.modules)
    try:
        result = run(lambda *step: sender.send(("step", *step)))
        sender.send(("done", result, sorted(set(sys.modules) - modules)))
    except InputError as err:
        sender.send(("bad-input", str(err)))
    except Exception as err:
        logging.getLogger("invrender").error("%s", "".join(traceback.format_exception(err)))
        sender.send(("failed", failure_line(err)))
    finally:
        sender.close()


def _import_here(names: list[str]) -> None:
    """Import the modules a finished job imported, so that the next child starts with them: a first
    job imports a second or two of lazily loaded modules (torch's optimiser machinery, SymPy, ...),
    which would otherwise be paid again by every job. Importing runs no parallel region here (this
    process keeps one thread), so forking stays safe."""
    # A library's import may hold a bare `except:` that swallows the KeyboardInterrupt of a SIGTERM
    # or Ctrl-C: the runner's check before the next job stops the run then (see interrupt.py).
    for name in names:
        if name not in sys.modules and not name.startswith("__"):
            try:
                importlib.import_module(name)
            except Exception:  # a module that only imports in its own context: the child imports it again
                pass


def _end_with_parent(parent: int) -> None:
    """Have the kernel kill this child when its parent dies (a parent killed by SIGKILL cannot end
    it), so that no orphan goes on computing and writing after its run was stopped."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def failure_line(err: BaseException) -> str:
    """One line for the console: the error and where it was raised (the traceback goes to the log)."""
    where = traceback.extract_tb(err.__traceback__)[-1]
    return f"{type(err).__name__}: {err} (at {Path(where.filename).name}:{where.lineno})"


def _end(child) -> None:
    """End the child if it still runs: SIGTERM, then SIGKILL after GRACE seconds."""
    if child.pid is None:  # never started (the fork failed)
        return
    if child.is_alive():
        child.terminate()
        child.join(GRACE)
        if child.is_alive():
            child.kill()
    child.join()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
