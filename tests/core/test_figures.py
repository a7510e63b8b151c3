"""The figures (core/figures.py and the methods' figure modules): valid PNGs of their fixed sizes,
legends naming what is drawn, the phases marked on loss curves, the mesh cross-sections against a
brute-force cut and trimesh's, and the lineages of tracks."""

import math
import subprocess
import sys

import numpy as np
import pytest
import trimesh
from PIL import Image

from invrender.core import figures
from invrender.core.figures import (
    INIT,
    LOSS_SIZE,
    OVERLAY_SIZE,
    PANELS_SIZE,
    RESULT,
    TRUTH,
    Layer,
    Panel,
    add_legend,
    image_overlay,
    label_colour,
    label_style,
    loss_figure,
    new_figure,
    panels_figure,
    phase_names,
    wants_log_scale,
    write_figure,
)
from invrender.core.geometry.meshes import Mesh
from invrender.core.geometry.polygons import mask_outlines
from invrender.core.geometry.sections import plane_section
from invrender.core.optim.loss_log import LossLog
from invrender.core.volumes import Volume


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        return image.size


def legend_names(figure) -> list[str]:
    [legend] = figure.legends
    return [text.get_text() for text in legend.get_texts()]


def ramp(height: int = 40, width: int = 60) -> np.ndarray:
    return np.add.outer(np.arange(height), np.arange(width)).astype(np.float64)


# ---------------------------------------------------------------- the building blocks


def test_loading_the_command_line_does_not_load_matplotlib():
    code = "import sys; from invrender import cli; cli._register_methods(); print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_an_overlay_is_a_png_of_its_fixed_size_with_a_legend_of_its_layers(tmp_path):
    curve = np.array([[5.0, 5.0], [30.0, 20.0], [80.0, 70.0]])  # leaves the 60 x 40 image
    overlay = image_overlay(ramp(), [Layer(INIT, [curve]), Layer(RESULT, [curve + 1])], "title", [(curve[0], "7", "w")])
    assert legend_names(overlay) == ["init", "result"]
    assert overlay.axes[0].get_title() == "title" and [t.get_text() for t in overlay.axes[0].texts] == ["7"]
    write_figure(tmp_path / "a.png", overlay)
    assert png_size(tmp_path / "a.png") == OVERLAY_SIZE
    # The axes keep the image's limits, whatever is drawn outside it.
    assert overlay.axes[0].get_xlim() == (-0.5, 59.5) and overlay.axes[0].get_ylim() == (39.5, -0.5)


def test_the_same_figure_gives_the_same_bytes(tmp_path):
    for name in ("a.png", "b.png"):
        write_figure(tmp_path / name, image_overlay(ramp(), [Layer(RESULT, [np.array([[1.0, 2.0], [9.0, 9.0]])])]))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_the_colour_convention():
    assert (TRUTH.name, TRUTH.linestyle) == ("truth", ":")
    assert (INIT.name, INIT.linestyle) == ("init", "--")
    assert (RESULT.name, RESULT.linestyle) == ("result", "-")
    assert len({TRUTH.colour, INIT.colour, RESULT.colour}) == 3
    # A label keeps its colour; neighbouring labels differ clearly (hue a golden-ratio turn apart).
    assert label_colour(7) == label_colour(7) and label_style(7, "cell 7").colour == label_colour(7)
    for label in range(1, 50):
        assert np.abs(np.subtract(label_colour(label), label_colour(label + 1))).max() > 0.3


def test_a_long_legend_counts_the_rest():
    styles = [label_style(label, f"cell {label}") for label in range(1, 21)]
    names = add_legend(new_figure(OVERLAY_SIZE), styles + styles[:3])  # repeated styles are named once
    assert len(names) == figures.MAX_LEGEND_ENTRIES
    assert names[:-1] == [f"cell {label}" for label in range(1, figures.MAX_LEGEND_ENTRIES)]
    assert names[-1] == f"and {20 - figures.MAX_LEGEND_ENTRIES + 1} more"
    figure = new_figure(OVERLAY_SIZE)
    assert add_legend(figure, []) == [] and not figure.legends


@pytest.mark.parametrize(
    "values, log",
    [([1.0, 100.0], True), ([1.0, 5.0], False), ([-1.0, 100.0], False), ([np.nan, 0.5, 50.0], True), ([3.0], False)],
)
def test_a_log_axis_for_positive_values_spanning_more_than_a_decade(values, log):
    assert wants_log_scale(np.array(values)) is log


