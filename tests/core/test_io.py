"""Validated reading and atomic writing (invrender.core.io, invrender.core.geometry.spline_io)."""

import json
import os
import stat

import numpy as np
import pytest
import tifffile

from invrender.core.geometry.spline_io import read_splines, validate_splines, write_splines
from invrender.core.io import (
    InputError,
    atomic_path,
    normalise_intensity,
    read_image,
    read_json,
    write_json,
    write_png,
    write_tiff,
)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- atomic writing


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # the temporary file is gone too


def test_atomic_path_keeps_the_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half-written")
            raise KeyError("x")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_failed_writer_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "bad.json", {"loss": float("nan")})  # NaN is not JSON
    with pytest.raises((IndexError, ValueError)):
        write_tiff(tmp_path / "bad.tif", np.zeros(5, dtype=np.float32))  # 1D: tifffile refuses
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible until the block ends
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_written_files_have_normal_permissions(tmp_path):
    expected = 0o666 & ~_current_umask()
    write_json(tmp_path / "a.json", {"x": 1})
    write_tiff(tmp_path / "b.tif", np.zeros((4, 5), dtype=np.float32))
    write_png(tmp_path / "c.png", np.zeros((4, 5, 3), dtype=np.uint8))
    write_splines(tmp_path / "d.json", [[{"id": 0, "points": np.zeros((2, 2)), "widths": None}]], image="x.tif")
    for path in tmp_path.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == expected, f"{path.name}: {oct(mode)}"
        assert mode != 0o600


def test_write_json_converts_numpy_and_refuses_nan(tmp_path):
    write_json(tmp_path / "a.json", {"a": np.arange(3), "b": np.float32(1.5), "c": np.int64(2), "p": tmp_path})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [0, 1, 2], "b": 1.5, "c": 2, "p": str(tmp_path)}
    with pytest.raises(ValueError):
        write_json(tmp_path / "b.json", [float("inf")])
    with pytest.raises(TypeError):
        write_json(tmp_path / "c.json", {"x": object()})


def test_tiff_round_trip(tmp_path):
    image = np.random.default_rng(0).random((3, 6, 7)).astype(np.float64)
    write_tiff(tmp_path / "a.tif", image)
    out = read_image(tmp_path / "a.tif")
    assert out.dtype == np.float32 and out.shape == (3, 6, 7)
    np.testing.assert_allclose(out, image, rtol=1e-6)


# ---------------------------------------------------------------- reading images and JSON


