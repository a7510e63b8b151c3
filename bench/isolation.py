"""What running each job in a forked child costs: `invrender spline-refine` over the same frames,
the program as users run it (each job forked, so that it can be ended) against the same command
run in one process (`cli.main` called from Python, which runs the jobs in its own process).

Many short jobs are the worst case for the child processes: 16 synthetic frames (128x128, 3 bodies,
rotation inits, dataset seed 0, the default schedule, a few seconds each), `--threads 2`, run one
after the other, each setup into its own output folder, timed on the wall clock from process start
to exit; per-input seconds as the manifests record them.

    python bench/isolation.py [--frames 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from batch_throughput import frames_set  # the same frames (bench/out/batch/data-N)

OUT = Path(__file__).parent / "out" / "isolation"
SETUPS = {
    "forked jobs (the program)": [sys.executable, "-m", "invrender.cli"],
    "in one process (cli.main)": [sys.executable, "-c", "import sys; from invrender.cli import main; sys.exit(main())"],
}


def run(prefix: list[str], data: Path, out: Path) -> tuple[float, list[float], list[float]]:
    """Wall seconds, per-input seconds and final losses of one run."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [*prefix, "spline-refine", str(data / "frame_*.tif"), "--init", str(data / "inits" / "rotation")]
    argv += ["--out", str(out), "--threads", "2", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {' '.join(argv)}\n{done.stderr}")
    records = json.loads((out / "manifest.json").read_text())["inputs"]
    return wall, [r["seconds"] for r in records], [r["result"]["loss"] for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data = frames_set(args.frames)
    print(f"spline-refine, {args.frames} frames, --threads 2, {args.repeats} run(s) per setup, alternating")
    print()
    print("| setup | run | wall s | inputs/min | mean s per input |")
    print("| --- | --- | --- | --- | --- |")
    losses = {}
    for repeat in range(args.repeats):
        for number, (name, prefix) in enumerate(SETUPS.items()):
            wall, seconds, losses[name] = run(prefix, data, OUT / f"run-{repeat}-{number}")
            print(
                f"| {name} | {repeat + 1} | {wall:.1f} | {60 * args.frames / wall:.1f} | "
                f"{sum(seconds) / len(seconds):.2f} |",
                flush=True,
            )
    first, second = losses.values()
    print()
    print(f"same losses in both setups: {first == second}")


if __name__ == "__main__":
    main()
