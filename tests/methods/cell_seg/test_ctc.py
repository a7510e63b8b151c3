"""The Cell Tracking Challenge layout: raw frames, label frames and track files read and written,
and one InputError naming the file for each kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from invrender.core.io import InputError, write_tiff
from invrender.methods.cell_seg.ctc import (
    Frames,
    read_frames,
    read_label_frames,
    read_label_image,
    read_tracks,
    write_label_frames,
    write_tracks,
)


def frame(seed: int, shape=(12, 16)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def labels(seed: int, count: int = 3, shape=(12, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 60000, size=(count, *shape)).astype(np.uint16)


def error_of(call, *args) -> str:
    with pytest.raises(InputError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------- raw frames


def test_a_folder_of_frames_is_read_in_frame_order_and_other_files_are_ignored(tmp_path):
    for t in (10, 2, 0):
        write_tiff(tmp_path / f"t{t:03d}.tif", frame(t))
    write_tiff(tmp_path / "mask000.tif", frame(99))  # not a frame
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "t001_copy.tif").write_bytes(b"")  # not tNNN.tif exactly
    frames = read_frames(tmp_path)
    assert isinstance(frames, Frames)
    assert frames.kind == "sequence" and frames.source == tmp_path and frames.digits == 3
    assert frames.times == [0, 2, 10]
    assert frames.images.dtype == np.float32 and frames.images.shape == (3, 12, 16)
    for image, t in zip(frames.images, frames.times):
        np.testing.assert_array_equal(image, frame(t))


def test_frame_numbers_are_sorted_as_numbers_and_four_digit_names_are_recognised(tmp_path):
    for t in (9, 1000, 10):
        write_tiff(tmp_path / f"t{t:04d}.tif", frame(t))
    frames = read_frames(tmp_path)
    assert frames.times == [9, 10, 1000] and frames.digits == 4


def test_integer_frames_are_read_as_float32(tmp_path):
    image = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16)
    write_tiff(tmp_path / "t000.tif", image)
    frames = read_frames(tmp_path)
    assert frames.images.dtype == np.float32
    np.testing.assert_array_equal(frames.images[0], image)


def test_a_single_2d_image_is_one_frame(tmp_path):
    write_tiff(tmp_path / "cells.tif", frame(1))
    frames = read_frames(tmp_path / "cells.tif")
    assert frames.kind == "image" and frames.times == [0] and frames.digits == 3
    assert frames.images.shape == (1, 12, 16)
    np.testing.assert_array_equal(frames.images[0], frame(1))


def test_a_3d_tiff_is_a_2d_plus_time_stack(tmp_path):
    stack = np.stack([frame(t) for t in range(5)])
    write_tiff(tmp_path / "movie.tif", stack, axes="TYX")
    frames = read_frames(tmp_path / "movie.tif")
    assert frames.kind == "stack" and frames.times == [0, 1, 2, 3, 4] and frames.digits == 3
    np.testing.assert_array_equal(frames.images, stack)


def test_a_missing_path_is_named(tmp_path):
    assert str(tmp_path / "nope") in error_of(read_frames, tmp_path / "nope")


def test_a_folder_without_frames_is_refused(tmp_path):
    write_tiff(tmp_path / "image.tif", frame(0))
    message = error_of(read_frames, tmp_path)
    assert str(tmp_path) in message and "no frames tNNN.tif" in message


def test_frames_of_different_sizes_name_the_first_offending_frame_and_both_shapes(tmp_path):
    write_tiff(tmp_path / "t000.tif", frame(0))
    write_tiff(tmp_path / "t001.tif", frame(1))
    write_tiff(tmp_path / "t002.tif", frame(2, shape=(12, 17)))
    write_tiff(tmp_path / "t003.tif", frame(3, shape=(13, 16)))
    message = error_of(read_frames, tmp_path)
    assert "t002.tif" in message and "t003" not in message
    assert "(12, 17)" in message and "(12, 16)" in message and "t000.tif" in message


def test_a_3d_frame_in_a_folder_is_refused(tmp_path):
    write_tiff(tmp_path / "t000.tif", frame(0))
    write_tiff(tmp_path / "t001.tif", np.stack([frame(1), frame(2)]))
    message = error_of(read_frames, tmp_path)
    assert "t001.tif" in message and "3D frame where a 2D frame is expected" in message


def test_a_4d_frame_in_a_folder_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "t000.tif", np.zeros((2, 3, 12, 16), np.float32), photometric="minisblack")
    message = error_of(read_frames, tmp_path)
    assert "t000.tif" in message and "4D frame where a 2D frame is expected" in message


def test_a_4d_file_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "hyper.tif", np.zeros((2, 3, 12, 16), np.float32), photometric="minisblack")
    message = error_of(read_frames, tmp_path / "hyper.tif")
    assert "hyper.tif" in message and "4D" in message


def test_non_finite_values_are_refused(tmp_path):
    bad = frame(0)
    bad[3, 4] = np.nan
    write_tiff(tmp_path / "t000.tif", frame(1))
    write_tiff(tmp_path / "t001.tif", bad)
    message = error_of(read_frames, tmp_path)
    assert "t001.tif" in message and "NaN" in message
    write_tiff(tmp_path / "single.tif", bad)
    assert "single.tif" in error_of(read_frames, tmp_path / "single.tif")


def test_an_rgb_file_is_refused_as_multi_channel(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((12, 16, 3), np.uint8), photometric="rgb")
    message = error_of(read_frames, tmp_path / "rgb.tif")
    assert "rgb.tif" in message and "multi-channel" in message


def test_an_unreadable_frame_is_named(tmp_path):
    (tmp_path / "t000.tif").write_bytes(b"not a tiff")
    assert "t000.tif" in error_of(read_frames, tmp_path)


def test_two_names_for_one_frame_number_are_refused(tmp_path):
    write_tiff(tmp_path / "t001.tif", frame(0))
    write_tiff(tmp_path / "t0001.tif", frame(1))
    message = error_of(read_frames, tmp_path)
    assert "t001.tif" in message and "t0001.tif" in message


# ---------------------------------------------------------------- label frames


def test_label_frames_round_trip_as_uint16(tmp_path):
    stack = labels(0)
    paths = write_label_frames(tmp_path / "01_RES", "mask", stack, [0, 5, 12])
    assert [p.name for p in paths] == ["mask000.tif", "mask005.tif", "mask012.tif"]
    assert tifffile.imread(paths[0]).dtype == np.uint16
    read = read_label_frames(tmp_path / "01_RES", "mask")
    assert list(read) == [0, 5, 12]
    for t, expected in zip([0, 5, 12], stack):
        assert read[t].dtype == np.uint16
        np.testing.assert_array_equal(read[t], expected)
    assert not list((tmp_path / "01_RES").glob("*.part")) and not list((tmp_path / "01_RES").glob(".*"))


def test_ground_truth_prefixes_and_four_digits(tmp_path):
    stack = labels(1, count=2).astype(np.int64)  # any integer dtype is written as uint16
    write_label_frames(tmp_path, "man_seg", stack, [7, 1234], digits=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["man_seg0007.tif", "man_seg1234.tif"]
    read = read_label_frames(tmp_path, "man_seg")
    np.testing.assert_array_equal(read[1234], stack[1])
    # Prefixes do not mix: no man_track frames here.
    with pytest.raises(InputError):
        read_label_frames(tmp_path, "man_track")


def test_labels_that_do_not_fit_16_bits_are_refused(tmp_path):
    too_big = np.zeros((1, 4, 4), np.int32)
    too_big[0, 1, 1] = 65536
    with pytest.raises(ValueError, match="65535"):
        write_label_frames(tmp_path, "mask", too_big, [0])
    with pytest.raises(ValueError):
        write_label_frames(tmp_path, "mask", -np.ones((1, 4, 4), np.int32), [0])
    with pytest.raises(ValueError):
        write_label_frames(tmp_path, "mask", np.full((1, 4, 4), 1.5), [0])
    with pytest.raises(ValueError):
        write_label_frames(tmp_path, "mask", np.zeros((2, 4, 4), np.uint16), [0])
    assert not list(tmp_path.iterdir())


def test_no_label_frames_is_refused(tmp_path):
    write_tiff(tmp_path / "t000.tif", np.zeros((4, 4), np.uint16))
    message = error_of(read_label_frames, tmp_path, "mask")
    assert str(tmp_path) in message and "maskNNN.tif" in message
    assert "nope" in error_of(read_label_frames, tmp_path / "nope", "mask")


def test_a_label_frame_that_is_not_2d_is_refused(tmp_path):
    write_tiff(tmp_path / "mask000.tif", np.zeros((4, 4), np.uint16))
    write_tiff(tmp_path / "mask001.tif", np.zeros((2, 4, 4), np.uint16))
    message = error_of(read_label_frames, tmp_path, "mask")
    assert "mask001.tif" in message and "3D" in message


def test_a_label_frame_with_fractional_values_is_refused(tmp_path):
    values = np.zeros((4, 4), np.float32)
    values[1, 1] = 2.5
    write_tiff(tmp_path / "mask000.tif", values)
    message = error_of(read_label_frames, tmp_path, "mask")
    assert "mask000.tif" in message and "integer" in message


def test_whole_number_float_labels_are_accepted_and_negative_labels_refused(tmp_path):
    values = np.zeros((4, 4), np.float32)
    values[1, 1] = 3
    write_tiff(tmp_path / "float.tif", values)
    read = read_label_image(tmp_path / "float.tif")
    assert np.issubdtype(read.dtype, np.integer) and read[1, 1] == 3
    write_tiff(tmp_path / "negative.tif", -values.astype(np.int16))
    assert "negative.tif" in error_of(read_label_image, tmp_path / "negative.tif")


# ---------------------------------------------------------------- tracks


def test_tracks_round_trip(tmp_path):
    tracks = [(1, 0, 9, 0), (2, 10, 14, 1), (3, 10, 20, 1), (4, 3, 3, 0)]
    write_tracks(tmp_path / "res_track.txt", tracks)
    assert (tmp_path / "res_track.txt").read_text() == "1 0 9 0\n2 10 14 1\n3 10 20 1\n4 3 3 0\n"
    assert read_tracks(tmp_path / "res_track.txt") == tracks
    assert [p.name for p in tmp_path.iterdir()] == ["res_track.txt"]  # no temporary file left
    write_tracks(tmp_path / "empty.txt", [])
    assert read_tracks(tmp_path / "empty.txt") == []


def test_numpy_integers_and_blank_lines_are_fine(tmp_path):
    write_tracks(tmp_path / "t.txt", [tuple(np.array([5, 1, 2, 0], dtype=np.int64))])
    (tmp_path / "man_track.txt").write_text("1 0 3 0\n\n2  4 6  1 \n")
    assert read_tracks(tmp_path / "t.txt") == [(5, 1, 2, 0)]
    assert read_tracks(tmp_path / "man_track.txt") == [(1, 0, 3, 0), (2, 4, 6, 1)]


@pytest.mark.parametrize(
    "bad", ["2 4 6", "2 4 6 1 9", "2 four 6 1", "2 4.5 6 1", "0 4 6 1", "2 6 4 1", "2 4 6 -1", "1 7 8 0"]
)
def test_a_malformed_track_line_is_named(tmp_path, bad):
    path = tmp_path / "man_track.txt"
    path.write_text(f"1 0 3 0\n{bad}\n")
    message = error_of(read_tracks, path)
    assert "man_track.txt" in message and "line 2" in message


def test_a_missing_track_file_is_named(tmp_path):
    assert "res_track.txt" in error_of(read_tracks, tmp_path / "res_track.txt")


def test_writing_a_malformed_track_is_refused(tmp_path):
    for bad in [(1, 5, 4, 0), (0, 1, 2, 0), (1, 2, 3), (1, -1, 2, 0)]:
        with pytest.raises(ValueError):
            write_tracks(tmp_path / "res_track.txt", [bad])
    assert not list(tmp_path.iterdir())
