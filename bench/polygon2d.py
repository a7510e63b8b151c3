"""Cost model of the polygon renderer (invrender.core.render.polygon2d.render_polygons).

Forward and forward+backward seconds and peak memory as the image, the number of polygons and their
vertices grow. The work is polygons x (edges x R x C + height x width), R the rows spanned by the
tallest edge and C the most columns one edge's piece in a row crosses, so the polygons' size enters
through R and C. Each case runs in a fresh process so that its peak resident
memory (ru_maxrss, minus the process's footprint after imports) is its own. The sum of each mask is
checked against the polygon's shoelace area (the largest relative difference is printed).

    python bench/polygon2d.py [--threads 2]
"""

from __future__ import annotations

from fresh_process import results_in_fresh_processes, threads_or_run_case, time_forward_backward

CASES = [  # (image side px, polygons, vertices, radius as a fraction of the side)
    (64, 16, 32, 0.2),
    (64, 100, 32, 0.2),
    (64, 100, 128, 0.2),
    (128, 50, 32, 0.2),
    (256, 16, 64, 0.3),
    (512, 8, 128, 0.3),
    (512, 200, 32, 0.03),
    (1024, 400, 32, 0.015),
]


def run_case(side: int, polygons: int, vertices: int, radius: float, threads: int) -> dict:
    import math
    import resource

    import torch

    from invrender.core.geometry.polygons import shoelace_area
    from invrender.core.render.polygon2d import render_polygons

    torch.set_num_threads(threads)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    g = torch.Generator().manual_seed(0)
    angle = torch.arange(vertices) * (2 * math.pi / vertices)
    r = side * radius * (1 + 0.3 * torch.rand(polygons, vertices, generator=g) - 0.15)
    centre = side * (0.1 + 0.8 * torch.rand(polygons, 1, 2, generator=g)).clamp(radius * 1.3, 1 - radius * 1.3)
    points = (centre + r[..., None] * torch.stack([torch.cos(angle), torch.sin(angle)], -1)).requires_grad_(True)

    def forward():
        return render_polygons(points, side, side)

    t_forward, t_both = time_forward_backward(forward)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    with torch.no_grad():
        masks = forward()
    area = shoelace_area(points.detach()).abs()
    error = float(((masks.sum((-2, -1)) - area).abs() / area).max())
    return {"forward_s": t_forward, "forward_backward_s": t_both, "peak_mb": peak / 1024, "area_error": error}


def main() -> None:
    threads = threads_or_run_case(__doc__, run_case)
    if threads is None:
        return
    print(f"polygon2d render_polygons, {threads} thread(s), float32, CPU; mean of 5 runs after 2 warm-up runs\n")
    print("| image | polygons | vertices | radius px | forward ms | forward+backward ms | peak MB | max area error |")
    print("|---|---|---|---|---|---|---|---|")
    for case, r in results_in_fresh_processes(__file__, CASES, threads):
        side, polygons, vertices, radius = case
        print(
            f"| {side}x{side} | {polygons} | {vertices} | {radius * side:.0f} | {1000 * r['forward_s']:.1f} | "
            f"{1000 * r['forward_backward_s']:.1f} | {r['peak_mb']:.0f} | {r['area_error']:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
