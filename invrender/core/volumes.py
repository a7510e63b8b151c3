"""3D volumes on a world grid (CT, label masks): reading, grids, vertebra centroids, atomic writing.

A `Volume` keeps the array in the file's own voxel order `(i, j, k)` with the 4x4 affine that maps
a voxel index `(i, j, k, 1)` to world millimetres `(x, y, z, 1)` (NIfTI's convention, RAS+), so any
orientation is handled by the affine and meshes live in world millimetres.

Readable volumes: NIfTI (`.nii`, `.nii.gz`), a folder holding one DICOM series, and a 3D TIFF.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from invrender.core.calibration import convert, read_calibration
from invrender.core.io import InputError, atomic_path, label_tiff_array, read_image, read_json, write_tiff

NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")
SUPPORTED = "NIfTI (.nii, .nii.gz), a DICOM series folder, or a 3D TIFF (.tif, .tiff)"

#: DICOM's patient frame is LPS+, NIfTI's is RAS+: the same point with x and y negated.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Slices whose spacing differs from the mean step by more than this fraction mean missing slices.
SLICE_STEP_TOLERANCE = 0.01
#: Two grids are the same when their voxel centres agree to this many mm.
GRID_TOLERANCE_MM = 1e-3


@dataclass
class Volume:
    data: np.ndarray  # (I, J, K), the file's voxel order
    affine: np.ndarray  # (4, 4) voxel index -> world mm
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)

    @property
    def spacing(self) -> np.ndarray:
        """(3,) mm between voxel centres along i, j, k."""
        return affine_spacing(self.affine)

    def world_to_index(self) -> np.ndarray:
        """(4, 4) world mm -> voxel index."""
        return np.linalg.inv(self.affine)

    def voxel_centres(self, mask: np.ndarray | None = None) -> np.ndarray:
        """(N, 3) world mm of every voxel (C order), or of the voxels where `mask` is true."""
        index = np.argwhere(mask) if mask is not None else np.indices(self.shape).reshape(3, -1).T
        return index_to_world(self.affine, index)


def affine_spacing(affine: np.ndarray) -> np.ndarray:
    """(3,) the distance between voxel centres along i, j, k of a voxel-to-world affine (4, 4)."""
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def index_to_world(affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(N, 3) voxel indices -> (N, 3) world mm."""
    return np.asarray(index, dtype=np.float64) @ affine[:3, :3].T + affine[:3, 3]


def world_to_index(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) world mm -> (N, 3) continuous voxel indices."""
    inverse = np.linalg.inv(affine)
    return np.asarray(points, dtype=np.float64) @ inverse[:3, :3].T + inverse[:3, 3]


def as_canonical(volume: Volume) -> Volume:
    """The same volume stored in the voxel order closest to RAS (i towards the right, j anterior, k
    superior): axes permuted and flipped, the affine moved with them, no resampling. Work done on it
    is the same whatever order the file stored the voxels in."""
    from nibabel.orientations import inv_ornt_aff, io_orientation

    orientation = io_orientation(volume.affine)  # per voxel axis: (world axis, +1 or -1)
    if np.array_equal(orientation, [[0, 1], [1, 1], [2, 1]]):
        return volume
    data = volume.data
    for axis, (_, flip) in enumerate(orientation):
        if flip < 0:
            data = np.flip(data, axis)
    data = np.ascontiguousarray(np.transpose(data, np.argsort(orientation[:, 0])))
    return Volume(data, volume.affine @ inv_ornt_aff(orientation, volume.shape), volume.path)


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


# ---------------------------------------------------------------- reading volumes


def read_volume(path: str | os.PathLike, voxel_size: tuple[float, float, float] | None = None) -> Volume:
    """Read a 3D volume as float32 `(I, J, K)` with its affine (voxel index -> world mm, RAS+).

    `path` is a NIfTI file, a folder holding one DICOM series (values rescaled to e.g. Hounsfield
    units), or a 3D TIFF `(z, y, x)` whose data become `(x, y, z)`. `voxel_size` `(vz, vy, vx)` mm
    is for TIFF only (NIfTI and DICOM record their own geometry). InputError (naming the file) when
    the input is missing, unreadable, not 3D, empty or not finite.
    """
    return _load(Path(path), voxel_size, np.float32)


@dataclass(frozen=True)
class Grid:
    """A volume's voxel grid without its voxels: what placing points on it needs."""

    shape: tuple[int, int, int]  # (I, J, K), the file's voxel order
    affine: np.ndarray  # (4, 4) voxel index -> world mm


