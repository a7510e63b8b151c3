"""cell-eval: the Cell Tracking Challenge's measures of a segmentation and tracking against its
ground truth: SEG, and DET and TRA for a time-lapse with tracks.

RES is a CTC result folder (`maskTTT.tif`, e.g. `01_RES`) or one label image; GT is a CTC
ground-truth folder (`01_GT`, whose `SEG/man_segTTT.tif` are used, or that `SEG` folder itself) or
one label image. SEG scores the frames the ground truth segments; each must have a result. DET
and TRA (tracking_measures.py) are computed when RES holds `res_track.txt` and GT a `TRA` folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from invrender.core.io import InputError, finite_or_none, write_json
from invrender.core.metrics import seg_measure
from invrender.methods.cell_seg.ctc import label_frame_paths
from invrender.methods.cell_seg.frame_pairs import paired_files, read_pairs
from invrender.methods.cell_seg.tracking_measures import (
    OPERATIONS,
    RESULT_TRACKS,
    TRA_PREFIX,
    library_version,
    tracking_measures,
)
from invrender.outdir import check_out_file

SEG_PREFIX = "man_seg"


def _reference_folder(gt: Path) -> Path:
    """The folder of `man_segTTT.tif`: GT/SEG when GT is a CTC ground-truth folder, else GT itself."""
    return gt / "SEG" if (gt / "SEG").is_dir() else gt


def load_pairs(
    res: Path, gt: Path
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, tuple[Path, Path]]]:
    """Read the result and reference label images to compare, frame by frame.

    Returns `(results, references, files)`: frame -> label image `(H, W)` for both, and frame ->
    `(result file, reference file)`. InputError for a missing path, a folder paired with a single
    image, a reference frame without a result file, or a pair of different shapes.
    """
    for path in (res, gt):
        if not path.exists():
            raise InputError(path, "not found")
    if res.is_dir() != gt.is_dir():
        folder, image = (res, gt) if res.is_dir() else (gt, res)
        raise InputError(
            image,
            f"is a label image but {folder} is a folder: give RES and GT both as CTC folders or both as label images",
        )
    files = paired_files(res, _reference_folder(gt), SEG_PREFIX) if res.is_dir() else {0: (res, gt)}
    results, references = read_pairs(files)
    return results, references, files


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _score(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def tracking_unavailable(res: Path, gt: Path) -> str | None:
    """Why DET and TRA are not computed for these inputs, or None when they are."""
    if not res.is_dir():
        return "RES and GT are label images, not time-lapses"
    if not (res / RESULT_TRACKS).is_file():
        return f"no {RESULT_TRACKS} in {res}"
    if not (gt / "TRA").is_dir():
        return f"no TRA folder in {gt}"
    if len(label_frame_paths(gt / "TRA", TRA_PREFIX)) < 2:
        # DET alone would be defined, but py-ctcmetrics' counting needs the links of two frames or more.
        return f"{gt / 'TRA'} holds a single frame, no time-lapse"
    return None


def _tracking_line(tracking: dict | None, skipped: str | None) -> str:
    if tracking is None:
        return f"DET and TRA not computed: {skipped} (SEG only)"
    counts = f"{_plural(tracking['tracks'], 'track')} against {tracking['reference_tracks']}, " + _plural(
        tracking["frames"], "frame"
    )
    if np.isnan(tracking["det"]):
        return f"DET n/a, TRA n/a (the tracking ground truth marks no cell; {counts})"
    done = [_plural(count, OPERATIONS[key]) for key, count in tracking["operations"].items() if count]
    return (
        f"DET {_score(tracking['det'])}, TRA {_score(tracking['tra'])} (AOGM {tracking['aogm']:g} against "
        f"{tracking['aogm_0']:g} for the whole ground truth: {', '.join(done) or 'nothing to correct'}; {counts}; "
        f"py-ctcmetrics {library_version()})"
    )


def _tracking_record(tracking: dict) -> dict:
    """`tracking_measures`'s result for the JSON file: NaN as null, and the library's version."""
    finite = {key: finite_or_none(tracking[key]) for key in ("det", "tra", "aogm", "aogm_0")}
    return {**tracking, **finite, "py_ctcmetrics": library_version()}


def cell_eval(
    res: Annotated[
        Path,
        typer.Argument(
            metavar="RES", help="A CTC result folder (maskTTT.tif, e.g. 01_RES) or a label image.", show_default=False
        ),
    ],
    gt: Annotated[
        Path,
        typer.Argument(
            metavar="GT",
            help="A CTC ground-truth folder (01_GT; its SEG/man_segTTT.tif, and TRA/ for DET and TRA), its SEG "
            "folder, or a label image.",
            show_default=False,
        ),
    ],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the numbers (total and per frame) to this JSON file.")
    ] = None,
) -> None:
    """The Cell Tracking Challenge measures. SEG: the mean Jaccard index of the ground truth's
    objects, each matched by the result object covering more than half of it (0 if none). DET and
    TRA (py-ctcmetrics), when RES has res_track.txt and GT a TRA folder: 1 minus the weighted count
    of the corrections that turn the result's cell graph into the ground truth's (TRA with its
    links, DET without), relative to building it from nothing."""
    from rich.console import Console
    from rich.table import Table

    if json_path is not None:
        check_out_file(json_path, "--json")
    results, references, files = load_pairs(res, gt)
    scores = seg_measure(results, references)
    skipped = tracking_unavailable(res, gt)
    tracking = tracking_measures(res, gt / "TRA") if skipped is None else None
    table = Table(title=f"SEG of {res} against {gt}")
    for column in ("frame", "objects", "matched", "SEG"):
        table.add_column(column, justify="right")
    for row in scores["per_frame"]:
        table.add_row(str(row["frame"]), str(row["objects"]), str(row["matched"]), _score(row["seg"]))
    console = Console()
    console.print(table)
    typer.echo(
        f"SEG {_score(scores['seg'])} ({_plural(scores['objects'], 'reference object')}, {scores['matched']} matched, "
        f"{_plural(scores['frames'], 'frame')})"
    )
    typer.echo(_tracking_line(tracking, skipped))
    if json_path is not None:
        per_frame = [
            {
                **row,
                "seg": finite_or_none(row["seg"]),
                "result": str(files[row["frame"]][0]),
                "reference": str(files[row["frame"]][1]),
            }
            for row in scores["per_frame"]
        ]
        write_json(
            json_path,
            {
                "res": str(res),
                "gt": str(gt),
                "seg": finite_or_none(scores["seg"]),
                "objects": scores["objects"],
                "matched": scores["matched"],
                "frames": scores["frames"],
                "per_frame": per_frame,
                "det": None if tracking is None else finite_or_none(tracking["det"]),
                "tra": None if tracking is None else finite_or_none(tracking["tra"]),
                # AOGM, its operations, frames and tracks; null with the reason when not computed.
                "tracking": None if tracking is None else _tracking_record(tracking),
                "tracking_skipped": skipped,
            },
        )
        typer.echo(f"wrote {json_path}", err=True)
