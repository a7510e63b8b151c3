"""spline-refine on a movie: propagation against fitting every frame from the detector's init.

The movie is `invrender synth splines-movie` (3 crawling bodies, 128x128, 100 frames, seed 0,
never used for tuning; the schedule and `video.lost_factor` were set on seed 5), with 3 drops of
12 frames where the bodies jump. Both runs start from the same detector inits
(`inits/detector/movie.json`, one per frame: the label rotated by sd 6 degrees and moved 4 px):

- propagated: `spline-refine movie.tif --propagate` (frame 0 from its init with the full schedule,
  then each frame from the previous result with `video.phases`, a lost body re-found from the
  detector's init of that frame with the full schedule);
- every frame: the full schedule from the detector's init of each frame (`--baseline-every k`
  fits every k-th frame only, to save time: its seconds per frame and DTW are over those frames,
  and the propagated DTW is also given over the same frames).

Seconds per frame are the job's seconds from the run record (start-up excluded) over its frames.
DTW per body and frame against the labels (see invrender.core.metrics.matched_dtw), px.
A body counts as lost in a frame when its DTW exceeds 1 px.

    python bench/spline_video.py [--frames 100] [--baseline-every 1] [--seed 0] [overrides ...]
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
from invrender.core.geometry.spline_io import read_splines, write_splines
from invrender.core.io import read_image, write_tiff
from invrender.core.metrics import matched_dtw

OUT = Path(__file__).parent / "out" / "spline_video"
INVRENDER = [sys.executable, "-m", "invrender.cli"]
LOST_DTW = 1.0


def fit(image: Path, init: Path, out: Path, extra: list[str]) -> tuple[float, list[list[dict]], dict]:
    """Run spline-refine on one stack; (seconds per frame, result records per frame)."""
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(
        [*INVRENDER, "spline-refine", str(image), "--init", str(init), "--out", str(out), "-q", *extra], check=True
    )
    record = json.loads((out / "manifest.json").read_text())["inputs"][0]
    frames = read_splines(out / f"{image.stem}.splines.json")
    return record["seconds"] / len(frames), frames, record["result"]


def dtw_per_frame(labels: list[list[dict]], results: list[list[dict]]) -> list[list[float]]:
    return [
        matched_dtw([np.asarray(r["points"]) for r in truth], [np.asarray(r["points"]) for r in found])[1]
        for truth, found in zip(labels, results)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-every", type=int, default=1)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    movie = ["splines-movie", "-f", str(args.frames), "--seed", str(args.seed)]
    data = dataset(OUT / f"data-seed{args.seed}-{args.frames}", synth_cli, arguments=movie)
    labels = read_splines(data / "labels" / "movie.json")
    detector = data / "inits" / "detector" / "movie.json"

    seconds_prop, results_prop, summary = fit(
        data / "movie.tif", detector, OUT / "propagated", ["--propagate", *args.overrides]
    )
    dtw_prop = dtw_per_frame(labels, results_prop)

    # The baseline on every k-th frame: a sub-stack with its detector inits.
    chosen = list(range(0, args.frames, args.baseline_every))
    sub = OUT / "baseline-data"
    sub.mkdir(parents=True, exist_ok=True)
    write_tiff(sub / "movie.tif", read_image(data / "movie.tif")[chosen], axes="TYX")
    write_splines(sub / "movie.json", [read_splines(detector)[f] for f in chosen], image="movie.tif")
    seconds_base, results_base, _ = fit(sub / "movie.tif", sub / "movie.json", OUT / "every-frame", args.overrides)
    dtw_base = dtw_per_frame([labels[f] for f in chosen], results_base)

    refitted = summary.get("refitted", [])
    refitted_bodies = [(e["frame"], i) for e in refitted for i in e["ids"]]
    found_again = sum(dtw_prop[f][i] <= LOST_DTW for f, i in refitted_bodies)
    lost_prop = sum(v > LOST_DTW for frame in dtw_prop for v in frame)
    lost_base = sum(v > LOST_DTW for frame in dtw_base for v in frame)
    flat = lambda rows: [v for row in rows for v in row]  # noqa: E731
    same_frames = [dtw_prop[f] for f in chosen]
    print(
        f"spline-refine on a {args.frames}-frame movie of 3 crawling bodies (seed {args.seed}), detector inits; "
        f"overrides: {' '.join(args.overrides) or 'none'}"
    )
    print()
    print("| run | frames fitted | s per frame | median DTW px | mean DTW px | bodies > 1 px |")
    print("|---|---|---|---|---|---|")
    print(
        f"| propagated (--propagate) | {len(results_prop)} | {seconds_prop:.2f} | {np.median(flat(dtw_prop)):.3f} | "
        f"{np.mean(flat(dtw_prop)):.3f} | {lost_prop} |"
    )
    if args.baseline_every > 1:
        print(
            f"| propagated, the baseline's frames | {len(chosen)} | | {np.median(flat(same_frames)):.3f} | "
            f"{np.mean(flat(same_frames)):.3f} | {sum(v > LOST_DTW for v in flat(same_frames))} |"
        )
    print(
        f"| every frame from the detector's init | {len(chosen)} | {seconds_base:.2f} | "
        f"{np.median(flat(dtw_base)):.3f} | {np.mean(flat(dtw_base)):.3f} | {lost_base} |"
    )
    print()
    print(f"speed-up per frame: {seconds_base / seconds_prop:.1f}x (target at least 5x)")
    print(
        f"lost bodies found again: {found_again} of {len(refitted_bodies)} flagged "
        f"(frames {sorted({f for f, _ in refitted_bodies})}); frames dropped after "
        f"{json.loads((data / 'dataset.json').read_text())['dropped_after']}"
    )


if __name__ == "__main__":
    main()
