"""TIFF and NIfTI images as napari Image or Labels layer data, and a Labels layer as a TIFF.

A 3D TIFF's voxel size (z, y, x) becomes the layer's `scale`, and its unit of length the layer's
`units` (napari's scale bar shows them), which puts the stack in the physical units of mesh-fit's
meshes. 2D images (and time-lapses, which record none) stay in pixels, the units of splines and
polygons. A NIfTI volume keeps its voxel order (i, j, k), with the voxel spacing of its header as
`scale`, in mm (spine-seg writes its labels on the CT's grid, so both lie over each other); so does
a DICOM series folder, in the order spine-seg reads it.

Label images are told from images by their names: invrender's `<stem>.labels.tif|.nii.gz`, the Cell
Tracking Challenge's `maskNNN.tif`, `man_segNNN.tif`, `man_trackNNN.tif`, and VerSe's `<stem>_msk.nii.gz`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from invrender.core.calibration import length_unit, read_calibration
from invrender.core.io import InputError, label_tiff_array, read_image, write_tiff
from invrender.napari import LayerData

TIFF_SUFFIXES = (".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: The units of a volume's layer on its world grid (NIfTI, DICOM): millimetres.
GRID_UNITS = ("millimeter",) * 3
LABEL_STEM = re.compile(r".*(\.labels|_msk)|mask\d+|man_seg\d+|man_track\d+", re.IGNORECASE)
#: napari's names (pint's) of the units of length of `core.calibration.MICRONS`.
NAPARI_UNITS = {
    "nm": "nanometer",
    "µm": "micrometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "in": "inch",
}


def stem(path: str | os.PathLike) -> str:
    """The file name without its image suffix (`.tif`, `.tiff`, `.nii`, `.nii.gz`)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_label_image(path: str | os.PathLike) -> bool:
    return LABEL_STEM.fullmatch(stem(path)) is not None


def tiff_layer(path: str | os.PathLike) -> LayerData:
    """Image or Labels layer data of a 2D or 3D TIFF, with the voxel size it records as scale and
    its unit as units (3D)."""
    array = read_image(path)
    recorded = read_calibration(path, "ZYX") if array.ndim == 3 else None
    attributes: dict[str, Any] = {"name": stem(path), "scale": (1.0,) * array.ndim}
    if recorded is not None:
        attributes["scale"] = tuple(float(s) for s in recorded.sizes)
        if recorded.unit is not None:
            attributes["units"] = (NAPARI_UNITS[recorded.unit],) * 3
    if is_label_image(path):
        return _whole_labels(array, path), attributes, "labels"
    return array, attributes, "image"


def nifti_layer(path: str | os.PathLike) -> LayerData:
    """Image or Labels layer data `(i, j, k)` of a NIfTI volume, its header's voxel spacing as scale."""
    from invrender.core.volumes import read_label_volume, read_volume

    labels = is_label_image(path)
    volume = read_label_volume(path) if labels else read_volume(path)
    return volume.data, grid_attributes(stem(path), volume.affine), "labels" if labels else "image"


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """Whether a folder holds a DICOM file (Part 10: "DICM" after the 128-byte preamble)."""
    for file in Path(path).iterdir():
        if not file.is_file():
            continue
        with open(file, "rb") as opened:
            if opened.read(132)[128:] == b"DICM":
                return True
    return False


def dicom_layer(folder: str | os.PathLike) -> LayerData:
    """Image layer data `(i, j, k)` = (columns, rows, slices) of a DICOM series folder in its values
    (e.g. Hounsfield units), as spine-seg reads it, the voxel spacing (mm) as scale: spine-seg's
    labels NIfTI, on the series' grid, lies over it."""
    from invrender.core.volumes import read_volume

    volume = read_volume(folder)
    return volume.data, grid_attributes(Path(folder).name, volume.affine), "image"


def grid_attributes(name: str, affine: np.ndarray) -> dict[str, Any]:
    """Layer attributes of a volume `(i, j, k)` with a voxel-to-world affine (4, 4) in mm (RAS+):
    its spacing as scale, and the affine in `metadata["affine"]`, which the spine-seg widget needs
    to know which way is up."""
    from invrender.core.volumes import affine_spacing

    scale = tuple(float(s) for s in affine_spacing(affine))
    return {"name": name, "scale": scale, "units": GRID_UNITS, "metadata": {"affine": np.asarray(affine)}}


def layer_units(path: str | os.PathLike) -> tuple[str, ...] | None:
    """The units of the layer that `nifti_layer` or `tiff_layer` makes of the volume at `path` (None:
    a TIFF that names none), for the layers laid over it: napari uses units only when every layer
    has the same."""
    if Path(path).name.lower().endswith(NIFTI_SUFFIXES):
        return GRID_UNITS
    recorded = read_calibration(path, "ZYX")
    return None if recorded is None or recorded.unit is None else (NAPARI_UNITS[recorded.unit],) * 3


def world_to_grid_layer(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) world mm (RAS+) -> (N, 3) coordinates of a layer `(i, j, k)` made by `grid_attributes`
    of a volume with `affine`: the voxel index times the spacing."""
    from invrender.core.volumes import affine_spacing, world_to_index

    return world_to_index(affine, points) * affine_spacing(affine)


def world_to_layer(path: str | os.PathLike, points: np.ndarray) -> np.ndarray:
    """(N, 3) world mm (RAS+) -> (N, 3) coordinates of the layer that `nifti_layer` or `tiff_layer`
    makes of the volume at `path`: the point's voxel index through the volume's affine, in the
    layer's axis order, times its scale. This puts spine-seg's meshes over their CT and labels."""
    from invrender.core.volumes import read_affine, world_to_index

    affine = read_affine(path)  # of the voxels (i, j, k), in mm, as spine-seg read them
    if Path(path).name.lower().endswith(NIFTI_SUFFIXES):
        return world_to_grid_layer(affine, points)
    index = world_to_index(affine, points)
    return index[:, ::-1] * read_calibration(path, "ZYX").sizes  # a TIFF (x, y, z) shown as (z, y, x)


def write_labels_tiff(path: str | os.PathLike, data: Any, attributes: dict[str, Any]) -> None:
    """Write a Labels layer's data `(y, x)` or `(z, y, x)` as a 16-bit TIFF, a 3D one with the
    layer's scale as its voxel size in the layer's unit of length (`pixel` when it has none).
    ValueError for labels outside 0..65535 or not whole numbers."""
    labels = np.asarray(data)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels of shape {labels.shape}: a TIFF of labels is 2D or 3D")
    labels = label_tiff_array(labels)
    scale = attributes.get("scale")
    voxel_size = tuple(float(s) for s in scale[-3:]) if labels.ndim == 3 and scale is not None else None
    units = {length_unit(str(unit)) for unit in (attributes.get("units") or ())[-3:]}
    unit = units.pop() if len(units) == 1 and None not in units else None  # one unit of length for all axes
    write_tiff(path, labels, voxel_size=voxel_size, unit=unit or "pixel")


def _whole_labels(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """The float image `read_image` gives, as int32 labels; InputError for fractions or negatives."""
    if np.any(array != np.round(array)):
        raise InputError(path, "not a label image: non-integer values")
    if array.min() < 0:
        raise InputError(path, f"not a label image: negative label {array.min():g}")
    return array.astype(np.int32)
