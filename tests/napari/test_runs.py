"""What the plugin's widgets run, without a viewer: the Python API on layers' data, its results as
layers; and the round trip of a correction: a result opened in napari, one spline dragged onto its
body, saved through the plugin's writer and refined again from it on the command line."""

import json

import numpy as np
import pytest
import tifffile
import trimesh

import invrender
from helpers import FAST, SPINE_SHORT, VERSE_MASK, fraction_of_indices_on_surface, l3_l4_ct, make_input
from invrender.cli import main
from invrender.core.geometry.spline_io import read_splines, write_splines
from invrender.core.io import write_tiff
from invrender.core.volumes import read_centroids, read_volume, vertebra_code, world_to_index
from invrender.methods.cell_seg.synth import write_cell_dataset
from invrender.methods.spline_refine.synth import make_frame
from invrender.napari.readers import read_nifti_file, read_splines_file
from invrender.napari.runs import (
    centroid_labels,
    fit_mesh_layers,
    refine_splines_layers,
    segment_cells_layers,
    segment_spine_layers,
)
from invrender.napari.shapes import splines_layer
from invrender.napari.writers import write_splines_layer


def test_refining_a_shapes_layer_gives_the_apis_splines_as_a_layer(tmp_path):
    image_path, records = make_input(tmp_path, "worms")
    image = tifffile.imread(image_path)
    paths, attributes, _ = splines_layer([records], "worms init")
    layers = refine_splines_layers(image, paths, attributes, name="worms", overrides=FAST, device="cpu", seed=1)
    result = invrender.refine_splines(image, records, overrides=FAST, device="cpu", seed=1)
    (refined, refined_attributes, kind), (render, render_attributes, render_kind) = layers
    assert kind == "shapes" and refined_attributes["name"] == "worms refined"
    assert len(refined) == len(result.splines[0]) == len(records)
    for path, record in zip(refined, result.splines[0]):
        np.testing.assert_allclose(path, record["points"][:, ::-1], atol=1e-6)
    assert render_kind == "image" and render_attributes["visible"] is False
    np.testing.assert_allclose(render, result.render, atol=1e-6)


def test_fitting_a_stack_gives_the_apis_mesh_over_the_stack(tmp_path):
    ellipsoid = trimesh.creation.icosphere(subdivisions=2)
    ellipsoid.vertices *= [1.0, 0.8, 0.6]
    source = tmp_path / "blob.ply"
    source.write_bytes(ellipsoid.export(file_type="ply"))
    assert main(["synth", "mesh", str(source), "--size", "16", "--sigma", "1", "--out", str(tmp_path)]) == 0
    stack = tifffile.imread(tmp_path / "blob.tif")
    short = ["phases.0.steps=3", "init.subdivisions=1"]
    units = ("micrometer",) * 3  # the stack layer's
    layers = fit_mesh_layers(stack, (1.5, 1.0, 1.0), name="blob", units=units, overrides=short, seed=2)
    result = invrender.fit_mesh(stack, voxel_size=(1.5, 1.0, 1.0), overrides=short, device="cpu", seed=2)
    ((vertices, faces), surface_attributes, kind), (render, render_attributes, _) = layers
    assert kind == "surface" and surface_attributes["name"] == "blob mesh"
    assert surface_attributes["units"] == render_attributes["units"] == units
    np.testing.assert_allclose(vertices, result.mesh.vertices[:, ::-1], atol=1e-9)
    np.testing.assert_array_equal(faces, result.mesh.faces)
    assert render_attributes["scale"] == (1.5, 1.0, 1.0)
    np.testing.assert_allclose(render, result.render, atol=1e-6)