def test_the_loss_log_marks_where_each_phase_begins_and_passes_every_step_on():
    seen = []
    log = LossLog(lambda *step: seen.append(step))
    for phase, steps in (("a", 3), ("b", 2), ("a", 2)):  # a phase cut short by its stop rule still ends
        for step in range(steps):
            log(phase, step, 10, float(step + 1))
    log("stage 2", 5, 10, 0.5)  # a phase whose first reported step is not 0 (e.g. resumed)
    assert log.phase_starts == [(0, "a"), (3, "b"), (5, "a"), (7, "stage 2")]
    assert log.losses == [1.0, 2.0, 3.0, 1.0, 2.0, 1.0, 2.0, 0.5]
    assert len(seen) == 8 and seen[-1] == ("stage 2", 5, 10, 0.5)


def test_the_loss_figure_marks_the_phases_and_takes_a_log_axis_when_it_spans_decades(tmp_path):
    log = LossLog()
    for phase, start in (("background", 100.0), ("shape", 10.0), ("all", 0.5)):
        for step in range(5):
            log(phase, step, 5, start / (step + 1))
    figure = loss_figure(log, "frame.tif: loss at every step")
    ax = figure.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"
    assert [t.get_text().strip() for t in ax.texts] == ["background", "shape", "all"]
    marks = [line.get_xdata()[0] for line in ax.lines[1:]]  # the loss, then a vertical line per phase
    assert marks == [0, 5, 10]
    assert legend_names(figure) == ["loss at each step", "phase start"]
    write_figure(tmp_path / "loss.png", figure)
    assert png_size(tmp_path / "loss.png") == LOSS_SIZE
    flat = LossLog()
    for step in range(4):
        flat("only", step, 4, 1.0 + step)
    assert loss_figure(flat, "").axes[0].get_yscale() == "linear"
    empty = loss_figure(LossLog(), "")  # e.g. a fit with no steps: the figure says so
    assert [t.get_text() for t in empty.axes[0].texts] == ["no optimisation steps"]


def test_many_phases_name_each_phase_once():
    starts = [(i * 10, name) for i in range(5) for name in ("fit", "refit", "polish")]  # 15 phases, e.g. 5 frames
    names = phase_names(starts)
    assert names[:3] == ["fit", "refit", "polish"] and names[3:] == [""] * 12
    assert phase_names(starts[:6]) == [name for _, name in starts[:6]]


def test_panels_have_a_legend_each_and_the_marks(tmp_path):
    panels = [Panel("loss", "loss", {"loss": [1.0, 0.1, 0.01]}), Panel("scores", "score", {"f1": [0.1, 0.5, 0.7]})]
    figure = panels_figure(panels, [1, 2, 3], "epoch", [(2, "best.pt")])
    assert [ax.get_yscale() for ax in figure.axes] == ["log", "linear"]
    assert [[t.get_text() for t in ax.get_legend().get_texts()] for ax in figure.axes] == [
        ["loss", "best.pt"],
        ["f1", "best.pt"],
    ]
    write_figure(tmp_path / "curves.png", figure)
    assert png_size(tmp_path / "curves.png") == PANELS_SIZE


def test_mask_outlines_trace_a_square():
    mask = np.zeros((8, 10), dtype=bool)
    mask[2:5, 3:7] = True  # rows 2..4, columns 3..6
    [outline] = mask_outlines(mask)
    assert np.allclose(outline[0], outline[-1])
    assert outline[:, 0].min() == 2.5 and outline[:, 0].max() == 6.5  # half a pixel outside the mask's pixels
    assert outline[:, 1].min() == 1.5 and outline[:, 1].max() == 4.5


# ---------------------------------------------------------------- cross-sections of meshes


def brute_force_section(vertices, faces, axis, position) -> list[np.ndarray]:
    """The cut of each triangle on its own: the points where its edges cross the plane."""
    segments = []
    for face in faces:
        corners = vertices[face]
        points = []
        for a, b in ((0, 1), (1, 2), (2, 0)):
            da, db = corners[a, axis] - position, corners[b, axis] - position
            if (da < 0) != (db < 0):
                points.append(corners[a] + da / (da - db) * (corners[b] - corners[a]))
        if points:
            segments.append(np.array(points))
    return segments


def canonical(segments) -> np.ndarray:
    """Segments (S, 2, 3) in an order-free form: each segment's ends sorted, then the segments."""
    ends = [sorted(map(tuple, np.round(np.asarray(s), 9))) for s in segments]
    return np.array(sorted(ends)).reshape(-1, 2, 3)


