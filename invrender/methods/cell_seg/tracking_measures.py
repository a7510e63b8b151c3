"""DET and TRA, the Cell Tracking Challenge's detection and tracking measures, through py-ctcmetrics.

Both count the operations that turn the result's acyclic oriented graph (a vertex per cell and
frame, an edge from a cell to itself in the next frame and from a mother to her daughters) into
the ground truth's (AOGM, Matula et al. 2015): split a vertex (weight 5), add a missed vertex
(10), delete a spurious one (1), delete a redundant edge (1), add a missing edge (1.5), change an
edge's kind (1). A result cell detects a reference marker when it covers more than half of it.
DET = 1 - min(AOGM_D, AOGM_D0) / AOGM_D0 with the vertex operations only, TRA = 1 - min(AOGM,
AOGM_0) / AOGM_0 with all of them; AOGM_D0 and AOGM_0 build the ground truth's graph from nothing.

The result is a CTC result folder (`maskTTT.tif`, `res_track.txt`), the ground truth its TRA
folder (`man_trackTTT.tif`, `man_track.txt`). py-ctcmetrics (the challenge's measures in Python)
matches the cells, checks that each track file agrees with its masks (its `valid`), and counts the
operations; this module pairs the frames by number and checks the files first, so that a bad
input is one line naming the file rather than an assertion inside the library.
"""

from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

from invrender.core.io import InputError
from invrender.methods.cell_seg.ctc import label_frame_paths, read_tracks
from invrender.methods.cell_seg.frame_pairs import RESULT_PREFIX, paired_files, read_pairs

RESULT_TRACKS = "res_track.txt"
TRA_PREFIX = "man_track"
REFERENCE_TRACKS = "man_track.txt"
#: The operations of the AOGM as py-ctcmetrics names them, and what one of each is.
OPERATIONS = {
    "NS": "vertex split",
    "FN": "false negative",
    "FP": "false positive",
    "ED": "redundant edge",
    "EA": "missing edge",
    "EC": "edge semantics change",
}


def library_version() -> str:
    return metadata.version("py-ctcmetrics")


def tracking_measures(res: Path, tra_folder: Path) -> dict:
    """DET and TRA of the result folder `res` against the tracking ground truth folder `tra_folder`.

    Both must hold the same frames, consecutive (a track spans every frame from its first to its
    last). Returns `{"det", "tra", "aogm", "aogm_0", "operations", "frames", "tracks",
    "reference_tracks"}`: "operations" maps NS, FN, FP, ED, EA, EC to their counts; "det" and
    "tra" are NaN when the ground truth marks no cell. InputError, naming the file, for a missing
    or malformed file, frames that do not pair, or a track file that does not agree with its masks.
    """
    files = paired_files(res, tra_folder, TRA_PREFIX)
    frames = list(files)
    _check_consecutive(tra_folder, frames)
    _refuse_unpaired_results(res, tra_folder, frames)
    results, references = read_pairs(files)
    for frame, (result_file, _) in files.items():
        _check_label_room(result_file, results[frame], references[frame])
    result_tracks = _tracks_by_position(res / RESULT_TRACKS, frames)
    reference_tracks = _tracks_by_position(tra_folder / REFERENCE_TRACKS, frames)

    from ctc_metrics.metrics import det, tra
    from ctc_metrics.scripts.evaluate import match_computed_to_reference_masks
    from ctc_metrics.utils.representations import count_acyclic_graph_correction_operations

    result_paths = [str(files[frame][0]) for frame in frames]
    reference_paths = [str(files[frame][1]) for frame in frames]
    # threads=1: the frames are matched in this process (the library would start a pool of workers).
    matched = match_computed_to_reference_masks(reference_paths, result_paths, threads=1)
    _check_valid(res / RESULT_TRACKS, result_tracks, result_paths, matched["labels_comp"])
    _check_valid(tra_folder / REFERENCE_TRACKS, reference_tracks, reference_paths, matched["labels_ref"])
    summary = {"frames": len(frames), "tracks": len(result_tracks), "reference_tracks": len(reference_tracks)}
    if not any(matched["labels_ref"]):
        nothing = float("nan")
        return {"det": nothing, "tra": nothing, "aogm": nothing, "aogm_0": 0.0, "operations": {}, **summary}
    counts = count_acyclic_graph_correction_operations(
        reference_tracks,
        result_tracks,
        matched["labels_ref"],
        matched["labels_comp"],
        matched["mapped_ref"],
        matched["mapped_comp"],
    )
    tra_value, aogm, aogm_0 = tra(**counts)
    return {
        "det": det(**counts),
        "tra": tra_value,
        "aogm": float(aogm),
        "aogm_0": float(aogm_0),
        "operations": {key: int(counts[key]) for key in OPERATIONS},
        **summary,
    }


