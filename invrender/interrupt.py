"""Stopping a run: SIGTERM (a scheduler's cancel or time-out, `kill`) and Ctrl-C raise
KeyboardInterrupt, so that the manifest records what finished and `--resume` goes on from there.

The request is also remembered, because the exception can be lost. Python runs a signal's handler at
the next bytecode of the main thread, wherever that is, and some places swallow what it raises: the
at-fork callbacks (logging's run right after every `os.fork`; Python reports the exception as
"Exception ignored" and goes on), or a library's bare `except:`. So forking a job's child is done
with the stop deferred (`stop_deferred`), and the runner calls `raise_if_stopping()` at each step
and before each job, so that a lost interrupt still stops the run. Python's report of a lost one, a
traceback, is not printed.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = False
_deferred = False


def _request_stop(signum, frame) -> None:
    global _requested
    _requested = True
    if not _deferred:
        raise KeyboardInterrupt


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """For the block, SIGTERM and Ctrl-C request a stop (see above); the previous handlers come back
    after it. Only the main thread may set handlers: elsewhere the block runs as it is."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested = False
    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    unraisable = sys.unraisablehook

    def report_unless_interrupt(info) -> None:
        if not (_requested and info.exc_type is KeyboardInterrupt):
            unraisable(info)

    sys.unraisablehook = report_unless_interrupt
    try:
        yield
    finally:
        sys.unraisablehook = unraisable
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        _requested = False  # a later run in this process (the Python API, a widget) starts afresh


def raise_if_stopping() -> None:
    """Raise KeyboardInterrupt if a stop was requested, even if its first KeyboardInterrupt was lost."""
    if _requested:
        raise KeyboardInterrupt


@contextmanager
def stop_deferred() -> Iterator[None]:
    """For the block, a stop request is only noted: it raises KeyboardInterrupt when the block ends."""
    global _deferred
    _deferred = True
    try:
        yield
    finally:
        _deferred = False
    raise_if_stopping()
