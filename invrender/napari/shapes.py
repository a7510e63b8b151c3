"""Splines and polygons as napari Shapes layer data, and a Shapes layer's paths as splines.

A spline becomes a path through its points: `(k, 2)` `(y, x)` for one frame, `(k, 3)`
`(frame, y, x)` for a stack (one path per spline and frame), as wide as the spline's mean width (a
napari shape has one edge width). The per-point widths stay in the layer's metadata, keyed by the
path's `key` feature, so that a path a user moves in napari is written back with its widths
(resampled along the arc length when points were added or removed); a path drawn in napari has no
key (`NEW`) and is written without widths, as an init.

ACDR's polygons (`invrender.polygons`, one image) become closed polygons `(k, 2)` `(y, x)`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from invrender.core.geometry.spline_io import FORMAT as SPLINES_FORMAT
from invrender.core.geometry.spline_io import record_fields
from invrender.core.io import InputError, read_json
from invrender.napari import LayerData

POLYGONS_FORMAT = "invrender.polygons"  # invrender/core/geometry/polygons.py writes it
#: Colours given to the splines by id (the same body has the same colour in every frame).
COLOURS = ("yellow", "cyan", "magenta", "lime", "orange", "deepskyblue")
#: Edge width (px) of a spline without widths (an init) and of a polygon: a thin line.
HAIRLINE = 1.0
#: Opacity of splines drawn as wide as their bodies, so that the body stays visible under them.
SPLINE_OPACITY = 0.6
#: The layer metadata's entry for what napari's shapes do not hold (widths, image name, frames).
METADATA_KEY = "invrender"
#: The `id` and `key` features of a path drawn in napari: not from a file, so no id and no widths.
NEW = -1
#: Shape types that are curves (a napari "line" is a path of two points).
CURVE_TYPES = ("path", "line")


def splines_layer(frames: list[list[dict]], name: str, image: str | None = None) -> LayerData:
    """Shapes layer data of frames of spline records (`read_splines`' output): paths in pixels."""
    stack = len(frames) > 1
    paths, ids, edge_widths, widths, fields = [], [], [], [], []
    for frame, records in enumerate(frames):
        for record in records:
            fields.append(record_fields(record))
            yx = np.asarray(record["points"], dtype=np.float64)[:, ::-1]
            paths.append(np.column_stack([np.full(len(yx), float(frame)), yx]) if stack else yx.copy())
            ids.append(record["id"])
            w = record.get("widths")
            widths.append(None if w is None else (arc_fraction(record["points"]), np.asarray(w, dtype=np.float64)))
            edge_widths.append(HAIRLINE if w is None else float(np.mean(w)))
    colour_of = {sid: COLOURS[i % len(COLOURS)] for i, sid in enumerate(dict.fromkeys(ids))}
    attributes = {
        "name": name,
        "shape_type": "path",
        "edge_width": edge_widths,
        "edge_color": [colour_of[sid] for sid in ids],
        "face_color": "transparent",
        "opacity": SPLINE_OPACITY,
        "features": {"id": ids, "key": list(range(len(paths)))},
        "feature_defaults": {"id": NEW, "key": NEW},
        "metadata": {
            METADATA_KEY: {
                "format": SPLINES_FORMAT,
                "image": image,
                "frames": len(frames),
                "widths": widths,
                "fields": fields,
            }
        },
    }
    return paths, attributes, "shapes"


def splines_from_shapes(data: list[np.ndarray], attributes: dict[str, Any]) -> tuple[list[list[dict]], str]:
    """The frames of spline records (`write_splines`' input, `[x, y]` px) and the image name of a
    Shapes layer's paths (`layer.as_layer_data_tuple()`'s first two items). Paths that came from a
    splines file keep their ids, widths and other fields; paths drawn in napari get new ids and no
    widths.
    ValueError for shapes that are not paths, a path across frames, or a frame without a path."""
    if not len(data):
        raise ValueError("the layer has no paths")
    ndim = {np.shape(path)[1] for path in data}
    if len(ndim) != 1 or not ndim <= {2, 3}:
        raise ValueError(f"paths must all be (y, x) or all (frame, y, x), got {sorted(ndim)} coordinates")
    stack = ndim == {3}
    kinds = _per_shape(attributes.get("shape_type", "path"), len(data))
    ids, keys = _column(attributes, "id", len(data)), _column(attributes, "key", len(data))
    meta = (attributes.get("metadata") or {}).get(METADATA_KEY) or {}
    widths = meta.get("widths") or []
    fields = meta.get("fields") or []
    next_id = 1 + max((int(i) for i in ids if _is_int(i) and i != NEW), default=-1)
    seen, by_frame = set(), {}
    for index, (path, kind) in enumerate(zip(data, kinds)):
        if kind not in CURVE_TYPES:
            raise ValueError(f"shape {index} is a {kind}: splines are paths")
        path = np.asarray(path, dtype=np.float64)
        frame = _frame_of(index, path) if stack else 0
        points = path[:, -2:][:, ::-1].copy()  # (y, x) -> [x, y]
        key = keys[index]
        known = _is_int(key) and 0 <= key < len(widths) and key not in seen  # a copy repeats its original's key
        seen.add(key)
        if known:
            sid, w = ids[index], None if widths[key] is None else resample_widths(*widths[key], points)
            own = fields[key] if key < len(fields) else {}  # a layer made before fields were kept has none
        else:
            sid, w, own, next_id = next_id, None, {}, next_id + 1
        by_frame.setdefault(frame, []).append({"id": sid, "points": points, "widths": w, **own})
    n_frames = max(int(meta.get("frames") or 1), max(by_frame) + 1) if stack else 1
    empty = [f for f in range(n_frames) if f not in by_frame]
    if empty:
        raise ValueError(f"frame(s) {empty} have no path: a splines file holds at least one spline per frame")
    return [by_frame[f] for f in range(n_frames)], str(meta.get("image") or attributes.get("name") or "")


def read_polygons(path: str | os.PathLike) -> list[np.ndarray]:
    """The polygons `(k, 2)` `[x, y]` px of an `invrender.polygons` file; InputError naming the
    file for another format or malformed polygons."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != POLYGONS_FORMAT:
        raise InputError(path, f"not an {POLYGONS_FORMAT} file")
    polygons = []
    for i, item in enumerate(data.get("polygons", [])):
        try:
            points = np.asarray(item["points"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"polygon {i}: no list of [x, y] points") from None
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3 or not np.isfinite(points).all():
            raise InputError(path, f"polygon {i}: points must be at least 3 finite [x, y] pairs")
        polygons.append(points)
    return polygons


def polygons_layer(polygons: list[np.ndarray], name: str) -> LayerData:
    """Shapes layer data of closed polygons `(k, 2)` `[x, y]` px: polygons `(y, x)`."""
    attributes = {
        "name": name,
        "shape_type": "polygon",
        "edge_width": HAIRLINE,
        "edge_color": COLOURS[0],
        "face_color": "transparent",
    }
    return [np.asarray(p, dtype=np.float64)[:, ::-1].copy() for p in polygons], attributes, "shapes"


def arc_fraction(points: np.ndarray) -> np.ndarray:
    """(k,) each point's arc length from the first along the polyline `points` (k, 2), over the
    whole length: 0 ... 1 (evenly spaced for a polyline of length 0)."""
    steps = np.linalg.norm(np.diff(np.asarray(points, dtype=np.float64), axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    return arc / arc[-1] if arc[-1] > 0 else np.linspace(0.0, 1.0, len(arc))


def resample_widths(arc: np.ndarray, widths: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Widths (k,) known at arc fractions `arc` (k,), for the polyline `points` (m, 2): the same
    widths when the points were only moved (m = k), else interpolated at their arc fractions."""
    if len(points) == len(widths):
        return np.asarray(widths, dtype=np.float64)
    return np.interp(arc_fraction(points), arc, widths)


# ---------------------------------------------------------------- helpers


def _frame_of(index: int, path: np.ndarray) -> int:
    frame = float(np.round(path[0, 0]))
    if frame < 0 or not np.allclose(path[:, 0], frame):
        raise ValueError(f"path {index} is not in one frame (first coordinates {np.unique(path[:, 0])})")
    return int(frame)


def _per_shape(value: Any, n: int) -> list:
    return [value] * n if isinstance(value, str) else list(value)


def _column(attributes: dict[str, Any], name: str, n: int) -> list:
    """A feature column as a list (napari gives a DataFrame, a layer data tuple may hold a dict);
    NEW for every shape when the layer has no such feature (it was made in napari)."""
    features = attributes.get("features")
    if features is None or name not in features:
        return [NEW] * n
    return [v.item() if isinstance(v, np.generic) else v for v in list(features[name])]


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
