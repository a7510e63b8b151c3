"""DET and TRA in `invrender cell-eval` (py-ctcmetrics) on a small synthetic time-lapse: the ground
truth against itself, copies of it with a cell removed, a track split and a division missed (each
expected value worked out from the AOGM's weights, and checked against py-ctcmetrics' own
evaluation of the folders), cell-seg's result, and bad track files and folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import CELL_FAST, assert_one_line_error
from invrender.cli import main
from invrender.core.io import write_tiff
from invrender.methods.cell_seg.ctc import read_label_frames, read_tracks, write_label_frames, write_tracks
from invrender.methods.cell_seg.synth import write_cell_dataset

#: AOGM weights of a missed vertex and of a missing edge (Matula et al. 2015).
FALSE_NEGATIVE, MISSING_EDGE = 10.0, 1.5


@pytest.fixture(scope="module")
def movie(tmp_path_factory) -> Path:
    """6 frames of 4 nuclei, 2 of which divide: the folder holding 01/ and 01_GT/."""
    out = tmp_path_factory.mktemp("movie")
    write_cell_dataset(out, frames=6, size=96, cells=4, divisions=2, seed=4)
    return out


def ground_truth(movie: Path) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The tracking ground truth: masks (T, H, W) and tracks."""
    masks = read_label_frames(movie / "01_GT" / "TRA", "man_track")
    return np.stack([masks[t] for t in sorted(masks)]), read_tracks(movie / "01_GT" / "TRA" / "man_track.txt")


def write_result(folder: Path, masks: np.ndarray, tracks: list, first: int = 0) -> Path:
    write_label_frames(folder, "mask", masks, list(range(first, first + len(masks))))
    write_tracks(folder / "res_track.txt", tracks)
    return folder


def graph_size(masks: np.ndarray, tracks: list) -> tuple[int, int]:
    """Vertices (a cell in a frame) and edges (a cell to itself in the next frame, a mother to a
    daughter) of a tracking graph."""
    vertices = sum(len(np.unique(frame[frame > 0])) for frame in masks)
    edges = sum(end - begin for _, begin, end, _ in tracks) + sum(1 for *_, parent in tracks if parent)
    return vertices, edges