@pytest.fixture(scope="module")
def bumpy_sphere() -> trimesh.Trimesh:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=5.0)
    rng = np.random.default_rng(0)
    sphere.vertices = sphere.vertices * (1 + 0.1 * rng.random((len(sphere.vertices), 1)))
    return sphere


@pytest.mark.parametrize("axis, position", [(0, 0.37), (1, -2.9), (2, 4.1), (0, 9.0)])
def test_plane_sections_match_brute_force_and_trimesh(bumpy_sphere, axis, position):
    vertices, faces = np.asarray(bumpy_sphere.vertices), np.asarray(bumpy_sphere.faces)
    segments = plane_section(vertices, faces, axis, position)
    assert segments.shape[1:] == (2, 3) and np.all(segments[..., axis] == position)
    expected = canonical(brute_force_section(vertices, faces, axis, position))
    assert np.allclose(canonical(segments), expected, atol=1e-8)
    normal = np.eye(3)[axis]
    reference = trimesh.intersections.mesh_plane(bumpy_sphere, normal, normal * position)
    assert np.allclose(canonical(segments), canonical(reference), atol=1e-8)
    if segments.size:  # a closed surface cuts into closed curves: every end is shared by two segments
        _, counts = np.unique(np.round(segments.reshape(-1, 3), 9), axis=0, return_counts=True)
        assert np.all(counts == 2)


def test_a_plane_through_vertices_cuts_a_sphere_into_one_closed_circle():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=3.0)  # has vertices on the plane x = 0
    vertices = np.asarray(sphere.vertices)
    assert np.any(vertices[:, 0] == 0)
    segments = plane_section(vertices, np.asarray(sphere.faces), 0, 0.0)
    _, counts = np.unique(np.round(segments.reshape(-1, 3), 9), axis=0, return_counts=True)
    assert np.all(counts == 2)
    length = np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1).sum()
    assert 0.99 * 2 * math.pi * 3.0 < length <= 2 * math.pi * 3.0


# ---------------------------------------------------------------- the methods' figures


def test_mesh_fit_slices_show_each_cell_of_a_foam(tmp_path):
    from invrender.methods.mesh_fit.slices import SLICES_SIZE, mesh_slices

    boxes = [trimesh.creation.box([4.0, 6.0, 6.0]), trimesh.creation.box([4.0, 6.0, 6.0])]
    boxes[0].apply_translation([8.0, 10.0, 12.0])
    boxes[1].apply_translation([12.0, 10.0, 12.0])
    vertices = np.concatenate([b.vertices for b in boxes])
    faces = np.concatenate([boxes[0].faces, boxes[1].faces + len(boxes[0].vertices)])
    materials = np.array([[1, 0]] * len(boxes[0].faces) + [[2, 0]] * len(boxes[1].faces))
    stack = np.random.default_rng(0).random((12, 10, 14))  # z y x, voxel size 2, 2, 1.5
    figure = mesh_slices(stack, stack * 2, (2.0, 2.0, 1.5), Mesh(vertices, faces, materials), "foam.tif")
    assert legend_names(figure) == ["cell 1", "cell 2"]
    stack_xy = figure.axes[0]
    assert stack_xy.get_xlim() == (-0.75, 14 * 1.5 - 0.75) and stack_xy.get_ylim() == (10 * 2 - 1, -1)  # physical
    assert [ax.get_title() for ax in figure.axes[:3]] == ["stack, z = 12", "stack, y = 10", "stack, x = 10.5"]
    # Both cells' sections on the z and y slices; the x slice (x = 10.5) cuts the second cell only.
    assert [len(ax.collections) for ax in figure.axes] == [2, 2, 1, 2, 2, 1]
    write_figure(tmp_path / "slices.png", figure)
    assert png_size(tmp_path / "slices.png") == SLICES_SIZE
    single = mesh_slices(stack, stack, (2.0, 2.0, 1.5), Mesh(vertices, faces), "cell.tif")
    assert legend_names(single) == ["result"]


