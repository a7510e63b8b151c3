"""The plugin's widgets (napari.yaml): each runs one method of the Python API on the viewer's layers,
with a preset (config name), a few key options and free `key=value` overrides (as on the command
line), in a worker thread so that the viewer stays responsive, and adds the results as layers.

Calling a widget returns its worker (`napari.qt.threading.FunctionWorker`), already started, whose
phases and steps a progress bar in napari's activity dock follows, and which the widget's Cancel
button stops; errors (the API's one-line InputError and ConfigError) are shown as napari
notifications.
"""

from __future__ import annotations

import functools
import inspect
import math
import shlex
from collections.abc import Callable
from typing import get_type_hints

import napari
import numpy as np
from magicgui import magic_factory
from magicgui.widgets import PushButton
from qtpy.QtCore import QObject, Signal

from invrender.config import available_configs
from invrender.core.volumes import VERTEBRA_NAMES
from invrender.napari import LayerData, runs
from invrender.napari.surfaces import mesh_from_surface

OVERRIDES_TIP = "config overrides key=value, separated by spaces, as on the command line"

#: The controls of every widget after its own: the Python API's run options (`invrender.method.RunOptions`).
RUN_CONTROLS = [
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default="default", annotation=str),
    inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=0, annotation=int),
    inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, default="auto", annotation=str),
    inspect.Parameter("overrides", inspect.Parameter.KEYWORD_ONLY, default="", annotation=str),
]


def method_widget(config_dir: str, call_button: str, cpu_only: bool = False, **options: dict) -> Callable:
    """magicgui's `magic_factory` for the widget of a method whose presets are in `configs/<config_dir>`.

    The widget function declares its own parameters and takes the run options (`RUN_CONTROLS`: a
    preset, a seed, a device unless the method is `cpu_only`, `key=value` overrides) as `**run`,
    to hand on to the Python API: the overrides come split into a list, as the API takes them.
    `options` set the function's own controls (magicgui's options per parameter)."""

    def decorate(function: Callable) -> Callable:
        hints = get_type_hints(function)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(function).parameters.values()
            if p.kind is not p.VAR_KEYWORD
        ]
        run = [p for p in RUN_CONTROLS if not (cpu_only and p.name == "device")]

        @functools.wraps(function)
        def widget(*args, overrides: str = "", **kwargs):
            return function(*args, overrides=shlex.split(overrides), **kwargs)

        widget.__signature__ = inspect.Signature(own + run)
        devices = {} if cpu_only else {"device": {"choices": ["auto", "cpu", "cuda"]}}
        return magic_factory(
            widget,
            call_button=call_button,
            config={"choices": available_configs(config_dir)},
            overrides={"tooltip": OVERRIDES_TIP},
            widget_init=add_cancel_button,
            **devices,
            **options,
        )

    return decorate


def add_cancel_button(widget) -> None:
    """Add a Cancel button under a widget's own button: it asks the widget's running fits to stop,
    which they do at their next step (see `start`)."""
    running = []  # the workers the widget started and that still run; each call returns its worker

    def started(worker) -> None:
        running[:] = [w for w in running if w.is_running] + ([worker] if worker is not None else [])

    widget.called.connect(started)
    cancel = PushButton(text="Cancel")
    cancel.changed.connect(lambda: [worker.quit() for worker in running if worker.is_running])
    widget.append(cancel)


@method_widget("spline_refine", "Refine")
def refine_splines_widget(viewer: napari.Viewer, image: napari.layers.Image, init: napari.layers.Shapes, **run):
    """Refine the paths of a Shapes layer (splines, e.g. corrected inits) on an image."""
    paths, attributes, _ = init.as_layer_data_tuple()
    return start(
        viewer,
        runs.refine_splines_layers,
        np.asarray(image.data),
        paths,
        attributes,
        name=image.name,
        **run,
    )


@method_widget(
    "mesh_fit", "Fit", cells={"min": 0, "tooltip": "0: one surface (from the init, or a sphere); N: a foam of N cells"}
)
def fit_mesh_widget(
    viewer: napari.Viewer,
    stack: napari.layers.Image,
    init: napari.layers.Surface | None = None,
    cells: int = 0,
    **run,
):
    """Fit a mesh (and the PSF) to a 3D stack; its scale is the voxel size."""
    return start(
        viewer,
        runs.fit_mesh_layers,
        np.asarray(stack.data),
        tuple(float(s) for s in stack.scale),
        name=stack.name,
        init=None if init is None else mesh_from_surface(init.data),
        cells=cells or None,
        units=tuple(str(unit) for unit in stack.units),
        **run,
    )


