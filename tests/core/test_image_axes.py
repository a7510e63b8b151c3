"""Images read by their axes (issue 23): tifffile's series axes of ImageJ hyperstacks, OME-TIFF and
plain arrays, `--channel` picking one channel, `--axes` naming what the file does not, each
method's accepted axes, and the pixel size a file records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from invrender.core.calibration import read_pixel_size
from invrender.core.io import (
    InputError,
    check_axes_image,
    expect_axes,
    read_axes_image,
    read_picture,
    read_tiff_axes,
    write_tiff,
)

TIME_LAPSE = ("YX", "TYX")


def ramp(*shape: int) -> np.ndarray:
    """float32 values that differ everywhere, so a wrong channel or frame cannot pass for the right one."""
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def imagej(path: Path, array: np.ndarray, axes: str, **metadata) -> Path:
    """An ImageJ TIFF as Fiji writes it: channels shown as a composite, the rest as given."""
    mode = {"mode": "composite"} if "C" in axes else {}
    tifffile.imwrite(path, array, imagej=True, metadata={"axes": axes, **mode, **metadata})
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- axes and channels


def test_a_two_channel_hyperstack_is_refused_without_a_channel(tmp_path):
    path = imagej(tmp_path / "two.tif", ramp(2, 16, 20), "CYX")
    message = error_of(read_axes_image, path)
    assert message.startswith(str(path))
    for needle in ("multi-channel", "2 channels", "(2, 16, 20)", "axes CYX", "give --channel N (0 to 1)"):
        assert needle in message, message


def test_channel_picks_that_channel(tmp_path):
    data = ramp(2, 16, 20)
    path = imagej(tmp_path / "two.tif", data, "CYX")
    for channel in (0, 1):
        image = read_axes_image(path, channel=channel)
        assert image.axes == "YX" and image.array.dtype == np.float32
        np.testing.assert_array_equal(image.array, data[channel])


def test_a_channel_out_of_range_is_refused(tmp_path):
    path = imagej(tmp_path / "two.tif", ramp(2, 16, 20), "CYX")
    message = error_of(read_axes_image, path, channel=2)
    assert "--channel 2 is out of range" in message and "2 channels, 0 to 1" in message
    plain = imagej(tmp_path / "one.tif", ramp(16, 20), "YX")
    assert read_axes_image(plain, channel=0).axes == "YX"  # the one channel there is
    assert "--channel 1 is out of range: the image has one channel" in error_of(read_axes_image, plain, channel=1)


def test_a_tyx_hyperstack_is_a_time_lapse(tmp_path):
    data = ramp(3, 16, 20)
    image = read_axes_image(imagej(tmp_path / "movie.tif", data, "TYX"))
    assert image.axes == "TYX"
    assert expect_axes(image, "movie.tif", TIME_LAPSE) is image
    np.testing.assert_array_equal(image.array, data)


def test_a_channel_of_a_time_lapse_of_channels(tmp_path):
    data = ramp(3, 2, 16, 20)
    path = imagej(tmp_path / "movie.tif", data, "TCYX")
    assert read_tiff_axes(path) == "TCYX"
    image = read_axes_image(path, channel=1)
    assert image.axes == "TYX"
    np.testing.assert_array_equal(image.array, data[:, 1])


def test_ome_axes_are_read_and_singletons_dropped(tmp_path):
    data = ramp(3, 1, 2, 16, 20)
    path = tmp_path / "movie.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TZCYX"}, photometric="minisblack")
    image = read_axes_image(path, channel=0)
    assert image.axes == "TYX"
    np.testing.assert_array_equal(image.array, data[:, 0, 0])


def test_a_colour_sample_can_be_picked(tmp_path):
    data = (ramp(16, 20, 3) % 251).astype(np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, data, photometric="rgb")
    assert "RGB image, multi-channel (3 channels" in error_of(read_axes_image, path)
    np.testing.assert_array_equal(read_axes_image(path, channel=2).array, data[..., 2])
    # acdr's pictures: colour as it is, or one channel of it as a grey picture
    assert read_picture(path).shape == (3, 16, 20)
    np.testing.assert_array_equal(read_picture(path, channel=2)[0], data[..., 2])


def test_a_picture_reader_refuses_channels_without_a_channel(tmp_path):
    path = imagej(tmp_path / "two.tif", ramp(2, 16, 20), "CYX")
    assert "give --channel N" in error_of(read_picture, path)
    np.testing.assert_array_equal(read_picture(path, channel=1)[0], ramp(2, 16, 20)[1])


# ---------------------------------------------------------------- files that do not name their axes


def test_a_plain_3d_array_has_no_axes(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, ramp(4, 16, 20), photometric="minisblack")
    image = read_axes_image(path)
    assert image.axes[0] not in "TZCS" and image.axes[1:] == "YX"
    message = error_of(expect_axes, image, path, TIME_LAPSE, flag="--")
    assert "3D array without axes" in message and "time-lapse or z-stack?" in message and "--axes TYX" in message
    assert expect_axes(image, path, TIME_LAPSE, ("TYX",)).axes == "TYX"  # a method that knows what it is
    assert expect_axes(image, path, ("ZYX",), ("ZYX",)).axes == "ZYX"
    assert read_axes_image(path, axes="TYX").axes == "TYX"  # --axes says what the file does not


def test_tifffile_imagej_without_axes_is_not_taken_for_channels(tmp_path):
    """tifffile writes a 3D array in ImageJ form as channels unless given axes; Fiji's own channels
    (and tifffile's with a display mode) stay channels."""
    written = tmp_path / "unnamed.tif"
    tifffile.imwrite(written, ramp(4, 16, 20), imagej=True)
    with tifffile.TiffFile(written) as tif:
        assert tif.series[0].axes == "CYX"  # what tifffile says
    assert read_tiff_axes(written)[0] not in "TZCS"
    assert read_tiff_axes(imagej(tmp_path / "named.tif", ramp(4, 16, 20), "CYX")) == "CYX"


def test_a_z_stack_is_refused_where_a_time_lapse_is_taken(tmp_path):
    path = tmp_path / "stack.tif"
    write_tiff(path, ramp(4, 16, 20), axes="ZYX")
    image = read_axes_image(path)
    assert image.axes == "ZYX"
    message = error_of(expect_axes, image, path, TIME_LAPSE, flag="--")
    assert "a z-stack (axes ZYX, shape (4, 16, 20))" in message
    assert "expected YX (a 2D image) or TYX (a time-lapse)" in message and "--axes TYX" in message


def test_axes_that_do_not_fit_the_image_are_refused(tmp_path):
    path = imagej(tmp_path / "movie.tif", ramp(3, 16, 20), "TYX")
    assert "--axes YX: 2 letters for an image of 3 axes" in error_of(read_axes_image, path, axes="YX")
    assert "image is 4D" in error_of(expect_axes, check_axes_image(ramp(2, 3, 4, 5), "a"), "a", TIME_LAPSE)


def test_arrays_take_axes_as_files_do():
    data = ramp(3, 2, 16, 20)
    image = check_axes_image(data, "frames", "TCYX", channel=1)
    assert image.axes == "TYX"
    np.testing.assert_array_equal(image.array, data[:, 1])
    assert check_axes_image(ramp(1, 16, 20), "frames").axes == "YX"  # singletons dropped, as before
    assert "give channel N" in error_of(check_axes_image, data, "frames", "TCYX")


# ---------------------------------------------------------------- pixel size


def test_the_pixel_size_a_file_records(tmp_path):
    calibrated = tmp_path / "calibrated.tif"
    write_tiff(calibrated, ramp(16, 20), voxel_size=(0.5, 0.25), unit="micron")
    assert read_pixel_size(calibrated) == pytest.approx((0.5, 0.25))
    uncalibrated = tmp_path / "uncalibrated.tif"
    write_tiff(uncalibrated, ramp(16, 20))  # unit "pixel": no physical size
    assert read_pixel_size(uncalibrated) is None
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, ramp(16, 20), resolution=(72, 72))  # an image editor's dots per inch
    assert read_pixel_size(plain) is None
    ome = tmp_path / "a.ome.tif"
    tifffile.imwrite(ome, ramp(16, 20), ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.2})
    assert read_pixel_size(ome) == pytest.approx((0.2, 0.1))
