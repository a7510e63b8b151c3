"""What spline-refine writes for Fiji: the render of a time-lapse as ImageJ frames (T, not Z), and the
refined splines as ImageJ polyline ROIs at their frames, read back with tifffile and roifile."""

import json

import numpy as np
import pytest
import roifile
import tifffile

from helpers import FAST, make_input, write_init
from invrender.cli import main
from invrender.methods.spline_refine.synth_movie import write_spline_movie


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    folder = tmp_path_factory.mktemp("movie")
    write_spline_movie(folder, bodies=2, frames=3, size=64, seed=2)
    return folder


def test_the_synthetic_movie_is_a_time_lapse(movie):
    with tifffile.TiffFile(movie / "movie.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.imagej_metadata["frames"] == 3
        assert tif.imagej_metadata["unit"] == "pixel"


def splines_of(data: dict) -> list[list[dict]]:
    """The frames of spline records in an `invrender.splines` JSON object."""
    return [frame["splines"] for frame in data["frames"]] if "frames" in data else [data["splines"]]


def assert_rois_are_the_splines(zip_path, splines_path, stack: bool):
    """One polyline ROI per refined spline, named by its id, at its frame (1-based) in a stack, with
    the spline's points: ImageJ's line ROIs put integer coordinates on pixel centres, as we do."""
    frames = splines_of(json.loads(splines_path.read_text()))
    rois = roifile.roiread(zip_path)
    expected = [(f, spline) for f, frame in enumerate(frames) for spline in frame]
    assert len(rois) == len(expected) > 0
    for roi, (f, spline) in zip(rois, expected):
        assert roi.roitype == roifile.ROI_TYPE.POLYLINE and roi.name == f"spline {spline['id']}"
        assert roi.t_position == (f + 1 if stack else 0)
        np.testing.assert_allclose(roi.coordinates(), spline["points"], atol=1e-4)


def test_a_stack_gives_a_time_lapse_render_and_rois_per_frame(movie, tmp_path, capsys):
    out = tmp_path / "out"
    init = movie / "inits" / "detector" / "movie.json"
    code = main(["spline-refine", str(movie / "movie.tif"), "--init", str(init), "--out", str(out), "-q", *FAST])
    assert code == 0, capsys.readouterr().err
    with tifffile.TiffFile(out / "movie.render.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.imagej_metadata["frames"] == 3
        assert "slices" not in tif.imagej_metadata and tif.imagej_metadata["unit"] == "pixel"
    assert_rois_are_the_splines(out / "movie.rois.zip", out / "movie.splines.json", stack=True)
    [job] = json.loads((out / "manifest.json").read_text())["inputs"]
    assert str(out / "movie.rois.zip") in job["outputs"]


def test_an_image_gives_rois_without_a_frame_and_resume_wants_them(tmp_path, capsys):
    image, records = make_input(tmp_path / "in", "worms")
    init = write_init(tmp_path / "in" / "worms.json", records)
    out = tmp_path / "out"
    assert main(["spline-refine", str(image), "--init", str(init), "--out", str(out), "-q", *FAST]) == 0
    with tifffile.TiffFile(out / "worms.render.tif") as tif:
        assert tif.series[0].axes == "YX"
    assert_rois_are_the_splines(out / "worms.rois.zip", out / "worms.splines.json", stack=False)

    (out / "worms.rois.zip").unlink()  # an output set without its ROIs is not complete
    assert main(["spline-refine", str(image), "--init", str(init), "--out", str(out), "-q", "--resume", *FAST]) == 0
    assert json.loads((out / "manifest.json").read_text())["inputs"][0]["status"] == "done"
    assert (out / "worms.rois.zip").is_file()
    capsys.readouterr()