def test_read_image_errors_name_the_file(tmp_path):
    cases = {
        "missing.tif": (None, "not found"),
        "garbage.tif": (b"not a tiff at all", "not a readable TIFF"),
        "line.tif": (np.zeros(8, np.float32), "1D"),
        "four.tif": (np.zeros((2, 2, 4, 4), np.float32), "4D"),
        "tiny.tif": (np.zeros((1, 5, 1), np.float32), "1D"),
        "nan.tif": (np.array([[0, np.nan], [1, 2]], np.float32), "NaN"),
        "inf.tif": (np.array([[0, np.inf], [1, 2]], np.float32), "infinite"),
        "complex.tif": (np.ones((3, 3), np.complex64), "pixel type"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            tifffile.imwrite(path, content, photometric="minisblack" if content.ndim > 2 else None)
        with pytest.raises(InputError) as info:
            read_image(path)
        message = str(info.value)
        assert message.startswith(str(path)) and problem in message, message
        assert "\n" not in message


def test_read_json_errors(tmp_path):
    (tmp_path / "empty.json").write_text("  \n")
    (tmp_path / "bad.json").write_text('{"a": 1,\n "b": }')
    (tmp_path / "nan.json").write_text('{"a": NaN}')
    with pytest.raises(InputError, match="empty"):
        read_json(tmp_path / "empty.json")
    with pytest.raises(InputError, match="line 2"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(InputError, match="NaN"):
        read_json(tmp_path / "nan.json")
    with pytest.raises(InputError, match="not found"):
        read_json(tmp_path / "none.json")


# ---------------------------------------------------------------- splines


POINTS_A = [[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]]
POINTS_B = [[10.0, 2.0], [12.0, 4.0]]


def _check_frames(frames, n_frames):
    assert len(frames) == n_frames
    for records in frames:
        assert [r["id"] for r in records] == [0, 1]
        np.testing.assert_array_equal(records[0]["points"], POINTS_A)
        np.testing.assert_array_equal(records[1]["points"], POINTS_B)
        assert records[0]["points"].dtype == np.float64


def test_read_splines_schema(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(
        json.dumps(
            {
                "format": "invrender.splines",
                "version": 1,
                "image": "a.tif",
                "splines": [{"id": 0, "points": POINTS_A, "widths": [1, 2, 1]}, {"id": 1, "points": POINTS_B}],
            }
        )
    )
    [records] = read_splines(path)
    _check_frames([records], 1)
    np.testing.assert_array_equal(records[0]["widths"], [1, 2, 1])
    assert records[1]["widths"] is None
    # Without the format key (a hand-written file) it is read the same.
    path.write_text(json.dumps({"splines": [{"points": POINTS_A}, {"points": POINTS_B}]}))
    _check_frames(read_splines(path), 1)


def test_a_splines_own_fields_are_kept_and_written_back(tmp_path):
    """A detector's fields (any key besides id, points and widths) stay with their spline."""
    path = tmp_path / "a.json"
    extra = {"score": 0.93, "track": "w7", "box": [1, 2, 3, 4]}
    path.write_text(json.dumps({"splines": [{"id": "w7", "points": POINTS_A, **extra}, {"points": POINTS_B}]}))
    [records] = read_splines(path)
    assert {k: records[0][k] for k in extra} == extra and records[0]["id"] == "w7"
    assert set(records[1]) == {"id", "points", "widths"}
    write_splines(tmp_path / "b.json", [records], image="a.tif")
    [again] = read_splines(tmp_path / "b.json")
    assert {k: again[0][k] for k in extra} == extra


def test_read_splines_schema_with_frames(tmp_path):
    path = tmp_path / "a.json"
    frame = {"splines": [{"id": 0, "points": POINTS_A}, {"id": 1, "points": POINTS_B}]}
    path.write_text(json.dumps({"format": "invrender.splines", "version": 1, "frames": [frame, frame, frame]}))
    _check_frames(read_splines(path), 3)


def test_read_splines_bare_lists(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([POINTS_A, POINTS_B]))
    _check_frames(read_splines(path), 1)
    path.write_text(json.dumps([[POINTS_A, POINTS_B], [POINTS_A, POINTS_B]]))
    _check_frames(read_splines(path), 2)


def test_read_splines_npy(tmp_path):
    array = np.array([POINTS_A, [[10.0, 2.0], [11.0, 3.0], [12.0, 4.0]]])  # (2, 3, 2)
    np.save(tmp_path / "a.npy", array)
    [records] = read_splines(tmp_path / "a.npy")
    assert [r["id"] for r in records] == [0, 1]
    np.testing.assert_array_equal(records[1]["points"], array[1])
    np.save(tmp_path / "b.npy", np.stack([array, array + 1, array + 2]))  # (frames, n, k, 2)
    frames = read_splines(tmp_path / "b.npy")
    assert len(frames) == 3
    np.testing.assert_array_equal(frames[2][0]["points"], array[0] + 2)


def test_write_then_read_splines(tmp_path):
    records = [{"id": 7, "points": np.array(POINTS_A), "widths": np.array([1.0, 2.0, 3.0]), "loss": 0.5}]
    write_splines(tmp_path / "one.json", [records], image="x.tif", extra={"method": "render"})
    data = json.loads((tmp_path / "one.json").read_text())
    assert data["format"] == "invrender.splines" and data["version"] == 1 and data["image"] == "x.tif"
    assert data["method"] == "render" and data["splines"][0]["loss"] == 0.5
    [[back]] = read_splines(tmp_path / "one.json")
    assert back["id"] == 7
    np.testing.assert_array_equal(back["widths"], [1.0, 2.0, 3.0])
    write_splines(tmp_path / "two.json", [records, records], image="x.tif")
    assert len(json.loads((tmp_path / "two.json").read_text())["frames"]) == 2
    assert len(read_splines(tmp_path / "two.json")) == 2


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"format": "other", "splines": [{"points": POINTS_A}]}, "format"),
        ({"shapes": []}, "no 'splines'"),
        ({"splines": []}, "no splines"),
        ({"frames": {"splines": []}}, "'frames' must be a list"),
        ({"frames": [{"splines": [{"points": POINTS_A}]}, {"nothing": 1}]}, "frame 1"),
        (42, "expected a JSON object"),
        ("points", "expected a JSON object"),
        ([], "no splines"),
        ([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]], "[x, y] pairs"),
        ([[[1.0, 2.0]]], "at least 2"),
        ([[["a", "b"], [1, 2]]], "not numbers"),
        ({"splines": [{"points": POINTS_A, "widths": [1, 2]}]}, "widths"),
        ({"splines": [{"points": POINTS_A, "widths": [1, -2, 1]}]}, "widths"),
        ({"splines": [{"id": 5}]}, "spline 5"),
        ({"splines": [{"id": [1], "points": POINTS_A}]}, "spline 0: id [1] must be a number or a text"),
        ({"splines": [{"id": None, "points": POINTS_A}]}, "id None must be"),
        ({"splines": [{"id": True, "points": POINTS_A}]}, "id True must be"),
        ({"splines": [{"id": 3, "points": POINTS_A}, {"id": 3, "points": POINTS_B}]}, "spline id 3 appears twice"),
        (
            {"frames": [{"splines": [{"points": POINTS_A}, {"id": 0, "points": POINTS_B}]}]},
            "id 0 appears twice in frame 0",
        ),
    ],
)
def test_read_splines_rejects_wrong_content(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError) as info:
        read_splines(path)
    assert str(info.value).startswith(str(path)) and problem in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"splines": [{"points": [[0, 0], [1, NaN]]}]}', "JSON contains NaN"),
        ("[[[0, 0], [Infinity, 1]]]", "JSON contains Infinity"),
        ("[[[0, 0], [-Infinity, 1]]]", "JSON contains -Infinity"),
        ("[[[0, 0], [1e999, 1]]]", "JSON number 1e999 is out of the range"),  # would overflow to inf
        ('{"splines": [{"points": [[0, 0], [1, 1]], "widths": [1, 1e999]}]}', "JSON number 1e999 is out of the range"),
    ],
)
def test_read_splines_rejects_non_finite_numbers(tmp_path, text, problem):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match=problem):
        read_splines(path)


