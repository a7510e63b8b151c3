"""The Cell Tracking Challenge (CTC) file layout: raw frames, label frames and track files.

A CTC sequence is a folder of frames `t000.tif`, `t001.tif`, ... (`tNNNN.tif` for sequences of 1000
frames or more). Its results go to a folder of label images `mask000.tif`, ... plus `res_track.txt`;
its ground truth holds `SEG/man_seg000.tif` (segmentation, often of a few frames only) and
`TRA/man_track000.tif` with `TRA/man_track.txt`. Label images are 16-bit: 0 is the background, every
object has its own positive label. A track file has one line `L B E P` per track: its label, first
and last frame, and the label of its parent track (0 for none).

Readers raise :class:`~invrender.core.io.InputError` naming the file and the problem in one line;
writers write atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from invrender.core.calibration import Calibration
from invrender.core.io import (
    MAX_TIFF_LABEL,
    InputError,
    atomic_path,
    expect_axes,
    label_tiff_array,
    read_axes_image,
    write_tiff,
)

#: The largest label a CTC label image (uint16) can hold.
MAX_LABEL = MAX_TIFF_LABEL
#: Frame numbers have at least this many digits in CTC names (t000.tif, mask000.tif).
MIN_DIGITS = 3


@dataclass
class Frames:
    """A 2D time-lapse as read from disk."""

    images: np.ndarray  # (T, H, W) float32
    times: list[int]  # frame numbers, e.g. [0, 1, ...]
    kind: str  # "sequence" (a folder of tNNN.tif) | "image" (one 2D file or array) | "stack" (one 3D, 2D+t)
    source: str | Path  # the file or folder, or the Python API's argument name (named in errors)
    digits: int  # digits of the frame numbers in the input names (3 for t000.tif), 3 for a single image/stack


# ---------------------------------------------------------------- raw frames


#: The axes cell-seg takes: one 2D image, or a 2D time-lapse (a z-stack is not a time-lapse).
FRAME_AXES = ("YX", "TYX")


def read_frames(path: Path, channel: int | None = None, axes: str | None = None) -> Frames:
    """Read a folder of CTC frames `tNNN.tif`, a single 2D TIFF, or a 2D time-lapse TIFF (axes TYX).

    Returns `Frames` with `images (T, H, W)` float32. In a folder, frames are sorted by their number
    and other files are ignored. A file's axes are its own (`read_axes_image`) or `axes` (the
    command line's `--axes`); `channel` picks one channel of a multi-channel image (every frame's,
    in a folder). InputError (naming the file or folder) for a missing path, a folder without
    frames, frames of different sizes, a frame that is not 2D, a file that is not YX or TYX (a
    z-stack, a 3D array whose file does not say whether it is a time-lapse, 4 or more dimensions),
    a multi-channel file without `channel`, or NaN/infinite values.
    """
    path = Path(path)
    if path.is_dir():
        return _read_sequence(path, channel)
    if not path.exists():
        raise InputError(path, "not found")
    image = expect_axes(read_axes_image(path, channel=channel, axes=axes), path, FRAME_AXES, flag="--")
    if image.axes == "YX":
        return Frames(image.array[None], [0], "image", path, MIN_DIGITS)
    count = image.array.shape[0]
    # Like the CTC: 3 digits, 4 for sequences of 1000 frames or more.
    return Frames(image.array, list(range(count)), "stack", path, max(MIN_DIGITS, len(str(count - 1))))


def _read_sequence(folder: Path, channel: int | None) -> Frames:
    numbered = _numbered_files(folder, "t")
    if not numbered:
        raise InputError(folder, "no frames tNNN.tif in this folder")
    images: list[np.ndarray] = []
    for file in numbered.values():
        image = read_axes_image(file, channel=channel).array
        if image.ndim != 2:
            raise InputError(file, f"{image.ndim}D frame where a 2D frame is expected (shape {image.shape})")
        if images and image.shape != images[0].shape:
            first = next(iter(numbered.values()))
            raise InputError(
                file,
                f"frame of shape {image.shape} differs from the first frame {first.name} of shape {images[0].shape}",
            )
        images.append(image)
    first_name = next(iter(numbered.values())).stem
    return Frames(np.stack(images), list(numbered), "sequence", folder, len(first_name) - 1)


# ---------------------------------------------------------------- label frames


def label_frame_paths(folder: Path, prefix: str) -> dict[int, Path]:
    """The files `{prefix}NNN.tif` of a folder by frame number, sorted; InputError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "folder not found" if not folder.exists() else "not a folder")
    numbered = _numbered_files(folder, prefix)
    if not numbered:
        raise InputError(folder, f"no label frames {prefix}NNN.tif in this folder")
    return numbered


def read_label_frames(folder: Path, prefix: str) -> dict[int, np.ndarray]:
    """Read every `{prefix}NNN.tif` of a folder: frame number -> 2D integer label array `(H, W)`.

    InputError if there are none, or for a file that is not a 2D image of non-negative integers.
    """
    return {time: read_label_image(file) for time, file in label_frame_paths(folder, prefix).items()}