def evaluate(res: Path, gt: Path, tmp_path: Path, capsys) -> tuple[dict, str]:
    """cell-eval's JSON record and its printed output."""
    record = tmp_path / f"{res.name}.json"
    code = main(["cell-eval", str(res), str(gt), "--json", str(record)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(record.read_text()), out


def library(res: Path, gt: Path) -> dict:
    """py-ctcmetrics' own evaluation of the two folders (its `ctc_evaluate` entry point)."""
    from ctc_metrics import evaluate_sequence

    return evaluate_sequence(str(res), str(gt), metrics=["DET", "TRA", "SEG"], threads=1)


def children(tracks: list) -> set[int]:
    return {parent for *_, parent in tracks if parent}


def remove_cell(masks: np.ndarray, tracks: list) -> tuple[np.ndarray, list, int]:
    """Remove a track that neither divides nor was born in a division; also returns its length."""
    label, begin, end, _ = next(t for t in tracks if t[3] == 0 and t[0] not in children(tracks))
    return np.where(masks == label, 0, masks), [t for t in tracks if t[0] != label], end - begin + 1


def split_track(masks: np.ndarray, tracks: list) -> tuple[np.ndarray, list]:
    """Give the second half of an undivided track a new label without a parent (one link lost)."""
    mothers = children(tracks)
    label, begin, end, parent = [t for t in tracks if t[3] == 0 and t[0] not in mothers][-1]
    middle, new = (begin + end + 1) // 2, int(masks.max()) + 1
    masks = masks.copy()
    masks[middle:][masks[middle:] == label] = new
    kept = [t for t in tracks if t[0] != label]
    return masks, [*kept, (label, begin, middle - 1, parent), (new, middle, end, 0)]


def miss_division(tracks: list) -> list:
    """The daughters of the first division as tracks of their own (two parent links lost)."""
    mother = min(children(tracks))
    return [(label, begin, end, 0 if parent == mother else parent) for label, begin, end, parent in tracks]


# ---------------------------------------------------------------- scores


def test_the_ground_truth_against_itself_scores_one(movie, tmp_path, capsys):
    masks, tracks = ground_truth(movie)
    res = write_result(tmp_path / "01_RES", masks, tracks)
    record, out = evaluate(res, movie / "01_GT", tmp_path, capsys)
    assert (record["det"], record["tra"], record["seg"]) == (1.0, 1.0, 1.0)
    assert record["tracking"]["aogm"] == 0 and record["tracking_skipped"] is None
    assert "DET 1.000, TRA 1.000 (AOGM 0 against" in out and "nothing to correct" in out
    expected = library(res, movie / "01_GT")
    assert (expected["DET"], expected["TRA"]) == (1.0, 1.0)


@pytest.mark.parametrize("change", ["removed cell", "split track", "missed division", "all three"])
def test_perturbed_ground_truth_scores_as_the_aogm_counts_and_as_py_ctcmetrics(movie, tmp_path, capsys, change):
    masks, tracks = ground_truth(movie)
    vertices, edges = graph_size(masks, tracks)
    missed, lost_edges = 0, 0
    if change in ("removed cell", "all three"):
        masks, tracks, missed = remove_cell(masks, tracks)
        lost_edges += missed - 1  # its links in time (it has no parent)
    if change in ("split track", "all three"):
        masks, tracks = split_track(masks, tracks)
        lost_edges += 1
    if change in ("missed division", "all three"):
        tracks = miss_division(tracks)
        lost_edges += 2
    res = write_result(tmp_path / "01_RES", masks, tracks)
    record, out = evaluate(res, movie / "01_GT", tmp_path, capsys)

    det = 1 - FALSE_NEGATIVE * missed / (FALSE_NEGATIVE * vertices)
    aogm = FALSE_NEGATIVE * missed + MISSING_EDGE * lost_edges
    tra = 1 - aogm / (FALSE_NEGATIVE * vertices + MISSING_EDGE * edges)
    assert record["det"] == pytest.approx(det, abs=1e-12) and record["tra"] == pytest.approx(tra, abs=1e-12)
    assert record["tracking"]["operations"] == {"NS": 0, "FN": missed, "FP": 0, "ED": 0, "EA": lost_edges, "EC": 0}
    assert record["tra"] < 1 and f"DET {det:.3f}, TRA {tra:.3f}" in out
    if change == "all three":
        assert record["det"] < 1 and record["det"] != record["tra"]

    expected = library(res, movie / "01_GT")
    assert record["det"] == pytest.approx(expected["DET"], abs=1e-12)
    assert record["tra"] == pytest.approx(expected["TRA"], abs=1e-12)
    assert record["seg"] == pytest.approx(expected["SEG"], abs=1e-12)  # ours (core/metrics.py) and theirs


def test_frames_numbered_from_later_score_the_same(movie, tmp_path, capsys):
    """The library counts frames from 0; a sequence starting at frame 3 is shifted, not refused."""
    truth, true_tracks = ground_truth(movie)
    masks, tracks = split_track(truth, miss_division(true_tracks))
    record, _ = evaluate(write_result(tmp_path / "01_RES", masks, tracks), movie / "01_GT", tmp_path, capsys)

    def later(rows: list) -> list:
        return [(label, begin + 3, end + 3, parent) for label, begin, end, parent in rows]

    gt = tmp_path / "later" / "01_GT"
    write_label_frames(gt / "SEG", "man_seg", truth, list(range(3, 9)))
    write_label_frames(gt / "TRA", "man_track", truth, list(range(3, 9)))
    write_tracks(gt / "TRA" / "man_track.txt", later(true_tracks))
    shifted, _ = evaluate(write_result(tmp_path / "later" / "01_RES", masks, later(tracks), 3), gt, tmp_path, capsys)
    assert shifted["tra"] < 1 and (shifted["det"], shifted["tra"]) == (record["det"], record["tra"])


def test_cell_seg_result_scores_as_py_ctcmetrics_scores_it(movie, tmp_path, capsys):
    res = tmp_path / "01_RES"
    assert main(["cell-seg", str(movie / "01"), "--out", str(res), "-q", *CELL_FAST]) == 0
    capsys.readouterr()
    record, _ = evaluate(res, movie / "01_GT", tmp_path, capsys)
    expected = library(res, movie / "01_GT")
    assert record["det"] > 0 and record["tra"] > 0
    assert record["det"] == pytest.approx(expected["DET"], abs=1e-12)
    assert record["tra"] == pytest.approx(expected["TRA"], abs=1e-12)
    assert record["seg"] == pytest.approx(expected["SEG"], abs=1e-12)


def test_an_empty_result_detects_nothing(movie, tmp_path, capsys):
    masks, _ = ground_truth(movie)
    res = write_result(tmp_path / "01_RES", np.zeros_like(masks), [])
    record, _ = evaluate(res, movie / "01_GT", tmp_path, capsys)
    assert (record["det"], record["tra"], record["seg"]) == (0.0, 0.0, 0.0)


# ---------------------------------------------------------------- SEG only


def test_without_res_track_it_is_seg_only_said_plainly(movie, tmp_path, capsys):
    masks, tracks = ground_truth(movie)
    res = write_result(tmp_path / "01_RES", masks, tracks)
    (res / "res_track.txt").unlink()
    record, out = evaluate(res, movie / "01_GT", tmp_path, capsys)
    assert f"DET and TRA not computed: no res_track.txt in {res} (SEG only)" in out
    assert record["seg"] == 1.0 and record["det"] is None and record["tracking"] is None
    assert "res_track.txt" in record["tracking_skipped"]


def test_without_a_tra_folder_it_is_seg_only_said_plainly(movie, tmp_path, capsys):
    masks, tracks = ground_truth(movie)
    res = write_result(tmp_path / "01_RES", masks, tracks)
    gt = tmp_path / "01_GT"
    shutil.copytree(movie / "01_GT" / "SEG", gt / "SEG")
    record, out = evaluate(res, gt, tmp_path, capsys)
    assert f"DET and TRA not computed: no TRA folder in {gt} (SEG only)" in out
    assert record["tra"] is None and "TRA folder" in record["tracking_skipped"]


def test_a_single_frame_is_seg_only_said_plainly(movie, tmp_path, capsys):
    """py-ctcmetrics counts the links between frames and fails on one frame: not computed, not an error."""
    masks, tracks = ground_truth(movie)
    single = [(label, 0, 0, 0) for label, begin, *_ in tracks if begin == 0]
    gt = tmp_path / "01_GT"
    write_label_frames(gt / "SEG", "man_seg", masks[:1], [0])
    write_label_frames(gt / "TRA", "man_track", masks[:1], [0])
    write_tracks(gt / "TRA" / "man_track.txt", single)
    record, out = evaluate(write_result(tmp_path / "01_RES", masks[:1], single), gt, tmp_path, capsys)
    assert f"DET and TRA not computed: {gt / 'TRA'} holds a single frame" in out
    assert record["seg"] == 1.0 and record["det"] is None


# ---------------------------------------------------------------- bad inputs


def _bad(case: str, res: Path, gt: Path, masks: np.ndarray, tracks: list) -> tuple[Path, Path, list[str]]:
    """Spoil a copy of the ground truth in `res` (and `gt`) as `case` says; returns the folders and
    what the error line must name."""
    track_file = str(res / "res_track.txt")
    last = len(masks) - 1
    if case == "malformed":
        (res / "res_track.txt").write_text("1 0 5 0\n2 0 five 0\n")
        return res, gt, [track_file, "line 2"]
    if case == "gap in a track":  # the track says the cell is there; its mask does not
        label, begin, end, _ = next(t for t in tracks if t[2] > t[1] + 1)
        frame = masks[begin + 1].copy()
        frame[frame == label] = 0
        write_tiff(res / f"mask{begin + 1:03d}.tif", frame)
        return res, gt, [track_file, "py-ctcmetrics", f"Label {label} in res_track but not in mask"]
    if case == "cell without a track":
        frame = masks[0].copy()
        frame[:2, :2] = 200  # a corner no nucleus reaches (they keep 2 px from the border)
        write_tiff(res / "mask000.tif", frame)
        return res, gt, [track_file, "py-ctcmetrics", "Label 200 in mask but not in res_track"]
    if case == "no tracks for the cells":
        (res / "res_track.txt").write_text("")
        return res, gt, [track_file, "no tracks, but", "mask000.tif"]
    if case == "unknown parent":
        write_tracks(res / "res_track.txt", [(lb, b, e, 99 if p else 0) for lb, b, e, p in tracks])
        return res, gt, [track_file, "parent 99"]
    if case == "parent ends late":  # a mother that lives on into her daughters' first frame
        mother = min(children(tracks))
        born = next(b for _, b, _, p in tracks if p == mother)
        later = [(lb, b, born if lb == mother else e, p) for lb, b, e, p in tracks]
        frame = masks[born].copy()
        frame[-2:, -2:] = mother
        write_tiff(res / f"mask{born:03d}.tif", frame)
        write_tracks(res / "res_track.txt", later)
        return res, gt, [track_file, "Parent ends after child starts"]
    if case == "track past the last frame":
        write_tracks(res / "res_track.txt", [(lb, b, e + 1 if e == last else e, p) for lb, b, e, p in tracks])
        return res, gt, [track_file, "outside the sequence's frames 0 to 5"]
    if case == "extra result frame":
        write_tiff(res / "mask006.tif", masks[0])
        return res, gt, [str(res / "mask006.tif"), "not in the tracking ground truth"]
    if case == "labels overflow":  # the library adds the ground truth's largest label + 1 in the file's type
        # (checked before the tracks are read: a uint8 frame with a large label is enough).
        write_tiff(res / "mask000.tif", np.where(masks[0] > 0, 255, 0).astype(np.uint8))
        return res, gt, [str(res / "mask000.tif"), "uint8"]
    if case == "no man_track.txt":
        (gt / "TRA" / "man_track.txt").unlink()
        return res, gt, [str(gt / "TRA" / "man_track.txt"), "not found"]
    if case == "empty TRA folder":
        for file in (gt / "TRA").glob("man_track*.tif"):
            file.unlink()
        return res, gt, [str(gt / "TRA"), "man_trackNNN.tif"]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "malformed",
        "gap in a track",
        "cell without a track",
        "no tracks for the cells",
        "unknown parent",
        "parent ends late",
        "track past the last frame",
        "extra result frame",
        "labels overflow",
        "no man_track.txt",
        "empty TRA folder",
    ],
)
def test_bad_tracks_and_folders_are_one_line(movie, tmp_path, capsys, case):
    masks, tracks = ground_truth(movie)
    res = write_result(tmp_path / "01_RES", masks, tracks)
    gt = tmp_path / "01_GT"
    shutil.copytree(movie / "01_GT", gt)
    res, gt, needles = _bad(case, res, gt, masks, tracks)
    out_folder = tmp_path / "out"
    code = main(["cell-eval", str(res), str(gt), "--json", str(out_folder / "scores.json")])
    out, err = capsys.readouterr()
    line = assert_one_line_error(code, err, out_folder, *needles)
    assert line.startswith("invrender: error: ") and "DET" not in out
