"""The napari plugin's splines and polygons: invrender's files read as Shapes layer data, and a
Shapes layer written back as a splines file, unchanged or after the edits a user makes in napari
(through napari's own Shapes layer where one is needed)."""

import numpy as np
import pytest

from invrender.core.geometry.polygons import write_polygons
from invrender.core.geometry.spline_io import read_splines, write_splines
from invrender.napari.readers import get_json_reader, read_polygons_file, read_splines_file
from invrender.napari.shapes import HAIRLINE, splines_from_shapes
from invrender.napari.writers import write_splines_layer


def spline_records(seed: int, n: int = 3, k: int = 6, widths: bool = True) -> list[dict]:
    """`n` random splines of `k` points [x, y] in a 64 x 48 image, with tapered widths (px)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        points = np.cumsum(rng.uniform(1.0, 5.0, (k, 2)), axis=0) + [rng.uniform(0, 30), rng.uniform(0, 20)]
        w = 2.0 + 4.0 * np.sin(np.linspace(0.1, np.pi - 0.1, k)) + i if widths else None
        records.append({"id": 10 + i, "points": points, "widths": w})
    return records


def shapes_layer(layer_data):
    """napari's Shapes layer made from layer data, as napari makes it when it opens a file."""
    napari = pytest.importorskip("napari")
    data, attributes, kind = layer_data
    assert kind == "shapes"
    return napari.layers.Shapes(data, **attributes)


def write_layer(layer, path) -> list[list[dict]]:
    """The layer saved through the plugin's writer, as napari calls it, read back by invrender."""
    data, attributes, _ = layer.as_layer_data_tuple()
    assert write_splines_layer(str(path), data, attributes) == [str(path)]
    return read_splines(path)


def assert_same_splines(got: list[list[dict]], want: list[list[dict]]) -> None:
    assert len(got) == len(want)
    for got_frame, want_frame in zip(got, want):
        assert [r["id"] for r in got_frame] == [r["id"] for r in want_frame]
        for g, w in zip(got_frame, want_frame):
            np.testing.assert_allclose(g["points"], w["points"], atol=1e-9)
            if w["widths"] is None:
                assert g["widths"] is None
            else:
                np.testing.assert_allclose(g["widths"], w["widths"], atol=1e-9)


def test_a_splines_file_reads_as_paths_in_row_column_order_with_its_widths(tmp_path):
    records = spline_records(0)
    path = tmp_path / "worms.splines.json"
    write_splines(path, [records], image="worms.tif")
    assert get_json_reader(str(path)) is read_splines_file
    [(paths, attributes, kind)] = read_splines_file(str(path))
    assert kind == "shapes" and attributes["shape_type"] == "path" and attributes["name"] == "worms splines"
    assert len(paths) == len(records)
    for vertices, record in zip(paths, records):
        np.testing.assert_array_equal(vertices, record["points"][:, ::-1])  # (y, x) = (row, column)
    assert attributes["edge_width"] == pytest.approx([np.mean(r["widths"]) for r in records])
    assert list(attributes["features"]["id"]) == [10, 11, 12]


def test_a_stack_reads_as_one_path_per_spline_and_frame_with_the_frame_first(tmp_path):
    frames = [spline_records(1, n=2), spline_records(2, n=3, widths=False)]
    path = tmp_path / "movie.splines.json"
    write_splines(path, frames, image="movie.tif")
    [(paths, attributes, _)] = read_splines_file(str(path))
    assert len(paths) == 5
    for vertices, frame, record in zip(paths, [0, 0, 1, 1, 1], [*frames[0], *frames[1]]):
        np.testing.assert_array_equal(vertices[:, 0], frame)
        np.testing.assert_array_equal(vertices[:, 1:], record["points"][:, ::-1])
    assert attributes["edge_width"][2:] == [HAIRLINE] * 3  # an init without widths: a thin line


@pytest.mark.parametrize("frames", [[spline_records(3)], [spline_records(4, n=2), spline_records(5, n=1)]])
def test_a_layer_left_as_read_writes_the_same_splines(tmp_path, frames):
    path = tmp_path / "in.json"
    write_splines(path, frames, image="in.tif")
    layer = shapes_layer(read_splines_file(str(path))[0])
    assert_same_splines(write_layer(layer, tmp_path / "out.json"), frames)


def test_a_detectors_fields_survive_an_edit_in_napari(tmp_path):
    """Fields of a spline besides id, points and widths (a detector's score) are written back with
    it after its path was moved; a path drawn in napari has none."""
    records = [{**r, "score": 0.1 * i, "track": f"w{i}"} for i, r in enumerate(spline_records(3, n=2))]
    path = tmp_path / "init.json"
    write_splines(path, [records], image="worms.tif")
    layer = shapes_layer(read_splines_file(str(path))[0])
    paths = [np.array(p) for p in layer.data]
    paths[1][0] += [1.0, 1.0]
    layer.data = paths
    layer.add_paths([np.array([[5.0, 5.0], [9.0, 12.0]])])
    [written] = write_layer(layer, tmp_path / "edited.json")
    assert [(r.get("score"), r.get("track")) for r in written] == [(0.0, "w0"), (0.1, "w1"), (None, None)]


