"""Segmentation and tracking quality of `invrender cell-seg`.

1. The real nuclei image (../shared/data/nuclei, 512 x 256, 72 annotated nuclei): `cell-seg` with
   the default config through the command line, scored by `cell-eval` (the Cell Tracking Challenge
   SEG measure). In the same run, the classical baseline: Otsu's threshold of the (optionally
   Gaussian-smoothed) image, its distance transform, markers at the distance transform's peaks
   (`peak_local_max` with `min_distance`) and a watershed, from scikit-image. The baseline is run
   for every smoothing in {0, 1} px and min_distance in {3, 5, 7, 9} px and its best SEG is reported
   (a tuned baseline, which favours it).
2. A synthetic time-lapse (`invrender synth cells`, 20 frames, 256 x 256, 12 cells, 4 divisions),
   with stage 1 (every frame fitted) and with `--stage both` (the U-Net of stage 2 trained on the
   stage-1 masks of 5 frames): SEG over all 20 frames, and the divisions found: a true division
   (mother ending at frame t - 1, daughters starting at t) is found when the result objects matched
   to both daughters at frame t (the CTC rule: covering more than half of them) are two tracks with
   one and the same parent that begin at frame t.
3. Only with `--only movie`: a longer synthetic time-lapse (`--movie-frames`, default 100, otherwise
   the defaults of `invrender synth cells`) with `--stage both` only, timed end to end: the wall clock
   of the command (start-up included) and the job's own seconds from the run's manifest, in total and
   per frame; scored as in 2.

    python bench/cell_seg.py [--only nuclei|synth|movie] [--movie-frames N] [--threads N] [overrides ...]

`--threads N` runs cell-seg with N torch threads (default: its own choice, the cores it may use); on
a machine shared with other work, 1 thread gives steadier timings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from invrender.core.metrics import seg_jaccards, seg_measure
from invrender.methods.cell_seg.ctc import read_label_frames, read_label_image, read_tracks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei"
OUT = Path(__file__).parent / "out" / "cell_seg"
INVRENDER = [sys.executable, "-m", "invrender.cli"]


def otsu_watershed(image: np.ndarray, smooth: float, min_distance: int) -> np.ndarray:
    """The classical baseline: Otsu threshold, distance transform, peaks as markers, watershed."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import label
    from skimage.segmentation import watershed

    smoothed = gaussian(image, smooth) if smooth > 0 else image
    foreground = smoothed > threshold_otsu(smoothed)
    distance = ndimage.distance_transform_edt(foreground)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=label(foreground), exclude_border=False)
    markers = np.zeros(image.shape, dtype=np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=foreground)