def test_segmenting_a_time_lapse_gives_labels_and_tracks(tmp_path):
    write_cell_dataset(tmp_path, frames=2, size=48, cells=2, divisions=0, seed=3)
    frames = np.stack([tifffile.imread(tmp_path / "01" / f"t{t:03d}.tif") for t in range(2)])
    tiny = ["phases.0.steps=2", "phases.1.steps=3", "rounds=1"]
    (labels, _, kind), (tracks, track_attributes, track_kind) = segment_cells_layers(
        frames, name="movie", overrides=tiny, seed=0
    )
    result = invrender.segment_cells(frames, overrides=tiny, seed=0)
    assert kind == "labels" and track_kind == "tracks"
    np.testing.assert_array_equal(labels, result.labels)
    for record in result.records:  # one track point per cell and frame, at the cell's centre (y, x)
        for cell in record["cells"]:
            row = tracks[(tracks[:, 0] == cell["label"]) & (tracks[:, 1] == record["frame"])]
            np.testing.assert_allclose(row[:, 2:], [cell["centre"][::-1]])
    assert len(tracks) == sum(len(record["cells"]) for record in result.records)
    [(one_labels, _, _)] = segment_cells_layers(frames[0], name="frame", overrides=tiny, seed=0)
    assert one_labels.shape == frames.shape[1:]


def mean_distance(points: np.ndarray, curve: np.ndarray) -> float:
    """Mean over `points` (n, 2) of the distance (px) to the nearest of the densely sampled `curve` (m, 2)."""
    return float(np.linalg.norm(points[:, None] - curve[None], axis=-1).min(axis=1).mean())


def test_a_spline_dragged_onto_its_body_in_napari_refines_to_a_better_fit(tmp_path):
    napari = pytest.importorskip("napari")
    image, bodies = make_frame(np.random.default_rng(4), 2, size=64, crossing=0.0)
    write_tiff(tmp_path / "worms.tif", image)
    shift = np.array([9.0, -7.0])  # spline 1's init lies off its body, beyond what a short fit recovers
    init = [
        {"id": i, "points": body["points"][::9] + (shift if i == 1 else 0.0), "widths": None}
        for i, body in enumerate(bodies)
    ]
    write_splines(tmp_path / "worms.json", [init], image="worms.tif")
    refine = ["spline-refine", str(tmp_path / "worms.tif"), "--device", "cpu", "--seed", "0", "-q", *FAST]
    assert main([*refine, "--init", str(tmp_path / "worms.json"), "--out", str(tmp_path / "first")]) == 0
    [first] = read_splines(tmp_path / "first" / "worms.splines.json")

    # in napari: open the result, select spline 1 and drag it by the offset the user sees
    [(data, attributes, _)] = read_splines_file(str(tmp_path / "first" / "worms.splines.json"))
    layer = napari.layers.Shapes(data, **attributes)
    paths = [np.array(p) for p in layer.data]
    paths[1] -= np.round(shift[::-1])  # (y, x), by whole pixels, as a hand would
    layer.data = paths
    data, attributes, _ = layer.as_layer_data_tuple()
    write_splines_layer(str(tmp_path / "corrected.json"), data, attributes)

    assert main([*refine, "--init", str(tmp_path / "corrected.json"), "--out", str(tmp_path / "second")]) == 0
    [second] = read_splines(tmp_path / "second" / "worms.splines.json")
    truth = bodies[1]["points"]
    before, after = mean_distance(first[1]["points"], truth), mean_distance(second[1]["points"], truth)
    assert after < 0.5 * before, (before, after)  # seen: 5.3 -> 0.4 px
    losses = [
        json.loads((tmp_path / run / "worms.splines.json").read_text())["splines"][1]["loss"]
        for run in ("first", "second")
    ]
    assert losses[1] < losses[0], losses  # the spline's own residual (seen: 0.056 -> 0.016): it renders over its body
    assert mean_distance(second[0]["points"], bodies[0]["points"]) < before  # the other spline is still on its body


# ---------------------------------------------------------------- spine-seg

needs_sample = pytest.mark.skipif(not VERSE_MASK.is_file(), reason=f"VerSe sample not found at {VERSE_MASK}")


