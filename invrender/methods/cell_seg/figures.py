"""cell-seg's figures: a frame with every cell's contour and label, and a time-lapse's tracks
coloured by lineage. Points are `[x, y]` px, as in `<name>.cells.json`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from invrender.core.figures import (
    OVERLAY_SIZE,
    Layer,
    add_legend,
    draw_curves,
    image_overlay,
    label_colour,
    label_style,
    new_figure,
    show_image,
    write_texts,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def contour_overlay(image: np.ndarray, record: dict, name: str) -> Figure:
    """The frame `(y, x)` with every cell's contour in its label's colour and its label written at
    its centre; `record` is the frame's entry of `<name>.cells.json` ("frame", "cells")."""
    cells = record["cells"]
    layers = [Layer(label_style(c["label"], f"cell {c['label']}"), [np.asarray(c["points"])], True) for c in cells]
    texts = [(c["centre"], str(c["label"]), label_colour(c["label"])) for c in cells]
    title = f"{name}: frame {record['frame']}, {len(cells)} cells"
    return image_overlay(image, layers, title, texts)


def lineage_roots(tracks: np.ndarray) -> dict[int, int]:
    """Every track's label -> the label of its lineage's first track (its parent's parent's ...), from
    CTC tracks (n, 4) `L B E P`."""
    parents = {int(label): int(parent) for label, _, _, parent in tracks}
    roots = {}
    for label in parents:
        root = label
        while parents.get(root, 0):
            root = parents[root]
        roots[label] = root
    return roots


def tracks_figure(images: np.ndarray, records: list[dict], tracks: np.ndarray, name: str) -> Figure:
    """The cells' centres through the frames as paths over the frames' maximum projection (T, y, x),
    each path in the colour of its lineage (a daughter's path takes its root's hue and starts where
    its mother's ended), its label written where it begins and a dot where it ends; OVERLAY_SIZE px.
    records: per frame the entry of `<name>.cells.json`; tracks: CTC (n, 4) `L B E P`."""
    paths: dict[int, list] = {}
    for record in records:
        for cell in record["cells"]:
            paths.setdefault(int(cell["label"]), []).append(cell["centre"])
    parents = {int(label): int(parent) for label, _, _, parent in tracks}
    roots = lineage_roots(tracks)
    figure = new_figure(OVERLAY_SIZE)
    ax = figure.add_subplot()
    divisions = sum(1 for parent in set(parents.values()) if parent)
    show_image(ax, images.max(axis=0), f"{name}: {len(paths)} tracks, {divisions} division(s) (maximum projection)")
    styles, texts = [], []
    for label, points in paths.items():
        root = roots.get(label, label)
        style = label_style(root, f"lineage {root}")
        parent = parents.get(label, 0)
        path = np.asarray([paths[parent][-1], *points] if parent in paths else points, dtype=np.float64)
        draw_curves(ax, [path], style)
        ax.plot(*path[-1], marker="o", markersize=3, color=style.colour)
        texts.append((points[0], str(label), style.colour))
        styles.append(style)
    write_texts(ax, texts)
    ax.set(xlabel="x (px)", ylabel="y (px)")
    add_legend(figure, styles)
    return figure
