"""Benchmark of spline-refine: Table 1 and Table 2 of Zdyb, Alonso & Kirkegaard on synthetic data.

For n = 1, 2, 3 bodies per 128x128 frame (invrender's synthetic generator, dataset seed 0), every
label is perturbed (rotation 20 deg, displacement 10 px, scaling 0.7, PCA k = 2; straight lines
between the true ends for n = 1), refined by our method (differentiable rendering, the default
config) and by the active-contour baseline, and scored by the matched average DTW (px) against
the labels. Printed: the mean over the best 50% of frames (the paper's statistic) and the median
over all frames, plus seconds per frame, as markdown tables.

Per-frame results are cached in `--work/results.jsonl`, keyed by the overrides and by a hash of the
invrender package that made them (`code_version`), so an interrupted run resumes and a result of
other code is never reused.

    python bench/spline_refine.py --frames 64 --workers 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench_data import code_version, dataset  # bench/bench_data.py, beside this script

PERTURBATIONS = ("rotation", "displacement", "scaling", "pca")
PAPER = {  # Table 1 of the paper: best-50% mean DTW of "ours"
    1: (0.48, 0.49, 0.53, 0.52),
    2: (0.43, 0.40, 0.45, 0.40),
    3: (1.63, 0.78, 1.39, 1.62),
}


def refine_timed(image, init: list[dict], cfg, method: str, seed: int = 0) -> tuple[list[dict], float]:
    """Refine the init records on a frame with one method ("ours" or "active-contour", whose fit
    draws with `seed`) on one thread: the refined records and the seconds it took."""
    import torch

    from invrender.methods.spline_refine.active_contour import active_contour_frame
    from invrender.methods.spline_refine.fit import refine_frame

    torch.set_num_threads(1)
    start = time.perf_counter()
    if method == "ours":
        refined = refine_frame(image, init, cfg, torch.device("cpu"), seed=seed).records
    else:
        refined = active_contour_frame(image, init, cfg)
    return refined, time.perf_counter() - start


def _task(args: tuple) -> dict:
    """Refine one frame from one init with one method; returns the DTW record."""
    data_dir, n, frame, perturbation, method, overrides, fit_seed = args
    from invrender.config import compose_config
    from invrender.core.geometry.spline_io import read_splines
    from invrender.core.io import read_image
    from invrender.core.metrics import matched_dtw

    cfg = compose_config("spline_refine", "default", list(overrides))
    name = f"frame_{frame:04d}"
    image = read_image(Path(data_dir) / f"{name}.tif")
    labels = [r["points"] for r in read_splines(Path(data_dir) / "labels" / f"{name}.json")[0]]
    init = read_splines(Path(data_dir) / "inits" / perturbation / f"{name}.json")[0]
    refined, seconds = refine_timed(image, init, cfg, method, fit_seed)
    return {
        "n": n,
        "frame": frame,
        "perturbation": perturbation,
        "method": method,
        "initial": matched_dtw(labels, [r["points"] for r in init])[0],
        "dtw": matched_dtw(labels, [r["points"] for r in refined])[0],
        "seconds": seconds,
    }


def best_half_mean(values: list[float]) -> float:
    ordered = np.sort(np.asarray(values))
    return float(ordered[: max(1, len(ordered) // 2)].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64, help="frames per cell")
    parser.add_argument("--bodies", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--workers", type=int, default=2, help="processes, one torch thread each")
    parser.add_argument("--methods", nargs="+", default=["ours", "active-contour"])
    parser.add_argument("--work", type=Path, default=Path("bench/out/spline_refine"))
    parser.add_argument(
        "--fit-seed", type=int, default=0, help="the fit's seed (starts, gradient noise): others show its spread"
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the default config")
    args = parser.parse_args()

    from invrender.methods.spline_refine.synth import write_spline_dataset

    args.work.mkdir(parents=True, exist_ok=True)
    cache_path = args.work / "results.jsonl"
    tag = {"overrides": " ".join(args.overrides), "fit_seed": args.fit_seed, "code": code_version()}
    done = {}
    if cache_path.exists():
        for line in cache_path.read_text().splitlines():
            rec = json.loads(line)
            if all(rec.get(k) == v for k, v in tag.items()):
                done[(rec["n"], rec["frame"], rec["perturbation"], rec["method"])] = rec

    tasks = []
    for n in args.bodies:
        data_dir = dataset(
            args.work / f"data_n{n}_f{args.frames}",
            write_spline_dataset,
            bodies=n,
            frames=args.frames,
            size=128,
            seed=0,
        )
        perturbations = PERTURBATIONS + (("straight",) if n == 1 else ())
        for perturbation in perturbations:
            for method in args.methods:
                for frame in range(args.frames):
                    if (n, frame, perturbation, method) not in done:
                        task = (str(data_dir), n, frame, perturbation, method, tuple(args.overrides), args.fit_seed)
                        tasks.append(task)

    print(f"{len(done)} cached, {len(tasks)} to run with {args.workers} worker(s)", file=sys.stderr)
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool, cache_path.open("a") as cache:
        for i, rec in enumerate(pool.imap_unordered(_task, tasks), 1):
            rec.update(tag)
            cache.write(json.dumps(rec) + "\n")
            cache.flush()
            done[(rec["n"], rec["frame"], rec["perturbation"], rec["method"])] = rec
            if i % 20 == 0:
                print(f"  {i}/{len(tasks)} in {time.perf_counter() - start:.0f} s", file=sys.stderr)

    print(report(list(done.values()), args))


def report(records: list[dict], args) -> str:
    def cell(n, perturbation, method, key="dtw"):
        return [r[key] for r in records if r["n"] == n and r["perturbation"] == perturbation and r["method"] == method]

    lines = [
        f"Frames per cell: {args.frames}; fit seed {args.fit_seed}; "
        f"config overrides: {' '.join(args.overrides) or 'none'}; "
        f"{args.workers} worker process(es), 1 torch thread each.",
        "",
    ]
    lines.append("Table 1: best-50% mean DTW (px) [median over all frames]; paper's 'ours' in brackets after ours.")
    lines.append("")
    header = "| n | " + " | ".join(f"{p}: initial | ours (paper) | active contour" for p in PERTURBATIONS) + " |"
    lines += [header, "|---" * (1 + 3 * len(PERTURBATIONS)) + "|"]
    for n in args.bodies:
        row = [str(n)]
        for j, p in enumerate(PERTURBATIONS):
            ini, ours, ac = (
                cell(n, p, "ours", "initial") or cell(n, p, "active-contour", "initial"),
                cell(n, p, "ours"),
                cell(n, p, "active-contour"),
            )
            fmt = lambda v: f"{best_half_mean(v):.2f} [{np.median(v):.2f}]" if v else "-"
            paper = f" ({PAPER[n][j]:.2f})" if n in PAPER else ""
            row += [fmt(ini), fmt(ours) + paper, fmt(ac)]
        lines.append("| " + " | ".join(row) + " |")

    if 1 in args.bodies:
        lines += [
            "",
            "Table 2: straight-line inits, n = 1: DTW percentiles (px) over all frames.",
            "",
            "| percentile | initial | ours | active contour |",
            "|---|---|---|---|",
        ]
        ini = cell(1, "straight", "ours", "initial") or cell(1, "straight", "active-contour", "initial")
        ours, ac = cell(1, "straight", "ours"), cell(1, "straight", "active-contour")
        for q in (5, 10, 20, 50):
            pct = lambda v, q=q: f"{np.percentile(v, q):.2f}" if v else "-"
            lines.append(f"| {q}% | {pct(ini)} | {pct(ours)} | {pct(ac)} |")

    lines += ["", "Seconds per frame (1 thread; mean [max]):", "", "| n | ours | active contour |", "|---|---|---|"]
    for n in args.bodies:
        t = {m: [r["seconds"] for r in records if r["n"] == n and r["method"] == m] for m in ("ours", "active-contour")}
        fmt = lambda v: f"{np.mean(v):.1f} [{np.max(v):.1f}]" if v else "-"
        lines.append(f"| {n} | {fmt(t['ours'])} | {fmt(t['active-contour'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
