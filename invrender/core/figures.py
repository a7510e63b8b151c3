"""Figures of results for every method, drawn with matplotlib's object API (a `Figure` on its Agg
canvas: not pyplot, which keeps global state and wants a display) and written as PNG atomically.

One colour convention everywhere: the truth green and dotted, the init amber and dashed, the result
cyan and solid; objects with labels (cells, vertebrae, tracks) a hue of their own per label, the
same in every figure. Every overlay has a legend. A figure's size in pixels is fixed here (inches
times DPI, whatever the input), so that it is known before it is drawn.

matplotlib is imported inside the functions: loading the command line does not load it.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from invrender.core.io import write_png
from invrender.core.optim.loss_log import LossLog

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Pixels per inch. The sizes below (width, height) px are whole inches at this DPI, so that the
#: canvas (inches x DPI, rounded down) has exactly these pixels.
DPI = 100
OVERLAY_SIZE = (800, 800)  # an image with curves on it
LOSS_SIZE = (1000, 500)  # the loss at every step of a job
PANELS_SIZE = (1000, 800)  # line plots one above the other (acdr-train's curves)

LINE_WIDTH = 1.6
MAX_LEGEND_ENTRIES = 12  # more are counted in a last entry ("and N more")
MAX_PHASE_NAMES = 12  # more phases: each name is written at its first phase only


@dataclass(frozen=True)
class Style:
    """How a set of curves is drawn, and its name in the legend."""

    name: str
    colour: str | tuple[float, float, float]
    linestyle: str = "-"

    def line(self) -> dict:
        """The keyword arguments of a matplotlib line in this style."""
        return {"color": self.colour, "linestyle": self.linestyle, "linewidth": LINE_WIDTH}


TRUTH = Style("truth", "#2ecc40", ":")  # green, dotted
INIT = Style("init", "#ffb000", "--")  # amber, dashed
RESULT = Style("result", "#00d4ff", "-")  # cyan, solid
SUSPECT = Style("result, probably wrong", "#ff4136", "-")  # red, solid: a result its own checks doubt
LOSS_COLOUR = "#1f5fbf"
MARK_COLOUR = "dimgrey"  # phase starts and other marks on plots


def label_colour(label: int) -> tuple[float, float, float]:
    """The colour of an object's label (a cell, vertebra or track), the same in every figure: hues
    a golden-ratio turn apart, so that neighbouring labels differ."""
    return colorsys.hsv_to_rgb((int(label) * 0.618034) % 1.0, 0.8, 1.0)


def label_style(label: int, name: str) -> Style:
    """Solid curves in the label's colour, named `name` in the legend."""
    return Style(name, label_colour(label))


@dataclass
class Layer:
    """Curves drawn in one style: polylines (k, 2) in the axes' coordinates ([x, y] px on an image)."""

    style: Style
    curves: Sequence[np.ndarray] = field(default_factory=list)
    closed: bool = False  # draw each curve back to its first point


def new_figure(size: tuple[int, int]) -> Figure:
    """An empty figure of `size` (width, height) px on an Agg canvas. Its layout is constrained: axes,
    titles and a legend outside the axes share the space without overlapping."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_pixels(figure: Figure) -> np.ndarray:
    """The figure drawn: (height, width, 3) uint8."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def write_figure(path: str | os.PathLike, figure: Figure) -> None:
    """Draw the figure and write it as PNG atomically (the same figure gives the same bytes)."""
    write_png(path, figure_pixels(figure))


def show_image(
    ax: Axes,
    image: np.ndarray,
    title: str = "",
    extent: tuple[float, float, float, float] | None = None,
    window: tuple[float, float] | None = None,
) -> None:
    """A grey image `(y, x)` on `ax`: pixel centres at whole coordinates `[x, y]` (or `extent` (left,
    right, bottom, top) in other units), intensities windowed to `window` or else the image's
    0.5..99.5th percentiles. The axes keep the image's limits whatever is drawn on it afterwards."""
    if window is None:
        finite = image[np.isfinite(image)]
        window = tuple(np.percentile(finite, [0.5, 99.5])) if finite.size else (0.0, 1.0)
    low, high = (float(v) for v in window)
    ax.imshow(image, cmap="gray", vmin=low, vmax=high if high > low else low + 1.0, extent=extent)
    ax.set_autoscale_on(False)
    ax.set_title(title, fontsize="medium")


def draw_curves(ax: Axes, curves: Sequence[np.ndarray], style: Style, closed: bool = False) -> None:
    """Polylines (k, 2) `[x, y]` on `ax` in `style`; `closed`: each back to its first point."""
    from matplotlib.collections import LineCollection

    lines = []
    for curve in curves:
        points = np.asarray(curve, dtype=np.float64).reshape(-1, 2)
        lines.append(np.concatenate([points, points[:1]]) if closed else points)
    if lines:
        ax.add_collection(
            LineCollection(lines, colors=[style.colour], linestyles=style.linestyle, linewidths=LINE_WIDTH),
            autolim=False,
        )


def write_texts(ax: Axes, texts: Sequence[tuple[Sequence[float], str, str | tuple[float, float, float]]]) -> None:
    """Short texts (object IDs) centred at positions `[x, y]`, each `(position, text, colour)`, outlined
    in black so that they read on any background."""
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    for (x, y), text, colour in texts:
        ax.text(
            float(x),
            float(y),
            text,
            color=colour,
            fontsize="small",
            ha="center",
            va="center",
            path_effects=outline,
            clip_on=True,
        )