@method_widget(
    "cell_seg",
    "Segment",
    stage={"choices": ["1", "both"], "tooltip": "1: fit every frame; both: fit a few, train a U-Net, segment all"},
)
def segment_cells_widget(
    viewer: napari.Viewer,
    frames: napari.layers.Image,
    stage: str = "1",
    **run,
):
    """Segment and track the cells of a 2D image or time-lapse `(t, y, x)`."""
    return start(
        viewer,
        runs.segment_cells_layers,
        np.asarray(frames.data),
        name=frames.name,
        stage=stage,
        **run,
    )


@method_widget(
    "spine_seg",
    "Segment",
    cpu_only=True,
    top={
        "choices": [VERTEBRA_NAMES[code] for code in runs.SPINE_ORDER],
        "tooltip": "the vertebra of the most superior point, when the points have no `label` feature",
    },
)
def segment_spine_widget(
    viewer: napari.Viewer,
    ct: napari.layers.Image,
    centroids: napari.layers.Points,
    top: str = "L1",
    **run,
):
    """Label the vertebrae of a CT opened by invrender's reader (NIfTI or DICOM) from a point on each
    vertebral body: named by the points' `label` feature (L3 or 22), else from `top` down."""
    if ct.ndim != 3 or centroids.ndim != 3:
        from napari.utils.notifications import show_error

        show_error(f"{ct.name} ({ct.ndim}D) and {centroids.name} ({centroids.ndim}D): a CT and its points are 3D")
        return None
    world = np.asarray(centroids.data) * centroids.scale + centroids.translate
    names = list(centroids.features["label"]) if "label" in centroids.features.columns else None
    return start(
        viewer,
        runs.segment_spine_layers,
        np.asarray(ct.data),
        ct.metadata.get("affine"),
        (world - ct.translate) / ct.scale,  # the points as voxel indices of the CT
        name=ct.name,
        names=names,
        top=top,
        **run,
    )


class StepSignal(QObject):
    """The fit's steps `(phase, step, steps, loss)`, emitted in the worker thread; Qt delivers them
    to the progress bar in the main thread, where napari's widgets may be touched."""

    step = Signal(str, int, int, float)


class Cancelled(Exception):
    """A fit stopped at a step because its widget's Cancel button asked it to."""


def start(viewer: napari.Viewer, work: Callable[..., list[LayerData]], *args, **kwargs):
    """Run `work(*args, progress=..., **kwargs)` in a worker thread, started, with a progress bar in
    napari's activity dock that follows its phases and steps; its layers are added to the viewer
    when it returns, its error (the API's one-line message) shown as a notification. Asked to quit
    (`worker.quit()`, the Cancel button), the fit stops at its next step, adds nothing and says so.
    The worker's `progress_bar` is that bar."""
    from napari.qt.threading import create_worker
    from napari.utils import progress
    from napari.utils.notifications import show_error, show_info

    name = kwargs.get("name", "")
    bar = progress(total=0, desc=f"{name}: starting")
    steps = StepSignal()
    steps.step.connect(lambda phase, step, total, loss: show_step(bar, phase, step, total, loss))

    def on_step(phase: str, step: int, total: int, loss: float) -> None:  # in the worker thread
        if worker.abort_requested:
            raise Cancelled(f"{name}: cancelled at {phase}, step {step + 1} of {total}")
        steps.step.emit(phase, step, total, loss)

    connect = {
        "returned": lambda layers: add_layers(viewer, layers),
        "errored": lambda error: (show_info if isinstance(error, Cancelled) else show_error)(str(error)),
        "finished": bar.close,
    }
    worker = create_worker(work, *args, progress=on_step, _connect=connect, _start_thread=False, **kwargs)
    worker.progress_bar, worker.step_signal = bar, steps  # the signal lives as long as the worker
    worker.start()
    return worker


def show_step(bar, phase: str, step: int, steps: int, loss: float) -> None:
    """Move napari's progress `bar` to a fit's step; a new phase (or fit) starts it again."""
    if steps != bar.total or step + 1 < bar.n:
        bar.reset(total=steps)
    bar.set_description(phase if math.isnan(loss) else f"{phase}: loss {loss:.3g}")
    bar.update(step + 1 - bar.n)


def add_layers(viewer: napari.Viewer, layers: list[LayerData]) -> None:
    for data, attributes, kind in layers:
        viewer.add_layer(napari.layers.Layer.create(data, attributes, kind))