def read_grid(path: str | os.PathLike) -> Grid:
    """The voxel grid of a NIfTI volume, read from its header alone: the same shape and affine as
    `read_volume` gives, without decompressing the voxels (a CT can be hundreds of MB). InputError
    (naming the file) when it is missing, unreadable or not 3D."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    image = _nifti_image(path)
    shape = _nifti_shape(image)
    _check_3d(path, shape)
    return Grid(shape, check_affine(path, image.affine))


def read_label_volume(path: str | os.PathLike, voxel_size: tuple[float, float, float] | None = None) -> Volume:
    """Read a label mask (any format of `read_volume`) as int32 `(I, J, K)`, 0 = background.

    InputError (naming the file) for non-integer values or negative labels.
    """
    volume = _load(Path(path), voxel_size, None)  # the file's own dtype, so no rounding hides fractions
    return Volume(check_labels(path, volume.data), volume.affine, volume.path)


def check_labels(source: str | os.PathLike, data: Any) -> np.ndarray:
    """A label mask's values as int32, 0 = background; InputError naming `source` (a file, or an
    argument of the Python API) for values that are not numbers, not integers, negative or too large."""
    data = np.asarray(data)
    if data.dtype == bool or not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(source, f"not a label mask: values of type {data.dtype}")
    if not np.issubdtype(data.dtype, np.integer) and not np.all(data == np.round(data)):
        raise InputError(source, "not a label mask: non-integer values")
    if data.min() < 0:
        raise InputError(source, f"not a label mask: negative label {data.min():g}")
    if data.max() > np.iinfo(np.int32).max:
        raise InputError(source, f"not a label mask: label {data.max():g} is too large")
    return data.astype(np.int32)


def _load(path: Path, voxel_size: tuple[float, float, float] | None, dtype: type | None) -> Volume:
    """Dispatch on the format, then check what every format must satisfy. `dtype` None keeps the
    file's own value type."""
    if voxel_size is not None and (path.is_dir() or is_nifti(path)):
        raise InputError(path, "--voxel-size applies to TIFF only; NIfTI and DICOM record their own voxel size")
    if path.is_dir():
        data, affine = _read_dicom_series(path)
    elif not path.is_file():
        raise InputError(path, "file not found")
    elif is_nifti(path):
        data, affine = _read_nifti(path, dtype)
    elif path.suffix.lower() in TIFF_SUFFIXES:
        data, affine = _read_tiff(path, voxel_size)
    elif path.suffix.lower() == ".dcm":
        raise InputError(path, "a single DICOM file; pass the folder that holds the whole series")
    else:
        raise InputError(path, f"unsupported volume format; expected {SUPPORTED}")
    _check_3d(path, data.shape)
    if not np.isfinite(data).all():
        raise InputError(path, "the volume contains NaN or infinite values")
    data = data if dtype is None else data.astype(dtype, copy=False)
    return Volume(data, check_affine(path, affine), path)


