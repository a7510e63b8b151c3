"""Cost model of the splat renderer (invrender.core.render.splat2d.render_curves).

Forward and forward+backward seconds and peak memory as the image, the number of curves and the
number of starts (seeds) grow. Each case runs in a fresh process so that its peak resident memory
(ru_maxrss, minus the process's footprint after imports) is its own.

    python bench/splat2d.py [--threads 2]
"""

from __future__ import annotations

from fresh_process import results_in_fresh_processes, threads_or_run_case, time_forward_backward

CASES = [  # (image side px, curves, points per curve, seeds, blob radius px)
    (128, 3, 128, 1, 3.0),
    (128, 3, 128, 8, 3.0),
    (256, 3, 256, 8, 3.0),
    (256, 10, 256, 8, 3.0),
    (512, 10, 512, 8, 3.0),
    (512, 10, 512, 8, 6.0),
    (1024, 30, 512, 1, 3.0),
]


def run_case(side: int, curves: int, points: int, seeds: int, radius: float, threads: int) -> dict:
    import resource

    import torch

    from invrender.core.render.splat2d import render_curves

    torch.set_num_threads(threads)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, points)
    start = torch.rand(seeds, curves, 1, 2, generator=g) * side * 0.6 + side * 0.2
    direction = torch.randn(seeds, curves, 1, 2, generator=g)
    centers = (start + 0.3 * side * t[None, None, :, None] * direction / direction.norm(dim=-1, keepdim=True)).clamp(
        0, side - 1
    )
    centers.requires_grad_(True)
    radii = torch.full((seeds, curves, points), radius, requires_grad=True)
    weights = torch.full((seeds, curves, points), 0.5)
    profile = torch.rand(seeds, 9, generator=g, requires_grad=True)

    def forward():
        return render_curves(centers, radii, weights, profile, (side, side))

    t_forward, t_both = time_forward_backward(forward)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    return {"forward_s": t_forward, "forward_backward_s": t_both, "peak_mb": peak / 1024}


def main() -> None:
    threads = threads_or_run_case(__doc__, run_case)
    if threads is None:
        return
    print(f"splat2d render_curves, {threads} thread(s), float32, CPU; mean of 5 runs after 2 warm-up runs\n")
    print("| image | curves | points/curve | seeds | radius px | forward ms | forward+backward ms | peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    for case, r in results_in_fresh_processes(__file__, CASES, threads):
        side, curves, points, seeds, radius = case
        print(
            f"| {side}x{side} | {curves} | {points} | {seeds} | {radius:g} | {1000 * r['forward_s']:.1f} | "
            f"{1000 * r['forward_backward_s']:.1f} | {r['peak_mb']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
