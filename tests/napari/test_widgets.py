"""The plugin's widgets in a napari viewer (napari's `make_napari_viewer` fixture): docked from the
manifest, run on the viewer's layers in a worker thread, their results added as layers.

napari's canvas needs OpenGL, which Qt's offscreen platform does not give: these tests need a
display, a virtual one headless (pytest-xvfb starts Xvfb when it is installed, or run pytest under
`xvfb-run -a`), a Qt binding and pytest-qt (`pip install -e ".[napari-test]"`). They are skipped
without them."""

import os

import numpy as np
import pytest
import tifffile
import trimesh

from helpers import FAST, SPINE_SHORT, VERSE_MASK, l3_l4_ct, make_input, write_init
from invrender.cli import main

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
try:
    import qtpy  # noqa: F401  (raises its own error, not ImportError, when no Qt binding is installed)
except Exception as err:
    pytest.skip(f"no Qt binding ({err})", allow_module_level=True)
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    pytest.skip("no display for napari's OpenGL canvas (install Xvfb, or run under xvfb-run)", allow_module_level=True)

#: Long enough for a short fit on 2 cores shared with other work.
TIMEOUT_MS = 180_000


def dock(viewer, name: str):
    _, widget = viewer.window.add_plugin_dock_widget("invrender", name)
    return widget


def test_refine_splines_widget(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    image_path, records = make_input(tmp_path, "worms")
    viewer.open(str(image_path), plugin="invrender")
    viewer.open(str(write_init(tmp_path / "init.json", records)), plugin="invrender")
    widget = dock(viewer, "Refine splines")
    widget(
        viewer=viewer, image=viewer.layers["worms"], init=viewer.layers["init"], overrides=" ".join(FAST), device="cpu"
    )
    qtbot.waitUntil(lambda: "worms refined" in viewer.layers, timeout=TIMEOUT_MS)
    refined = viewer.layers["worms refined"]
    assert refined.nshapes == len(records)
    assert (
        "worms render" in viewer.layers
        and viewer.layers["worms render"].data.shape == tifffile.imread(image_path).shape
    )


def test_fit_mesh_widget(make_napari_viewer, qtbot, tmp_path):
    from napari.utils import progress

    viewer = make_napari_viewer()
    source = tmp_path / "blob.ply"
    source.write_bytes(trimesh.creation.icosphere(subdivisions=2).export(file_type="ply"))
    assert main(["synth", "mesh", str(source), "--size", "16", "--sigma", "1", "--out", str(tmp_path)]) == 0
    [stack] = viewer.open(str(tmp_path / "blob.tif"), plugin="invrender")
    widget = dock(viewer, "Fit a mesh")
    worker = widget(viewer=viewer, stack=stack, overrides="phases.0.steps=2 init.subdivisions=1")
    qtbot.waitUntil(lambda: "blob mesh" in viewer.layers, timeout=TIMEOUT_MS)
    vertices = viewer.layers["blob mesh"].data[0]
    assert np.all(vertices >= 0) and np.all(vertices <= np.array(stack.data.shape) - 1)
    bar = worker.progress_bar  # it followed the fit to its last step, and is closed
    assert bar.total > 0 and bar.n == bar.total and "loss" in bar.desc
    qtbot.waitUntil(lambda: bar not in progress._all_instances, timeout=TIMEOUT_MS)


def test_segment_cells_widget(make_napari_viewer, qtbot, tmp_path):
    from invrender.methods.cell_seg.synth import write_cell_dataset

    viewer = make_napari_viewer()
    write_cell_dataset(tmp_path, frames=2, size=48, cells=2, divisions=0, seed=3)
    frames = np.stack([tifffile.imread(tmp_path / "01" / f"t{t:03d}.tif") for t in range(2)])
    layer = viewer.add_image(frames, name="movie")
    widget = dock(viewer, "Segment cells")
    widget(viewer=viewer, frames=layer, overrides="phases.0.steps=2 phases.1.steps=3 rounds=1")
    qtbot.waitUntil(lambda: "movie tracks" in viewer.layers, timeout=TIMEOUT_MS)
    assert viewer.layers["movie labels"].data.shape == frames.shape


@pytest.mark.skipif(not VERSE_MASK.is_file(), reason=f"VerSe sample not found at {VERSE_MASK}")
def test_segment_spine_widget(make_napari_viewer, qtbot, tmp_path):
    """On a CT stored in LPS order and its VerSe centroids (L2-L5), both opened with the plugin, the
    points named by their `label` feature; the fit's distance queries in spawned worker processes,
    as by default."""
    viewer = make_napari_viewer()
    l3_l4_ct(tmp_path, "spine", "LPS", spacing=3.0)
    [ct] = viewer.open(str(tmp_path / "spine_ct.nii.gz"), plugin="invrender")
    [points] = viewer.open(str(tmp_path / "spine_ctd.json"), plugin="invrender")
    assert list(points.features["label"]) == ["L2", "L3", "L4", "L5"]
    widget = dock(viewer, "Segment a spine")
    overrides = [o for o in SPINE_SHORT if not o.startswith("sdf.")]
    widget(viewer=viewer, ct=ct, centroids=points, overrides=" ".join(overrides))
    qtbot.waitUntil(lambda: "spine_ct labels" in viewer.layers, timeout=TIMEOUT_MS)
    labels = viewer.layers["spine_ct labels"]
    assert labels.data.shape == ct.data.shape and tuple(labels.scale) == tuple(ct.scale)
    assert {22, 23} <= set(np.unique(labels.data)) <= {0, 21, 22, 23, 24}
    assert {"spine_ct L3", "spine_ct L4"} <= {layer.name for layer in viewer.layers}


def test_cancel_stops_a_running_fit_at_its_next_step(make_napari_viewer, qtbot, tmp_path):
    """The full schedule takes a while; Cancel, pressed once it has begun, stops it, says so in a
    notification and adds no layer."""
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    image_path, records = make_input(tmp_path, "worms")
    viewer.open(str(image_path), plugin="invrender")
    viewer.open(str(write_init(tmp_path / "init.json", records)), plugin="invrender")
    widget = dock(viewer, "Refine splines")
    [cancel] = [w for w in widget if getattr(w, "text", None) == "Cancel"]
    worker = widget(viewer=viewer, image=viewer.layers["worms"], init=viewer.layers["init"], device="cpu")
    qtbot.waitUntil(lambda: worker.progress_bar.n > 0, timeout=TIMEOUT_MS)
    cancel.native.click()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=TIMEOUT_MS)
    qtbot.waitUntil(
        lambda: any("worms: cancelled at" in str(n.message) for n in notification_manager.records), timeout=TIMEOUT_MS
    )
    assert [layer.name for layer in viewer.layers] == ["worms", "init"]