def test_spine_slices_name_the_vertebrae_and_show_the_truth(tmp_path):
    from invrender.methods.spine_seg.slices import SLICES_SIZE, slice_figure

    labels = np.zeros((40, 40, 60), dtype=np.int16)  # RAS voxels of 2 mm
    labels[15:25, 15:25, 10:25] = 20  # L1
    labels[15:25, 15:25, 30:45] = 21  # L2
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    volume = Volume(np.where(labels > 0, 400.0, 0.0) + np.random.default_rng(0).random(labels.shape), affine)
    centroids = np.array([[40.0, 40.0, 35.0], [40.0, 40.0, 75.0]])
    figure = slice_figure(volume, labels, centroids, truth=labels, title="ct.nii.gz")
    assert legend_names(figure) == ["truth", "L1", "L2"]
    for ax in figure.axes:
        assert sorted(t.get_text() for t in ax.texts) == ["L1", "L2"]
    write_figure(tmp_path / "slices.png", figure)
    assert png_size(tmp_path / "slices.png") == SLICES_SIZE


def test_cell_overlay_writes_each_cell_label_and_the_frame():
    from invrender.methods.cell_seg.figures import contour_overlay

    square = [[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0]]
    record = {
        "frame": 7,
        "cells": [
            {"label": 3, "centre": [15.0, 15.0], "points": square},
            {"label": 5, "centre": [35.0, 15.0], "points": [[x + 20, y] for x, y in square]},
        ],
    }
    figure = contour_overlay(ramp(), record, "01")
    assert figure.axes[0].get_title() == "01: frame 7, 2 cells"
    assert [t.get_text() for t in figure.axes[0].texts] == ["3", "5"] and legend_names(figure) == ["cell 3", "cell 5"]


def test_tracks_take_the_hue_of_their_lineage(tmp_path):
    from invrender.methods.cell_seg.figures import lineage_roots, tracks_figure

    tracks = np.array([[1, 0, 1, 0], [2, 2, 2, 1], [3, 2, 3, 1], [4, 3, 3, 2], [5, 0, 3, 0]])
    assert lineage_roots(tracks) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 5}
    centres = {1: [10, 10], 2: [12, 8], 3: [8, 12], 4: [14, 6], 5: [40, 30]}
    alive = {0: [1, 5], 1: [1, 5], 2: [2, 3, 5], 3: [3, 4, 5]}
    records = [
        {"frame": t, "cells": [{"label": label, "centre": np.add(centres[label], t).tolist()} for label in labels]}
        for t, labels in alive.items()
    ]
    figure = tracks_figure(np.stack([ramp()] * 4), records, tracks, "01")
    assert legend_names(figure) == ["lineage 1", "lineage 5"]
    ax = figure.axes[0]
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours["2"] == colours["4"] == colours["1"] == label_colour(1) != colours["5"]
    # A daughter's path starts where its mother's ended.
    paths = [segment for collection in ax.collections for segment in collection.get_segments()]
    daughter = next(p for p in paths if np.allclose(p[-1], np.add(centres[4], 3)))
    assert np.allclose(daughter[0], np.add(centres[2], 2))
    assert "5 tracks, 2 division(s)" in ax.get_title()
    write_figure(tmp_path / "tracks.png", figure)
    assert png_size(tmp_path / "tracks.png") == OVERLAY_SIZE


def test_acdr_sheet_and_curves(tmp_path):
    from invrender.methods.acdr.figures import SHEET_SIZE, example_sheet, training_curves

    masks = np.zeros((3, 24, 24), dtype=bool)
    masks[:, 6:18, 6:18] = True
    polygons = np.stack([[np.array([[5.0, 5.0], [19.0, 5.0], [19.0, 19.0], [5.0, 19.0]])] * 4] * 3)  # (3, 4, 4, 2)
    sheet = example_sheet(np.random.default_rng(0).random((3, 24, 24)), masks, masks, polygons)
    assert legend_names(sheet) == ["truth", "init", "result"] and len(sheet.axes) == 4  # a 2 x 2 grid
    assert legend_names(example_sheet(masks * 1.0, masks, masks, None)) == ["truth", "result"]
    write_figure(tmp_path / "examples.png", sheet)
    assert png_size(tmp_path / "examples.png") == SHEET_SIZE
    scores = ("f1", "miou", "miou_smoothed", "wcov", "boundf")
    history = [{"epoch": e, "loss": 10.0**-e, **{f"val_{k}": 0.01 * e**3 for k in scores}} for e in (1, 2, 3)]
    curves = training_curves(history, best_epoch=3)
    assert [ax.get_title() for ax in curves.axes] == ["training loss", "validation"]
    assert [ax.get_yscale() for ax in curves.axes] == ["log", "linear"]  # scores (0..1) on a linear axis
    assert curves.axes[-1].get_xlabel() == "epoch"