@pytest.fixture(scope="module")
def lps_ct(tmp_path_factory):
    """A 3 mm synthetic CT of L3-L4 stored in LPS order (as a CT converted from DICOM is), opened
    as the plugin opens it, and its vertebral-body centroids as the CT layer's voxel indices."""
    folder = tmp_path_factory.mktemp("ct")
    centroids = l3_l4_ct(folder, "spine", "LPS", spacing=3.0)
    [(volume, attributes, _)] = read_nifti_file(str(folder / "spine_ct.nii.gz"))
    affine = attributes["metadata"]["affine"]
    world = read_centroids(centroids, read_volume(folder / "spine_ct.nii.gz"))  # {label: (3,) mm}
    return volume, attributes, world, {label: world_to_index(affine, point[None])[0] for label, point in world.items()}


@needs_sample
def test_segmenting_a_spine_gives_the_apis_labels_and_meshes_over_the_ct(lps_ct):
    """Unnamed points (L3 the top one) and named ones in another order give the API's labels on the
    CT's grid and scale; the vertebra meshes lie on their labels' surfaces as napari shows both."""
    volume, attributes, world, index = lps_ct
    affine = attributes["metadata"]["affine"]
    assert (np.diag(affine)[:2] < 0).all()  # stored right-to-left and anterior-to-posterior
    result = invrender.segment_spine(volume, affine, world, overrides=SPINE_SHORT, seed=3)
    points = np.stack([index[22], index[23]])
    unnamed = segment_spine_layers(volume, affine, points, name="spine", top="L3", overrides=SPINE_SHORT, seed=3)
    named = segment_spine_layers(
        volume, affine, points[::-1], name="spine", names=["L4", 22], overrides=SPINE_SHORT, seed=3
    )
    for layers in (unnamed, named):
        (labels, labels_attributes, kind), *surfaces = layers
        assert kind == "labels" and labels_attributes["name"] == "spine labels"
        np.testing.assert_array_equal(labels, result.labels)
        assert labels_attributes["scale"] == attributes["scale"]
        assert [(a["name"], k) for _, a, k in surfaces] == [("spine L3", "surface"), ("spine L4", "surface")]
        assert all(a["units"] == attributes["units"] for _, a, _ in surfaces)
        for ((vertices, _), _, _), label in zip(surfaces, (22, 23)):
            on = fraction_of_indices_on_surface(vertices / np.asarray(attributes["scale"]), labels, label)
            assert on >= 0.95, f"{label}: only {on:.1%} of the vertices on the label's surface in napari"


def test_unnamed_centroids_are_named_from_the_top_down():
    world = np.array([[0.0, 0.0, 10.0], [0.0, 5.0, 50.0], [2.0, 0.0, 30.0]])  # z: superior
    assert centroid_labels(world, "T12") == [21, 19, 20]  # L2, T12, L1
    assert centroid_labels(world[:1], "S1") == [26]
    with pytest.raises(ValueError, match="run past S1"):
        centroid_labels(world, "L5")


@pytest.mark.parametrize(("name", "code"), [("L3", 22), ("l3", 22), (22, 22), ("22", 22), (22.0, 22), ("T13", 28)])
def test_a_vertebra_is_named_or_coded(name, code):
    assert vertebra_code(name) == code


@pytest.mark.parametrize("name", ["X9", "L7", 27, 2.5, "", None])
def test_anything_else_is_no_vertebra(name):
    with pytest.raises(ValueError, match="is not a vertebra"):
        vertebra_code(name)


@needs_sample
def test_a_ct_layer_without_its_affine_or_a_vertebra_named_twice_is_refused(lps_ct):
    volume, attributes, _, index = lps_ct
    points = np.stack([index[22], index[23]])
    with pytest.raises(ValueError, match="spine: no affine in the layer's metadata: open the CT with invrender's"):
        segment_spine_layers(volume, None, points, name="spine")
    with pytest.raises(ValueError, match=r"a vertebra is named twice \(L3, L3\)"):
        segment_spine_layers(volume, attributes["metadata"]["affine"], points, name="spine", names=["L3", "l3"])
