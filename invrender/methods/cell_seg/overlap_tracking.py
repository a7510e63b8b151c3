"""Tracking by overlap: instance label frames of a time-lapse, segmented frame by frame, linked into
tracks in the Cell Tracking Challenge (CTC) conventions.

A track is one contiguous run of frames with its own label; `L B E P` is its label, first and last
frame and its parent's label (0 for none); a mother's track ends the frame before her daughters'
tracks begin. Between two frames, objects are linked by how much they overlap:

- a division: the objects of frame t that lie mostly (at least half of each) inside one object of
  frame t-1, when there are two or more of them and together they cover `division_cover` of it,
  are its daughters: new tracks with it as parent, its own track ending at t-1;
- the other objects are matched one to one by the Hungarian method on their IoU; a pair with an
  IoU of at least `min_iou` continues the track of t-1;
- an object of frame t left over starts a new track without parent; an object of frame t-1 left
  over ends its track there (a cell that is lost for a frame comes back as a new track).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from invrender.methods.cell_seg.ctc import MAX_LABEL


def overlap_counts(previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels shared by every pair of labels of two label frames (H, W), background included.

    Returns `(labels of previous (N,), labels of current (M,), counts (N, M) px)`, labels sorted.
    """
    previous_labels, previous_index = np.unique(previous, return_inverse=True)
    current_labels, current_index = np.unique(current, return_inverse=True)
    pairs = previous_index.ravel() * len(current_labels) + current_index.ravel()
    counts = np.bincount(pairs, minlength=len(previous_labels) * len(current_labels))
    return previous_labels, current_labels, counts.reshape(len(previous_labels), len(current_labels))


def find_divisions(
    overlap: np.ndarray, previous_areas: np.ndarray, current_areas: np.ndarray, division_cover: float
) -> dict[int, list[int]]:
    """Mothers and their daughters between two frames, from the objects' overlaps.

    overlap (N, M) px between the N objects of frame t-1 and the M of frame t (background excluded);
    areas (N,), (M,) px. Returns {mother index: [daughter indices]}.
    """
    if overlap.size == 0:
        return {}
    host = overlap.argmax(0)  # (M,) the previous object each current object overlaps most
    inside = overlap[host, np.arange(overlap.shape[1])] * 2 >= current_areas
    divisions = {}
    for mother in np.unique(host[inside]):
        daughters = np.flatnonzero(inside & (host == mother))
        if len(daughters) >= 2 and overlap[mother, daughters].sum() >= division_cover * previous_areas[mother]:
            divisions[int(mother)] = daughters.tolist()
    return divisions


def match_by_iou(
    overlap: np.ndarray, previous_areas: np.ndarray, current_areas: np.ndarray, min_iou: float
) -> list[tuple[int, int]]:
    """One-to-one links (previous index, current index) between two frames' objects that maximise the
    summed IoU (Hungarian), keeping the overlapping pairs with IoU >= min_iou. Shapes as in
    `find_divisions`."""
    union = previous_areas[:, None] + current_areas[None, :] - overlap
    iou = overlap / np.maximum(union, 1)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(a), int(b)) for a, b in zip(rows, cols) if overlap[a, b] > 0 and iou[a, b] >= min_iou]


def link_frames(
    previous: np.ndarray, current: np.ndarray, min_iou: float, division_cover: float
) -> tuple[list[tuple[int, int]], dict[int, list[int]]]:
    """The links between two label frames (H, W), by object index (the objects of a frame in the
    order of their labels, background excluded): one-to-one links (previous, current) and divisions
    {mother: [daughters]}."""
    previous_labels, current_labels, counts = overlap_counts(previous, current)
    previous_objects, current_objects = np.flatnonzero(previous_labels != 0), np.flatnonzero(current_labels != 0)
    overlap = counts[np.ix_(previous_objects, current_objects)]
    previous_areas, current_areas = counts[previous_objects].sum(1), counts[:, current_objects].sum(0)
    divisions = find_divisions(overlap, previous_areas, current_areas, division_cover)
    # Mothers and daughters are taken: only the others compete for one-to-one links.
    free = overlap.copy()
    free[list(divisions)] = 0
    free[:, [d for daughters in divisions.values() for d in daughters]] = 0
    return match_by_iou(free, previous_areas, current_areas, min_iou), divisions


def link_by_overlap(
    label_frames: np.ndarray, min_iou: float = 0.2, division_cover: float = 0.5
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Link the objects of label frames (T, H, W) (any integer labels per frame, 0 the background)
    into tracks, as the module docstring says.

    Returns the frames relabelled by track (T, H, W) uint16 and the tracks `(L, B, E, P)`, labels
    1, 2, ... in the order the tracks begin, frames counted from 0. ValueError beyond 65535 tracks
    (the CTC's 16-bit labels).
    """
    label_frames = np.asarray(label_frames)
    linked = np.zeros(label_frames.shape, np.uint16)
    tracks: list[list[int]] = []  # [label, begin, end, parent], the label being the index + 1
    previous_tracks = np.zeros(0, np.int64)  # the track of each object of the previous frame
    for t, frame in enumerate(label_frames):
        labels, index = np.unique(frame, return_inverse=True)
        objects = np.flatnonzero(labels != 0)
        track_of = np.zeros(len(labels), np.int64)  # the track of each label of this frame, 0 for the background
        if t > 0:
            links, divisions = link_frames(label_frames[t - 1], frame, min_iou, division_cover)
            for mother, daughters in divisions.items():
                for daughter in daughters:
                    track_of[objects[daughter]] = _start_track(tracks, t, parent=previous_tracks[mother])
            for a, b in links:
                track_of[objects[b]] = previous_tracks[a]
                tracks[previous_tracks[a] - 1][2] = t
        for obj in objects:
            if track_of[obj] == 0:
                track_of[obj] = _start_track(tracks, t, parent=0)
        if len(tracks) > MAX_LABEL:
            raise ValueError(
                f"{len(tracks)} tracks by frame {t}: more than the {MAX_LABEL} labels of 16-bit CTC label images"
            )
        linked[t] = track_of[index].reshape(frame.shape)
        previous_tracks = track_of[objects]
    return linked, [tuple(track) for track in tracks]


def _start_track(tracks: list[list[int]], frame: int, parent: int) -> int:
    """Append a track beginning (and for now ending) at `frame`; returns its label."""
    tracks.append([len(tracks) + 1, frame, frame, int(parent)])
    return len(tracks)
