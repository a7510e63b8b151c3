"""3D volumes on a world grid (CT, label masks): reading, grids, atomic writing.

A `Volume` keeps the array in the file's own voxel order `(i, j, k)` with the 4x4 affine that maps
a voxel index `(i, j, k, 1)` to world millimetres `(x, y, z, 1)` (NIfTI's convention, RAS+), so any
orientation is handled by the affine and meshes live in world millimetres.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from invrender.core.io import InputError, atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")


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
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    def world_to_index(self) -> np.ndarray:
        """(4, 4) world mm -> voxel index."""
        return np.linalg.inv(self.affine)

    def voxel_centres(self, mask: np.ndarray | None = None) -> np.ndarray:
        """(N, 3) world mm of every voxel (C order), or of the voxels where `mask` is true."""
        index = np.argwhere(mask) if mask is not None else np.indices(self.shape).reshape(3, -1).T
        return index_to_world(self.affine, index)


def index_to_world(affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(N, 3) voxel indices -> (N, 3) world mm."""
    return np.asarray(index, dtype=np.float64) @ affine[:3, :3].T + affine[:3, 3]


def world_to_index(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) world mm -> (N, 3) continuous voxel indices."""
    inverse = np.linalg.inv(affine)
    return np.asarray(points, dtype=np.float64) @ inverse[:3, :3].T + inverse[:3, 3]


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a 3D NIfTI volume as float32 with its affine; InputError (naming the file) when it is
    missing, unreadable, not 3D, empty or not finite."""
    import nibabel

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if not is_nifti(path):
        raise InputError(path, f"not a NIfTI volume (expected {' or '.join(NIFTI_SUFFIXES)})")
    try:
        image = nibabel.load(path)
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as err:  # nibabel raises many types for damaged files
        raise InputError(path, f"not a readable NIfTI volume ({type(err).__name__}: {err})") from None
    data = np.squeeze(data, axis=tuple(range(3, data.ndim))) if data.ndim > 3 else data
    if data.ndim != 3 or min(data.shape) < 2:
        raise InputError(path, f"volume of shape {data.shape} is not 3D (a 2D image or a single slice?)")
    if not np.isfinite(data).all():
        raise InputError(path, "the volume contains NaN or infinite values")
    return Volume(data, np.asarray(image.affine, dtype=np.float64), path)


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
