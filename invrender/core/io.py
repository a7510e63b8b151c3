"""Validated reading and atomic writing of images and JSON.

Every reader raises :class:`InputError` with a one-line message naming the file and the problem;
the CLI turns it into exit code 2. Every writer writes a temporary file next to the target and
renames it into place, so an output is either complete or absent.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class InputError(Exception):
    """Bad user input: unreadable file, wrong shape, malformed content. Exit code 2."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


# ---------------------------------------------------------------- reading

#: tifffile's letters for axes whose meaning is known: T time, Z depth, C channel, S the samples of a
#: colour pixel (RGB), Y rows, X columns. Other letters (Q unknown, I a sequence of images: what
#: tifffile names the first axis of a 3D array written without axes) leave open what an axis is.
KNOWN_AXES = "TZCSYX"
#: Axes along which an image holds channels: ImageJ's and OME's C, and the samples of colour pixels.
CHANNEL_AXES = "CS"
#: What an image with these axes is, for messages.
AXES_MEANING = {"YX": "a 2D image", "TYX": "a time-lapse", "ZYX": "a z-stack", "TZYX": "a time-lapse of z-stacks"}


@dataclass(frozen=True)
class AxesImage:
    """An image with its axes named, as `read_axes_image` and `check_axes_image` return it.

    array: float32, finite, one dimension of more than one pixel per letter of `axes` (tifffile's
    letters, see KNOWN_AXES), Y and X last and at least 2 pixels each.
    """

    array: np.ndarray
    axes: str


