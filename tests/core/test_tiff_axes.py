"""`write_tiff` writes ImageJ TIFFs that Fiji opens with the right axes and scale: read back with tifffile."""

import numpy as np
import pytest
import tifffile

from invrender.core.calibration import read_voxel_size
from invrender.core.io import write_tiff


def written(path) -> tuple[str, dict, tuple[float, float]]:
    """A TIFF's series axes, ImageJ metadata and (x, y) pixel sizes from its resolution tags."""
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        x_num, x_den = tags["XResolution"].value
        y_num, y_den = tags["YResolution"].value
        return tif.series[0].axes, tif.imagej_metadata, (x_den / x_num, y_den / y_num)


def test_a_z_stack_has_its_voxel_size_in_microns(tmp_path):
    stack = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    write_tiff(tmp_path / "s.tif", stack, (2.5, 0.5, 0.25), axes="ZYX", unit="micron")
    axes, imagej, (dx, dy) = written(tmp_path / "s.tif")
    assert axes == "ZYX" and imagej["unit"] == "micron" and imagej["slices"] == 4 and "frames" not in imagej
    assert imagej["spacing"] == pytest.approx(2.5) and (dx, dy) == pytest.approx((0.25, 0.5))
    assert read_voxel_size(tmp_path / "s.tif") == pytest.approx((2.5, 0.5, 0.25))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "s.tif"), stack)


def test_a_time_lapse_has_frames_not_slices(tmp_path):
    movie = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    write_tiff(tmp_path / "m.tif", movie, axes="TYX")
    axes, imagej, sizes = written(tmp_path / "m.tif")
    assert axes == "TYX" and imagej["frames"] == 3 and "slices" not in imagej and "spacing" not in imagej
    assert imagej["unit"] == "pixel" and sizes == (1.0, 1.0)
    assert read_voxel_size(tmp_path / "m.tif") is None  # a time-lapse has no z spacing


def test_a_time_lapse_with_a_pixel_size_in_mm(tmp_path):
    write_tiff(tmp_path / "m.tif", np.zeros((2, 4, 5), np.float32), (0.7, 0.35), axes="TYX", unit="mm")
    axes, imagej, sizes = written(tmp_path / "m.tif")
    assert axes == "TYX" and imagej["unit"] == "mm" and sizes == pytest.approx((0.35, 0.7))


def test_an_image_and_the_defaults(tmp_path):
    write_tiff(tmp_path / "i.tif", np.zeros((4, 5), np.float64))
    axes, imagej, sizes = written(tmp_path / "i.tif")
    assert axes == "YX" and imagej["unit"] == "pixel" and sizes == (1.0, 1.0)
    assert tifffile.imread(tmp_path / "i.tif").dtype == np.float32  # ImageJ has no float64
    write_tiff(tmp_path / "s.tif", np.zeros((2, 4, 5), np.float32))  # 3D without axes: a z stack
    assert written(tmp_path / "s.tif")[0] == "ZYX"


@pytest.mark.parametrize(
    ("shape", "options", "problem"),
    [
        ((2, 4, 5), {"axes": "YX"}, "axes YX"),
        ((4, 5), {"axes": "TYX"}, "axes TYX"),
        ((2, 4, 5), {"axes": "CYX"}, "axes CYX"),
        ((2, 4, 5), {"axes": "ZYX", "voxel_size": (1.0, 1.0)}, "expected 3 values"),
        ((2, 4, 5), {"axes": "TYX", "voxel_size": (1.0, 1.0, 1.0)}, "expected 2 values"),
        ((4, 5), {"unit": "furlong"}, "unit 'furlong'"),
    ],
)
def test_what_does_not_fit_is_refused_and_nothing_written(tmp_path, shape, options, problem):
    with pytest.raises(ValueError, match=problem):
        write_tiff(tmp_path / "x.tif", np.zeros(shape, np.float32), **options)
    assert list(tmp_path.iterdir()) == []