def add_legend(figure: Figure, styles: Sequence[Style]) -> list[str]:
    """A legend below the axes naming `styles` (each once, in order; past MAX_LEGEND_ENTRIES the rest
    are counted in a last entry). Returns the names it shows (none, and no legend, for no styles)."""
    from matplotlib.lines import Line2D

    unique = list(dict.fromkeys(styles))
    if len(unique) > MAX_LEGEND_ENTRIES:
        rest = len(unique) - MAX_LEGEND_ENTRIES + 1
        unique = [*unique[: MAX_LEGEND_ENTRIES - 1], Style(f"and {rest} more", "grey")]
    names = [style.name for style in unique]
    if names:
        handles = [Line2D([], [], **style.line()) for style in unique]
        figure.legend(
            handles, names, loc="outside lower center", ncols=min(len(names), 6), frameon=False, fontsize="small"
        )
    return names


def image_overlay(
    image: np.ndarray,
    layers: Sequence[Layer],
    title: str = "",
    texts: Sequence[tuple[Sequence[float], str, str | tuple[float, float, float]]] = (),
) -> Figure:
    """An image `(y, x)` with curves `[x, y]` px drawn on it layer by layer, short texts (object IDs,
    see `write_texts`), a title, axes in pixels and a legend of the layers' styles; OVERLAY_SIZE px."""
    figure = new_figure(OVERLAY_SIZE)
    ax = figure.add_subplot()
    show_image(ax, image, title)
    for layer in layers:
        draw_curves(ax, layer.curves, layer.style, layer.closed)
    write_texts(ax, texts)
    ax.set(xlabel="x (px)", ylabel="y (px)")
    add_legend(figure, [layer.style for layer in layers])
    return figure


def wants_log_scale(values: np.ndarray) -> bool:
    """Whether a log axis shows `values` best: the finite ones are positive and span more than a decade."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return bool(finite.size > 1 and finite.min() > 0 and finite.max() > 10 * finite.min())


def phase_names(starts: Sequence[tuple[int, str]]) -> list[str]:
    """The name to write at each phase start: every one, or with more than MAX_PHASE_NAMES phases
    (e.g. the same phases for every frame) each distinct name at its first start only ("" elsewhere)."""
    if len(starts) <= MAX_PHASE_NAMES:
        return [name for _, name in starts]
    seen: set[str] = set()
    shown = []
    for _, name in starts:
        shown.append("" if name in seen else name)
        seen.add(name)
    return shown


def loss_figure(log: LossLog, title: str) -> Figure:
    """The loss at every step of a job, against the step number, each phase marked by a vertical
    line at its first step with its name (see `phase_names`), on a log axis when the losses are
    positive and span more than a decade (`wants_log_scale`); LOSS_SIZE px."""
    from matplotlib.ticker import MaxNLocator

    figure = new_figure(LOSS_SIZE)
    ax = figure.add_subplot()
    losses = np.asarray(log.losses, dtype=np.float64)
    ax.plot(np.arange(len(losses)), losses, color=LOSS_COLOUR, linewidth=1.2)
    if wants_log_scale(losses):
        ax.set_yscale("log")
    for (start, _), name in zip(log.phase_starts, phase_names(log.phase_starts)):
        ax.axvline(start, color=MARK_COLOUR, linewidth=0.8, linestyle="--")
        if name:
            ax.text(
                start,
                0.98,
                f" {name}",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="left",
                va="top",
                fontsize="small",
                color=MARK_COLOUR,
            )
    if not len(losses):
        ax.text(0.5, 0.5, "no optimisation steps", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlim(0, max(len(losses) - 1, 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="step", ylabel="loss", title=title)
    add_legend(figure, [Style("loss at each step", LOSS_COLOUR), Style("phase start", MARK_COLOUR, "--")])
    return figure


@dataclass
class Panel:
    """One line plot of `panels_figure`: series of values at the shared x positions."""

    title: str
    ylabel: str
    series: dict[str, Sequence[float]]  # name -> one value per x (NaN: none)
    log: bool | None = None  # a log axis; None: where the values want one (`wants_log_scale`)


def panels_figure(
    panels: Sequence[Panel], x: Sequence[float], xlabel: str, marks: Sequence[tuple[float, str]] = ()
) -> Figure:
    """Line plots one above the other over the same `x`, each with its legend and on the axis its
    panel asks for, with vertical lines at `marks` `(x, name)`; PANELS_SIZE px."""
    figure = new_figure(PANELS_SIZE)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
        for name, values in panel.series.items():
            ax.plot(x, np.asarray(values, dtype=np.float64), marker=".", linewidth=1.2, label=name)
        every = np.concatenate([np.asarray(v, dtype=np.float64) for v in panel.series.values()])
        if panel.log or (panel.log is None and wants_log_scale(every)):
            ax.set_yscale("log")
        for position, name in marks:
            ax.axvline(position, color=MARK_COLOUR, linewidth=0.8, linestyle="--", label=name)
        ax.set(title=panel.title, ylabel=panel.ylabel)
        ax.legend(fontsize="small", loc="best")
    axes[-1].set_xlabel(xlabel)
    return figure
