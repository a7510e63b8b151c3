"""Result and ground-truth label frames of a CTC sequence, paired by frame number (for cell-eval).

A result folder holds `maskTTT.tif` (e.g. `01_RES`); a ground-truth folder holds the reference
frames under another prefix (`SEG/man_segTTT.tif`, `TRA/man_trackTTT.tif`). Every reference frame
needs the result frame of the same number and shape; result frames without a reference are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from invrender.core.io import InputError
from invrender.methods.cell_seg.ctc import label_frame_paths, read_label_image

RESULT_PREFIX = "mask"


def paired_files(res: Path, reference: Path, prefix: str) -> dict[int, tuple[Path, Path]]:
    """Frame number -> `(result file, reference file)` for every `{prefix}TTT.tif` of the folder
    `reference`, in frame order. InputError for a folder without frames, or naming the result file
    that the CTC layout expects (the reference's digits: man_seg000 -> mask000) for a reference
    frame without one."""
    reference_files = label_frame_paths(reference, prefix)
    result_files = label_frame_paths(res, RESULT_PREFIX)
    missing = [frame for frame in reference_files if frame not in result_files]
    if missing:
        first = reference_files[missing[0]]
        digits = len(first.stem) - len(prefix)
        expected = res / f"{RESULT_PREFIX}{missing[0]:0{digits}d}.tif"
        more = f" (and {len(missing) - 1} more frame(s))" if len(missing) > 1 else ""
        raise InputError(expected, f"result frame missing for the ground truth {first}{more}")
    return {frame: (result_files[frame], reference) for frame, reference in reference_files.items()}


def read_pairs(files: dict[int, tuple[Path, Path]]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Read the label images of `paired_files`: `(results, references)`, each frame -> `(H, W)`
    integer labels. InputError for an unreadable file or a pair of different shapes."""
    results, references = {}, {}
    for frame, (result_file, reference_file) in files.items():
        result, reference = read_label_image(result_file), read_label_image(reference_file)
        if result.shape != reference.shape:
            raise InputError(
                result_file,
                f"shape {result.shape} differs from the ground truth {reference_file} of shape {reference.shape}",
            )
        results[frame], references[frame] = result, reference
    return results, references
