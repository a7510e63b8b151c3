"""Synthetic CT data for tests: an oblique rotation and a minimal DICOM CT series written with pydicom."""

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def rotation(z_deg: float, x_deg: float) -> np.ndarray:
    """(3, 3) rotation about z then x: an oblique orientation."""
    a, b = np.radians([z_deg, x_deg])
    about_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return about_x @ about_z


ROW_DIR, COL_DIR, NORMAL = np.round(rotation(20, 10), 6).T  # rounded as DICOM's decimal strings keep them
PIXEL_SPACING = (0.7, 0.9)  # (between rows, between columns) mm
SLOPE, INTERCEPT = 2.0, -1024.0


def write_slice(path: Path, pixels: np.ndarray, position: np.ndarray, series: str, rows_cols=None) -> None:
    """One minimal CT Image Storage slice; `pixels` (rows, columns) int16 stored values."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = series
    ds.ImageOrientationPatient = [*ROW_DIR.tolist(), *COL_DIR.tolist()]
    ds.ImagePositionPatient = [round(float(v), 4) for v in position]
    ds.PixelSpacing = list(PIXEL_SPACING)
    ds.SliceThickness = 2.5
    ds.RescaleSlope = SLOPE
    ds.RescaleIntercept = INTERCEPT
    ds.set_pixel_data(pixels.astype(np.int16), "MONOCHROME2", 16)
    ds.save_as(path, enforce_file_format=True)


def write_series(folder: Path, stored: np.ndarray, series: str = "1.2.3.4", start: int = 0) -> list[np.ndarray]:
    """Slices `stored[k]` (rows, columns), written head to foot (against the normal) under shuffled
    file names. Returns the LPS position of each slice."""
    folder.mkdir(exist_ok=True)
    first = np.array([120.0, -80.0, 400.0])
    positions = [first - 2.5 * k * NORMAL for k in range(len(stored))]
    names = np.random.default_rng(1).permutation(len(stored)) + start
    for pixels, position, name in zip(stored, positions, names):
        write_slice(folder / f"IM{name:04d}", pixels, position, series)
    return [np.round(p, 4) for p in positions]