def test_an_error_is_shown_as_a_notification_and_adds_nothing(make_napari_viewer, qtbot, tmp_path):
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    image_path, records = make_input(tmp_path, "worms")
    viewer.open(str(image_path), plugin="invrender")
    viewer.open(str(write_init(tmp_path / "init.json", records)), plugin="invrender")
    widget = dock(viewer, "Refine splines")
    worker = widget(
        viewer=viewer, image=viewer.layers["worms"], init=viewer.layers["init"], overrides="prior.nowhere=1"
    )
    qtbot.waitUntil(
        lambda: any("prior.nowhere" in str(n.message) for n in notification_manager.records), timeout=TIMEOUT_MS
    )
    qtbot.waitUntil(lambda: not worker.is_running, timeout=TIMEOUT_MS)
    assert [layer.name for layer in viewer.layers] == ["worms", "init"]


def test_the_spine_widget_refuses_points_that_are_not_3d(make_napari_viewer, qtbot):
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    ct = viewer.add_image(np.zeros((8, 8, 8), dtype=np.float32), name="ct")
    points = viewer.add_points(np.array([[1.0, 2.0], [3.0, 4.0]]), name="flat")
    assert dock(viewer, "Segment a spine")(viewer=viewer, ct=ct, centroids=points) is None
    qtbot.waitUntil(
        lambda: any("flat (2D)" in str(n.message) for n in notification_manager.records), timeout=TIMEOUT_MS
    )
    assert [layer.name for layer in viewer.layers] == ["ct", "flat"]


@pytest.mark.parametrize(
    "name, own, cpu_only",
    [
        ("Refine splines", ["viewer", "image", "init"], False),
        ("Fit a mesh", ["viewer", "stack", "init", "cells"], False),
        ("Segment cells", ["viewer", "frames", "stage"], False),
        ("Segment a spine", ["viewer", "ct", "centroids", "top"], True),
    ],
)
def test_every_widget_has_its_own_controls_then_the_run_options(make_napari_viewer, name, own, cpu_only):
    """The run options (a preset of the method's folder, a seed, a device unless the method runs on
    the CPU only, overrides) follow each widget's own controls, in that order."""
    widget = dock(make_napari_viewer(), name)
    controls = [w.name for w in widget if w.name not in ("call_button", "")]
    run = ["config", "seed", "overrides"] if cpu_only else ["config", "seed", "device", "overrides"]
    assert controls == own + run
    assert "default" in widget.config.choices
    if not cpu_only:
        assert widget.device.choices == ("auto", "cpu", "cuda")
