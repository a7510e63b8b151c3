"""What the renderer cost-model benchmarks share: timing forward and backward after a warm-up, and
running each case in a fresh process so that its peak resident memory is its own."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator


def time_forward_backward(forward: Callable, repeats: int = 5) -> tuple[float, float]:
    """Mean seconds of `forward()` without gradients, and of forward + backward of sum(out^2),
    after 2 warm-up runs (the allocator and thread pool settle)."""
    import torch

    for _ in range(2):
        forward().square().sum().backward()
    t0 = time.perf_counter()
    for _ in range(repeats):
        with torch.no_grad():
            forward()
    t_forward = (time.perf_counter() - t0) / repeats
    t0 = time.perf_counter()
    for _ in range(repeats):
        forward().square().sum().backward()
    return t_forward, (time.perf_counter() - t0) / repeats


def results_in_fresh_processes(script: str, cases: list, threads: int) -> Iterator[tuple[tuple, dict]]:
    """(case, result) for each case, run as `script --threads T --case JSON`, which prints a JSON result."""
    for case in cases:
        out = subprocess.run(
            [sys.executable, script, "--threads", str(threads), "--case", json.dumps(case)],
            capture_output=True,
            text=True,
            check=True,
        )
        yield case, json.loads(out.stdout)


def threads_or_run_case(doc: str, run_case: Callable[..., dict]) -> int | None:
    """Parse a cost-model benchmark's command line. Run as a case (`--case JSON`, from
    `results_in_fresh_processes`): print `run_case(*case, threads)` as JSON and return None;
    otherwise return the thread count for the table."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", type=str, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*json.loads(args.case), args.threads)))
        return None
    return args.threads
