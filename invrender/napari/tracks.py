"""A Cell Tracking Challenge folder as napari layers: its label frames as one Labels layer
`(t, y, x)`, and its lineage as a Tracks layer.

cell-seg writes a time-lapse's result as `maskTTT.tif` and `res_track.txt` (`L B E P` per track);
a ground truth's tracking folder holds `man_trackTTT.tif` and `man_track.txt`, its segmentation
folder `man_segTTT.tif` alone, for some frames only. Both layers put frame TTT at napari's time
TTT (the Labels layer is translated to its first frame, and a frame missing between two others is
empty), as in the track files; a CTC sequence's frames `tTTT.tif` number from 0, so they lie over
the sequence napari stacks from its folder. A track is the centre of its label in every frame it is
in (napari's `track_id, t, y, x` rows, in pixels), and a daughter is linked to its parent (the
Tracks layer's `graph`), so napari draws each lineage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from invrender.core.io import InputError
from invrender.methods.cell_seg.ctc import label_frame_paths, read_label_frames, read_tracks
from invrender.napari import LayerData

#: The label frames' prefix of each kind of CTC folder, and its track file (None: it has none).
TRACK_FILES = {"mask": "res_track.txt", "man_track": "man_track.txt", "man_seg": None}


def ctc_prefix(folder: str | os.PathLike) -> str | None:
    """The prefix of the CTC label frames in `folder` (`mask`, `man_track`, `man_seg`), None if it
    holds none."""
    for prefix in TRACK_FILES:
        try:
            label_frame_paths(Path(folder), prefix)
        except InputError:
            continue
        return prefix
    return None


def ctc_layers(folder: str | os.PathLike) -> list[LayerData]:
    """Labels layer data `(t, y, x)` of a CTC folder's label frames and, when it has a track file,
    Tracks layer data of its lineage. InputError for frames of different sizes or a bad track file."""
    folder = Path(folder)
    prefix = ctc_prefix(folder)
    if prefix is None:
        raise InputError(
            folder, f"no CTC label frames ({', '.join(p + 'TTT.tif' for p in TRACK_FILES)}) in this folder"
        )
    frames = read_label_frames(folder, prefix)
    shapes = {frame.shape for frame in frames.values()}
    if len(shapes) > 1:
        raise InputError(folder, f"label frames of different sizes: {', '.join(map(str, sorted(shapes)))}")
    first, last = min(frames), max(frames)
    labels = np.zeros((last - first + 1, *shapes.pop()), dtype=np.int32)
    for number, frame in frames.items():
        labels[number - first] = frame
    attributes = {"name": f"{folder.name} {prefix}", "translate": (float(first), 0.0, 0.0)}
    layers: list[LayerData] = [(labels, attributes, "labels")]
    track_file = folder / TRACK_FILES[prefix] if TRACK_FILES[prefix] else None
    if track_file is not None and track_file.is_file():
        rows = _track_rows(labels, first)
        if len(rows):
            layers.append(tracks_layer(rows, read_tracks(track_file), f"{folder.name} tracks"))
    return layers


def cell_tracks_layer(records: list[dict], tracks: np.ndarray, name: str) -> LayerData:
    """Tracks layer data of cell-seg's per-frame cells (`"frame"`, cells' `"label"` and `"centre"`
    `[x, y]`) and its CTC tracks `(label, first, last, parent)`."""
    rows = [
        (cell["label"], record["frame"], cell["centre"][1], cell["centre"][0])
        for record in records
        for cell in record["cells"]
    ]
    return tracks_layer(np.array(sorted(rows), dtype=np.float64).reshape(-1, 4), tracks, name)


def tracks_layer(rows: np.ndarray, tracks: Any, name: str) -> LayerData:
    """Tracks layer data of rows `(label, t, y, x)`, sorted by label then frame, and CTC tracks
    `(label, first, last, parent)`: the rows, and the graph {daughter: [mother]} of the tracks whose
    daughter and mother both have rows."""
    present = set(rows[:, 0].astype(int).tolist())
    graph = {
        int(label): [int(parent)]
        for label, _, _, parent in tracks
        if parent > 0 and label in present and parent in present
    }
    return rows, {"name": name, "graph": graph}, "tracks"


def _track_rows(labels: np.ndarray, first: int) -> np.ndarray:
    """(N, 4) rows `label, t, y, x`: each label's centre of mass in each frame it is in (frame
    `first + index`), sorted by label, then frame."""
    rows = []
    for index, frame in enumerate(labels):
        present = np.unique(frame[frame > 0])
        centres = ndimage.center_of_mass(np.ones(frame.shape), frame, present)
        rows += [(label, first + index, y, x) for label, (y, x) in zip(present.tolist(), centres)]
    rows_array = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return rows_array[np.lexsort((rows_array[:, 1], rows_array[:, 0]))]
