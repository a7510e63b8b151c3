"""finufft's upsampling factor (1.25 or 2.0) and threads for mesh-fit's transforms, by size.

Points on spheres of radius 0.6 rad spread in the periodic box (as the quadrature points of cells'
surfaces are), 36 000 to 290 000 of them (one 5120-face sphere to eight, 7 points a face), and boxes
of 31^3 to 129^3 modes (a 64^3 stack's shape band to a 256^3 stack's). For each: milliseconds of one
type-1 transform (mesh-fit's forward) and of four type-2 transforms from one box (its backward), at
the precision mesh-fit asks for. `nufft.FINE_UPSAMPLING_MODES` is chosen from this table.

    python bench/finufft_upsampling.py [--repeats 8]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import finufft
import numpy as np
import torch

import invrender  # noqa: F401  (sets the OpenMP spin count mesh-fit runs with)
from invrender.core.render.nufft import FINE_UPSAMPLING_MODES, NUFFT_TOLERANCE


def points_on_spheres(count: int, spheres: int, rng: np.random.Generator) -> list[np.ndarray]:
    """x, y, z phases (rad) of `count` points on `spheres` spheres of radius 0.6 rad."""
    centres = rng.uniform(-1.5, 1.5, (spheres, 3))
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = centres[rng.integers(spheres, size=count)] + 0.6 * directions
    return [np.ascontiguousarray(points[:, d]) for d in range(3)]


def milliseconds(call, repeats: int) -> float:
    call()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    rng = np.random.default_rng(0)
    settings = [(up, th) for up in (1.25, 2.0) for th in sorted({1, threads})]
    print(f"finufft {finufft.__version__}, precision {NUFFT_TOLERANCE:g}; ms of type 1 / four type 2")
    print(f"mesh-fit uses 2.0 below {FINE_UPSAMPLING_MODES} modes, else 1.25, on {threads} threads\n")
    print("| points | box | " + " | ".join(f"up {up}, {th} thr" for up, th in settings) + " |")
    print("|---|---|" + "---|" * len(settings))
    for count, spheres in ((36_000, 1), (140_000, 4), (290_000, 8)):
        x = points_on_spheres(count, spheres, rng)
        strengths = rng.normal(size=count) + 0j
        for side in (31, 45, 65, 97, 129):
            fields = np.ones((4, side, side, side), complex)
            cells = []
            for up, th in settings:
                options = {"eps": NUFFT_TOLERANCE, "upsampfac": up, "nthreads": th}
                type1 = partial(finufft.nufft3d1, *x, strengths, (side,) * 3, isign=-1, **options)
                type2 = partial(finufft.nufft3d2, *x, fields, isign=1, **options)
                t1, t2 = milliseconds(type1, args.repeats), milliseconds(type2, args.repeats)
                cells.append(f"{t1:.0f} / {t2:.0f}")
            print(f"| {count} | {side}^3 | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
