"""Cost model of the two mesh renderers of the microscope, and the NUFFT's accuracy against exact.

For each image size (64^3, 128^3, 200^3, voxel 1) and icosphere (1280, 5120, 20480 faces, radius 0.3
of the box), on the narrow band of a Gaussian PSF (sigma 2 voxels, h^ >= 1% of its maximum) and,
for the NUFFT, also on the full spectrum: seconds for forward (mesh to image) and backward
(gradient of a loss on the image to the vertices), and the peak resident memory of the process
that ran it (each configuration runs in a fresh process). `exact` runs where its predicted time
(faces x band frequencies at the rate measured on the smallest case) is under --exact-budget s.
Accuracy: relative L2 error of the NUFFT image (default quadrature, degree 5) against the exact one,
and the cosine similarity of their vertex gradients.

    python bench/meshft.py [--threads 2] [--exact-budget 120]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SIZES = (64, 128, 200)
OUT = Path(__file__).parent / "out" / "meshft"  # images and gradients of each case, for the accuracy columns
SUBDIVISIONS = {1280: 3, 5120: 4, 20480: 5}


def run_one(backend: str, size: int, faces: int, full: bool, threads: int) -> dict:
    """In this (fresh) process: time forward and backward, keep the image and gradient for accuracy."""
    import numpy as np
    import torch
    import trimesh

    from invrender.core.render.microscope import render_stack, surface_spectrum
    from invrender.core.render.psf import GaussianPSF
    from invrender.core.render.registry import get_renderer
    from invrender.core.render.spectrum import Band, Grid

    torch.set_num_threads(threads)
    mesh = trimesh.creation.icosphere(subdivisions=SUBDIVISIONS[faces], radius=0.3 * size)
    vertices = torch.tensor(mesh.vertices + size / 2 + 0.25, dtype=torch.float64, requires_grad=True)
    tri = torch.tensor(mesh.faces, dtype=torch.long)
    weights = torch.ones(len(tri), dtype=torch.float64)
    grid = Grid((size, size, size), (1.0, 1.0, 1.0))
    psf = GaussianPSF((2.0, 2.0, 2.0))
    if full:
        band = Band.full(grid)
    else:
        transfer = psf.transfer(grid.half_spectrum_freqs.reshape(-1, 3)).reshape(size, size, size // 2 + 1)
        band = Band.where(grid, transfer >= 0.01)
    renderer = get_renderer(backend, torch.device("cpu"), "mesh spectrum")
    target = torch.from_numpy(np.random.default_rng(0).random((size, size, size))) * 1e-5
    start = time.perf_counter()
    image = render_stack(
        surface_spectrum(renderer, vertices, tri, weights, band), psf.transfer(band.freqs).detach(), band
    )
    forward = time.perf_counter() - start
    start = time.perf_counter()
    ((image - target) ** 2 * target).sum().backward()
    backward = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    saved = OUT / f"{backend}-{size}-{faces}-{'full' if full else 'band'}.npz"
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(saved, image=image.detach().numpy(), grad=vertices.grad.numpy())
    return {"forward": forward, "backward": backward, "peak_gb": peak, "band": len(band.freqs), "saved": str(saved)}


def measure(backend: str, size: int, faces: int, full: bool, threads: int) -> dict:
    command = [sys.executable, __file__, "--one", json.dumps([backend, size, faces, full, threads])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{backend} {size}^3 {faces} faces failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--exact-budget", type=float, default=120.0)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*json.loads(args.one))))
        return
    import numpy as np

    rows, rate = [], None
    for size in SIZES:
        for faces in SUBDIVISIONS:
            nufft_band = measure("nufft", size, faces, False, args.threads)
            nufft_full = measure("nufft", size, faces, True, args.threads)
            pairs = faces * nufft_band["band"]
            exact, note = None, ""
            if rate is None or pairs * rate < args.exact_budget:
                exact = measure("exact", size, faces, False, args.threads)
                rate = rate or (exact["forward"] + exact["backward"]) / pairs
            else:
                note = f"predicted {pairs * rate:.0f} s"
            accuracy = ""
            if exact is not None:
                ours, reference = np.load(nufft_band["saved"]), np.load(exact["saved"])
                a, b = ours["image"], reference["image"]
                ga, gb = ours["grad"].ravel(), reference["grad"].ravel()
                cosine = ga @ gb / np.linalg.norm(ga) / np.linalg.norm(gb)
                accuracy = f"{np.linalg.norm(a - b) / np.linalg.norm(b):.1e} / {cosine:.7f}"
            rows.append((size, faces, nufft_band["band"], nufft_band, nufft_full, exact, note, accuracy))
            print(f"{size}^3 {faces} faces done", file=sys.stderr, flush=True)

    print(f"Mesh renderers, Gaussian PSF sigma 2 voxels, {args.threads} thread(s); seconds forward + backward, peak GB")
    print()
    print(
        "| image | faces | band freqs | nufft band: fwd + bwd s | GB | nufft full: fwd + bwd s | GB | exact band: fwd "
        "+ bwd s | GB | nufft vs exact: image rel L2 / grad cosine |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size, faces, band, nb, nf, ex, note, accuracy in rows:
        exact_text = (
            f"{ex['forward']:.2f} + {ex['backward']:.2f} | {ex['peak_gb']:.2f}" if ex else f"not run ({note}) | "
        )
        print(
            f"| {size}^3 | {faces} | {band} | {nb['forward']:.2f} + {nb['backward']:.2f} | {nb['peak_gb']:.2f} | "
            f"{nf['forward']:.2f} + {nf['backward']:.2f} | {nf['peak_gb']:.2f} | {exact_text} | {accuracy} |"
        )


if __name__ == "__main__":
    main()
