"""Make docs/napari.png: napari with invrender's plugin, a fitted mesh over its stack (3D) beside
refined splines over a worm frame (2D).

Needs the napari extra and a Qt binding (`pip install -e ".[napari]" pyqt5`) and a display; headless:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_napari_screenshot.py

The data are made here: `invrender synth mesh` of the spot mesh (48^3 voxels) and `invrender mesh-fit`
on it (60 steps, about 20 s), and `invrender spline-refine` on the sample worms in data/splines/ (about
15 s). Everything is opened through the plugin's readers, as napari's File > Open does.
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
OUT = ROOT / "docs" / "napari.png"
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


if __name__ == "__main__":
    main()