def check_affine(source: str | os.PathLike, affine: Any) -> np.ndarray:
    """A voxel-to-world affine as a (4, 4) float64 array; InputError naming `source` (a file, or an
    argument of the Python API) unless it is 4 x 4, finite, of last row 0 0 0 1 and not degenerate."""
    try:
        affine = np.asarray(affine, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(source, "the voxel-to-world affine is not a 4 x 4 array of numbers") from None
    if affine.shape != (4, 4):
        raise InputError(source, f"the voxel-to-world affine has shape {affine.shape}, expected (4, 4)")
    if not np.isfinite(affine).all():
        raise InputError(source, "the voxel-to-world affine contains NaN or infinite values (a damaged header?)")
    if not np.array_equal(affine[3], [0.0, 0.0, 0.0, 1.0]):
        raise InputError(source, f"the voxel-to-world affine's last row is {affine[3].tolist()}, expected [0, 0, 0, 1]")
    # Degenerate: a zero voxel size, or voxel axes (nearly) in one plane. Relative to the voxel
    # sizes, so that nanometre voxels (1e-6 mm) are not taken for zero.
    sizes = affine_spacing(affine)
    if not sizes.all() or abs(np.linalg.det(affine[:3, :3])) < 1e-6 * np.prod(sizes):
        raise InputError(source, "degenerate voxel-to-world affine (zero voxel size?)")
    return affine


def _read_nifti(path: Path, dtype: type | None) -> tuple[np.ndarray, np.ndarray]:
    """NIfTI data `(I, J, K)` (trailing singleton axes dropped) and its affine."""
    image = _nifti_image(path)
    try:
        data = np.asarray(image.dataobj, dtype=dtype)
    except Exception as err:
        raise _unreadable_nifti(path, err) from None
    return data.reshape(_nifti_shape(image)), np.asarray(image.affine, dtype=np.float64)


def _nifti_shape(image) -> tuple[int, ...]:
    """A NIfTI image's shape without its trailing singleton axes (a 3D volume stored as 4D)."""
    shape = tuple(int(n) for n in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _check_3d(path: Path, shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or min(shape) < 2:
        raise InputError(path, f"volume of shape {tuple(shape)} is not 3D (a 2D image or a single slice?)")


def _nifti_image(path: Path):
    """nibabel's image of a NIfTI file: its header read, its voxels not yet."""
    import nibabel

    try:
        return nibabel.load(path)
    except Exception as err:
        raise _unreadable_nifti(path, err) from None


def _unreadable_nifti(path: Path, err: Exception) -> InputError:
    # nibabel raises many types for damaged files
    return InputError(path, f"not a readable NIfTI volume ({type(err).__name__}: {err})")


def _read_tiff(path: Path, voxel_size: tuple[float, float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """A 3D TIFF `(z, y, x)` as `(x, y, z)` with affine diag(vx, vy, vz, 1), so world = voxel size * index:
    `voxel_size` (mm), else the file's, converted to mm from the unit it names (taken for mm when it
    names none)."""
    image = read_image(path, ndims=(2, 3))
    if image.ndim == 2:
        raise InputError(path, f"image of shape {image.shape} is 2D; spine-seg needs a 3D volume")
    return image.transpose(2, 1, 0), _tiff_affine(path, voxel_size)


def _tiff_affine(path: Path, voxel_size: tuple[float, float, float] | None) -> np.ndarray:
    """diag(vx, vy, vz, 1) in mm of a 3D TIFF: `voxel_size` (z, y, x), else the file's."""
    if voxel_size is None:
        recorded = read_calibration(path, "ZYX")
        if recorded is not None:
            unit = recorded.unit
            voxel_size = recorded.sizes if unit is None else convert(recorded.sizes, unit, "mm")
    if voxel_size is None:
        raise InputError(path, "the TIFF records no voxel size; pass --voxel-size z,y,x (mm)")
    sizes = np.asarray(voxel_size, dtype=np.float64)
    if sizes.shape != (3,) or not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise InputError(path, f"voxel size {tuple(voxel_size)} is not three positive numbers (z, y, x)")
    vz, vy, vx = sizes
    return np.diag([vx, vy, vz, 1.0])


def read_affine(path: str | os.PathLike) -> np.ndarray:
    """The voxel-to-world affine (mm) `read_volume` gives the NIfTI or 3D TIFF at `path`, from its
    header alone (a viewer placing a mesh over the volume need not read its voxels)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if not is_nifti(path):
        return check_affine(path, _tiff_affine(path, None))
    return check_affine(path, _nifti_image(path).affine)


# ---------------------------------------------------------------- DICOM series


def _read_dicom_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The one DICOM series in `folder` (files directly inside it) as float32 `(columns, rows, slices)`
    rescaled by RescaleSlope/Intercept, with its affine converted from LPS to RAS."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if not files:
        raise InputError(folder, "the folder is empty; expected a DICOM series")
    slices = _dicom_image_slices(files)
    if not slices:
        raise InputError(folder, f"no DICOM image files among its {len(files)} files")
    series = {getattr(ds, "SeriesInstanceUID", None) for ds in slices}
    if len(series) > 1:
        raise InputError(folder, f"holds {len(series)} DICOM series (SeriesInstanceUID); put one series per folder")
    if len(slices) == 1:
        raise InputError(folder, "the DICOM series has a single slice; spine-seg needs a 3D volume")
    row_dir, col_dir, pixel_spacing = _slice_geometry(folder, slices)
    normal = np.cross(row_dir, col_dir)
    positions = np.array([_numbers(folder, ds, "ImagePositionPatient", 3) for ds in slices])
    order = np.argsort(positions @ normal)
    slices, positions = [slices[i] for i in order], positions[order]
    step = _slice_step(folder, positions)
    data = np.stack([_slice_pixels(folder, ds) for ds in slices], axis=-1)
    affine = np.eye(4)
    # A row runs along increasing column index i; PixelSpacing is (between rows, between columns).
    affine[:3, 0] = row_dir * pixel_spacing[1]
    affine[:3, 1] = col_dir * pixel_spacing[0]
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return data, LPS_TO_RAS @ affine


def _dicom_image_slices(files: list[Path]) -> list:
    """The datasets of `files` that are DICOM images; other files (notes, DICOMDIR, reports) are skipped."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    slices = []
    for file in files:
        try:
            dataset = pydicom.dcmread(file)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "PixelData" in dataset:
            slices.append(dataset)
    return slices


def _slice_geometry(folder: Path, slices: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The series' row direction (3,), column direction (3,) and PixelSpacing (row, column) mm,
    which must be the same in every slice."""
    for name in ("ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
        values = {tuple(np.round(np.atleast_1d(_numbers(folder, ds, name)), 4)) for ds in slices}
        if len(values) > 1:
            raise InputError(folder, f"inconsistent {name} across slices: {sorted(values)}")
    orientation = _numbers(folder, slices[0], "ImageOrientationPatient", 6)
    pixel_spacing = _numbers(folder, slices[0], "PixelSpacing", 2)
    if np.any(pixel_spacing <= 0):
        raise InputError(folder, f"PixelSpacing {pixel_spacing.tolist()} is not positive")
    return orientation[:3], orientation[3:], pixel_spacing


def _slice_step(folder: Path, positions: np.ndarray) -> np.ndarray:
    """(3,) LPS mm from one slice to the next; InputError when slices overlap or are unevenly spaced
    (duplicates or missing slices would make any single affine wrong)."""
    steps = np.diff(positions, axis=0)
    step = (positions[-1] - positions[0]) / (len(positions) - 1)
    length = np.linalg.norm(step)
    if length < 1e-6 or np.linalg.norm(steps, axis=1).min() < 1e-6:
        raise InputError(folder, "two slices of the series are at the same position")
    deviation = np.linalg.norm(steps - step, axis=1).max()
    if deviation > SLICE_STEP_TOLERANCE * length:
        raise InputError(
            folder, f"unevenly spaced slices (steps vary by {deviation:.3g} mm around {length:.3g} mm): missing slices?"
        )
    return step


def _slice_pixels(folder: Path, dataset) -> np.ndarray:
    """One slice as float32 `(columns, rows)`, rescaled by RescaleSlope and RescaleIntercept."""
    try:
        pixels = dataset.pixel_array
    except Exception as err:  # pydicom raises many types for unsupported or damaged pixel data
        raise InputError(folder, f"cannot decode DICOM pixel data ({type(err).__name__}: {err})") from None
    if pixels.ndim != 2:
        raise InputError(folder, f"pixel data of shape {pixels.shape}: only single-frame grey slices are supported")
    slope = float(getattr(dataset, "RescaleSlope", 1.0))
    intercept = float(getattr(dataset, "RescaleIntercept", 0.0))
    return (pixels.T * slope + intercept).astype(np.float32)


def _numbers(folder: Path, dataset, name: str, count: int | None = None) -> np.ndarray:
    """A numeric DICOM attribute as a float64 array; InputError when missing or of the wrong length."""
    value = getattr(dataset, name, None)
    if value is None:
        raise InputError(folder, f"DICOM slice {dataset.filename} has no {name}")
    numbers = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if count is not None and numbers.shape != (count,):
        raise InputError(folder, f"DICOM slice {dataset.filename}: {name} has {numbers.size} values, expected {count}")
    return numbers


# ---------------------------------------------------------------- grids


def check_same_grid(volume: Volume, other: Volume, other_path: str | os.PathLike) -> None:
    """InputError naming `other_path` unless `other` has `volume`'s shape and its voxel centres lie
    within GRID_TOLERANCE_MM of `volume`'s (compared at the grid's corners)."""
    if other.shape == volume.shape:
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in volume.shape], indexing="ij")).reshape(3, -1).T
        offset = np.linalg.norm(index_to_world(volume.affine, corners) - index_to_world(other.affine, corners), axis=1)
        if offset.max() <= GRID_TOLERANCE_MM:
            return
        detail = f"; voxel centres differ by up to {offset.max():.3g} mm"
    else:
        detail = ""
    raise InputError(
        other_path,
        f"grid {other.shape} with spacing {_mm(other.spacing)} mm does not match "
        f"{volume.path or 'the image'}'s grid {volume.shape} with spacing "
        f"{_mm(volume.spacing)} mm{detail}",
    )


def check_voxel_size(volume: Volume, low: float, high: float, what: str) -> None:
    """InputError naming the volume's file and its voxel size unless every spacing is within `low`..`high`
    mm; `what` names the kind of image the range is for, e.g. "a CT"."""
    spacing = volume.spacing
    if np.any(spacing < low) or np.any(spacing > high):
        raise InputError(
            volume.path,
            f"voxel size {_mm(spacing)} mm (along i, j, k) is outside {low:g}..{high:g} mm, absurd for {what} "
            "(a header in another unit, or a damaged one?)",
        )


def _mm(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


# ---------------------------------------------------------------- vertebrae


#: VerSe label codes: 1-7 cervical, 8-19 thoracic, 20-25 lumbar (L6 is a transitional vertebra),
#: 26 sacrum, 28 an extra thoracic vertebra T13.
VERTEBRA_NAMES: dict[int, str] = {
    **{code: f"C{code}" for code in range(1, 8)},
    **{code: f"T{code - 7}" for code in range(8, 20)},
    **{code: f"L{code - 19}" for code in range(20, 26)},
    26: "S1",
    28: "T13",
}
VALID_CODES = "1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 S1, 28 T13"


def vertebra_name(label: int) -> str:
    """The vertebra of a VerSe label code, e.g. 20 -> "L1"; ValueError for other codes."""
    if label not in VERTEBRA_NAMES:
        raise ValueError(f"{label} is not a VerSe vertebra code ({VALID_CODES})")
    return VERTEBRA_NAMES[label]


def vertebra_code(name: str | float) -> int:
    """The VerSe code of a vertebra's name ("L3") or code (22, 22.0, "22"); ValueError for others."""
    codes = {vertebra.upper(): code for code, vertebra in VERTEBRA_NAMES.items()}
    text = str(name).strip().upper()
    code = codes.get(text)
    if code is None and text.replace(".", "", 1).isdigit() and float(text).is_integer():
        code = int(float(text))
    if code not in VERTEBRA_NAMES:
        raise ValueError(f"{name!r} is not a vertebra: a name (C1-C7, T1-T13, L1-L6, S1) or a code ({VALID_CODES})")
    return code


# ---------------------------------------------------------------- centroids


CENTROID_SPACES = ("auto", "voxel", "world")
LIST_SUFFIXES = (".csv", ".txt")


def read_centroids(path: str | os.PathLike, volume: Volume | Grid, space: str = "auto") -> dict[int, np.ndarray]:
    """Vertebra centroids `{VerSe label: (3,) world mm}`, sorted by label.

    A `.json` file is VerSe's: `[{"direction": ["P", "I", "R"]}, {"label": 16, "X":, "Y":, "Z":}, ...]`
    with X, Y, Z voxel coordinates of `volume` reoriented to the axis codes of "direction".
    A `.csv`/`.txt` file has lines `label, x, y, z` (commas or spaces, optional header
    `label,x,y,z`) in `space` "voxel" (indices of `volume`) or "world" (mm, RAS+); "auto" means
    voxel for VerSe JSON and must be made explicit for a list.
    InputError (naming the file) for a missing or malformed file, no centroids, an unknown or
    duplicated label, a non-numeric coordinate, or a centroid outside the volume.
    """
    path = Path(path)
    if space not in CENTROID_SPACES:
        raise InputError(path, f"unknown centroid space {space!r}; use voxel or world")
    suffix = path.suffix.lower()
    if suffix == ".json":
        if space == "world":
            raise InputError(path, "VerSe centroid JSON is in voxel coordinates; --centroid-space world does not apply")
        points = _verse_points(path, read_json(path), volume)
    elif suffix in LIST_SUFFIXES:
        if space == "auto":
            raise InputError(path, "a centroid list needs its coordinate space: pass --centroid-space voxel|world")
        points = _read_centroid_list(path)
        if space == "voxel":
            points = {label: index_to_world(volume.affine, p) for label, p in points.items()}
    else:
        raise InputError(path, "unsupported centroid file; expected VerSe .json, or a .csv/.txt list")
    return _checked_centroids(path, points, volume)


def parse_centroids(source: str, centroids: Any, volume: Volume) -> dict[int, np.ndarray]:
    """Vertebra centroids given in memory, as `read_centroids` returns a file's: `{VerSe label: (3,)
    world mm}`, sorted by label, each inside `volume`.

    `centroids` is VerSe JSON content (as `json.load` gives it: a list starting with `{"direction":
    [...]}`, coordinates in voxels of `volume` reoriented to those axis codes), a mapping `{label:
    (x, y, z)}` or an (N, 4) array of rows `label, x, y, z`, the last two in world mm (RAS+, what
    the affine maps voxel indices to). InputError naming `source` otherwise (the checks of
    `read_centroids`).
    """
    if isinstance(centroids, list | tuple | Mapping) and not centroids:
        raise InputError(source, "no centroids")
    if isinstance(centroids, list | tuple) and isinstance(centroids[0], Mapping):
        return _checked_centroids(source, _verse_points(source, centroids, volume), volume)
    if isinstance(centroids, Mapping):
        rows = [(f"key {label!r}", label, point) for label, point in centroids.items()]
    else:
        try:
            array = np.asarray(centroids, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        if array is None or array.ndim != 2 or array.shape[1] != 4:
            given = type(centroids).__name__ if array is None else f"an array of shape {array.shape}"
            raise InputError(
                source, f"expected VerSe JSON, a mapping label -> (x, y, z) or rows label, x, y, z; got {given}"
            )
        rows = [(f"row {number}", row[0], row[1:]) for number, row in enumerate(array)]
    points: dict[int, np.ndarray] = {}
    for where, label, point in rows:
        try:
            coordinates = np.asarray(point, dtype=np.float64)
        except (TypeError, ValueError):
            coordinates = None
        if coordinates is None or coordinates.shape != (3,) or not np.isfinite(coordinates).all():
            raise InputError(source, f"{where}: {point!r} is not three finite coordinates x, y, z")
        _add(source, points, _label(source, label, where), coordinates, where)
    return _checked_centroids(source, points, volume)


def _checked_centroids(source: str | os.PathLike, points: dict[int, np.ndarray], volume: Volume | Grid) -> dict:
    """`points` sorted by label; InputError naming `source` when there are none or one lies outside `volume`."""
    if not points:
        raise InputError(source, "no centroids")
    for label, point in points.items():
        _check_inside(source, volume, label, point)
    return dict(sorted(points.items()))


def _verse_points(path: str | os.PathLike, content: Any, volume: Volume | Grid) -> dict[int, np.ndarray]:
    """World mm of VerSe JSON centroids, whose voxel axes are those of "direction"."""
    header = content[0] if isinstance(content, list | tuple) and content else None
    if not isinstance(header, dict) or "direction" not in header:
        raise InputError(path, 'not a VerSe centroid file: expected a list starting with {"direction": [...]}')
    to_file_index = _verse_to_file_index(path, header["direction"], volume)
    points: dict[int, np.ndarray] = {}
    for number, entry in enumerate(content[1:], start=1):
        where = f"entry {number}"
        if not isinstance(entry, dict) or not {"label", "X", "Y", "Z"} <= entry.keys():
            raise InputError(path, f'{where} is not {{"label", "X", "Y", "Z"}}')
        label = _label(path, entry["label"], where)
        voxel = [_coordinate(path, entry[axis], where) for axis in "XYZ"]
        _add(path, points, label, index_to_world(volume.affine @ to_file_index, voxel), where)
    return points


def _verse_to_file_index(path: str | os.PathLike, direction, volume: Volume | Grid) -> np.ndarray:
    """(4, 4) voxel index of `volume` reoriented to the axis codes `direction` -> voxel index of `volume`."""
    from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    try:
        verse = axcodes2ornt(tuple(direction))
    except (TypeError, ValueError):
        verse = None
    if verse is None or verse.shape != (3, 2) or sorted(verse[:, 0]) != [0, 1, 2]:
        raise InputError(path, f"direction {direction!r} is not three axis codes of different axes (L/R, A/P, S/I)")
    return inv_ornt_aff(ornt_transform(io_orientation(volume.affine), verse), volume.shape)


def _read_centroid_list(path: Path) -> dict[int, np.ndarray]:
    """`{label: (3,) coordinates}` from lines `label, x, y, z`, as written (voxel or world)."""
    if not path.is_file():
        raise InputError(path, "file not found")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    points: dict[int, np.ndarray] = {}
    for number, line in enumerate(lines, start=1):
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if not fields or (not points and [f.lower() for f in fields] == ["label", "x", "y", "z"]):
            continue  # blank lines and the header
        where = f"line {number}"
        if len(fields) != 4:
            raise InputError(path, f"{where} has {len(fields)} fields, expected label, x, y, z")
        label = _label(path, _number(path, fields[0], where), where)
        _add(path, points, label, np.array([_number(path, f, where) for f in fields[1:]]), where)
    return points


def _number(path: Path, text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(path, f"{where}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise InputError(path, f"{where}: {text!r} is not a finite number")
    return value


def _is_real(value) -> bool:
    """A real number (numpy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite_real(value) -> float | None:
    """`value` as a float when it is a finite real number, else None: JSON parsed in memory (not by
    `read_json`) may hold NaN, infinity or an integer beyond any float."""
    if not _is_real(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _coordinate(path: str | os.PathLike, value, where: str) -> float:
    number = _finite_real(value)
    if number is None:
        kind = "a finite number" if _is_real(value) else "a number"
        raise InputError(path, f"{where}: coordinate {value!r} is not {kind}")
    return number


def _label(path: str | os.PathLike, value, where: str) -> int:
    """A VerSe vertebra code from an int or an integral float (16.0, as some exporters write)."""
    number = _finite_real(value)
    if number is None or number != int(number):
        raise InputError(path, f"{where}: label {value!r} is not an integer")
    label = int(number)
    if label not in VERTEBRA_NAMES:
        raise InputError(path, f"{where}: label {label} is not a VerSe vertebra code (valid: {VALID_CODES})")
    return label


def _add(path: str | os.PathLike, points: dict[int, np.ndarray], label: int, point: np.ndarray, where: str) -> None:
    if label in points:
        raise InputError(path, f"{where}: label {label} ({VERTEBRA_NAMES[label]}) appears twice")
    points[label] = np.asarray(point, dtype=np.float64).reshape(3)


def _check_inside(path: str | os.PathLike, volume: Volume | Grid, label: int, point: np.ndarray) -> None:
    """InputError unless the world point `point` (3,) lies within the volume's voxels (index -0.5..n-0.5)."""
    index = world_to_index(volume.affine, point[None])[0]
    shape = np.array(volume.shape)
    if np.any(index < -0.5) or np.any(index > shape - 0.5):
        raise InputError(
            path,
            f"centroid of label {label} ({VERTEBRA_NAMES[label]}) at voxel "
            f"{_mm(index)} is outside the volume of shape {volume.shape}",
        )


# ---------------------------------------------------------------- writing


def grid_suffix(path: str | os.PathLike) -> str:
    """The suffix of a volume written on the grid of the volume at `path`, so that a viewer puts
    one over the other: `.tif` for a TIFF (z, y, x) and `.nii.gz` for NIfTI and DICOM."""
    return ".tif" if Path(path).suffix.lower() in TIFF_SUFFIXES else ".nii.gz"


def write_on_grid(path: str | os.PathLike, data: np.ndarray, like: Volume) -> None:
    """Write `data` `(I, J, K)` (the shape of `like`) atomically in the format `path` names:
    NIfTI with `like`'s affine, or for a volume read from a TIFF a TIFF `(z, y, x)` with its voxel
    size in that TIFF's unit of length (mm when it names none), as Fiji and napari lay it over it.
    An integer `data` is written as 16-bit labels to a TIFF. ValueError for a TIFF of another grid."""
    if not Path(path).name.lower().endswith(TIFF_SUFFIXES):
        write_nifti(path, data, like)
        return
    sizes = np.diag(like.affine)[:3]
    if data.shape != like.shape:
        raise ValueError(f"data of shape {data.shape} is not on the grid {like.shape}")
    if not np.array_equal(like.affine, np.diag([*sizes, 1.0])) or np.any(sizes <= 0):
        raise ValueError("a TIFF is written on the grid of a TIFF volume only (affine diag(vx, vy, vz, 1))")
    recorded = read_calibration(like.path, "ZYX") if like.path is not None and like.path.is_file() else None
    unit = recorded.unit if recorded is not None and recorded.unit is not None else "mm"
    zyx = np.asarray(data).transpose(2, 1, 0)
    if np.issubdtype(zyx.dtype, np.integer):
        zyx = label_tiff_array(zyx)
    write_tiff(path, zyx, voxel_size=convert(tuple(sizes[::-1]), "mm", unit), unit=unit)


def write_nifti(path: str | os.PathLike, data: np.ndarray, like: Volume) -> None:
    """Write `data` (the shape of `like`) as NIfTI with `like`'s affine, atomically."""
    import nibabel

    if data.shape != like.shape:
        raise ValueError(f"data of shape {data.shape} is not on the grid {like.shape}")
    path = Path(path)
    image = nibabel.Nifti1Image(np.asarray(data), like.affine)
    image.set_qform(like.affine, code=1)
    image.set_sform(like.affine, code=1)
    suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    with atomic_path(path) as tmp:
        staged = tmp.with_name(tmp.name + suffix)  # nibabel picks compression by the suffix
        try:
            nibabel.save(image, staged)
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)
