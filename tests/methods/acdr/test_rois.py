"""acdr-predict's polygons as ImageJ polygon ROIs (`<stem>.rois.zip`), read back with roifile. The
predictor is a stand-in with known polygons: what is tested is the writing, not the network."""

import json

import numpy as np
import roifile

from invrender.core.io import write_png
from invrender.methods.acdr.api import Prediction
from invrender.methods.acdr.command import output_paths, predict_file

POLYGONS = [
    np.array([[4.0, 5.0], [20.5, 6.0], [18.0, 25.25], [6.0, 22.0]]),
    np.array([[30.0, 30.0], [40.0, 31.0], [35.0, 40.0]]),
]


class KnownPolygons:
    """Answers every picture with POLYGONS, as a trained contour model would answer with its own."""

    kind = "contour"

    def predict_picture(self, picture: np.ndarray, source) -> Prediction:
        return Prediction([p.copy() for p in POLYGONS], np.zeros(picture.shape[1:], dtype=bool))


def test_the_polygons_are_written_as_imagej_rois(tmp_path):
    image = tmp_path / "cell.png"
    write_png(image, np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8))
    out = tmp_path / "out"
    result = predict_file(image, KnownPolygons(), out)
    paths = output_paths(out, image)
    assert str(paths["rois"]) in result["outputs"]
    rois = roifile.roiread(paths["rois"])
    saved = json.loads(paths["polygon"].read_text())["polygons"]
    assert [roi.name for roi in rois] == ["polygon 0", "polygon 1"] == [f"polygon {p['id']}" for p in saved]
    for roi, polygon in zip(rois, POLYGONS):
        assert roi.roitype == roifile.ROI_TYPE.POLYGON and roi.position == roi.t_position == 0
        np.testing.assert_allclose(roi.coordinates(), polygon + 0.5, atol=1e-5)  # ImageJ's pixel corners
