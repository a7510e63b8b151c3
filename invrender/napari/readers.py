"""The plugin's readers (napari.yaml): each command takes a path and returns the function that reads
it into layer data, or None for a file it does not read (napari then offers it to other readers).

- `<stem>.splines.json` (any `invrender.splines` JSON, e.g. an init) -> Shapes, paths with widths
- `<stem>.polygon.json` (any `invrender.polygons` JSON, ACDR's) -> Shapes, polygons
- `<stem>.mesh.ply`, `.truth.ply`, `.rec` -> Surface(s) in the stack's physical coordinates
- TIFF -> Image, or Labels for label images; 3D with the voxel size it records as scale
- NIfTI (`.nii`, `.nii.gz`) -> Image, or Labels for `.labels.nii.gz`, with the header's spacing
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from invrender.core.geometry.meshes import read_mesh
from invrender.core.geometry.spline_io import FORMAT as SPLINES_FORMAT
from invrender.core.geometry.spline_io import parse_splines
from invrender.core.io import InputError, read_json
from invrender.napari import LayerData
from invrender.napari.images import NIFTI_SUFFIXES, TIFF_SUFFIXES, nifti_layer, tiff_layer
from invrender.napari.shapes import POLYGONS_FORMAT, polygons_layer, read_polygons, splines_layer
from invrender.napari.surfaces import mesh_layers

Reader = Callable[[str], list[LayerData]]
#: What mesh-fit (`.mesh.ply`, `.mesh.rec`) and `invrender synth mesh` (`.truth.ply`, `.truth.rec`) write.
#: The PLY per cell beside a `.rec` (`.mesh.cell1.ply`, ...) is for other viewers and is left out: the
#: `.rec` already gives napari every cell's surface.
MESH_ENDINGS = (".mesh.ply", ".truth.ply", ".rec")


def read_splines_file(path: str | os.PathLike) -> list[LayerData]:
    data = read_json(path)
    image = data.get("image") if isinstance(data, dict) else None
    return [splines_layer(parse_splines(data, path), _name(path), image)]


def read_polygons_file(path: str | os.PathLike) -> list[LayerData]:
    return [polygons_layer(read_polygons(path), _name(path))]


def read_mesh_file(path: str | os.PathLike) -> list[LayerData]:
    return mesh_layers(read_mesh(path), _name(path))


def read_tiff_file(path: str | os.PathLike) -> list[LayerData]:
    return [tiff_layer(path)]


def read_nifti_file(path: str | os.PathLike) -> list[LayerData]:
    return [nifti_layer(path)]


def get_json_reader(path: str | list[str]) -> Reader | None:
    """Splines or polygons, told by the JSON's `format`; None for other JSON."""
    if not _single(path, (".json",)):
        return None
    try:
        data = read_json(path)
    except InputError:
        return None
    kind = data.get("format") if isinstance(data, dict) else None
    return {SPLINES_FORMAT: read_splines_file, POLYGONS_FORMAT: read_polygons_file}.get(kind)


def get_mesh_reader(path: str | list[str]) -> Reader | None:
    return read_mesh_file if _single(path, MESH_ENDINGS) else None


def get_tiff_reader(path: str | list[str]) -> Reader | None:
    return read_tiff_file if _single(path, TIFF_SUFFIXES) else None


def get_nifti_reader(path: str | list[str]) -> Reader | None:
    return read_nifti_file if _single(path, NIFTI_SUFFIXES) else None


def _single(path: str | list[str], endings: tuple[str, ...]) -> bool:
    """One file (napari passes a list for a stack of files, which these readers do not make) with
    one of the endings."""
    return isinstance(path, str | os.PathLike) and Path(path).name.lower().endswith(endings)


def _name(path: str | os.PathLike) -> str:
    """The layer's name: the file's without its suffix, dots as spaces (`worms.splines.json` ->
    "worms splines", `spot.mesh.ply` -> "spot mesh"), apart from the image's ("worms", "spot")."""
    return Path(path).stem.replace(".", " ")
