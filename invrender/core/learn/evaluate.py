"""Predictions of a segmentation network over a data set, and their scores against the masks."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from invrender.core.learn.datasets import SegmentationSet
from invrender.core.metrics import mask_scores

SCORES = ("f1", "iou", "wcov", "boundf")


@torch.no_grad()
def predict_set(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """`masks` (N, S, S) in [0, 1] and, for a contour model, `polygons` (N, T+1, K, 2) in pixels; on the CPU."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        out = model.predict(images[start : start + batch_size].to(device))
        if "polygons" in out:
            out["polygons"] = out["polygons"].transpose(0, 1)
        for key, value in out.items():
            parts.setdefault(key, []).append(value.cpu())
    return {key: torch.cat(value) for key, value in parts.items()}


def to_image_size(points: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates on the network's size x size grid -> on a height x width image."""
    factor = points.new_tensor([width / size, height / size])
    return (points + 0.5) * factor - 0.5


def full_size_mask(prediction: dict[str, torch.Tensor], index: int, shape: tuple[int, int], render) -> np.ndarray:
    """The predicted mask of sample `index` at the sample's own size `shape` (bool): the final
    polygon rendered there, or the probabilities resized bilinearly; both thresholded at 1/2."""
    height, width = shape
    masks = prediction["masks"]
    size = masks.shape[-1]
    if "polygons" in prediction:
        polygon = to_image_size(prediction["polygons"][index, -1].double(), size, height, width)
        return (render(polygon, height, width) > 0.5).numpy()
    probability = masks[index][None, None].float()
    if (height, width) != tuple(masks.shape[-2:]):
        probability = F.interpolate(probability, size=(height, width), mode="bilinear", align_corners=False)
    return (probability[0, 0] > 0.5).numpy()


def score_set(model: nn.Module, dataset: SegmentationSet, batch_size: int, device: torch.device, render,
              full_size: bool = True) -> tuple[list[dict], dict[str, float]]:
    """Per-sample scores (name, f1, iou, wcov, boundf) and their means (f1, miou, wcov, boundf).

    full_size: score at each sample's own size (evaluation) rather than at the network's (validation).
    """
    prediction = predict_set(model, dataset.images, batch_size, device)
    rows = []
    for i, name in enumerate(dataset.names):
        if full_size:
            predicted, truth = full_size_mask(prediction, i, dataset.full_masks[i].shape, render), dataset.full_masks[i]
        else:
            predicted, truth = (prediction["masks"][i] > 0.5).numpy(), dataset.masks[i].numpy() > 0.5
        rows.append({"name": name, **mask_scores(predicted, truth)})
    return rows, mean_scores(rows)


def mean_scores(rows: list[dict]) -> dict[str, float]:
    """Means over samples: f1, miou (the mean IoU), wcov, boundf; NaN for no samples."""
    means = {key: float(np.mean([r[key] for r in rows])) if rows else float("nan") for key in SCORES}
    means["miou"] = means.pop("iou")
    return {key: means[key] for key in ("f1", "miou", "wcov", "boundf")}
