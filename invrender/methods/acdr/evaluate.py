"""Predictions of a segmentation network over a data set, and their scores against the masks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from invrender.core.metrics import mask_scores
from invrender.methods.acdr.datasets import SegmentationSet

SCORES = ("f1", "iou", "wcov", "boundf")


@torch.no_grad()
def predict_set(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    bounds: torch.Tensor | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """`masks` (N, S, S) in [0, 1] and, for a contour model, `polygons` (N, T+1, K, 2) in pixels; on the CPU.

    bounds (N, 4): the part of each image that shows the picture (SegmentationSet.bounds); the masks
    are cut to it (the polygons are not: their masks at another size are cut by `full_size_mask`).
    on_batch(images done, images): called after every batch (progress, time limits).
    """
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        out = model.predict(images[part].to(device))
        if bounds is not None:
            out["masks"] = out["masks"] * inside_bounds(bounds[part].to(device), *out["masks"].shape[-2:])
        if "polygons" in out:
            out["polygons"] = out["polygons"].transpose(0, 1)
        for key, value in out.items():
            parts.setdefault(key, []).append(value.cpu())
        if on_batch is not None:
            on_batch(min(start + batch_size, len(images)), len(images))
    return {key: torch.cat(value) for key, value in parts.items()}


def inside_bounds(bounds: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 4) boxes (x_lo, y_lo, x_hi, y_hi) on pixel edges -> (N, height, width) bool: the pixels
    inside. A box on pixel edges cuts no pixel, so a mask times this is the mask of the part inside."""
    x = torch.arange(width, dtype=bounds.dtype, device=bounds.device)
    y = torch.arange(height, dtype=bounds.dtype, device=bounds.device)
    inside_x = (x > bounds[:, 0, None]) & (x < bounds[:, 2, None])
    inside_y = (y > bounds[:, 1, None]) & (y < bounds[:, 3, None])
    return inside_y[:, :, None] & inside_x[:, None, :]


def to_image_size(points: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates on the network's size x size grid -> on a height x width image."""
    factor = points.new_tensor([width / size, height / size])
    return (points + 0.5) * factor - 0.5


def full_size_mask(
    prediction: dict[str, torch.Tensor], index: int, shape: tuple[int, int], render, bounds: torch.Tensor | None = None
) -> np.ndarray:
    """The predicted mask of sample `index` at the sample's own size `shape` (bool): the final
    polygon rendered there, or the probabilities resized bilinearly; both thresholded at 1/2, and
    cut to `bounds` (4,) on the network's grid when given."""
    height, width = shape
    masks = prediction["masks"]
    size = masks.shape[-1]
    if "polygons" in prediction:
        polygon = to_image_size(prediction["polygons"][index, -1].double(), size, height, width)
        mask = render(polygon, height, width) > 0.5
    else:
        probability = masks[index][None, None].float()
        if (height, width) != tuple(masks.shape[-2:]):
            probability = F.interpolate(probability, size=(height, width), mode="bilinear", align_corners=False)
        mask = probability[0, 0] > 0.5
    if bounds is not None:
        corners = to_image_size(bounds.double().view(2, 2), size, height, width).view(1, 4)
        mask = mask & inside_bounds(corners, height, width)[0].to(mask.device)
    return mask.numpy()


def score_set(
    model: nn.Module,
    dataset: SegmentationSet,
    batch_size: int,
    device: torch.device,
    render,
    full_size: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], dict[str, float]]:
    """Per-sample scores (name, f1, iou, wcov, boundf) and their means (f1, miou, wcov, boundf).

    full_size: score at each sample's own size (evaluation) rather than at the network's (validation).
    on_batch: as in `predict_set`.
    """
    prediction = predict_set(model, dataset.images, batch_size, device, dataset.bounds, on_batch)
    rows = []
    for i, name in enumerate(dataset.names):
        if full_size:
            predicted, truth = (
                full_size_mask(prediction, i, dataset.full_masks[i].shape, render, dataset.bounds[i]),
                dataset.full_masks[i],
            )
        else:
            predicted, truth = (prediction["masks"][i] > 0.5).numpy(), dataset.masks[i].numpy() > 0.5
        rows.append({"name": name, **mask_scores(predicted, truth)})
    return rows, mean_scores(rows)


def mean_scores(rows: list[dict]) -> dict[str, float]:
    """Means over samples: f1, miou (the mean IoU), wcov, boundf; NaN for no samples."""
    means = {key: float(np.mean([r[key] for r in rows])) if rows else float("nan") for key in SCORES}
    means["miou"] = means.pop("iou")
    return {key: means[key] for key in ("f1", "miou", "wcov", "boundf")}
