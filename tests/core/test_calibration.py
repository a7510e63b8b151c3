"""Pixel and voxel sizes with their units, as microscopes, converters and ImageJ write them."""

import numpy as np
import pytest
import tifffile

from invrender.core.calibration import (
    convert,
    length_unit,
    pixel_size_record,
    read_calibration,
    read_pixel_size,
    read_voxel_size,
)
from invrender.core.io import write_tiff

STACK = np.zeros((3, 8, 8), np.float32)


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("micron", "µm"),
        ("\\u00B5m", "µm"),  # ImageJ's escaped micro sign
        ("µm", "µm"),
        ("μm", "µm"),  # the Greek mu
        ("um", "µm"),
        ("nm", "nm"),
        ("Millimeter", "mm"),
        ("cm", "cm"),
        ("inch", "in"),
        ("pixel", None),
        ("", None),
        (None, None),
        ("parsec", None),
    ],
)
def test_units_are_known_by_their_names_in_files(name, unit):
    assert length_unit(name) == unit


def test_conversion():
    assert convert((0.2, 1.5), "µm", "nm") == pytest.approx((200.0, 1500.0))
    assert convert((500.0,), "µm", "mm") == pytest.approx((0.5,))


def ome(path, sizes, units=None):
    metadata = {"axes": "ZYX"}
    for axis, size in zip("ZYX", sizes):
        metadata[f"PhysicalSize{axis}"] = size
        if units is not None:
            metadata[f"PhysicalSize{axis}Unit"] = units[axis]
    tifffile.imwrite(path, STACK, metadata=metadata)
    return path


def test_an_ome_stack_in_nanometres(tmp_path):
    path = ome(tmp_path / "a.ome.tif", (200, 50, 50), {"Z": "nm", "Y": "nm", "X": "nm"})
    recorded = read_calibration(path, "ZYX")
    assert recorded.sizes == pytest.approx((200, 50, 50)) and recorded.unit == "nm"
    assert read_voxel_size(path) == pytest.approx((200, 50, 50))


def test_an_ome_stack_without_units_is_in_micrometres(tmp_path):
    """The OME schema's default unit of PhysicalSize."""
    recorded = read_calibration(ome(tmp_path / "a.ome.tif", (0.2, 0.05, 0.05)), "ZYX")
    assert recorded.sizes == pytest.approx((0.2, 0.05, 0.05)) and recorded.unit == "µm"


def test_ome_axes_in_different_units_come_in_the_x_axis_unit(tmp_path):
    path = ome(tmp_path / "a.ome.tif", (0.2, 50, 50), {"Z": "µm", "Y": "nm", "X": "nm"})
    recorded = read_calibration(path, "ZYX")
    assert recorded.sizes == pytest.approx((200, 50, 50)) and recorded.unit == "nm"


def test_an_ome_unit_that_is_no_length_is_kept_as_unknown(tmp_path):
    path = ome(tmp_path / "a.ome.tif", (1, 1, 1), {"Z": "pixel", "Y": "pixel", "X": "pixel"})
    assert read_calibration(path, "ZYX").unit is None
    assert read_pixel_size(path) is None  # a 2D method takes no size without a unit of length


@pytest.mark.parametrize(("written", "unit"), [("nm", "nm"), ("\\u00B5m", "µm"), ("micron", "µm"), ("mm", "mm")])
def test_imagej_stacks_in_any_unit(tmp_path, written, unit):
    path = tmp_path / "a.tif"
    tifffile.imwrite(
        path, STACK, imagej=True, resolution=(20, 20), metadata={"axes": "ZYX", "unit": written, "spacing": 0.2}
    )
    recorded = read_calibration(path, "ZYX")
    assert recorded.sizes == pytest.approx((0.2, 0.05, 0.05)) and recorded.unit == unit


@pytest.mark.parametrize(("unit", "imagej"), [("nm", "nm"), ("µm", "micron"), ("micron", "micron"), ("mm", "mm")])
def test_write_tiff_writes_the_unit_that_fiji_and_the_reader_read(tmp_path, unit, imagej):
    path = tmp_path / "a.tif"
    write_tiff(path, STACK, (300.0, 65.0, 65.0), axes="ZYX", unit=unit)
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["unit"] == imagej
    recorded = read_calibration(path, "ZYX")
    assert recorded.sizes == pytest.approx((300, 65, 65)) and recorded.unit == length_unit(unit)


def test_write_tiff_refuses_an_unknown_unit(tmp_path):
    with pytest.raises(ValueError, match="unit 'parsec'"):
        write_tiff(tmp_path / "a.tif", STACK, (1.0, 1.0, 1.0), axes="ZYX", unit="parsec")


def test_a_2d_method_records_the_pixel_size_with_its_unit(tmp_path):
    path = tmp_path / "a.tif"
    write_tiff(path, STACK[0], (0.5, 0.25), unit="nm")
    assert pixel_size_record(path, None) == {"pixel_size": pytest.approx((0.5, 0.25)), "pixel_unit": "nm"}
    # --pixel-size is in a unit the command line does not know
    assert pixel_size_record(path, (2.0, 2.0)) == {"pixel_size": (2.0, 2.0), "pixel_unit": None}
    plain = tmp_path / "plain.tif"
    write_tiff(plain, STACK[0])
    assert pixel_size_record(plain, None) == {"pixel_size": None, "pixel_unit": None}
