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
import tempfile
from collections.abc import Iterator
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


def read_image(path: str | os.PathLike, ndims: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """Read a TIFF image as float32, validated.

    Returns an array `(y, x)` or `(z|frame, y, x)`. Singleton axes are squeezed; RGB(A) images are
    rejected rather than silently converted (`read_picture` reads colour). Raises InputError on a
    missing or unreadable file, a colour image, a dimensionality outside `ndims`, an empty image, or
    NaN/infinite values.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape, photometric = series.axes, tuple(series.shape), series.keyframe.photometric
            array = tif.asarray()
    except Exception as err:  # tifffile raises many types for corrupt files
        raise InputError(path, f"not a readable TIFF image ({type(err).__name__}: {err})") from None
    _refuse_colour(path, axes, shape, photometric)
    return check_image(array, path, ndims)


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


def read_picture(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D grey or colour picture (PNG, JPEG or TIFF) as float32 `(channels, y, x)`.

    Grey images give one channel, RGB(A) three (alpha is dropped). Raises InputError on a missing
    or unreadable file, another dimensionality, an empty image, or NaN/infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = np.asarray(tifffile.imread(path))
        else:
            from PIL import Image

            with Image.open(path) as picture:
                array = np.asarray(picture.convert("RGB") if picture.mode in ("P", "CMYK", "YCbCr") else picture)
    except Exception as err:  # PIL and tifffile raise many types for corrupt files
        raise InputError(path, f"not a readable image ({type(err).__name__}: {err})") from None
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def write_tiff(
    path: str | os.PathLike, array: np.ndarray, voxel_size: tuple[float, float, float] | None = None
) -> None:
    """Write a TIFF atomically (ImageJ-compatible float32 unless an integer dtype is given), with the
    voxel size (z, y, x) as ImageJ metadata (z spacing) and resolution tags (y, x) when given."""
    import tifffile

    array = np.asarray(array)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    options = {}
    if voxel_size is not None:
        dz, dy, dx = voxel_size
        options = {"resolution": (1 / dx, 1 / dy), "metadata": {"spacing": dz, "axes": "ZYX"}}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, imagej=array.ndim <= 3 and array.dtype != np.float64, **options)


def read_voxel_size(path: str | os.PathLike) -> tuple[float, float, float] | None:
    """The voxel size (z, y, x) recorded in a 3D TIFF: OME PhysicalSize{Z,Y,X}, or ImageJ's z
    `spacing` with the x and y resolution tags; None when the file records none."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if tif.ome_metadata:
            sizes = {axis: re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', tif.ome_metadata) for axis in "ZYX"}
            if all(sizes.values()):
                return tuple(float(sizes[axis].group(1)) for axis in "ZYX")
        spacing = (tif.imagej_metadata or {}).get("spacing")
        tags = tif.pages[0].tags
        if spacing is None or "XResolution" not in tags or "YResolution" not in tags:
            return None
        x_num, x_den = tags["XResolution"].value
        y_num, y_den = tags["YResolution"].value
        return float(spacing), y_den / y_num, x_den / x_num


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an 8-bit RGB image `(y, x, 3)`, or a grey one `(y, x)`, as PNG atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")


def finite_or_none(value: float) -> float | None:
    """JSON-safe float: None for NaN or infinity."""
    value = float(value)
    return value if math.isfinite(value) else None
