"""ImageJ ROI zips (invrender.core.roi), read back with roifile as Fiji's ROI Manager would read them."""

import numpy as np
import pytest
import roifile

from invrender.core.roi import Outline, write_roi_zip

POINTS = np.array([[1.0, 2.0], [3.5, 2.0], [3.0, 5.25], [0.25, 4.0]])


def test_polygons_sit_half_a_pixel_off_on_imagejs_pixel_corners(tmp_path):
    """An area ROI's integer coordinates are pixel corners in ImageJ: our pixel centre [0, 0] is (0.5, 0.5)."""
    write_roi_zip(tmp_path / "p.zip", [Outline(POINTS, "cell 7"), Outline(POINTS[::-1] + 10, "cell 8")], "polygon")
    first, second = roifile.roiread(tmp_path / "p.zip")
    assert first.roitype == roifile.ROI_TYPE.POLYGON and first.subpixelresolution
    np.testing.assert_allclose(first.coordinates(), POINTS + 0.5, atol=1e-5)
    np.testing.assert_allclose(second.coordinates(), POINTS[::-1] + 10.5, atol=1e-5)
    assert (first.name, second.name) == ("cell 7", "cell 8")
    assert first.position == first.t_position == 0  # a single image: every slice


def test_polylines_sit_on_imagejs_pixel_centres(tmp_path):
    """A line ROI's integer coordinates are pixel centres in ImageJ, as ours are."""
    write_roi_zip(tmp_path / "s.zip", [Outline(POINTS, "spline 0")], "polyline")
    [roi] = roifile.roiread(tmp_path / "s.zip")
    assert roi.roitype == roifile.ROI_TYPE.POLYLINE
    np.testing.assert_allclose(roi.coordinates(), POINTS, atol=1e-5)


def test_frames_become_1_based_positions_and_equal_names_stay_apart(tmp_path):
    outlines = [Outline(POINTS + frame, "cell 3", frame) for frame in range(3)]
    write_roi_zip(tmp_path / "t.zip", outlines, "polygon")
    rois = roifile.roiread(tmp_path / "t.zip")
    assert [roi.name for roi in rois] == ["cell 3"] * 3
    assert [roi.t_position for roi in rois] == [roi.position for roi in rois] == [1, 2, 3]
    for frame, roi in enumerate(rois):
        np.testing.assert_allclose(roi.coordinates(), POINTS + frame + 0.5, atol=1e-5)


def test_no_outlines_give_an_empty_set(tmp_path):
    write_roi_zip(tmp_path / "e.zip", [], "polygon")
    assert roifile.roiread(tmp_path / "e.zip") == []


def test_an_unknown_kind_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(ValueError, match="'circle'"):
        write_roi_zip(tmp_path / "x.zip", [Outline(POINTS, "a")], "circle")
    assert list(tmp_path.iterdir()) == []
