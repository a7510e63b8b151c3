"""The physical size of a pixel or voxel, and its unit of length, as TIFF files record them.

OME-XML gives `PhysicalSize{X,Y,Z}` with `PhysicalSize{X,Y,Z}Unit` (micrometres when it names no
unit, as the OME schema says); ImageJ gives the x and y resolution tags (pixels per unit), the z
`spacing` and one `unit` for all three. Microscopes and converters write micrometres, nanometres
or millimetres, so a size means nothing without its unit: `read_calibration` returns both, with
the unit as one symbol of MICRONS (or None when the file names no known unit of length).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Units of length by their symbol, in micrometres.
MICRONS = {"nm": 1e-3, "µm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6, "in": 25400.0}

#: Other names of those units in files: ImageJ writes "micron" or the escaped "\\u00B5m", OME the
#: symbol (with the micro sign or the Greek mu), people "um" or the words.
_NAMES = {
    "micron": "µm",
    "microns": "µm",
    "um": "µm",
    "μm": "µm",  # the Greek letter mu, not the micro sign
    "\\u00b5m": "µm",
    "micrometer": "µm",
    "micrometre": "µm",
    "nanometer": "nm",
    "nanometre": "nm",
    "millimeter": "mm",
    "millimetre": "mm",
    "centimeter": "cm",
    "centimetre": "cm",
    "meter": "m",
    "metre": "m",
    "inch": "in",
}


def length_unit(name: str | None) -> str | None:
    """The symbol (a key of MICRONS) of a unit of length as a file names it; None for no name,
    "pixel", or a name that is not a unit of length known here."""
    if not name:
        return None
    text = str(name).strip()
    if text in MICRONS:
        return text
    return _NAMES.get(text.lower())


def convert(sizes: tuple[float, ...], unit: str, to: str) -> tuple[float, ...]:
    """`sizes` in `unit` expressed in `to` (both keys of MICRONS)."""
    factor = MICRONS[unit] / MICRONS[to]
    return tuple(float(s) * factor for s in sizes)


def imagej_unit(unit: str | None) -> str:
    """The name ImageJ gives `unit` (a key of MICRONS, or None: pixels): "micron" for micrometres
    (ImageJ's own spelling, which Fiji shows as µm), the symbol otherwise."""
    if unit is None:
        return "pixel"
    return "micron" if unit == "µm" else unit


@dataclass(frozen=True)
class Calibration:
    """The size of a pixel or voxel along some axes, and the unit it is in."""

    sizes: tuple[float, ...]  # along the axes asked for, e.g. (z, y, x)
    unit: str | None  # a key of MICRONS; None when the file names no unit of length (pixels, or unknown)


def read_calibration(path: str | os.PathLike, axes: str) -> Calibration | None:
    """The pixel size along `axes` ("ZYX" or "YX") recorded in a TIFF and its unit: OME's
    PhysicalSize (each axis converted to the x axis's unit when they differ), else ImageJ's
    resolution tags with its z `spacing` (for "ZYX") and `unit`; None when the file records none or
    is not a TIFF."""
    import tifffile

    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        return None
    with tifffile.TiffFile(path) as tif:
        ome = _ome_calibration(tif.ome_metadata, axes)
        if ome is not None:
            return ome
        imagej = tif.imagej_metadata or {}
        pixel = _resolution_sizes(tif.pages[0].tags)
        if pixel is None or ("Z" in axes and imagej.get("spacing") is None):
            return None
        sizes = (float(imagej["spacing"]), *pixel) if "Z" in axes else pixel
        return Calibration(sizes, length_unit(imagej.get("unit")))


def read_voxel_size(path: str | os.PathLike) -> tuple[float, float, float] | None:
    """The voxel size (z, y, x) recorded in a 3D TIFF, in its unit (`read_calibration`); None when
    the file records none."""
    recorded = read_calibration(path, "ZYX")
    return None if recorded is None else recorded.sizes


def read_pixel_size(path: str | os.PathLike) -> tuple[float, float] | None:
    """The pixel size (y, x) recorded in a TIFF, in its unit, when the file is calibrated in a unit
    of length (`pixel_calibration`); None otherwise."""
    recorded = pixel_calibration(path)
    return None if recorded is None else recorded.sizes


def pixel_calibration(path: str | os.PathLike) -> Calibration | None:
    """The pixel size (y, x) recorded in a TIFF and its unit, when the file is calibrated in a unit
    of length: OME's, or an ImageJ file's whose `unit` is one. None otherwise: other files'
    resolution tags are not taken, since image editors write 72 dots per inch into pictures of any
    scale."""
    recorded = read_calibration(path, "YX")
    return None if recorded is None or recorded.unit is None else recorded


def pixel_size_record(path: str | os.PathLike, given: tuple[float, float] | None) -> dict[str, Any]:
    """A 2D method's record of its input's scale, for the run manifest: `pixel_size` (y, x) and
    `pixel_unit`, from `given` (`--pixel-size`, in a unit the command line does not know: None),
    else from the file (`pixel_calibration`), else both None."""
    if given is not None:
        return {"pixel_size": tuple(given), "pixel_unit": None}
    recorded = pixel_calibration(path)
    if recorded is None:
        return {"pixel_size": None, "pixel_unit": None}
    return {"pixel_size": recorded.sizes, "pixel_unit": recorded.unit}


def _ome_calibration(ome: str | None, axes: str) -> Calibration | None:
    """OME-XML's PhysicalSize of each of `axes` in the x axis's unit; None unless it gives them all."""
    if not ome:
        return None
    found = [re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', ome) for axis in axes]
    if not all(found):
        return None
    units = [_ome_unit(ome, axis) for axis in axes]
    unit = units[axes.index("X")]
    sizes = tuple(float(match.group(1)) for match in found)
    if unit is None or None in units:  # a unit OME allows but that is not one of length here
        return Calibration(sizes, None)
    return Calibration(tuple(convert((s,), u, unit)[0] for s, u in zip(sizes, units)), unit)


def _ome_unit(ome: str, axis: str) -> str | None:
    named = re.search(rf'PhysicalSize{axis}Unit="([^"]*)"', ome)
    return "µm" if named is None else length_unit(named.group(1))


def _resolution_sizes(tags: Any) -> tuple[float, float] | None:
    """The pixel size (y, x) from a TIFF page's resolution tags (pixels per unit, as fractions);
    None without them, or for a resolution of zero."""
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    (x_num, x_den), (y_num, y_den) = tags["XResolution"].value, tags["YResolution"].value
    if min(x_num, x_den, y_num, y_den) <= 0:
        return None
    return y_den / y_num, x_den / x_num
