"""Reading and writing sets of 2D splines (the `invrender.splines` JSON format).

A spline record is a dict `{"id": int, "points": (k, 2) float array [x, y] in pixels,
"widths": (k,) float array in pixels or None}`, plus any other fields a file gives it (a
detector's `score` or `track`), kept as they are. A frame is a list of records; a file holds one
frame (`"splines"`) or several (`"frames": [{"splines": [...]}, ...]`, for a 3D TIFF stack).

Accepted as input, besides that schema: a bare JSON list of point lists (one frame) or a list of
such lists (frames), and `.npy` arrays of shape `(n_splines, k, 2)` or `(frames, n_splines, k, 2)`.
`parse_splines` and `frames_from_array` read the same from memory (the Python API's init), and
`splines_json` is the object `write_splines` writes.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from invrender.core.io import InputError, read_json, write_json

FORMAT = "invrender.splines"
VERSION = 1

#: The keys of a spline record that the format defines; a file's other keys are the record's own fields.
RECORD_KEYS = ("id", "points", "widths")

#: Points further outside the image than this fraction of its larger side are refused.
OUTSIDE_MARGIN = 0.25


def record_fields(record: dict) -> dict:
    """A spline record's own fields: every key besides RECORD_KEYS (a detector's `score`, ...)."""
    return {key: value for key, value in record.items() if key not in RECORD_KEYS}


def read_splines(path: str | os.PathLike) -> list[list[dict]]:
    """Read splines from JSON or `.npy`; returns a list of frames, each a list of spline records."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return frames_from_array(path, _load_npy(path))
    return parse_splines(read_json(path), path)


def parse_splines(data: Any, source: str | os.PathLike) -> list[list[dict]]:
    """The frames of spline records in the parsed JSON `data` of a splines file (the schema's
    object, or bare point lists); InputError naming `source` (a file, or an argument of the Python
    API) otherwise."""
    if isinstance(data, dict):
        if data.get("format", FORMAT) != FORMAT:
            raise InputError(source, f"format is {data.get('format')!r}, expected {FORMAT!r}")
        if "frames" in data:
            frames = data["frames"]
            if not isinstance(frames, list):
                raise InputError(source, "'frames' must be a list")
            return [_records(source, _get_splines(source, f, i), frame=i) for i, f in enumerate(frames)]
        return [_records(source, _get_splines(source, data, None))]
    if isinstance(data, list):
        if _depth(data) == 4:
            return [_records(source, frame, frame=i) for i, frame in enumerate(data)]
        return [_records(source, data)]
    raise InputError(source, "expected a JSON object with 'splines' or a list of point lists")


def frames_from_array(source: str | os.PathLike, array: np.ndarray) -> list[list[dict]]:
    """The frames of spline records in an array `(n_splines, k, 2)` or `(frames, n_splines, k, 2)` of
    `[x, y]` points (px); InputError naming `source` otherwise."""
    if array.ndim not in (3, 4) or array.shape[-1] != 2:
        raise InputError(
            source, f"array of shape {array.shape}, expected (n_splines, k, 2) or (frames, n_splines, k, 2)"
        )
    if array.ndim == 3:
        array = array[None]
    return [_records(source, list(frame), frame=i) for i, frame in enumerate(array)]


def validate_splines(path: str | os.PathLike, frames: list[list[dict]], image_shape: tuple[int, ...]) -> None:
    """Check splines against the image they refine: frame count, points not far outside, and widths
    (px) no larger than the image's diagonal. The renderer's memory grows with the square of the
    widest body, so a width from the file is bounded by the image before anything is allocated.

    `image_shape` is `(y, x)` for one frame or `(frames, y, x)` for a stack.
    """
    n_frames = 1 if len(image_shape) == 2 else image_shape[0]
    height, width = image_shape[-2:]
    if len(frames) != n_frames:
        raise InputError(path, f"has {len(frames)} frame(s) of splines but the image has {n_frames}")
    margin = OUTSIDE_MARGIN * max(height, width)
    diagonal = float(np.hypot(height, width))
    for f, records in enumerate(frames):
        where = f" in frame {f}" if n_frames > 1 else ""
        for rec in records:
            widths = rec["widths"]
            if widths is not None and np.any(widths > diagonal):
                i = int(np.argmax(widths > diagonal))
                raise InputError(
                    path,
                    f"spline {rec['id']}{where}: widths[{i}] = {widths[i]:g} px is wider than the {width} x {height} "
                    f"image (its diagonal is {diagonal:.0f} px)",
                )
            p = rec["points"]
            outside = (
                (p[:, 0] < -margin)
                | (p[:, 0] > width - 1 + margin)
                | (p[:, 1] < -margin)
                | (p[:, 1] > height - 1 + margin)
            )
            if outside.any():
                x, y = p[np.argmax(outside)]
                raise InputError(
                    path,
                    f"spline {rec['id']}{where} has point [{x:.1f}, {y:.1f}] far outside the {width}x{height} image",
                )


