"""cell-eval: the Cell Tracking Challenge's SEG measure of a segmentation against its ground truth.

RES is a CTC result folder (`maskTTT.tif`, e.g. `01_RES`) or one label image; GT is a CTC
ground-truth folder (`01_GT`, whose `SEG/man_segTTT.tif` are used, or that `SEG` folder itself) or
one label image. Only the frames the ground truth annotates are scored; each must have a result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from invrender.core.io import InputError, finite_or_none, write_json
from invrender.core.metrics import seg_measure
from invrender.methods.cell_seg.ctc import label_frame_paths, read_label_image
from invrender.outdir import check_out_file

RESULT_PREFIX = "mask"
REFERENCE_PREFIX = "man_seg"


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
    if res.is_dir():
        reference_files = label_frame_paths(_reference_folder(gt), REFERENCE_PREFIX)
        result_files = label_frame_paths(res, RESULT_PREFIX)
        missing = [frame for frame in reference_files if frame not in result_files]
        if missing:
            # Name the result file the CTC layout expects: the ground truth's digits (man_seg000 -> mask000).
            reference = reference_files[missing[0]]
            digits = len(reference.stem) - len(REFERENCE_PREFIX)
            expected = res / f"{RESULT_PREFIX}{missing[0]:0{digits}d}.tif"
            more = f" (and {len(missing) - 1} more frame(s))" if len(missing) > 1 else ""
            raise InputError(expected, f"result frame missing for the ground truth {reference}{more}")
        files = {frame: (result_files[frame], reference) for frame, reference in reference_files.items()}
    else:
        files = {0: (res, gt)}
    results, references = {}, {}
    for frame, (result_file, reference_file) in files.items():
        result, reference = read_label_image(result_file), read_label_image(reference_file)
        if result.shape != reference.shape:
            raise InputError(
                result_file,
                f"shape {result.shape} differs from the ground truth {reference_file} of shape {reference.shape}",
            )
        results[frame], references[frame] = result, reference
    return results, references, files


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _score(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


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
            help="A CTC ground-truth folder (01_GT; its SEG/man_segTTT.tif), its SEG folder, or a label image.",
            show_default=False,
        ),
    ],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the numbers (total and per frame) to this JSON file.")
    ] = None,
) -> None:
    """The Cell Tracking Challenge SEG measure: the mean Jaccard index of the ground truth's objects,
    each matched by the result object covering more than half of it (0 if none)."""
    from rich.console import Console
    from rich.table import Table

    if json_path is not None:
        check_out_file(json_path, "--json")
    results, references, files = load_pairs(res, gt)
    scores = seg_measure(results, references)
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
            },
        )
        typer.echo(f"wrote {json_path}", err=True)
