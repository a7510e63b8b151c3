"""spline-refine on whole plates: a 1024x1024 frame with 30 worms against 128x128 frames with 3.

Both sets come from `invrender synth splines` (never used for tuning): the small frames are the
standard benchmark frames (3 crossing bodies, seed 0); a plate has 30 bodies of the same size
(`--body-size 128`) spread over 1024x1024 px, a fraction `--crossing` of them crossing another
(dataset seed 1). Both are refined from the same kind of init (`--init-kind`, default rotation) by
`invrender spline-refine` with the default config, one command per set, in one run of this script.
Seconds per frame are the jobs' own seconds from the run record (start-up excluded). DTW: per
worm, labels and results matched one to one (see invrender.core.metrics.matched_dtw), px.

    python bench/spline_plate.py [--small-frames 6] [--plates 2] [overrides ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench_data import dataset, synth_cli  # bench/bench_data.py, beside this script
from invrender.core.geometry.spline_io import read_splines
from invrender.core.metrics import matched_dtw

OUT = Path(__file__).parent / "out" / "spline_plate"
INVRENDER = [sys.executable, "-m", "invrender.cli"]


def make_set(name: str, frames: int, extra: list[str]) -> Path:
    return dataset(OUT / "data" / name, synth_cli, arguments=["splines", "-f", str(frames), *extra])


def refine(data: Path, frames: int, init_kind: str, overrides: list[str]) -> tuple[list[float], list[float]]:
    """Fit the first `frames` frames of a set; (seconds per frame, DTW per worm)."""
    out = OUT / "fit" / data.name
    shutil.rmtree(out, ignore_errors=True)
    images = [str(data / f"frame_{f:04d}.tif") for f in range(frames)]
    command = [*INVRENDER, "spline-refine", *images, "--init", str(data / "inits" / init_kind), "--out", str(out)]
    subprocess.run([*command, "-q", *overrides], check=True)
    records = json.loads((out / "manifest.json").read_text())["inputs"]
    seconds = [r["seconds"] for r in records]
    dtw = []
    for f in range(frames):
        labels = [np.asarray(r["points"]) for r in read_splines(data / "labels" / f"frame_{f:04d}.json")[0]]
        results = [np.asarray(r["points"]) for r in read_splines(out / f"frame_{f:04d}.splines.json")[0]]
        dtw += matched_dtw(labels, results)[1]
    return seconds, dtw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-frames", type=int, default=6)
    parser.add_argument("--plates", type=int, default=2)
    parser.add_argument("--crossing", type=float, default=0.2)
    parser.add_argument("--init-kind", default="rotation")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    small = make_set("small", args.small_frames, ["-n", "3", "--size", "128", "--seed", "0"])
    plate = make_set(
        "plate",
        args.plates,
        ["-n", "30", "--size", "1024", "--body-size", "128", "--crossing", str(args.crossing), "--seed", "1"],
    )
    rows = []
    sets = (("128x128, 3 worms", small, args.small_frames), ("1024x1024, 30 worms", plate, args.plates))
    for name, data, frames in sets:
        seconds, dtw = refine(data, frames, args.init_kind, args.overrides)
        rows.append((name, frames, len(dtw), np.mean(seconds), np.median(dtw), np.mean(dtw), np.max(dtw)))
    print(f"spline-refine, {args.init_kind} inits, default config {' '.join(args.overrides)}")
    print()
    print("| frames | n | worms | s per frame | median DTW px | mean DTW px | max DTW px |")
    print("|---|---|---|---|---|---|---|")
    for name, frames, worms, seconds, median, mean, worst in rows:
        print(f"| {name} | {frames} | {worms} | {seconds:.1f} | {median:.3f} | {mean:.3f} | {worst:.2f} |")
    print()
    print(f"plate / small seconds per frame: {rows[1][3] / rows[0][3]:.1f}x (target at most 10x); ")
    print(f"median DTW plate - small: {rows[1][4] - rows[0][4]:+.3f} px (target at most +0.05)")


if __name__ == "__main__":
    main()