def write_splines(
    path: str | os.PathLike, frames: list[list[dict]], image: str, extra: dict[str, Any] | None = None
) -> None:
    """Write frames of spline records atomically, as `splines_json` makes them."""
    write_json(path, splines_json(frames, image, extra))


def splines_json(frames: list[list[dict]], image: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `invrender.splines` JSON object of frames of spline records; a single frame is written
    as `"splines"`. Records may carry extra keys (e.g. `"knots"`, `"loss"`); arrays become lists
    and numpy numbers (a user's ids) plain numbers; keys whose value is None are left out."""

    def encode(rec: dict) -> dict:
        return {
            k: (v.tolist() if isinstance(v, np.ndarray | np.generic) else v) for k, v in rec.items() if v is not None
        }

    data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "image": image}
    data.update(extra or {})
    if len(frames) == 1:
        data["splines"] = [encode(r) for r in frames[0]]
    else:
        data["frames"] = [{"splines": [encode(r) for r in frame]} for frame in frames]
    return data


# ---------------------------------------------------------------- helpers


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:
        raise InputError(path, f"not a readable .npy array ({err})") from None


def _get_splines(source: str | os.PathLike, obj: Any, frame: int | None) -> list:
    where = "" if frame is None else f" in frame {frame}"
    if not isinstance(obj, dict) or "splines" not in obj:
        raise InputError(source, f"no 'splines' list{where}")
    return obj["splines"]


def _depth(obj: Any) -> int:
    depth = 0
    while isinstance(obj, list) and obj:
        depth, obj = depth + 1, obj[0]
    return depth


def _records(source: str | os.PathLike, splines: Any, frame: int | None = None) -> list[dict]:
    where = "" if frame is None else f" in frame {frame}"
    if not isinstance(splines, list) or not splines:
        raise InputError(source, f"no splines{where}")
    records = []
    for i, item in enumerate(splines):
        fields = {}
        if isinstance(item, dict):
            sid, points, widths = item.get("id", i), item.get("points"), item.get("widths")
            fields = record_fields(item)
        else:
            sid, points, widths = i, item, None
        if isinstance(sid, bool) or not isinstance(sid, numbers.Real | str):  # numbers.Real: numpy's too
            raise InputError(source, f"spline {i}{where}: id {sid!r} must be a number or a text")
        label = f"spline {sid}{where}"
        points = _float_array(source, points, label, "points")
        if points.ndim != 2 or points.shape[1] != 2:
            raise InputError(source, f"{label}: points must be a list of [x, y] pairs")
        if len(points) < 2:
            raise InputError(source, f"{label} has {len(points)} point(s), at least 2 are needed")
        if widths is not None:
            widths = _float_array(source, widths, label, "widths")
            if widths.shape != (len(points),) or np.any(widths <= 0):
                raise InputError(source, f"{label}: widths must be one positive number per point")
        if any(r["id"] == sid for r in records):  # results, fields and a movie's fits are matched by id
            raise InputError(
                source, f"spline id {sid!r} appears twice{where} (a spline without an id takes its position)"
            )
        records.append({"id": sid, "points": points, "widths": widths, **fields})
    return records


def _float_array(source: str | os.PathLike, value: Any, label: str, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(source, f"{label}: {what} are not numbers") from None
    if not np.all(np.isfinite(array)):
        raise InputError(source, f"{label}: {what} contain NaN or infinite values")
    return array