def _check_consecutive(tra: Path, frames: list[int]) -> None:
    gaps = sorted(set(range(frames[0], frames[-1] + 1)) - set(frames))
    if gaps:
        raise InputError(
            tra,
            f"no {TRA_PREFIX}TTT.tif for frame {gaps[0]}"
            f"{f' (and {len(gaps) - 1} more)' if len(gaps) > 1 else ''}: the tracking ground truth needs every "
            f"frame from {frames[0]} to {frames[-1]}",
        )


def _refuse_unpaired_results(res: Path, tra: Path, frames: list[int]) -> None:
    """The library compares the two graphs frame by frame: a result frame the ground truth lacks has
    no counterpart (SEG ignores such frames, DET and TRA cannot)."""
    extra = [path for frame, path in label_frame_paths(res, RESULT_PREFIX).items() if frame not in frames]
    if extra:
        raise InputError(
            extra[0],
            f"frame not in the tracking ground truth {tra} (frames {frames[0]} to {frames[-1]})"
            f"{f' (and {len(extra) - 1} more result frame(s))' if len(extra) > 1 else ''}",
        )


def _check_label_room(result_file: Path, result: np.ndarray, reference: np.ndarray) -> None:
    """The library matches cells by adding the reference's largest label + 1 to the result's labels
    in the file's own integer type: refuse what would wrap around (and give wrong scores)."""
    if not np.issubdtype(result.dtype, np.integer) or not result.size:
        return
    needed = int(result.max()) + int(reference.max()) + 1
    if needed > np.iinfo(result.dtype).max:
        raise InputError(
            result_file,
            f"{result.dtype} labels up to {int(result.max())}: py-ctcmetrics adds the ground truth's largest "
            f"label + 1 ({int(reference.max()) + 1}) to them, beyond {np.iinfo(result.dtype).max}; save the masks "
            "with a wider integer type or smaller labels",
        )


def _tracks_by_position(path: Path, frames: list[int]) -> np.ndarray:
    """A track file as the library takes it: `(n, 4)` int rows `L B E P`, with the frames counted
    from the first frame of the sequence (the library indexes its frames by position).
    InputError for a malformed line, a parent that is not a track of the file, or a track outside
    the sequence's frames."""
    tracks = read_tracks(path)
    labels = {track[0] for track in tracks}
    for label, begin, end, parent in tracks:
        if parent and parent not in labels:
            raise InputError(path, f"track {label}: its parent {parent} is not a track of this file")
        if begin < frames[0] or end > frames[-1]:
            raise InputError(
                path,
                f"track {label} spans frames {begin} to {end}, outside the sequence's frames {frames[0]} to "
                f"{frames[-1]}",
            )
    rows = np.array(tracks, dtype=np.int64).reshape(-1, 4)
    rows[:, 1:3] -= frames[0]
    return rows


def _check_valid(path: Path, tracks: np.ndarray, mask_paths: list[str], labels: list[list[int]]) -> None:
    """py-ctcmetrics' check that a track file and its masks agree (every label of a mask is a track
    alive in that frame and the other way round, a parent ends before its daughters begin), its
    first complaint as an InputError naming the track file."""
    if not len(tracks):
        # The library counts a file without tracks as invalid (and fails on it); it is consistent
        # when no mask holds a cell either: a result that found nothing.
        labelled = next((name for name, present in zip(mask_paths, labels) if present), None)
        if labelled is not None:
            raise InputError(path, f"no tracks, but {labelled} holds cells")
        return
    from ctc_metrics.metrics import valid

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        is_valid = valid(mask_paths, tracks, labels)
    if is_valid:
        return
    # valid() also warns of frames without any cell, which it does not count against a result.
    problems = [str(w.message) for w in caught if not str(w.message).startswith("Empty frame")]
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    first = problems[0] if problems else "rejected without a reason"
    raise InputError(path, f"does not agree with its masks (py-ctcmetrics' check): {first}{more}")