def read_image(path: str | os.PathLike, ndims: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """Read a TIFF image as float32, validated, without looking at its axes (the napari reader,
    volumes, label images; a method's input is read by `read_axes_image`).

    Returns an array `(y, x)` or `(z|frame, y, x)`. Singleton axes are squeezed; RGB(A) images are
    rejected rather than silently converted (`read_picture` reads colour). Raises InputError on a
    missing or unreadable file, a colour image, a dimensionality outside `ndims`, an empty image, or
    NaN/infinite values.
    """
    path = Path(path)
    array, _, axes, photometric = _read_tiff(path)
    _refuse_colour(path, axes, array.shape, photometric)
    return check_image(array, path, ndims)


def read_axes_image(path: str | os.PathLike, *, channel: int | None = None, axes: str | None = None) -> AxesImage:
    """Read the first image series of a TIFF as float32 with its axes named (`AxesImage`).

    The axes are tifffile's: an ImageJ hyperstack's subset of `TZCYX`, OME's, `YXS` for RGB, and an
    unknown letter (Q, I) for an axis the file does not name; singleton axes are dropped. `axes`
    (the command line's `--axes`) names them instead, one letter per axis left, when the file does
    not name them or names them wrongly. `channel` (0-based, `--channel`) picks one channel of a
    multi-channel image (see `pick_channel`). Which axes a method takes, `expect_axes` checks.
    Raises InputError (naming the file) on a missing or unreadable file, `axes` that do not fit, a
    multi-channel image without `channel` or a channel out of range, an image too small, or
    NaN/infinite values.
    """
    path = Path(path)
    array, _, file_axes, _ = _read_tiff(path)
    array, file_axes = _squeezed(array, file_axes)
    if axes is not None and len(axes) != array.ndim:
        raise InputError(
            path,
            f"--axes {axes}: {len(axes)} letters for an image of {array.ndim} axes (shape {array.shape}, "
            f"axes {file_axes}; axes of one pixel do not count)",
        )
    return check_axes_image(array, path, axes or file_axes, channel=channel, flag="--")


def check_axes_image(
    array: Any, source: str | os.PathLike, axes: str | None = None, *, channel: int | None = None, flag: str = ""
) -> AxesImage:
    """An image as `read_axes_image` returns it from an array in memory; InputError naming `source`
    (a file, or an argument of the Python API) otherwise.

    axes: one letter per dimension of `array` (see KNOWN_AXES); None: the last two are Y and X and
    what the others are is not known (singleton axes are dropped first, as `check_image` does).
    `flag` prefixes the names of the options `channel` and `axes` in messages ("--" on the command
    line).
    """
    array = np.asarray(array)
    if axes is None:
        array = np.squeeze(array)
        axes = "Q" * (array.ndim - 2) + "YX"[-array.ndim :] if array.ndim else ""
    if len(axes) != array.ndim:
        raise InputError(source, f"{flag}axes {axes}: {len(axes)} letters for an image of shape {array.shape}")
    array, axes = pick_channel(*_squeezed(array, axes), channel, source, flag)
    if array.ndim < 2:
        raise InputError(source, f"image is {array.ndim}D with shape {array.shape}, expected 2D or more")
    if axes[-2:] != "YX":
        raise InputError(source, f"axes {axes} (shape {array.shape}): the last two must be Y and X")
    if array.size == 0 or min(array.shape) < 2:
        raise InputError(source, f"image of shape {array.shape} is too small")
    return AxesImage(_finite_float32(source, array), axes)


def pick_channel(
    array: np.ndarray, axes: str, channel: int | None, source: str | os.PathLike, flag: str = ""
) -> tuple[np.ndarray, str]:
    """The one channel `channel` (0-based) of an image `array` whose dimensions `axes` names, and
    the axes without the channel's; an image of one channel as it is (`channel` None or 0).
    InputError for several channels and no `channel` (which one is meant is not ours to guess:
    before, a 2-channel image passed for a 2-frame time-lapse), a channel out of range, or both
    channels and colour samples."""
    found = [axis for axis, letter in enumerate(axes) if letter in CHANNEL_AXES]
    where = f"shape {array.shape}, axes {axes}"
    if not found:
        if channel not in (None, 0):
            raise InputError(source, f"{flag}channel {channel} is out of range: the image has one channel ({where})")
        return array, axes
    if len(found) > 1:
        raise InputError(source, f"image with both channels and colour samples ({where}): give one channel per file")
    axis = found[0]
    count = array.shape[axis]
    kind = "RGB image, multi-channel" if axes[axis] == "S" else "multi-channel image"
    if channel is None:
        raise InputError(source, f"{kind} ({count} channels; {where}): give {flag}channel N (0 to {count - 1})")
    if not 0 <= channel < count:
        raise InputError(
            source,
            f"{flag}channel {channel} is out of range: the image has {count} channels, 0 to {count - 1} ({where})",
        )
    return np.take(array, channel, axis=axis), axes[:axis] + axes[axis + 1 :]


def expect_axes(
    image: AxesImage,
    source: str | os.PathLike,
    accepted: tuple[str, ...],
    unlabelled: tuple[str, ...] = (),
    flag: str = "",
) -> AxesImage:
    """`image` if a method takes its axes (one of `accepted`, e.g. ("YX", "TYX")); InputError
    naming `source` otherwise, saying what the image is and what the method takes.

    An image whose axes the file does not name (an unknown letter: a plain 3D array) is taken as
    the axes of `unlabelled` with its number of dimensions, if any (e.g. ("ZYX",) for a method of
    z-stacks); otherwise it is refused as ambiguous: a z-stack taken for a time-lapse (or channels
    for frames) gives a result that looks right and is not.
    """
    axes, shape = image.axes, image.array.shape
    takes = " or ".join(f"{a} ({AXES_MEANING.get(a, a)})" for a in accepted)
    hint = f"give {flag}axes " + " or ".join(a for a in accepted if len(a) == len(axes))
    if not set(axes) <= set(KNOWN_AXES):
        taken = [a for a in unlabelled if len(a) == len(axes)]
        if taken:
            return AxesImage(image.array, taken[0])
        if any(len(a) == len(axes) for a in accepted):
            question = "time-lapse or z-stack?" if len(axes) == 3 else "which axis is which?"
            raise InputError(source, f"{len(axes)}D array without axes (shape {shape}, axes {axes}): {question} {hint}")
    if axes in accepted:
        return image
    if all(len(a) != len(axes) for a in accepted):
        raise InputError(source, f"image is {len(axes)}D with shape {shape} (axes {axes}), expected {takes}")
    what = AXES_MEANING.get(axes, "an image")
    raise InputError(
        source, f"{what} (axes {axes}, shape {shape}): expected {takes}; if the file's axes are wrong, {hint}"
    )


def check_image(array: Any, source: str | os.PathLike, ndims: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """An image as `read_image` returns it (squeezed, float32, checked) from an array in memory;
    InputError naming `source` (a file, or an argument of the Python API) otherwise."""
    array = np.squeeze(np.asarray(array))
    if array.ndim not in ndims:
        want = " or ".join(f"{n}D" for n in ndims)
        raise InputError(source, f"image is {array.ndim}D with shape {array.shape}, expected {want}")
    if array.size == 0 or min(array.shape) < 2:
        raise InputError(source, f"image of shape {array.shape} is too small")
    return _finite_float32(source, array)


def read_tiff_axes(path: str | os.PathLike) -> str:
    """The axes `read_axes_image` finds in a TIFF (before `--axes` and `--channel`), from its
    metadata alone; InputError for a missing or unreadable file."""
    _, shape, axes, _ = _read_tiff(Path(path), pixels=False)
    return "".join(letter for letter, n in zip(axes, shape) if n != 1)


def _read_tiff(path: Path, pixels: bool = True) -> tuple[np.ndarray | None, tuple[int, ...], str, int]:
    """The first image series of a TIFF as stored (None unless `pixels`), its shape, its axes
    (tifffile's, see `read_axes_image`) and its photometric interpretation; InputError for a missing
    or unreadable file."""
    import tifffile

    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, axes, photometric = tuple(series.shape), series.axes, series.keyframe.photometric
            array = series.asarray() if pixels else None
            if _unnamed_imagej_axes(axes, tif.imagej_metadata):
                axes = "Q" + axes[1:]
    except Exception as err:  # tifffile raises many types for corrupt files
        raise InputError(path, f"not a readable TIFF image ({type(err).__name__}: {err})") from None
    if array is not None:
        shape = array.shape
    if len(axes) != len(shape):  # not seen; then the axes say nothing
        axes = "Q" * (len(shape) - 2) + "YX"[-len(shape) :]
    return array, shape, axes, photometric


def _unnamed_imagej_axes(axes: str, imagej: dict | None) -> bool:
    """Whether a `CYX` ImageJ file is a 3D array that tifffile wrote without axes: it writes the
    first axis of any such array as ImageJ channels, in its own ImageJ version 1.11a and grayscale
    mode (and so did invrender before it wrote axes). ImageJ and Fiji write their own version, and
    tifffile given axes a hyperstack with frames or slices; a true multi-channel file written by
    tifffile is told apart by a display mode (composite or color), which ImageJ sets for channels."""
    imagej = imagej or {}
    return (
        axes == "CYX"
        and str(imagej.get("ImageJ")) == "1.11a"
        and imagej.get("mode", "grayscale") == "grayscale"
        and not {"frames", "slices", "unit"} & set(imagej)
    )


def _squeezed(array: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """`array` and `axes` without the axes of length 1."""
    keep = [n != 1 for n in array.shape]
    squeezed = array.reshape([n for n, kept in zip(array.shape, keep) if kept])
    return squeezed, "".join(letter for letter, kept in zip(axes, keep) if kept)


def _refuse_colour(path: Path, axes: str, shape: tuple[int, ...], photometric: int) -> None:
    """InputError for pixels of several samples (RGB, RGBA, CMYK): squeezed, their samples would pass
    for frames or rows of a stack, and which channel is meant is not ours to guess. tifffile names the
    samples axis 'S' (last for interleaved pixels, first for planar ones); ImageJ's 'C' is not refused,
    as ImageJ writes plain stacks as 'CYX'."""
    from tifffile import PHOTOMETRIC

    samples = dict(zip(axes, shape)).get("S", 1)
    colour = photometric in (PHOTOMETRIC.RGB, PHOTOMETRIC.YCBCR)
    if colour or samples > 1:
        kind = "RGB" if colour else f"{samples}-channel"
        raise InputError(path, f"{kind} image (shape {shape}, axes {axes}): give one channel as a grayscale TIFF")


def _finite_float32(path: str | os.PathLike, array: np.ndarray) -> np.ndarray:
    """A numeric image as float32; InputError for other pixel types and for NaN or infinite values."""
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.iscomplexobj(array):
        raise InputError(path, f"unsupported pixel type {array.dtype}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise InputError(path, "image contains NaN or infinite values")
    return array


PICTURE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def read_picture(path: str | os.PathLike, channel: int | None = None) -> np.ndarray:
    """Read a 2D grey or colour picture (PNG, JPEG or TIFF) as float32 `(channels, y, x)`.

    Grey images give one channel, RGB(A) three (alpha is dropped). `channel` (0-based, the command
    line's `--channel`) picks one channel: of a colour picture, or of a multi-channel TIFF (ImageJ's
    or OME's C axis), which is refused without it (`pick_channel`). Raises InputError on a missing
    or unreadable file, another dimensionality, an empty image, or NaN/infinite values.
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        array, _, axes, _ = _read_tiff(path)
        array, axes = _squeezed(array, axes)
    else:
        if not path.is_file():
            raise InputError(path, "file not found")
        try:
            from PIL import Image

            with Image.open(path) as picture:
                array = np.asarray(picture.convert("RGB") if picture.mode in ("P", "CMYK", "YCbCr") else picture)
        except Exception as err:  # PIL raises many types for corrupt files
            raise InputError(path, f"not a readable image ({type(err).__name__}: {err})") from None
        axes = "YXS"[: array.ndim]
    if channel is not None or "C" in axes:
        array, axes = pick_channel(array, axes, channel, path, "--")
    return check_picture(array, path)


def check_picture(array: Any, source: str | os.PathLike) -> np.ndarray:
    """A picture as `read_picture` returns it, float32 `(channels, y, x)`, from an array in memory:
    grey `(y, x)`, or colour `(y, x, 3|4)` or `(3|4, y, x)` (alpha dropped; a leading 3 or 4 is
    taken for the channels); InputError naming `source` (a file, or an argument of the Python API)
    otherwise."""
    array = np.squeeze(np.asarray(array))
    if array.ndim == 3 and array.shape[-1] in (3, 4) and array.shape[0] not in (3, 4):
        array = np.moveaxis(array[..., :3], -1, 0)
    elif array.ndim == 3 and array.shape[0] in (3, 4):
        array = array[:3]
    elif array.ndim == 2:
        array = array[None]
    else:
        raise InputError(source, f"image of shape {array.shape} is not a 2D grey or RGB picture")
    if min(array.shape[1:]) < 2:
        raise InputError(source, f"image of shape {array.shape} is too small")
    return _finite_float32(source, array)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a binary mask (0/1, 0/255, or labels: anything above 0 is the object) as bool `(y, x)`."""
    array = read_picture(path)
    return array.max(axis=0) > 0


#: No invrender JSON nests deeper than a few levels; deeper input is hostile or broken, and would
#: exhaust Python's recursion limit in whatever walks it next (the parser, the writer of an output).
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; InputError when missing, empty or malformed (with the line of the error),
    nested deeper than MAX_JSON_DEPTH, or holding a number that is not a finite float (NaN, Infinity,
    1e400, a 400-digit integer): numbers read from JSON are safe to convert to float."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from None
    if not text.strip():
        raise InputError(path, "file is empty")
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_finite_int)
    except json.JSONDecodeError as err:
        raise InputError(path, f"malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    except ValueError as err:
        raise InputError(path, str(err)) from None
    except RecursionError:
        raise InputError(path, f"JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InputError(path, f"JSON nested {depth} levels deep (at most {MAX_JSON_DEPTH})")
    return data


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in valid JSON `text` (brackets in strings ignored)."""
    codes = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8"), dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _reject_constant(name: str) -> float:
    raise ValueError(f"JSON contains {name}, which is not a valid number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"JSON number {_shorten(text)} is out of the range of floating-point numbers")
    return value


def _finite_int(text: str) -> int:
    _finite_float(text)  # first, as int() refuses more than 4300 digits with Python's own advice
    return int(text)


def _shorten(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"


def normalise_intensity(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[np.ndarray, float, float]:
    """Map the `low`..`high` percentiles of `image` to 0..1 (no clipping).

    Returns the float32 image and the `(offset, span)` that undo it: `image = normalised * span + offset`.
    """
    lo, hi = np.percentile(image, [low, high])
    span = float(hi - lo) if hi > lo else 1.0
    return ((image - lo) / span).astype(np.float32), float(lo), span


# ---------------------------------------------------------------- writing

_UMASK = os.umask(0)
os.umask(_UMASK)


#: A temporary file of `atomic_path` untouched for this long (s) is no live writer's: a write in
#: progress touches its file every few seconds at the most.
ABANDONED_AFTER = 600.0
#: The end of a temporary file's name: `.<output name>.<host>~<pid>.<random>.part`, its writer named.
_PARTIAL_WRITER = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)~(?P<pid>\d+)\.[^.]+\.part$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`, named after `path` and this process (host and pid, see
    `remove_abandoned_partials`); rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = f"{_host()}~{os.getpid()}"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{writer}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_abandoned_partials(outputs: list[Path]) -> None:
    """Remove the temporary files of `atomic_path` (`.*.part`) in the folders of `outputs` that no
    live process is writing: left by a killed job or run. Finished outputs stay, and so do the
    temporary files of the jobs writing into the same folder at the same time (a sweep's workers,
    a run's shards on other nodes)."""
    now = time.time()
    for folder in {Path(output).parent for output in outputs}:
        for part in folder.glob(".*.part"):
            if _abandoned(part, now):
                part.unlink(missing_ok=True)


def _abandoned(part: Path, now: float) -> bool:
    """Whether a temporary file is no live writer's: its writer was a process of this host that has
    ended, or it is untouched for ABANDONED_AFTER s (a writer on another host, which cannot be
    asked), or it names no writer (written before they were named)."""
    found = _PARTIAL_WRITER.search(part.name)
    if found is None:
        return True
    if found["host"] == _host() and not _alive(int(found["pid"])):
        return True
    try:
        return now - part.stat().st_mtime > ABANDONED_AFTER
    except FileNotFoundError:  # renamed into place meanwhile
        return False


def _host() -> str:
    """This machine's name as a temporary file's name holds it: letters, digits and hyphens."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def _alive(pid: int) -> bool:
    """Whether process `pid` runs; a zombie (ended, its parent not yet told, as a killed run's
    orphaned child can be for a while) has ended. On Windows, where `os.kill(pid, 0)` would send
    Ctrl-C instead of asking, every process counts as running."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # Linux: the state follows the parenthesised command name
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically. Non-finite floats are refused: they are not JSON."""
    text = json.dumps(data, indent=2, allow_nan=False, default=_json_default)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


#: The axes `write_tiff` writes: an image, a z stack, a time-lapse (Fiji opens T as frames, Z as slices).
TIFF_AXES = ("YX", "ZYX", "TYX")
#: The largest label of a label TIFF: 16 bits, as the Cell Tracking Challenge and Fiji keep labels.
MAX_TIFF_LABEL = int(np.iinfo(np.uint16).max)


def label_tiff_array(labels: Any) -> np.ndarray:
    """`labels` as uint16, for a label TIFF; ValueError for values that are not whole numbers or lie
    outside 0..65535."""
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError("labels must be whole numbers")
    if labels.size and (labels.min() < 0 or labels.max() > MAX_TIFF_LABEL):
        raise ValueError(f"labels {labels.min()}..{labels.max()} do not fit a 16-bit TIFF (0..{MAX_TIFF_LABEL})")
    return labels.astype(np.uint16)


def write_tiff(
    path: str | os.PathLike,
    array: np.ndarray,
    voxel_size: tuple[float, ...] | None = None,
    *,
    axes: str | None = None,
    unit: str | None = None,
) -> None:
    """Write an ImageJ TIFF atomically (float32 unless an integer dtype is given) with its axes and
    unit of length in ImageJ's metadata, so that Fiji opens it with the right dimensions and scale.

    axes: one of TIFF_AXES, a letter per axis of `array`; default "YX" for 2D, "ZYX" for 3D.
    voxel_size: the pixel's size in `unit` along the spatial axes, `(z, y, x)` for "ZYX", `(y, x)`
    otherwise; written as ImageJ's `spacing` (z) and the x/y resolution tags (pixels per unit). None
    writes no size. unit: the unit of `voxel_size`, "pixel" or a unit of length (a symbol of
    `calibration.MICRONS` or another of its names, e.g. "nm", "micron", "mm"), written under ImageJ's
    name for it; default "micron" (microscopy's) with a size, "pixel" without. ValueError for axes
    that do not fit the array, or an unknown unit.
    """
    import tifffile

    from invrender.core.calibration import imagej_unit, length_unit

    array = np.asarray(array)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    unit = unit or ("pixel" if voxel_size is None else "micron")
    axes = axes or {2: "YX", 3: "ZYX"}.get(array.ndim)
    if axes not in TIFF_AXES or len(axes) != array.ndim:
        raise ValueError(f"cannot write an array of shape {array.shape} with axes {axes}: expected one of {TIFF_AXES}")
    if unit != "pixel" and length_unit(unit) is None:
        raise ValueError(f"unit {unit!r}: expected pixel or a unit of length (nm, micron, mm, ...)")
    metadata: dict = {"axes": axes, "unit": "pixel" if unit == "pixel" else imagej_unit(length_unit(unit))}
    options = {}
    if voxel_size is not None:
        spatial = "ZYX" if axes == "ZYX" else "YX"
        if len(voxel_size) != len(spatial):
            raise ValueError(f"voxel size {tuple(voxel_size)}: expected {len(spatial)} values ({spatial}) for {axes}")
        sizes = dict(zip(spatial, voxel_size))
        options["resolution"] = (1 / sizes["X"], 1 / sizes["Y"])
        if "Z" in sizes:
            metadata["spacing"] = sizes["Z"]
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, imagej=True, metadata=metadata, **options)


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an 8-bit RGB image `(y, x, 3)`, or a grey one `(y, x)`, as PNG atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")


def finite_or_none(value: float) -> float | None:
    """JSON-safe float: None for NaN or infinity."""
    value = float(value)
    return value if math.isfinite(value) else None
