"""cell-seg's contours as ImageJ polygon ROIs (`<name>.rois.zip`), read back with roifile: one per
cell, named by its label, at its frame in a time-lapse, on ImageJ's pixel corners (+0.5 pixel)."""

import json

import numpy as np
import pytest
import roifile

from helpers import CELL_FAST
from invrender.cli import main
from invrender.methods.cell_seg.synth import write_cell_dataset


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    out = tmp_path_factory.mktemp("movie")
    write_cell_dataset(out, frames=2, size=64, cells=3, divisions=0, seed=1)
    return out


def assert_rois_are_the_contours(zip_path, cells_path, time_lapse: bool):
    frames = json.loads(cells_path.read_text())["frames"]
    expected = [(index, cell) for index, record in enumerate(frames) for cell in record["cells"]]
    rois = roifile.roiread(zip_path)
    assert len(rois) == len(expected) > 0
    for roi, (index, cell) in zip(rois, expected):
        assert roi.roitype == roifile.ROI_TYPE.POLYGON and roi.name == f"cell {cell['label']}"
        assert roi.t_position == roi.position == (index + 1 if time_lapse else 0)
        np.testing.assert_allclose(roi.coordinates(), np.asarray(cell["points"]) + 0.5, atol=1e-4)


def test_a_sequence_gives_one_roi_per_cell_and_frame(movie, tmp_path, capsys):
    out = tmp_path / "01_RES"
    assert main(["cell-seg", str(movie / "01"), "--out", str(out), "-q", *CELL_FAST]) == 0, capsys.readouterr().err
    assert_rois_are_the_contours(out / "01.rois.zip", out / "01.cells.json", time_lapse=True)
    assert not (set(p.name for p in out.glob("*.tif")) - {"mask000.tif", "mask001.tif"})  # the CTC layout only

    (out / "01.rois.zip").unlink()  # without its ROIs the result is not complete: --resume does it again
    assert main(["cell-seg", str(movie / "01"), "--out", str(out), "-q", "--resume", *CELL_FAST]) == 0
    assert json.loads((out / "manifest.json").read_text())["inputs"][0]["status"] == "done"
    assert (out / "01.rois.zip").is_file()


def test_a_single_image_gives_rois_without_a_frame(movie, tmp_path, capsys):
    image = tmp_path / "frame.tif"
    image.write_bytes((movie / "01" / "t001.tif").read_bytes())
    out = tmp_path / "out"
    assert main(["cell-seg", str(image), "--out", str(out), "-q", *CELL_FAST]) == 0, capsys.readouterr().err
    assert_rois_are_the_contours(out / "frame.rois.zip", out / "frame.cells.json", time_lapse=False)
