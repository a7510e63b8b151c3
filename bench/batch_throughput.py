"""Inputs per minute for `invrender spline-refine` over a batch, by how the work is spread.

64 synthetic frames (128x128, 3 bodies, rotation inits, dataset seed 0), the default schedule.
Every setup runs the real command line in fresh processes and is timed from start to finish on
the wall clock (process start, imports, reading, fitting, writing, manifests), into its own
output folder:

- joblib launcher, 1 worker with 1 torch thread: the baseline, one core;
- joblib launcher, 2 workers with 1 thread each: two cores;
- shards: two plain processes `--num-parts 2 --part-id 0|1 --threads 1` side by side: two cores;
- one process with 2 torch threads: two cores, for comparison.

Scaling is inputs per minute over the baseline's, and efficiency that divided by the cores used.

    python bench/batch_throughput.py [--frames 64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_data import dataset  # bench/bench_data.py, beside this script
from invrender.methods.spline_refine.synth import write_spline_dataset

OUT = Path(__file__).parent / "out" / "batch"
INVRENDER = [sys.executable, "-m", "invrender.cli", "spline-refine"]


def frames_set(frames: int) -> Path:
    return dataset(OUT / f"data-{frames}", write_spline_dataset, bodies=3, frames=frames, size=128, seed=0)


def run_setup(commands: list[list[str]], out: Path) -> float:
    """Start the commands together, wait for all; wall seconds. Any failure stops the benchmark."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in commands]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"benchmark run failed ({process.returncode}): {' '.join(process.args)}\n{err}")
    return time.perf_counter() - start


def fit_seconds(out: Path) -> list[float]:
    """Seconds per input as the runner recorded them, from whichever manifests the run wrote."""
    seconds = []
    for path in sorted(out.glob("manifest*.json")):
        data = json.loads(path.read_text())
        records = [r for job in data["jobs"] for r in job["inputs"]] if data["kind"] == "sweep" else data["inputs"]
        assert all(r["status"] == "done" for r in records), path
        seconds += [r["seconds"] for r in records]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    args = parser.parse_args()
    data = frames_set(args.frames)
    common = [str(data), "--init", str(data / "inits" / "rotation"), "--device", "cpu", "-q"]
    setups = {
        "joblib, 1 worker x 1 thread": (
            1,
            lambda out: [
                [
                    *INVRENDER,
                    *common,
                    "--out",
                    str(out),
                    "-m",
                    "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=1",
                    "--threads",
                    "1",
                ]
            ],
        ),
        "joblib, 2 workers x 1 thread": (
            2,
            lambda out: [
                [
                    *INVRENDER,
                    *common,
                    "--out",
                    str(out),
                    "-m",
                    "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=2",
                    "--threads",
                    "1",
                ]
            ],
        ),
        "shards, 2 processes x 1 thread": (
            2,
            lambda out: [
                [*INVRENDER, *common, "--out", str(out), "--num-parts", "2", "--part-id", str(k), "--threads", "1"]
                for k in (0, 1)
            ],
        ),
        "1 process x 2 threads": (2, lambda out: [[*INVRENDER, *common, "--out", str(out), "--threads", "2"]]),
    }
    rows = []
    for i, (name, (cores, commands)) in enumerate(setups.items()):
        out = OUT / f"run-{i}"
        wall = run_setup(commands(out), out)
        seconds = fit_seconds(out)
        assert len(seconds) == args.frames, f"{name}: {len(seconds)} inputs recorded"
        rows.append((name, cores, wall, args.frames / wall * 60, sum(seconds) / len(seconds)))
        print(f"{name}: {wall:.0f} s", file=sys.stderr, flush=True)

    base = rows[0][3]
    print(f"spline-refine, default schedule, {args.frames} synthetic frames 128x128 with 3 bodies, CPU")
    print()
    print("| setup | cores | wall s | inputs/min | mean s per input | scaling | efficiency |")
    print("|---|---|---|---|---|---|---|")
    for name, cores, wall, rate, mean in rows:
        print(
            f"| {name} | {cores} | {wall:.0f} | {rate:.2f} | {mean:.1f} | {rate / base:.2f}x | "
            f"{rate / base / cores:.0%} |"
        )


if __name__ == "__main__":
    main()
