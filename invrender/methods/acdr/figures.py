"""acdr-train's figures: its learning curves, and validation examples with the ground truth, the
initial and the final polygon (or the pixel model's mask outline)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from invrender.core.figures import (
    INIT,
    RESULT,
    TRUTH,
    Panel,
    add_legend,
    draw_curves,
    new_figure,
    panels_figure,
    show_image,
)
from invrender.core.geometry.polygons import mask_outlines

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SHEET_SIZE = (1000, 1000)  # px, whatever the number of examples
SCORES = ("f1", "miou", "miou_smoothed", "wcov", "boundf")  # log.csv's validation columns, without "val_"


def training_curves(history: list[dict[str, float]], best_epoch: int) -> Figure:
    """The training loss and the validation scores at every validation (log.csv's rows), against
    the epoch, the epoch whose weights are `best.pt` marked."""
    epochs = [row["epoch"] for row in history]
    panels = [
        Panel("training loss", "mean loss since the last validation", {"loss": [row["loss"] for row in history]}),
        Panel("validation", "score", {key: [row[f"val_{key}"] for row in history] for key in SCORES}, log=False),
    ]
    return panels_figure(panels, epochs, "epoch", [(best_epoch, "best.pt")] if best_epoch else [])


def example_sheet(
    images: np.ndarray, truths: np.ndarray, predictions: np.ndarray, polygons: np.ndarray | None
) -> Figure:
    """The examples in a square grid, each image with the ground truth's outline (truth) and the
    initial and final polygons (init, result), or for the pixel model the predicted mask's outline
    (result); SHEET_SIZE px. images (N, S, S), truths and predictions (N, S, S) bool, polygons
    (N, T+1, K, 2) `[x, y]` px (every step of the evolution) or None."""
    side = max(1, math.ceil(math.sqrt(len(images))))
    figure = new_figure(SHEET_SIZE)
    for i, ax in enumerate(figure.subplots(side, side, squeeze=False).flat):
        ax.set_axis_off()
        if i >= len(images):
            continue
        show_image(ax, images[i], f"example {i + 1}")
        draw_curves(ax, mask_outlines(truths[i]), TRUTH)
        if polygons is not None:
            draw_curves(ax, [polygons[i][0]], INIT, closed=True)
            draw_curves(ax, [polygons[i][-1]], RESULT, closed=True)
        else:
            draw_curves(ax, mask_outlines(predictions[i]), RESULT)
    add_legend(figure, [TRUTH, INIT, RESULT] if polygons is not None else [TRUTH, RESULT])
    return figure