def run(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def job_seconds(out: Path) -> float:
    """The seconds the run's manifest in `out` records for its one job (start-up excluded)."""
    (job,) = json.loads((out / "manifest.json").read_text())["inputs"]
    return float(job["seconds"])


def threads_option(threads: int | None) -> tuple[list[str], str]:
    """cell-seg's `--threads` option for `threads` (none: its own choice) and its note in a table's title."""
    return ([], "") if threads is None else (["--threads", str(threads)], f", {threads} torch thread(s)")


def nuclei(overrides: list[str], threads: int | None) -> None:
    from invrender.core.io import read_image

    image, truth = read_image(SHARED / "img2d_left.tif"), read_label_image(SHARED / "mask2d_left.tif")
    option, note = threads_option(threads)
    seconds = run(
        [
            *INVRENDER,
            "cell-seg",
            str(SHARED / "img2d_left.tif"),
            "--out",
            str(OUT / "nuclei"),
            "--device",
            "cpu",
            "-q",
            *option,
            *overrides,
        ]
    )
    result = read_label_image(OUT / "nuclei" / "img2d_left.labels.tif")
    scores = seg_jaccards(result, truth)
    print(
        f"nuclei image (512 x 256, {len(scores)} annotated nuclei), stage 1{note}, default config {' '.join(overrides)}"
    )
    print()
    print("| method | SEG | matched | objects found | seconds per frame (job, start-up excluded) | wall seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| cell-seg (rendered star-convex contours) | {scores.mean():.3f} | {(scores > 0).sum()}/{len(scores)} | "
        f"{len(np.unique(result)) - 1} | {job_seconds(OUT / 'nuclei'):.1f} | {seconds:.1f} |"
    )
    best = None
    for smooth in (0.0, 1.0):
        for min_distance in (3, 5, 7, 9):
            start = time.perf_counter()
            labels = otsu_watershed(image, smooth, min_distance)
            elapsed = time.perf_counter() - start
            score = seg_jaccards(labels, truth)
            if best is None or score.mean() > best[0].mean():
                best = (score, labels, smooth, min_distance, elapsed)
    score, labels, smooth, min_distance, elapsed = best
    print(
        f"| Otsu + distance transform + watershed (best of 8: smooth {smooth:g}, min_distance {min_distance}) | "
        f"{score.mean():.3f} | "
        f"{(score > 0).sum()}/{len(score)} | {len(np.unique(labels)) - 1} | {elapsed:.2f} | {elapsed:.2f} |"
    )
    print()


def divisions_found(result: Path, truth: Path) -> tuple[int, int]:
    """(found, total) true divisions, by the rule in the module's docstring."""
    true_tracks = read_tracks(truth / "TRA" / "man_track.txt")
    tracks = {label: (begin, end, parent) for label, begin, end, parent in read_tracks(result / "res_track.txt")}
    masks = read_label_frames(result, "mask")
    references = read_label_frames(truth / "SEG", "man_seg")
    daughters: dict[int, list[tuple[int, int]]] = {}
    for label, begin, _, parent in true_tracks:
        if parent:
            daughters.setdefault(parent, []).append((label, begin))
    found = 0
    for pair in daughters.values():
        frame = pair[0][1]
        matched = [matched_label(masks[frame], references[frame] == label) for label, _ in pair]
        if all(m in tracks for m in matched) and len(set(matched)) == 2:
            parents = {tracks[m][2] for m in matched}
            if len(parents) == 1 and 0 not in parents and all(tracks[m][0] == frame for m in matched):
                found += 1
    return found, len(daughters)


def matched_label(result: np.ndarray, reference: np.ndarray) -> int:
    """The result label covering more than half of the reference object, else 0."""
    values, counts = np.unique(result[reference], return_counts=True)
    best = counts.argmax()
    return int(values[best]) if values[best] > 0 and 2 * counts[best] > reference.sum() else 0


def synth_time_lapse(frames: int, data: Path) -> Path:
    """`invrender synth cells` of `frames` frames (its other defaults) into `data`; returns `data`."""
    subprocess.run([*INVRENDER, "synth", "cells", "--frames", str(frames), "--out", str(data)], check=True)
    return data


def segment_and_score(data: Path, stage: str, overrides: list[str], threads: int | None) -> dict:
    """Run `cell-seg --stage stage` on the time-lapse in `data` (CTC layout) and score it against its
    truth: SEG, objects matched, divisions found and reported, wall and job seconds."""
    result = data / f"01_RES_stage{stage}"
    wall = run(
        [
            *INVRENDER,
            "cell-seg",
            str(data / "01"),
            "--out",
            str(result),
            "--stage",
            stage,
            "--device",
            "cpu",
            "-q",
            *threads_option(threads)[0],
            *overrides,
        ]
    )
    measure = seg_measure(read_label_frames(result, "mask"), read_label_frames(data / "01_GT" / "SEG", "man_seg"))
    found, total = divisions_found(result, data / "01_GT")
    cells = json.loads((result / "01.cells.json").read_text())
    return {
        "seg": measure["seg"],
        "matched": f"{measure['matched']}/{measure['objects']}",
        "divisions": f"{found}/{total}",
        "reported": len(cells["divisions"]),
        "wall": wall,
        "job": job_seconds(result),
    }


def time_lapse(overrides: list[str], frames: int, threads: int | None) -> None:
    data = synth_time_lapse(frames, OUT / "synth")
    print(
        f"synthetic time-lapse ({frames} frames, 256 x 256, `invrender synth cells` defaults)"
        f"{threads_option(threads)[1]}, default config {' '.join(overrides)}"
    )
    print()
    print("| stage | SEG | objects matched | divisions found | divisions reported | seconds per frame |")
    print("| --- | --- | --- | --- | --- | --- |")
    for stage, label in (
        ("1", "1: every frame fitted"),
        ("both", "both: 5 frames fitted, a U-Net trained on them segments all"),
    ):
        score = segment_and_score(data, stage, overrides, threads)
        print(
            f"| {label} | {score['seg']:.3f} | {score['matched']} | {score['divisions']} | {score['reported']} | "
            f"{score['wall'] / frames:.1f} |"
        )
    print()


def movie(overrides: list[str], frames: int, threads: int | None) -> None:
    data = synth_time_lapse(frames, OUT / "movie")
    score = segment_and_score(data, "both", overrides, threads)
    print(
        f"synthetic movie ({frames} frames, 256 x 256, `invrender synth cells` defaults), `--stage both` end to end"
        f"{threads_option(threads)[1]}, default config {' '.join(overrides)}"
    )
    print()
    print(
        "| frames | SEG | objects matched | divisions found | divisions reported | wall seconds (per frame) "
        "| job seconds, start-up excluded (per frame) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {frames} | {score['seg']:.3f} | {score['matched']} | {score['divisions']} | {score['reported']} | "
        f"{score['wall']:.1f} ({score['wall'] / frames:.2f}) | {score['job']:.1f} ({score['job'] / frames:.2f}) |"
    )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--only", choices=("nuclei", "synth", "movie"), help="movie runs only when asked for")
    parser.add_argument("--movie-frames", type=int, default=100, help="frames of the movie (--only movie)")
    parser.add_argument("--threads", type=int, help="torch threads of cell-seg (default: the cores it may use)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    if args.only in (None, "nuclei"):
        nuclei(args.overrides, args.threads)
    if args.only in (None, "synth"):
        time_lapse(args.overrides, args.frames, args.threads)
    if args.only == "movie":
        movie(args.overrides, args.movie_frames, args.threads)


if __name__ == "__main__":
    main()
