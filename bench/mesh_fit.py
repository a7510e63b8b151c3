"""Shape and PSF recovery of `invrender mesh-fit` on a synthetic stack of a known mesh.

Spot (../shared/data/meshes/spot.obj, merged to its 2930-vertex watertight surface) is scaled to
60% of a 64^3 box, rendered through a Gaussian PSF (sigma 2 voxels) with Gaussian noise (5% of
the peak) by `invrender synth mesh`, then fitted from the default start (a sphere fitted to the
bright region) by `invrender mesh-fit` with the default config, through the command line. Reported:
the symmetric Chamfer distance between the fitted and the true surface (200 000 area-uniform
samples each, voxels), SSIM and PSNR of the render against the stack, the PSF's sigmas against
the truth, and the wall-clock seconds of the fit command. With a multi-material mesh (cell4.rec)
and `--cells N`, the fit starts from a foam of N cells and the Chamfer distance is also given per
cell, cells matched by the assignment of least total distance. `--size` sets the box (the mesh
keeps 60% of it) and `--copies` puts that many randomly turned copies of the mesh side by side (two
copies of cell4 are a cluster of 8 cells).

    python bench/mesh_fit.py [--noise 0.05] [overrides ...]
    python bench/mesh_fit.py --mesh ../shared/data/meshes/cell4.rec --cells 4
    python bench/mesh_fit.py --mesh ../shared/data/meshes/cell4.rec --copies 2 --cells 8 --size 128
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from invrender.core.geometry.meshes import read_mesh
from invrender.core.metrics import chamfer_distance, surface_samples

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "meshes"
OUT = Path(__file__).parent / "out" / "mesh_fit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--sigma", type=float, default=2.0)
    parser.add_argument("--mesh", default=str(SHARED / "spot.obj"))
    parser.add_argument("--size", type=int, default=64, help="the stack's side, voxels")
    parser.add_argument("--copies", type=int, default=1, help="copies of the mesh side by side")
    parser.add_argument(
        "--cells", type=int, help="fit from a foam of this many cells (for a multi-material mesh such as cell4.rec)"
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    name = Path(args.mesh).stem
    invrender = [sys.executable, "-m", "invrender.cli"]
    subprocess.run(
        [
            *invrender,
            "synth",
            "mesh",
            args.mesh,
            "--size",
            str(args.size),
            "--copies",
            str(args.copies),
            "--sigma",
            str(args.sigma),
            "--noise",
            str(args.noise),
            "--out",
            str(OUT / "data"),
        ],
        check=True,
    )
    start = time.perf_counter()
    cells = ["--cells", str(args.cells)] if args.cells else []
    subprocess.run(
        [
            *invrender,
            "mesh-fit",
            str(OUT / "data" / f"{name}.tif"),
            "--out",
            str(OUT / "fit"),
            "--device",
            "cpu",
            "-q",
            *cells,
            *args.overrides,
        ],
        check=True,
    )
    seconds = time.perf_counter() - start
    truth = read_mesh(next((OUT / "data").glob(f"{name}.truth.*")))
    fitted = read_mesh(next((OUT / "fit").glob(f"{name}.mesh.*")))
    chamfer, fit_to_truth, truth_to_fit = chamfer_distance(
        surface_samples(fitted.vertices, fitted.faces, 200_000, 0),
        surface_samples(truth.vertices, truth.faces, 200_000, 1),
    )
    metrics = json.loads((OUT / "fit" / f"{name}.metrics.json").read_text())
    sigmas = json.loads((OUT / "fit" / f"{name}.psf.json").read_text())["sigmas"]
    error = max(abs(s - args.sigma) / args.sigma for s in sigmas)
    per_cell = ""
    if truth.materials is not None and fitted.materials is not None:
        per_cell = "; per cell (matched): " + ", ".join(f"{d:.3f}" for d in per_cell_chamfer(truth, fitted))
    print(
        f"mesh-fit on {name}{f' x {args.copies}' if args.copies > 1 else ''}, {args.size}^3, "
        f"Gaussian PSF sigma {args.sigma} voxels, noise {args.noise}, default config "
        f"{' '.join(cells + args.overrides)}{per_cell}"
    )
    print()
    print(
        "| Chamfer (vox) | fit to truth | truth to fit | SSIM | PSNR dB | PSF sigmas (vox) | max sigma error | steps "
        "| seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {chamfer:.3f} | {fit_to_truth:.3f} | {truth_to_fit:.3f} | {metrics['ssim']:.3f} | {metrics['psnr']:.1f} | "
        f"{', '.join(f'{s:.3f}' for s in sigmas)} | {error:.1%} | {metrics['steps']} | {seconds:.0f} |"
    )


def per_cell_chamfer(truth, fitted) -> list[float]:
    """Chamfer distance of each true cell to the fitted cell it is matched with (the assignment
    that minimises the total distance)."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    samples = lambda mesh, c, seed: surface_samples(mesh.vertices, mesh.cell_faces(c), 50_000, seed)  # noqa: E731
    true_cells = [samples(truth, c, 1) for c in range(1, truth.n_cells + 1)]
    fit_cells = [samples(fitted, c, 0) for c in range(1, fitted.n_cells + 1)]
    cost = np.array([[chamfer_distance(f, t)[0] for f in fit_cells] for t in true_cells])
    rows, cols = linear_sum_assignment(cost)
    return [float(cost[r, c]) for r, c in zip(rows, cols)]


if __name__ == "__main__":
    main()
