"""The napari plugin's Cell Tracking Challenge folders: label frames as one Labels layer (t, y, x)
and the lineage of the track file as a Tracks layer (centres in pixels, daughters linked to their
parent), for cell-seg's result and for a ground truth; napari takes both layers as they are."""

import numpy as np
import pytest

from helpers import CELL_FAST
from invrender.cli import main
from invrender.core.io import InputError, write_tiff
from invrender.methods.cell_seg.ctc import read_label_frames, read_tracks, write_label_frames, write_tracks
from invrender.methods.cell_seg.synth import write_cell_dataset
from invrender.napari.readers import get_ctc_reader, read_ctc_folder

napari_layers = pytest.importorskip("napari.layers")


def dividing_cell(tmp_path):
    """Frames 5-7 of 12 x 16 px: cell 1 in frames 5 and 6 divides into 2 and 3 in frame 7; cell 4
    stays. The result of a sequence that starts at frame 5."""
    labels = np.zeros((3, 12, 16), dtype=np.uint16)
    labels[0, 2:6, 2:6] = labels[1, 3:7, 2:6] = 1
    labels[2, 2:4, 2:6], labels[2, 6:8, 2:6] = 2, 3
    labels[:, 8:12, 10:16] = 4
    write_label_frames(tmp_path, "mask", labels, [5, 6, 7])
    write_tracks(tmp_path / "res_track.txt", [(1, 5, 6, 0), (2, 7, 7, 1), (3, 7, 7, 1), (4, 5, 7, 0)])
    return labels


def test_a_ctc_result_folder_reads_as_labels_and_tracks(tmp_path):
    labels = dividing_cell(tmp_path)
    assert get_ctc_reader(str(tmp_path)) is read_ctc_folder
    [(stack, label_attributes, label_kind), (rows, track_attributes, track_kind)] = read_ctc_folder(str(tmp_path))
    assert label_kind == "labels" and track_kind == "tracks"
    np.testing.assert_array_equal(stack, labels)
    assert label_attributes["translate"] == (5.0, 0.0, 0.0)  # frame 5 at napari's time 5, as in the tracks
    expected = [
        (1, 5, 3.5, 3.5),
        (1, 6, 4.5, 3.5),
        (2, 7, 2.5, 3.5),
        (3, 7, 6.5, 3.5),
        (4, 5, 9.5, 12.5),
        (4, 6, 9.5, 12.5),
        (4, 7, 9.5, 12.5),
    ]
    np.testing.assert_allclose(rows, expected)
    assert track_attributes["graph"] == {2: [1], 3: [1]}
    tracks = napari_layers.Tracks(rows, **track_attributes)  # napari accepts the data and the graph
    assert tracks.graph == {2: [1], 3: [1]}
    layer = napari_layers.Labels(stack, **label_attributes)
    assert layer.data_to_world((0, 4, 4))[0] == 5.0


def test_a_segmentation_ground_truth_of_some_frames_keeps_their_numbers(tmp_path):
    """`man_segTTT.tif` annotates some frames: the frames between are empty, each at its number."""
    annotated = np.zeros((2, 8, 8), dtype=np.uint16)
    annotated[0, 1:3, 1:3], annotated[1, 4:7, 4:7] = 1, 2
    write_label_frames(tmp_path, "man_seg", annotated, [2, 5])
    [(stack, attributes, kind)] = read_ctc_folder(str(tmp_path))  # no track file: no tracks
    assert kind == "labels" and stack.shape == (4, 8, 8) and attributes["translate"][0] == 2.0
    np.testing.assert_array_equal(stack[[0, 3]], annotated)
    assert not stack[1:3].any()


def test_a_ground_truth_folder_of_synth_cells_reads_with_its_lineage(tmp_path):
    """`synth cells` writes a ground truth with divisions: every label of man_track.txt becomes a
    track over the frames it spans, and each division a link."""
    write_cell_dataset(tmp_path, frames=6, size=64, cells=3, divisions=2, seed=2)
    folder = tmp_path / "01_GT" / "TRA"
    [(stack, _, _), (rows, attributes, _)] = read_ctc_folder(str(folder))
    assert stack.shape == (6, 64, 64)
    for label, begin, end, parent in read_tracks(folder / "man_track.txt"):
        frames = rows[rows[:, 0] == label, 1]
        np.testing.assert_array_equal(frames, np.arange(begin, end + 1))  # frames numbered from 0
        assert attributes["graph"].get(label) == ([parent] if parent else None)
    assert len(attributes["graph"]) == 4  # two divisions, two daughters each


def test_other_folders_and_files_are_left_to_other_readers(tmp_path):
    assert get_ctc_reader(str(tmp_path)) is None  # empty
    write_tiff(tmp_path / "t000.tif", np.zeros((8, 8)))
    assert get_ctc_reader(str(tmp_path)) is None  # a sequence of images, not labels
    assert get_ctc_reader(str(tmp_path / "t000.tif")) is None


def test_frames_of_different_sizes_are_refused_in_one_line(tmp_path):
    write_label_frames(tmp_path, "mask", np.zeros((1, 8, 8), dtype=np.uint16), [0])
    write_label_frames(tmp_path, "mask", np.zeros((1, 8, 9), dtype=np.uint16), [1])
    with pytest.raises(InputError) as caught:
        read_ctc_folder(str(tmp_path))
    assert str(tmp_path) in str(caught.value) and "different sizes" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cell_segs_result_opens_with_its_lineage(tmp_path):
    """cell-seg on a synthetic time-lapse with a division: its result folder opens as its masks and
    a Tracks layer with a track per label of res_track.txt and a link per division it found."""
    write_cell_dataset(tmp_path / "data", frames=4, size=96, cells=4, divisions=1, seed=1)
    out = tmp_path / "01_RES"
    assert main(["cell-seg", str(tmp_path / "data" / "01"), "--out", str(out), "-q", *CELL_FAST]) == 0
    assert get_ctc_reader(str(out)) is read_ctc_folder
    [(stack, _, _), (rows, attributes, _)] = read_ctc_folder(str(out))
    np.testing.assert_array_equal(stack, np.stack(list(read_label_frames(out, "mask").values())))
    tracks = read_tracks(out / "res_track.txt")
    assert set(rows[:, 0].astype(int)) == {label for label, *_ in tracks}
    assert attributes["graph"] == {label: [parent] for label, _, _, parent in tracks if parent}
    napari_layers.Tracks(rows, **attributes)
