"""The Cell Tracking Challenge SEG measure on hand-made label images (expected values worked out by
hand in each test), pooled over frames, and `invrender cell-eval` through the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import assert_one_line_error
from invrender.cli import main
from invrender.core.io import write_tiff
from invrender.core.metrics import seg_jaccards, seg_measure
from invrender.methods.cell_seg.ctc import write_label_frames

SHAPE = (20, 24)


def canvas() -> np.ndarray:
    return np.zeros(SHAPE, np.uint16)


def boxes(*specs: tuple[int, int, int, int, int]) -> np.ndarray:
    """A label image with boxes `(label, row0, row1, col0, col1)` (end exclusive), later ones on top."""
    image = canvas()
    for label, r0, r1, c0, c1 in specs:
        image[r0:r1, c0:c1] = label
    return image


# ---------------------------------------------------------------- one frame


def test_a_perfect_result_scores_one_whatever_its_labels():
    reference = boxes((1, 0, 5, 0, 5), (2, 10, 15, 10, 20))
    result = boxes((7, 0, 5, 0, 5), (3, 10, 15, 10, 20))
    np.testing.assert_array_equal(seg_jaccards(result, reference), [1.0, 1.0])


def test_exactly_half_of_a_reference_does_not_match_but_more_than_half_does():
    reference = boxes((1, 0, 4, 0, 4))  # 16 px
    half = boxes((1, 0, 4, 0, 2))  # 8 px inside: |R and S| = 8 = 0.5 |R|, not more
    np.testing.assert_array_equal(seg_jaccards(half, reference), [0.0])
    more = half.copy()
    more[0, 2] = 1  # 9 px inside: 9 > 8; J = 9 / 16
    np.testing.assert_allclose(seg_jaccards(more, reference), [9 / 16])


def test_a_missed_object_scores_zero_and_the_background_matches_nothing():
    reference = boxes((1, 0, 5, 0, 5), (2, 10, 15, 10, 20))
    result = boxes((4, 0, 5, 0, 5), (5, 0, 5, 20, 24))  # object 2 lies on the result's background
    np.testing.assert_array_equal(seg_jaccards(result, reference), [1.0, 0.0])
    np.testing.assert_array_equal(seg_jaccards(canvas(), reference), [0.0, 0.0])


def test_a_reference_split_60_40_matches_the_60_percent_piece():
    reference = boxes((1, 0, 10, 0, 10))  # 100 px
    # Piece 5: columns 0-5 of rows 0-11, 72 px, 60 of them in R; piece 6: columns 6-9, 40 px in R.
    result = boxes((5, 0, 12, 0, 6), (6, 0, 10, 6, 10))
    # |R and S5| = 60 > 50: J = 60 / (100 + 72 - 60) = 60 / 112. S6 (40 <= 50) does not match.
    np.testing.assert_allclose(seg_jaccards(result, reference), [60 / 112])


def test_a_merged_result_matches_the_reference_it_covers_more_than_half_of():
    reference = boxes((1, 0, 10, 0, 10), (2, 0, 10, 10, 14))  # 100 px and 40 px side by side
    merged = boxes((9, 0, 10, 0, 11))  # all of R1 and one column (10 px) of R2: 110 px
    # R1: 100 > 50, J = 100 / 110. R2: 10 <= 20, no match.
    np.testing.assert_allclose(seg_jaccards(merged, reference), [100 / 110, 0.0])


def test_one_result_covering_most_of_two_references_matches_both():
    # The CTC rule is per reference object: a merge that covers more than half of each matches both.
    reference = boxes((1, 0, 10, 0, 10), (2, 0, 10, 10, 14))
    merged = boxes((9, 0, 10, 0, 14))  # 140 px: R1 in full (J = 100/140) and R2 in full (J = 40/140)
    np.testing.assert_allclose(seg_jaccards(merged, reference), [100 / 140, 40 / 140])


def test_scores_are_ordered_by_reference_label():
    reference = boxes((9, 0, 4, 0, 4), (2, 10, 14, 10, 14))
    result = boxes((1, 0, 4, 0, 4))  # only label 9 is found
    np.testing.assert_array_equal(seg_jaccards(result, reference), [0.0, 1.0])  # labels 2, 9


def test_no_reference_object_gives_no_score():
    assert seg_jaccards(boxes((1, 0, 4, 0, 4)), canvas()).shape == (0,)


def test_different_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        seg_jaccards(np.zeros((4, 5), np.uint16), np.zeros((5, 4), np.uint16))


def tiles(rng: np.random.Generator, offset: int, merge: bool = False) -> np.ndarray:
    """4 x 4 tiles of 5 x 6 px with labels 0..15 in random places (0 = background), shifted by
    `offset` px; with `merge`, tiles share labels at random (objects of several tiles)."""
    grid = rng.permutation(16).reshape(4, 4)
    if merge:
        grid = np.r_[0, rng.integers(1, 8, 15)][grid]
    return np.roll(np.kron(grid, np.ones((5, 6), np.int64)), offset, axis=(0, 1))


def brute_force(result: np.ndarray, reference: np.ndarray) -> list[float]:
    """The SEG rule written out object by object."""
    scores = []
    for r in np.unique(reference[reference > 0]):
        inside = reference == r
        score = 0.0
        for s in np.unique(result[result > 0]):
            other = result == s
            overlap = (inside & other).sum()
            if overlap > 0.5 * inside.sum():
                score = overlap / (inside | other).sum()
        scores.append(score)
    return scores


@pytest.mark.parametrize("seed, offset, merge", [(0, 1, False), (1, 1, True), (2, 2, True), (3, 0, True)])
def test_agrees_with_the_rule_written_out_object_by_object(seed, offset, merge):
    rng = np.random.default_rng(seed)
    reference, result = tiles(rng, 0), tiles(rng, offset, merge)
    np.testing.assert_allclose(seg_jaccards(result, reference), brute_force(result, reference))


def test_relabelling_either_image_changes_nothing():
    rng = np.random.default_rng(7)
    reference, result = tiles(rng, 0), tiles(rng, 1, merge=True)
    base = dict(zip(np.unique(reference[reference > 0]), seg_jaccards(result, reference)))
    assert 0 < sum(score > 0 for score in base.values()) < len(base)  # some matches, some misses
    # New labels for the result's objects: scores unchanged, in the same order.
    new_result = np.r_[0, rng.permutation(np.arange(100, 115))][result]
    np.testing.assert_array_equal(seg_jaccards(new_result, reference), list(base.values()))
    # New labels for the reference's objects: the scores follow their objects.
    mapping = np.r_[0, rng.permutation(np.arange(1, 16)) * 3]
    permuted = seg_jaccards(result, mapping[reference])
    by_new_label = dict(zip(np.unique(mapping[reference][reference > 0]), permuted))
    for old, score in base.items():
        assert by_new_label[mapping[old]] == score


# ---------------------------------------------------------------- frames


def test_seg_pools_objects_over_frames():
    perfect = boxes((1, 0, 5, 0, 5))
    reference = boxes((1, 0, 10, 0, 10), (2, 12, 16, 0, 4), (3, 12, 16, 10, 14))
    result = boxes((5, 0, 12, 0, 6), (6, 0, 10, 6, 10))  # 60/112 for object 1, objects 2 and 3 missed
    scores = seg_measure({0: perfect, 3: result, 4: canvas()}, {0: perfect, 3: reference})
    # Pooled over the 4 objects (1 + 60/112 + 0 + 0) / 4, not the mean of the frames' means.
    assert scores["seg"] == pytest.approx((1 + 60 / 112) / 4)
    assert (scores["objects"], scores["matched"], scores["frames"]) == (4, 2, 2)
    assert [row["frame"] for row in scores["per_frame"]] == [0, 3]
    assert scores["per_frame"][1]["seg"] == pytest.approx(60 / 112 / 3)
    assert (scores["per_frame"][1]["objects"], scores["per_frame"][1]["matched"]) == (3, 1)


def test_a_reference_frame_without_result_is_an_error():
    with pytest.raises((KeyError, ValueError), match="5"):
        seg_measure({0: canvas()}, {0: canvas(), 5: canvas()})


def test_no_reference_object_at_all_is_nan():
    scores = seg_measure({0: boxes((1, 0, 3, 0, 3))}, {0: canvas()})
    assert np.isnan(scores["seg"]) and scores["objects"] == 0 and scores["frames"] == 1


# ---------------------------------------------------------------- cell-eval


@pytest.fixture
def ctc(tmp_path):
    """01_GT/SEG with frames 0 and 3 annotated, 01_RES with masks of frames 0..4."""
    reference = {0: boxes((1, 0, 5, 0, 5)), 3: boxes((1, 0, 10, 0, 10), (2, 12, 16, 0, 4), (3, 12, 16, 10, 14))}
    result = {0: boxes((1, 0, 5, 0, 5)), 3: boxes((5, 0, 12, 0, 6), (6, 0, 10, 6, 10))}
    write_label_frames(tmp_path / "01_GT" / "SEG", "man_seg", np.stack(list(reference.values())), list(reference))
    masks = np.stack([result.get(t, canvas()) for t in range(5)])
    write_label_frames(tmp_path / "01_RES", "mask", masks, list(range(5)))
    return tmp_path


def test_cell_eval_scores_ctc_folders(ctc, capsys):
    code = main(["cell-eval", str(ctc / "01_RES"), str(ctc / "01_GT"), "--json", str(ctc / "out" / "seg.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    expected = (1 + 60 / 112) / 4
    assert f"SEG {expected:.3f} (4 reference objects, 2 matched, 2 frames)" in out
    assert "Traceback" not in err
    record = json.loads((ctc / "out" / "seg.json").read_text())
    assert record["seg"] == pytest.approx(expected)
    assert (record["objects"], record["matched"], record["frames"]) == (4, 2, 2)
    assert [row["frame"] for row in record["per_frame"]] == [0, 3]
    assert record["per_frame"][1]["result"].endswith("mask003.tif")
    assert not list((ctc / "out").glob(".*"))  # no temporary file left


def test_cell_eval_takes_the_seg_folder_itself(ctc, capsys):
    assert main(["cell-eval", str(ctc / "01_RES"), str(ctc / "01_GT" / "SEG")]) == 0
    assert "(4 reference objects, 2 matched, 2 frames)" in capsys.readouterr().out


def test_cell_eval_compares_two_label_images(tmp_path, capsys):
    write_tiff(tmp_path / "result.tif", boxes((9, 0, 10, 0, 11)))
    write_tiff(tmp_path / "truth.tif", boxes((1, 0, 10, 0, 10), (2, 0, 10, 10, 14)))
    code = main(
        ["cell-eval", str(tmp_path / "result.tif"), str(tmp_path / "truth.tif"), "--json", str(tmp_path / "seg.json")]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"SEG {100 / 110 / 2:.3f} (2 reference objects, 1 matched, 1 frame)" in out
    assert json.loads((tmp_path / "seg.json").read_text())["seg"] == pytest.approx(100 / 110 / 2)


def test_cell_eval_without_reference_objects_says_so(tmp_path, capsys):
    write_tiff(tmp_path / "result.tif", boxes((1, 0, 4, 0, 4)))
    write_tiff(tmp_path / "truth.tif", canvas())
    assert (
        main(
            [
                "cell-eval",
                str(tmp_path / "result.tif"),
                str(tmp_path / "truth.tif"),
                "--json",
                str(tmp_path / "seg.json"),
            ]
        )
        == 0
    )
    assert "SEG n/a (0 reference objects, 0 matched, 1 frame)" in capsys.readouterr().out
    assert json.loads((tmp_path / "seg.json").read_text())["seg"] is None


def test_a_missing_result_frame_is_one_line_naming_the_file(ctc, capsys):
    (ctc / "01_RES" / "mask003.tif").unlink()
    code = main(["cell-eval", str(ctc / "01_RES"), str(ctc / "01_GT"), "--json", str(ctc / "out" / "seg.json")])
    out, err = capsys.readouterr()
    line = assert_one_line_error(code, err, ctc / "out", "mask003.tif", "man_seg003.tif")
    assert line.startswith("invrender: error: ")
    assert "SEG" not in out


def test_frames_of_different_shapes_are_one_line(ctc, capsys):
    write_tiff(ctc / "01_RES" / "mask003.tif", np.zeros((20, 23), np.uint16))
    code = main(["cell-eval", str(ctc / "01_RES"), str(ctc / "01_GT"), "--json", str(ctc / "out" / "seg.json")])
    assert_one_line_error(code, capsys.readouterr().err, ctc / "out", "mask003.tif", "(20, 23)", "(20, 24)")


@pytest.mark.parametrize("case", ["missing", "no-masks", "no-gt", "mixed", "not-integer"])
def test_bad_inputs_are_one_line(ctc, capsys, case):
    res, gt, needle = ctc / "01_RES", ctc / "01_GT", None
    if case == "missing":
        res, needle = ctc / "02_RES", "02_RES"
    elif case == "no-masks":
        res, needle = ctc / "empty", "maskNNN.tif"
        res.mkdir()
    elif case == "no-gt":
        gt, needle = ctc / "01_RES", "man_segNNN.tif"
    elif case == "mixed":
        gt, needle = ctc / "01_GT" / "SEG" / "man_seg000.tif", "man_seg000.tif"
    elif case == "not-integer":
        write_tiff(res / "mask000.tif", np.full(SHAPE, 0.5, np.float32))
        needle = "mask000.tif"
    code = main(["cell-eval", str(res), str(gt), "--json", str(ctc / "out" / "seg.json")])
    assert_one_line_error(code, capsys.readouterr().err, ctc / "out", needle)
