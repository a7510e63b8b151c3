"""The plugin's readers (napari.yaml): each command takes a path and returns the function that reads
it into layer data, or None for a file it does not read (napari then offers it to other readers).

- `<stem>.splines.json` (any `invrender.splines` JSON, e.g. an init) -> Shapes, paths with widths
- `<stem>.polygon.json` (any `invrender.polygons` JSON, ACDR's) -> Shapes, polygons
- `<stem>.mesh.ply`, `.truth.ply`, `.rec` -> Surface(s) in the stack's physical coordinates
- spine-seg's `<stem>.<C1..L6>.ply` -> a Surface over the CT, placed by `<stem>.labels.nii.gz` (or
  `.labels.tif`) beside it
- TIFF -> Image, or Labels for label images; 3D with the voxel size it records as scale
- NIfTI (`.nii`, `.nii.gz`) -> Image, or Labels for `.labels.nii.gz`, with the header's spacing
- a Cell Tracking Challenge folder (cell-seg's `maskTTT.tif` + `res_track.txt`, a ground truth's
  `man_trackTTT.tif` + `man_track.txt` or `man_segTTT.tif`) -> Labels `(t, y, x)` and Tracks
- a DICOM series folder (a CT) -> Image `(i, j, k)` with its voxel spacing, as spine-seg reads it
- VerSe centroids (`*_ctd.json`) -> Points over the CT beside them (`<base>_ct.nii.gz`, or the
  mask), named by vertebra
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from invrender.core.geometry.meshes import ply_space, read_mesh
from invrender.core.geometry.spline_io import FORMAT as SPLINES_FORMAT
from invrender.core.geometry.spline_io import parse_splines
from invrender.core.io import InputError, read_json
from invrender.core.volumes import VERTEBRA_NAMES, read_centroids, read_grid, vertebra_code
from invrender.napari import LayerData
from invrender.napari.images import (
    NIFTI_SUFFIXES,
    TIFF_SUFFIXES,
    dicom_layer,
    is_dicom_folder,
    layer_units,
    nifti_layer,
    tiff_layer,
)
from invrender.napari.points import centroids_layer
from invrender.napari.shapes import POLYGONS_FORMAT, polygons_layer, read_polygons, splines_layer
from invrender.napari.surfaces import mesh_layers, vertebra_colour, world_mesh_layer
from invrender.napari.tracks import ctc_layers, ctc_prefix

Reader = Callable[[str], list[LayerData]]
#: What mesh-fit (`.mesh.ply`, `.mesh.rec`) and `invrender synth mesh` (`.truth.ply`, `.truth.rec`) write.
#: The PLY per cell beside a `.rec` (`.mesh.cell1.ply`, ...) is for other viewers and is left out: the
#: `.rec` already gives napari every cell's surface.
MESH_ENDINGS = (".mesh.ply", ".truth.ply", ".rec")
#: The stack beside a mesh, whose units its layer takes: what mesh-fit renders beside its mesh, and
#: the stack `invrender synth mesh` writes beside its truth.
MESH_STACKS = (
    (".mesh.ply", ".render.tif"),
    (".mesh.rec", ".render.tif"),
    (".truth.ply", ".tif"),
    (".truth.rec", ".tif"),
)
#: What spine-seg writes per vertebra: `<stem>.<name>.ply`, world mm, beside `<stem>.labels.nii.gz`
#: (or `<stem>.labels.tif` for a TIFF CT), which gives the grid napari shows the CT on.
VERTEBRA_MESH = re.compile(rf"(?P<stem>.+)\.(?P<vertebra>{'|'.join(VERTEBRA_NAMES.values())})\.ply")
VERTEBRA_GRIDS = (".labels.nii.gz", ".labels.tif")
#: VerSe's centroid files, `<base>_ctd.json` (`<base>_seg-subreg_ctd.json` in VerSe 2020), and the
#: volumes beside them, first found first, whose voxel grid their coordinates are on.
VERSE_CENTROIDS = re.compile(r"(?P<base>.+?)(_seg-subreg)?_ctd\.json", re.IGNORECASE)
CENTROID_GRIDS = ("_ct.nii.gz", ".nii.gz", "_seg-vert_msk.nii.gz", "_msk.nii.gz")


def read_splines_file(path: str | os.PathLike) -> list[LayerData]:
    data = read_json(path)
    image = data.get("image") if isinstance(data, dict) else None
    return [splines_layer(parse_splines(data, path), _name(path), image)]


def read_polygons_file(path: str | os.PathLike) -> list[LayerData]:
    return [polygons_layer(read_polygons(path), _name(path))]


def read_mesh_file(path: str | os.PathLike) -> list[LayerData]:
    """A mesh-fit mesh (or a synthetic truth), in the units of the stack beside it (MESH_STACKS),
    when that stack names one: napari uses units only when every layer has the same."""
    path = Path(path)
    stacks = [path.with_name(path.name[: -len(end)] + stack) for end, stack in MESH_STACKS if path.name.endswith(end)]
    units = layer_units(stacks[0]) if stacks and stacks[0].is_file() else None
    return mesh_layers(read_mesh(path), _name(path), units)


def read_vertebra_file(path: str | os.PathLike) -> list[LayerData]:
    """A spine-seg vertebra mesh over its CT: InputError when no labels file is beside it to place it."""
    path = Path(path)
    found = VERTEBRA_MESH.fullmatch(path.name)
    grids = [path.with_name(found["stem"] + ending) for ending in VERTEBRA_GRIDS]
    grid = next((g for g in grids if g.is_file()), None)
    if grid is None:
        raise InputError(
            path,
            f"a spine-seg mesh in world mm is placed over its CT by the labels beside it, "
            f"and neither {grids[0].name} nor {grids[1].name} is there",
        )
    colour = vertebra_colour(vertebra_code(found["vertebra"]))
    space = ply_space(path) or "RAS"  # spine-seg's frame; its older meshes did not say it
    return [world_mesh_layer(read_mesh(path), space, grid, _name(path), colour)]


def read_centroids_file(path: str | os.PathLike) -> list[LayerData]:
    """VerSe centroids over their CT: InputError when no volume is beside them to place them."""
    path = Path(path)
    base = VERSE_CENTROIDS.fullmatch(path.name)["base"]
    grids = [path.with_name(base + ending) for ending in CENTROID_GRIDS]
    grid = next((g for g in grids if g.is_file()), None)
    if grid is None:
        looked = ", ".join(g.name for g in grids)
        raise InputError(path, f"VerSe centroids are voxel coordinates of their CT, and none of {looked} is here")
    ct_grid = read_grid(grid)  # the header alone: the CT itself is opened as its own layer
    return [centroids_layer(read_centroids(path, ct_grid), ct_grid.affine, _name(path))]


def read_tiff_file(path: str | os.PathLike) -> list[LayerData]:
    return [tiff_layer(path)]


def read_nifti_file(path: str | os.PathLike) -> list[LayerData]:
    return [nifti_layer(path)]


def read_ctc_folder(path: str | os.PathLike) -> list[LayerData]:
    return ctc_layers(path)


def read_dicom_folder(path: str | os.PathLike) -> list[LayerData]:
    return [dicom_layer(path)]


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


def get_centroids_reader(path: str | list[str]) -> Reader | None:
    """VerSe centroid JSON (`*_ctd.json`); None for other files."""
    return read_centroids_file if _single(path, ("_ctd.json",)) else None


def get_mesh_reader(path: str | list[str]) -> Reader | None:
    if _single(path, MESH_ENDINGS):
        return read_mesh_file
    if _single(path, (".ply",)) and VERTEBRA_MESH.fullmatch(Path(path).name):
        return read_vertebra_file
    return None


def get_tiff_reader(path: str | list[str]) -> Reader | None:
    return read_tiff_file if _single(path, TIFF_SUFFIXES) else None


def get_nifti_reader(path: str | list[str]) -> Reader | None:
    return read_nifti_file if _single(path, NIFTI_SUFFIXES) else None


def get_ctc_reader(path: str | list[str]) -> Reader | None:
    """A folder of CTC label frames; None for a file or another folder."""
    return read_ctc_folder if _folder(path) and ctc_prefix(path) is not None else None


def get_dicom_reader(path: str | list[str]) -> Reader | None:
    """A folder holding a DICOM series; None for a file or another folder."""
    return read_dicom_folder if _folder(path) and is_dicom_folder(path) else None


def _folder(path: str | list[str]) -> bool:
    """One folder (what the folder readers take)."""
    return isinstance(path, str | os.PathLike) and Path(path).is_dir()


def _single(path: str | list[str], endings: tuple[str, ...]) -> bool:
    """One file (napari passes a list for a stack of files, which these readers do not make) with
    one of the endings."""
    return isinstance(path, str | os.PathLike) and Path(path).name.lower().endswith(endings)


def _name(path: str | os.PathLike) -> str:
    """The layer's name: the file's without its suffix, dots as spaces (`worms.splines.json` ->
    "worms splines", `spot.mesh.ply` -> "spot mesh"), apart from the image's ("worms", "spot")."""
    return Path(path).stem.replace(".", " ")
