"""The synthetic nuclei time-lapse (`invrender synth cells`): CTC layout, consistent ground truth,
divisions, no overlaps, determinism, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy.spatial.distance import cdist

from invrender.cli import main
from invrender.methods.cell_seg.ctc import read_label_frames, read_tracks
from invrender.methods.cell_seg.synth import render_labels, simulate, write_cell_dataset

FRAMES, SIZE, CELLS, DIVISIONS = 8, 96, 5, 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("cells")
    summary = write_cell_dataset(out, frames=FRAMES, size=SIZE, cells=CELLS, divisions=DIVISIONS, seed=3)
    return out, summary


def test_layout_is_complete(dataset):
    out, summary = dataset
    for t in range(FRAMES):
        for path in (
            out / "01" / f"t{t:03d}.tif",
            out / "01_GT" / "SEG" / f"man_seg{t:03d}.tif",
            out / "01_GT" / "TRA" / f"man_track{t:03d}.tif",
        ):
            image = tifffile.imread(path)
            assert image.dtype == np.uint16 and image.shape == (SIZE, SIZE), path
    assert (out / "01_GT" / "TRA" / "man_track.txt").is_file()
    assert summary["frames"] == FRAMES
    assert summary["tracks"] == read_tracks(out / "01_GT" / "TRA" / "man_track.txt")
    # Moderate noise, nuclei clearly above the background, as in CTC GFP data.
    assert 3 < summary["snr"] < 40
    raw = tifffile.imread(out / "01" / "t000.tif")
    assert 0 < raw.min() < raw.max()


def test_labels_are_the_tracks_alive(dataset):
    out, _ = dataset
    tracks = read_tracks(out / "01_GT" / "TRA" / "man_track.txt")
    seg = read_label_frames(out / "01_GT" / "SEG", "man_seg")
    tra = read_label_frames(out / "01_GT" / "TRA", "man_track")
    assert sorted(seg) == sorted(tra) == list(range(FRAMES))
    for t in range(FRAMES):
        alive = {label for label, first, last, _ in tracks if first <= t <= last}
        assert set(np.unique(seg[t])) - {0} == alive, t
        np.testing.assert_array_equal(seg[t], tra[t])


def test_divisions(dataset):
    out, summary = dataset
    tracks = {t[0]: t for t in read_tracks(out / "01_GT" / "TRA" / "man_track.txt")}
    seg = read_label_frames(out / "01_GT" / "SEG", "man_seg")
    assert len(summary["divisions"]) == DIVISIONS
    assert len({frame for _, frame, _ in summary["divisions"]}) == DIVISIONS  # at distinct frames
    children = [t for t in tracks.values() if t[3]]
    assert len(children) == 2 * DIVISIONS
    for mother, frame, daughters in summary["divisions"]:
        # The mother's track ends the frame before; never in the first or the last frame.
        assert tracks[mother][2] == frame - 1 and 1 <= frame - 1 <= FRAMES - 2
        for d in daughters:
            assert tracks[d][1] == frame and tracks[d][3] == mother
        # Both daughters are there in their first frame, touching or nearly (mask pixel centres
        # at most 3 px apart): the hard case for a segmenter.
        a, b = (np.argwhere(seg[frame] == d) for d in daughters)
        assert len(a) and len(b)
        assert cdist(a, b).min() <= 3.0


def test_nuclei_do_not_overlap_and_stay_inside():
    history, _, _ = simulate(10, 80, 6, 2, np.random.default_rng(1))
    for nuclei in history:
        coverage, labels = render_labels(nuclei, 80)
        # The nuclei's exact areas never add up to more than a pixel (at most rounding).
        assert coverage.sum(axis=0).max() <= 1 + 1e-3
        # Nothing touches the frame's edge.
        assert not labels[[0, -1]].any() and not labels[:, [0, -1]].any()
        for cell, cover in zip(nuclei, coverage):
            assert 7 <= cell.radius <= 12 or cell.parent  # daughters start smaller
            assert cover.sum() > 50


def test_deterministic_per_seed(tmp_path):
    small = dict(frames=4, size=64, cells=3, divisions=1)
    first = write_cell_dataset(tmp_path / "a", seed=5, **small)
    again = write_cell_dataset(tmp_path / "b", seed=5, **small)
    other = write_cell_dataset(tmp_path / "c", seed=6, **small)
    assert first == again
    for name in ("01/t002.tif", "01_GT/SEG/man_seg003.tif"):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "a" / name), tifffile.imread(tmp_path / "b" / name))
    assert not np.array_equal(
        tifffile.imread(tmp_path / "a" / "01/t002.tif"), tifffile.imread(tmp_path / "c" / "01/t002.tif")
    )
    assert first["tracks"] != other["tracks"] or first["snr"] != other["snr"]


def test_cli_writes_the_dataset(tmp_path, capsys):
    out = tmp_path / "cells"
    code = main(
        ["synth", "cells", "-f", "3", "--size", "64", "-n", "2", "--divisions", "1", "--seed", "2", "-o", str(out)]
    )
    assert code == 0
    assert "wrote 3 frame(s)" in capsys.readouterr().err
    assert len(read_tracks(out / "01_GT" / "TRA" / "man_track.txt")) == 4
    assert sorted(p.name for p in (out / "01").iterdir()) == ["t000.tif", "t001.tif", "t002.tif"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-f", "3", "--divisions", "2"], "frames - 1"),
        (["-n", "2", "--divisions", "3"], "--cells"),
        (["--size", "32", "-n", "40"], "could not place"),
    ],
)
def test_cli_refuses_impossible_requests(tmp_path, capsys, args, message):
    assert main(["synth", "cells", *args, "-o", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