def test_a_users_edits_are_written_moved_redrawn_removed_and_new_paths(tmp_path):
    records = spline_records(6, n=3, k=6)
    path = tmp_path / "init.json"
    write_splines(path, [records], image="worms.tif")
    layer = shapes_layer(read_splines_file(str(path))[0])
    paths = [np.array(p) for p in layer.data]
    paths[0][2] += [3.0, -2.0]  # a point dragged: the same number of points keeps the widths
    redrawn = np.linspace(paths[1][0], paths[1][-1], 11)  # re-drawn with 11 points along its chord
    paths[1] = redrawn
    layer.data = paths
    layer.selected_data = {2}
    layer.remove_selected()
    drawn = np.array([[5.0, 5.0], [9.0, 12.0], [14.0, 20.0]])  # (y, x)
    layer.add_paths([drawn])

    [written] = write_layer(layer, tmp_path / "corrected.json")
    assert [r["id"] for r in written] == [10, 11, 12]  # the drawn path gets the next free id
    moved = records[0]["points"].copy()
    moved[2] += [-2.0, 3.0]  # [x, y]
    np.testing.assert_allclose(written[0]["points"], moved)
    np.testing.assert_allclose(written[0]["widths"], records[0]["widths"])
    np.testing.assert_allclose(written[1]["points"], redrawn[:, ::-1])
    # the widths along the re-drawn path: the old profile at the same fractions of the length
    old = records[1]
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(old["points"], axis=0), axis=1))])
    np.testing.assert_allclose(written[1]["widths"], np.interp(np.linspace(0, 1, 11), arc / arc[-1], old["widths"]))
    np.testing.assert_allclose(written[2]["points"], drawn[:, ::-1])
    assert written[2]["widths"] is None  # drawn in napari: an init, without widths


def test_paths_drawn_in_a_new_layer_are_written_as_an_init(tmp_path):
    napari = pytest.importorskip("napari")
    layer = napari.layers.Shapes(
        [np.array([[1.0, 2.0], [3.0, 8.0]]), np.array([[9.0, 9.0], [12.0, 2.0]])], shape_type="path"
    )
    [written] = write_layer(layer, tmp_path / "init.json")
    assert [r["id"] for r in written] == [0, 1]
    np.testing.assert_allclose(written[1]["points"], [[9.0, 9.0], [2.0, 12.0]])
    assert all(r["widths"] is None for r in written)


def test_the_writer_refuses_what_is_not_a_splines_file():
    square = np.array([[0.0, 0.0], [0.0, 4.0], [4.0, 4.0], [4.0, 0.0]])
    with pytest.raises(ValueError, match="shape 0 is a polygon"):
        splines_from_shapes([square], {"shape_type": ["polygon"]})
    across = np.array([[0.0, 1.0, 1.0], [1.0, 5.0, 5.0]])
    with pytest.raises(ValueError, match="not in one frame"):
        splines_from_shapes([across], {"shape_type": ["path"]})
    second_frame_only = np.array([[1.0, 1.0, 1.0], [1.0, 5.0, 5.0]])
    with pytest.raises(ValueError, match=r"frame\(s\) \[0\] have no path"):
        splines_from_shapes([second_frame_only], {"shape_type": ["path"]})
    with pytest.raises(ValueError, match="no paths"):
        splines_from_shapes([], {})


def test_acdr_polygons_read_as_closed_polygons(tmp_path):
    polygons = [np.array([[4.0, 5.0], [20.0, 6.0], [12.0, 18.0]]), np.array([[30.0, 30.0], [40.0, 31.0], [35.0, 44.0]])]
    path = tmp_path / "cells.polygon.json"
    write_polygons(path, polygons, image="cells.png")
    assert get_json_reader(str(path)) is read_polygons_file
    [(shapes, attributes, kind)] = read_polygons_file(str(path))
    assert kind == "shapes" and attributes["shape_type"] == "polygon" and attributes["name"] == "cells polygon"
    for got, want in zip(shapes, polygons):
        np.testing.assert_array_equal(got, want[:, ::-1])


def test_other_json_is_left_to_other_readers(tmp_path):
    other = tmp_path / "manifest.json"
    other.write_text('{"kind": "run"}')
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert get_json_reader(str(other)) is None
    assert get_json_reader(str(broken)) is None
    assert get_json_reader([str(other), str(broken)]) is None