def read_label_image(path: Path) -> np.ndarray:
    """Read one label image as a 2D integer array `(H, W)`, keeping its integer dtype.

    Float files are accepted when every value is a whole number (some tools save labels as float32).
    InputError for a missing or unreadable file, another dimensionality, or values that are not
    non-negative integers.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        array = tifffile.imread(path)
    except Exception as err:  # tifffile raises many types for corrupt files
        raise InputError(path, f"not a readable TIFF image ({type(err).__name__}: {err})") from None
    return check_label_image(array, path)


def check_label_image(array, source: str | Path) -> np.ndarray:
    """A label image as `read_label_image` returns it (squeezed, 2D, integer) from an array in
    memory; InputError naming `source` (a file, or an argument of the Python API) otherwise."""
    array = np.squeeze(np.asarray(array))
    if array.ndim != 2:
        raise InputError(source, f"label image is {array.ndim}D with shape {array.shape}, expected 2D")
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if (
            not np.issubdtype(array.dtype, np.floating)
            or not np.all(np.isfinite(array))
            or np.any(array != np.round(array))
        ):
            raise InputError(source, f"labels must be integers, found pixel type {array.dtype} with non-integer values")
        if array.size and array.max() > np.iinfo(np.int64).max:
            raise InputError(source, f"label {array.max():g} is too large")
        array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise InputError(source, f"negative label {array.min()}: labels are 0 (background) or positive")
    return array


def write_label_frames(
    folder: Path,
    prefix: str,
    labels: np.ndarray,
    times: list[int],
    digits: int = 3,
    calibration: Calibration | None = None,
) -> list[Path]:
    """Write label frames `labels (T, H, W)` as uint16 `{prefix}{t:0{digits}d}.tif`, one per time.

    `prefix` is "mask" for results, "man_seg" or "man_track" for ground truth. `calibration`: the
    pixel size (y, x) and its unit of length to record (the input's), None for none. Each file is written
    atomically. Returns the paths in the order of `times`. ValueError for labels outside 0..65535
    (the CTC's 16-bit range), non-integer labels, or a `times` list of the wrong length.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must have shape (T, H, W), got {labels.shape}")
    if len(times) != labels.shape[0]:
        raise ValueError(f"{len(times)} times for {labels.shape[0]} label frames")
    labels = label_tiff_array(labels)  # all frames checked before the first is written
    folder = Path(folder)
    paths = []
    for time, frame in zip(times, labels):
        path = folder / f"{prefix}{int(time):0{digits}d}.tif"
        write_label_image(path, frame, calibration)
        paths.append(path)
    return paths


def write_label_image(path: Path, labels: np.ndarray, calibration: Calibration | None) -> None:
    """Write one label image `(H, W)` atomically, with `calibration` (pixel size y x and its unit of
    length) recorded as ImageJ's, or in pixels for None."""
    sizes, unit = (calibration.sizes, calibration.unit) if calibration is not None else (None, None)
    write_tiff(path, labels, voxel_size=sizes, unit=unit)


def _numbered_files(folder: Path, prefix: str) -> dict[int, Path]:
    """`{prefix}NNN.tif` (or .tiff) files of a folder by number, sorted by number. Two names for one
    number (t01.tif and t001.tif) are refused: which one is meant is unclear."""
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)\.tiff?", re.IGNORECASE)
    found: dict[int, Path] = {}
    for file in sorted(folder.iterdir()):
        match = pattern.fullmatch(file.name)
        if match is None or not file.is_file():
            continue
        number = int(match.group(1))
        if number in found:
            raise InputError(file, f"frame {number} is also in {found[number].name}")
        found[number] = file
    return dict(sorted(found.items()))


# ---------------------------------------------------------------- tracks


def write_tracks(path: Path, tracks: list[tuple[int, int, int, int]]) -> None:
    """Write a CTC track file (`res_track.txt`, `man_track.txt`) atomically: one line `L B E P` per
    track (label, begin frame, end frame, parent label or 0). ValueError for a malformed track."""
    lines = []
    for track in tracks:
        _check_track(tuple(track), ValueError)
        lines.append(" ".join(str(int(v)) for v in track))
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="ascii")


def read_tracks(path: Path) -> list[tuple[int, int, int, int]]:
    """Read a CTC track file: a list of `(label, begin, end, parent)`, in file order.

    Blank lines are skipped. InputError (with the line number) for a line that is not four
    non-negative integers with begin <= end, or for a label given twice.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    tracks: list[tuple[int, int, int, int]] = []
    first_line: dict[int, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 4:
                raise ValueError(f"expected 4 integers 'L B E P', got {len(fields)} field(s)")
            try:
                track = tuple(int(f) for f in fields)
            except ValueError:
                raise ValueError(f"expected 4 integers 'L B E P', got {line.strip()!r}") from None
            _check_track(track, ValueError)
            if track[0] in first_line:
                raise ValueError(f"label {track[0]} is already on line {first_line[track[0]]}")
        except ValueError as err:
            raise InputError(path, f"line {number}: {err}") from None
        first_line[track[0]] = number
        tracks.append(track)
    return tracks


def _check_track(track: tuple, error: type[Exception]) -> None:
    if len(track) != 4:
        raise error(f"a track is (label, begin, end, parent), got {track}")
    if any(not isinstance(v, (int, np.integer)) and int(v) != v for v in track):
        raise error(f"track {tuple(track)}: label, frames and parent must be integers")
    label, begin, end, parent = track
    if label < 1 or min(begin, end, parent) < 0:
        raise error(f"track {tuple(track)}: the label must be positive and the frames and parent non-negative")
    if begin > end:
        raise error(f"track {tuple(track)}: begins (frame {begin}) after it ends (frame {end})")
