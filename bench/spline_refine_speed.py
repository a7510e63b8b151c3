"""Seconds for the full default spline-refine schedule on 128x128 frames with 3 bodies.

The acceptance figure of the method: at most 10 s per frame on 2 CPU cores. Times `refine_frame`
(the whole fit: all phases, all starts) on synthetic frames (dataset seed 0, rotation inits),
after one warm-up frame, and prints the mean, max and per-phase split.

    python bench/spline_refine_speed.py [--frames 8] [--threads 2] [--bodies 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from invrender.config import compose_config
from invrender.core.geometry.spline_io import read_splines
from invrender.core.io import read_image
from invrender.methods.spline_refine.fit import refine_frame
from invrender.methods.spline_refine.synth import write_spline_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bodies", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose_config("spline_refine", "default", args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        write_spline_dataset(data, bodies=args.bodies, frames=args.frames + 1, size=128, seed=0)
        totals, phases = [], {}
        for frame in range(args.frames + 1):
            name = f"frame_{frame:04d}"
            image = read_image(data / f"{name}.tif")
            init = read_splines(data / "inits" / "rotation" / f"{name}.json")[0]
            start = time.perf_counter()
            result = refine_frame(image, init, cfg, torch.device("cpu"), seed=0)
            if frame == 0:
                continue  # warm-up
            totals.append(time.perf_counter() - start)
            for p in result.phases:
                phases.setdefault(p.name, []).append(p.seconds)
    print(
        f"spline-refine, default schedule, 128x128, {args.bodies} bodies, {args.threads} thread(s), {args.frames} "
        "frames"
    )
    print()
    print("| | mean s | max s |")
    print("|---|---|---|")
    print(f"| whole fit | {np.mean(totals):.2f} | {np.max(totals):.2f} |")
    for name, seconds in phases.items():
        print(f"| phase {name} | {np.mean(seconds):.2f} | {np.max(seconds):.2f} |")


if __name__ == "__main__":
    main()
