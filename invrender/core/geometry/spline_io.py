"""Reading and writing sets of 2D splines (the `invrender.splines` JSON format).

A spline record is a dict `{"id": int, "points": (k, 2) float array [x, y] in pixels,
"widths": (k,) float array in pixels or None}`. A frame is a list of records; a file holds one
frame (`"splines"`) or several (`"frames": [{"splines": [...]}, ...]`, for a 3D TIFF stack).

Accepted as input, besides that schema: a bare JSON list of point lists (one frame) or a list of
such lists (frames), and `.npy` arrays of shape `(n_splines, k, 2)` or `(frames, n_splines, k, 2)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from invrender.core.io import InputError, read_json, write_json

FORMAT = "invrender.splines"
VERSION = 1

#: Points further outside the image than this fraction of its larger side are refused.
OUTSIDE_MARGIN = 0.25


def read_splines(path: str | os.PathLike) -> list[list[dict]]:
    """Read splines from JSON or `.npy`; returns a list of frames, each a list of spline records."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return _frames_from_array(path, _load_npy(path))
    data = read_json(path)
    if isinstance(data, dict):
        if data.get("format", FORMAT) != FORMAT:
            raise InputError(path, f"format is {data.get('format')!r}, expected {FORMAT!r}")
        if "frames" in data:
            frames = data["frames"]
            if not isinstance(frames, list):
                raise InputError(path, "'frames' must be a list")
            return [_records(path, _get_splines(path, f, i), frame=i) for i, f in enumerate(frames)]
        return [_records(path, _get_splines(path, data, None))]
    if isinstance(data, list):
        if _depth(data) == 4:
            return [_records(path, frame, frame=i) for i, frame in enumerate(data)]
        return [_records(path, data)]
    raise InputError(path, "expected a JSON object with 'splines' or a list of point lists")


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
    """Write frames of spline records atomically; a single frame is written as `"splines"`.

    Records may carry extra keys (e.g. `"knots"`, `"loss"`); arrays become lists.
    """

    def encode(rec: dict) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rec.items() if v is not None}

    data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "image": image}
    data.update(extra or {})
    if len(frames) == 1:
        data["splines"] = [encode(r) for r in frames[0]]
    else:
        data["frames"] = [{"splines": [encode(r) for r in frame]} for frame in frames]
    write_json(path, data)


# ---------------------------------------------------------------- helpers


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:
        raise InputError(path, f"not a readable .npy array ({err})") from None


def _frames_from_array(path: Path, array: np.ndarray) -> list[list[dict]]:
    if array.ndim not in (3, 4) or array.shape[-1] != 2:
        raise InputError(path, f"array of shape {array.shape}, expected (n_splines, k, 2) or (frames, n_splines, k, 2)")
    if array.ndim == 3:
        array = array[None]
    return [_records(path, list(frame), frame=i) for i, frame in enumerate(array)]


def _get_splines(path: Path, obj: Any, frame: int | None) -> list:
    where = "" if frame is None else f" in frame {frame}"
    if not isinstance(obj, dict) or "splines" not in obj:
        raise InputError(path, f"no 'splines' list{where}")
    return obj["splines"]


def _depth(obj: Any) -> int:
    depth = 0
    while isinstance(obj, list) and obj:
        depth, obj = depth + 1, obj[0]
    return depth


def _records(path: Path, splines: Any, frame: int | None = None) -> list[dict]:
    where = "" if frame is None else f" in frame {frame}"
    if not isinstance(splines, list) or not splines:
        raise InputError(path, f"no splines{where}")
    records = []
    for i, item in enumerate(splines):
        if isinstance(item, dict):
            sid, points, widths = item.get("id", i), item.get("points"), item.get("widths")
        else:
            sid, points, widths = i, item, None
        label = f"spline {sid}{where}"
        points = _float_array(path, points, label, "points")
        if points.ndim != 2 or points.shape[1] != 2:
            raise InputError(path, f"{label}: points must be a list of [x, y] pairs")
        if len(points) < 2:
            raise InputError(path, f"{label} has {len(points)} point(s), at least 2 are needed")
        if widths is not None:
            widths = _float_array(path, widths, label, "widths")
            if widths.shape != (len(points),) or np.any(widths <= 0):
                raise InputError(path, f"{label}: widths must be one positive number per point")
        records.append({"id": sid, "points": points, "widths": widths})
    return records


def _float_array(path: Path, value: Any, label: str, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(path, f"{label}: {what} are not numbers") from None
    if not np.all(np.isfinite(array)):
        raise InputError(path, f"{label}: {what} contain NaN or infinite values")
    return array