def test_read_splines_rejects_wrong_npy(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 5, 3)))
    with pytest.raises(InputError, match=r"shape \(2, 5, 3\)"):
        read_splines(tmp_path / "a.npy")
    np.save(tmp_path / "b.npy", np.zeros((2, 1, 2)))
    with pytest.raises(InputError, match="at least 2"):
        read_splines(tmp_path / "b.npy")
    (tmp_path / "c.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable .npy"):
        read_splines(tmp_path / "c.npy")
    with pytest.raises(InputError, match="not found"):
        read_splines(tmp_path / "none.npy")


def test_validate_splines_frames_and_margin(tmp_path):
    records = [{"id": 0, "points": np.array([[0.0, 0.0], [20.0, 10.0]]), "widths": None}]
    validate_splines("x.json", [records], (30, 40))
    validate_splines("x.json", [records, records], (2, 30, 40))
    with pytest.raises(InputError, match="2 frame"):
        validate_splines("x.json", [records, records], (3, 30, 40))
    near = [{"id": 3, "points": np.array([[-5.0, 0.0], [44.0, 34.0]]), "widths": None}]  # within 25% of 40
    validate_splines("x.json", [near], (30, 40))
    far = [{"id": 3, "points": np.array([[0.0, 0.0], [20.0, 45.0]]), "widths": None}]
    with pytest.raises(InputError, match="spline 3 has point .* far outside the 40x30 image"):
        validate_splines("x.json", [far], (30, 40))


# ---------------------------------------------------------------- intensity


def test_normalise_intensity_maps_percentiles_to_unit_range():
    image = np.random.default_rng(0).normal(100.0, 20.0, size=(64, 64))
    out, offset, span = normalise_intensity(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(np.percentile(out, [0.5, 99.5]), [0.0, 1.0], atol=1e-5)
    assert out.min() < 0.0 and out.max() > 1.0  # not clipped
    np.testing.assert_allclose(out * span + offset, image, rtol=1e-5)  # the returned pair undoes it
    ramp = np.linspace(-3.0, 7.0, 101)
    np.testing.assert_allclose(normalise_intensity(ramp, 0.0, 100.0)[0], np.linspace(0.0, 1.0, 101), atol=1e-6)
    np.testing.assert_allclose(normalise_intensity(ramp, 10.0, 90.0)[0][[10, 90]], [0.0, 1.0], atol=1e-6)


def test_normalise_intensity_of_a_constant_image_is_finite():
    out = normalise_intensity(np.full((5, 5), 3.0))[0]
    assert np.all(np.isfinite(out)) and np.all(out == 0.0)
