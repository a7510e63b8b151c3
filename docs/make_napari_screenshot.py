"""Make docs/napari.png: napari with invrender's plugin, a fitted mesh over its stack (3D) beside
refined splines over a worm frame (2D); and docs/napari_spine.png: spine-seg's labels and meshes
over a CT with its VerSe centroids (3D).

Needs the napari extra and a Qt binding (`pip install -e ".[napari]" pyqt5`) and a display; headless:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_napari_screenshot.py

The data are made here: `invrender synth mesh` of the spot mesh (48^3 voxels) and `invrender mesh-fit`
on it (60 steps, about 20 s), and `invrender spline-refine` on the sample worms in data/splines/ (about
15 s). For the spine: `invrender synth ct` of VerSe's verse004 mask (L1-L3 and their neighbours,
1.5 mm, stored in LPS order) and `invrender spine-seg` on it from its centroids (about 4 minutes).
Everything is opened through the plugin's readers, as napari's File > Open does.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import napari
import numpy as np
from PIL import Image

from invrender.cli import main as invrender

ROOT = Path(__file__).resolve().parent.parent
SPOT = Path("/work/shared/data/meshes/spot.obj")
VERSE = Path("/work/shared/data/verse")
OUT = ROOT / "docs" / "napari.png"
OUT_SPINE = ROOT / "docs" / "napari_spine.png"
WINDOW = (1500, 850)  # px, each of the two views


def run(*args: str) -> None:
    if invrender(list(args)) != 0:
        sys.exit(f"invrender {' '.join(args)} failed")


def mesh_view(work: Path) -> np.ndarray:
    """The stack (maximum intensity projection) and the fitted mesh, turned in 3D."""
    run("synth", "mesh", str(SPOT), "--size", "48", "--out", str(work))
    run("mesh-fit", str(work / "spot.tif"), "--out", str(work / "fit"), "--device", "cpu", "-q", "phases.0.steps=60")
    viewer = napari.Viewer(title="invrender: mesh-fit", show=True)
    [stack] = viewer.open(str(work / "spot.tif"), plugin="invrender")
    stack.rendering, stack.colormap, stack.contrast_limits = "mip", "gray", (0.0, 1.0)
    viewer.open(str(work / "fit" / "spot.mesh.ply"), plugin="invrender")
    viewer.dims.ndisplay = 3
    viewer.camera.angles = (10.0, -35.0, 60.0)
    viewer.camera.zoom *= 1.3
    viewer.window.add_plugin_dock_widget("invrender", "Fit a mesh")
    return shoot(viewer)


def splines_view(work: Path) -> np.ndarray:
    """The worm frame, the detector's init and the refined splines at their widths."""
    worms = ROOT / "data" / "splines"
    run(
        "spline-refine",
        str(worms / "worms.tif"),
        "--init",
        str(worms / "worms.json"),
        "--out",
        str(work),
        "--device",
        "cpu",
        "-q",
    )
    viewer = napari.Viewer(title="invrender: spline-refine", show=True)
    viewer.open(str(worms / "worms.tif"), plugin="invrender")
    [init] = viewer.open(str(worms / "worms.json"), plugin="invrender")
    init.name, init.edge_color = "worms init", "red"  # the detector's, thin
    viewer.open(str(work / "worms.splines.json"), plugin="invrender")
    viewer.window.add_plugin_dock_widget("invrender", "Refine splines")
    viewer.reset_view()
    return shoot(viewer)


def spine_view(work: Path) -> np.ndarray:
    """A synthetic CT (one slice in 3D), its VerSe centroids, and spine-seg's labels and a surface
    per vertebra, turned in 3D, with the Segment a spine widget docked."""
    run(
        "synth",
        "ct",
        "--labels",
        str(VERSE / "sub-verse004_seg-vert_msk.nii.gz"),
        "--centroids",
        str(VERSE / "sub-verse004_seg-subreg_ctd.json"),
        *("--levels", "20-22", "--spacing", "1.5", "--orientation", "LPS", "--out", str(work)),
    )
    name = "synth-sub-verse004-s0"
    ct, centroids = work / f"{name}_ct.nii.gz", work / f"{name}_ctd.json"
    run("spine-seg", str(ct), "--centroids", str(centroids), "--out", str(work / "seg"), "-q")
    viewer = napari.Viewer(title="invrender: spine-seg", show=True)
    [image] = viewer.open(str(ct), plugin="invrender")
    image.colormap, image.contrast_limits, image.depiction = "gray", (-200.0, 1200.0), "plane"
    # A sagittal slice 25 mm to the right of the middle (i runs right to left in LPS order), behind
    # the spine as the camera, on the left, sees it.
    image.plane.normal = (1.0, 0.0, 0.0)
    image.plane.position = tuple(np.array(image.data.shape) * image.scale / 2 - [25.0, 0.0, 0.0])
    [labels] = viewer.open(str(work / "seg" / f"{name}_ct.labels.nii.gz"), plugin="invrender")
    labels.visible = False
    for mesh in sorted((work / "seg").glob(f"{name}_ct.*.ply")):
        viewer.open(str(mesh), plugin="invrender")
    viewer.open(str(centroids), plugin="invrender")
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    viewer.camera.set_view_direction((-1.0, -0.4, 0.0), up_direction=(0.0, 0.0, 1.0))  # from the left, superior up
    viewer.camera.zoom *= 0.85
    viewer.window.add_plugin_dock_widget("invrender", "Segment a spine")
    return shoot(viewer)


def shoot(viewer: napari.Viewer) -> np.ndarray:
    from qtpy.QtWidgets import QApplication

    viewer.window.resize(*WINDOW)
    QApplication.processEvents()  # lay the docked widget out before the picture
    picture = viewer.screenshot(canvas_only=False, flash=False)
    viewer.close()
    return picture[..., :3]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        views = [mesh_view(work / "mesh"), splines_view(work / "worms")]
    height = max(view.shape[0] for view in views)
    padded = [np.pad(v, ((0, height - v.shape[0]), (0, 0), (0, 0)), constant_values=255) for v in views]
    Image.fromarray(np.concatenate(padded, axis=1)).save(OUT)
    print(f"wrote {OUT}")
    with tempfile.TemporaryDirectory() as folder:
        Image.fromarray(spine_view(Path(folder))).save(OUT_SPINE)
    print(f"wrote {OUT_SPINE}")


if __name__ == "__main__":
    main()
