"""Shared cores: one fit alone, then the same fit beside one busy process of equal length.

For each method the same command runs on input A alone, then on A and on B (another input of the
same kind) at the same time, each as its own `invrender` process, in one run of this script. The
ratio shared / alone is the slow-down a fit suffers when another job takes half the cores; fair
sharing of 2 cores between 2 processes costs 1 to 2 times.

    python bench/shared_cores.py                         # the defaults (what a user gets)
    python bench/shared_cores.py --env OMP_WAIT_POLICY=ACTIVE --env ...   # a variant
    python bench/shared_cores.py --methods spline-refine --threads 1

spline-refine: a 128x128 frame with 3 bodies (`synth splines`, rotation inits), default config.
mesh-fit: spot at 64^3 (`synth mesh`, sigma 2 voxels, noise 5%), default config unless
`--mesh-overrides` (e.g. fewer steps to compare variants quickly).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_data import dataset, synth_cli  # bench/bench_data.py, beside this script

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "meshes"
OUT = Path(__file__).parent / "out" / "shared_cores"
INVRENDER = [sys.executable, "-m", "invrender.cli"]


def make_data() -> dict[str, list[list[str]]]:
    """The fit commands of each method on inputs A and B (without --out)."""
    splines = dataset(OUT / "data" / "splines", synth_cli, arguments=["splines", "-n", "3", "-f", "2"])
    meshes = OUT / "data" / "meshes"
    for seed in (0, 1):
        spot = ["mesh", str(SHARED / "spot.obj"), *"--size 64 --sigma 2 --noise 0.05".split(), "--seed", str(seed)]
        dataset(meshes / f"seed{seed}", synth_cli, arguments=spot)
    inits = str(splines / "inits" / "rotation")
    return {
        "spline-refine": [["spline-refine", str(splines / f"frame_000{i}.tif"), "--init", inits, "-q"] for i in (0, 1)],
        "mesh-fit": [["mesh-fit", str(meshes / f"seed{s}" / "spot.tif"), "-q"] for s in (0, 1)],
    }


def run_together(commands: list[list[str]], env: dict[str, str]) -> list[float]:
    """Start every command at once; the wall-clock seconds of each."""
    start = time.perf_counter()
    processes = [subprocess.Popen(c, env=env) for c in commands]
    ends = [0.0] * len(processes)
    pending = set(range(len(processes)))
    while pending:
        for i in list(pending):
            if processes[i].poll() is not None:
                ends[i] = time.perf_counter() - start
                pending.discard(i)
                if processes[i].returncode != 0:
                    raise SystemExit(f"{' '.join(commands[i])} failed with exit code {processes[i].returncode}")
        time.sleep(0.05)
    return ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["spline-refine", "mesh-fit"])
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the fit processes")
    parser.add_argument("--threads", type=int, help="--threads for the fits (default: the program's)")
    parser.add_argument("--mesh-overrides", nargs="*", default=[])
    args = parser.parse_args()
    env = dict(os.environ)
    env.update(item.split("=", 1) for item in args.env)
    commands = make_data()
    threads = [] if args.threads is None else ["--threads", str(args.threads)]
    print(f"env: {' '.join(args.env) or '(default)'}; threads: {args.threads or '(default)'}")
    print()
    print("| method | alone s | shared s (A, B) | shared / alone |")
    print("|---|---|---|---|")
    for method in args.methods:
        extra = threads + (args.mesh_overrides if method == "mesh-fit" else [])
        a, b = ([*INVRENDER, *c, *extra, "--out"] for c in commands[method])
        for run in ("alone", "shared_a", "shared_b"):
            shutil.rmtree(OUT / run / method, ignore_errors=True)
        (alone,) = run_together([a + [str(OUT / "alone" / method)]], env)
        shared = run_together([a + [str(OUT / "shared_a" / method)], b + [str(OUT / "shared_b" / method)]], env)
        print(f"| {method} | {alone:.1f} | {shared[0]:.1f}, {shared[1]:.1f} | {max(shared) / alone:.2f} |", flush=True)


if __name__ == "__main__":
    main()
