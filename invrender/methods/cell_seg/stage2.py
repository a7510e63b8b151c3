"""cell-seg stage 2: the stage-1 masks of a few frames train a U-Net (the encoder-decoder of `acdr`,
as a pixel classifier) that then segments every frame of the time-lapse, much faster than fitting.

The network classifies each pixel as background (0), cell interior (1) or cell boundary (2): the
boundary class is what separates touching cells, which a foreground/background classifier would
merge. Instances come back by a watershed from the interiors over the foreground. Frames are
normalised as in stage 1 (`normalise_intensity`: the 0.5..99.5 percentiles to 0..1). Lengths in
pixels; `cfg` is the config's `stage2` section.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from scipy import ndimage
from skimage.morphology import disk
from skimage.segmentation import find_boundaries, relabel_sequential, watershed
from torch.nn import functional as F

from invrender.core.learn.network_file import load_network_file, network_with_weights, save_network_file
from invrender.core.learn.unet import UNet
from invrender.runner import StepCallback

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
CLASSES = 3
NETWORK_FORMAT = "invrender.cell-seg-network"


def training_indices(count: int, frames: int) -> list[int]:
    """`count` evenly spaced frame indices out of `frames`, the first and the last included (every
    frame when count >= frames; the first alone when count is 1)."""
    if count >= frames:
        return list(range(frames))
    if count == 1:
        return [0]
    return np.round(np.linspace(0, frames - 1, count)).astype(int).tolist()


def class_targets(labels: np.ndarray, boundary: int) -> np.ndarray:
    """The training target of an instance label image (H, W): (H, W) int64 classes, 0 background,
    1 interior, 2 the cell pixels within `boundary` px of another label or of the background (so
    that touching cells are kept apart by a band of boundary)."""
    edge = find_boundaries(labels, mode="inner")  # cell pixels with a differing 4-neighbour
    if boundary > 1:
        edge = ndimage.binary_dilation(edge, disk(boundary - 1))
    targets = np.where(labels > 0, INTERIOR, BACKGROUND)
    targets[edge & (labels > 0)] = BOUNDARY
    return targets.astype(np.int64)


def build_network(cfg: DictConfig) -> UNet:
    """The U-Net of `acdr` with one input channel and a logit per class."""
    return UNet(1, CLASSES, list(cfg.widths), int(cfg.convs), float(cfg.dropout), bool(cfg.relu_each))


def pad_to_crop(images: np.ndarray, targets: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Reflect-pad images and targets (F, H, W) to at least `crop` px per side, centred."""
    height, width = images.shape[1:]
    pad_y, pad_x = max(0, crop - height), max(0, crop - width)
    padding = ((0, 0), (pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2))
    return np.pad(images, padding, mode="reflect"), np.pad(targets, padding, mode="reflect")


def random_batch(
    images: torch.Tensor, targets: torch.Tensor, crop: int, batch: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` random crops of `crop` px from random frames, each flipped or not and turned by a
    random multiple of 90 degrees (cells have no up, down, left or right).

    images (F, H, W) float, targets (F, H, W) int64 with H, W >= crop -> (B, 1, crop, crop), (B, crop, crop).
    """
    count, height, width = images.shape
    frames = torch.randint(count, (batch,), generator=generator)
    tops = torch.randint(height - crop + 1, (batch,), generator=generator)
    lefts = torch.randint(width - crop + 1, (batch,), generator=generator)
    turns = torch.randint(4, (batch,), generator=generator)
    flips = torch.randint(2, (batch,), generator=generator)
    crops, labels = [], []
    for f, top, left, turn, flip in zip(frames, tops, lefts, turns, flips):
        window = (f, slice(top, top + crop), slice(left, left + crop))
        pair = torch.stack([images[window], targets[window].to(images.dtype)])
        pair = torch.rot90(pair, int(turn), dims=(1, 2))
        if flip:
            pair = pair.flip(2)
        crops.append(pair[0])
        labels.append(pair[1])
    return torch.stack(crops)[:, None], torch.stack(labels).round().long()


def train_network(
    images: np.ndarray, targets: np.ndarray, cfg: DictConfig, seed: int, on_step: StepCallback | None = None
) -> tuple[UNet, list[float]]:
    """Train the network on normalised frames (F, H, W) float and their class targets (F, H, W):
    cross-entropy on random crops, Adam at `cfg.lr` for `cfg.steps` steps of `cfg.batch` crops.

    Seeded: the same inputs, config and seed give the same network (the global torch RNG, which
    initialises the weights and draws the dropout, is restored afterwards). Returns the network in
    eval mode and the loss of every step.
    """
    crop = int(cfg.crop)
    padded_images, padded_targets = pad_to_crop(images, targets, crop)
    images_t = torch.from_numpy(np.ascontiguousarray(padded_images, dtype=np.float32))
    targets_t = torch.from_numpy(np.ascontiguousarray(padded_targets, dtype=np.int64))
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = build_network(cfg)
        optimiser = torch.optim.Adam(network.parameters(), lr=float(cfg.lr))
        network.train()
        steps = int(cfg.steps)
        for step in range(steps):
            batch, labels = random_batch(images_t, targets_t, crop, int(cfg.batch), generator)
            loss = F.cross_entropy(network(batch), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step("stage 2 training", step, steps, losses[-1])
    return network.eval(), losses


def class_probabilities(network: UNet, image: np.ndarray, tile: int = 0, margin: int | None = None) -> np.ndarray:
    """Per-pixel class probabilities (3, H, W) float32 of one normalised frame (H, W).

    tile: above 0, a frame larger than `tile` px is predicted in tiles of `tile` px, each seen with
    `margin` px of its surroundings (by default the network's field of view; both rounded up to a
    multiple of 2**depth, so that the tiles pool on the frame's own grid): the result is the
    one-pass result, in a fraction of the memory.
    """
    multiple = 2 ** len(network.encoder)
    height, width = image.shape
    if tile <= 0 or max(height, width) <= tile:
        return _probabilities_in_one_pass(network, image)
    margin = network.field_of_view if margin is None else margin
    tile, margin = -(-tile // multiple) * multiple, -(-margin // multiple) * multiple
    probabilities = np.empty((CLASSES, height, width), np.float32)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            y0, x0 = max(0, top - margin), max(0, left - margin)
            part = _probabilities_in_one_pass(network, image[y0 : top + tile + margin, x0 : left + tile + margin])
            kept = probabilities[:, top : top + tile, left : left + tile]
            kept[:] = part[:, top - y0 : top - y0 + kept.shape[1], left - x0 : left - x0 + kept.shape[2]]
    return probabilities


def _probabilities_in_one_pass(network: UNet, image: np.ndarray) -> np.ndarray:
    """class_probabilities without tiles. The frame is reflect-padded to a multiple of 2**depth px
    so that every pooling level halves it exactly (no row or column is lost and re-interpolated at
    the borders)."""
    multiple = 2 ** len(network.encoder)
    height, width = image.shape
    padded = np.pad(image, ((0, -height % multiple), (0, -width % multiple)), mode="reflect")
    with torch.no_grad():
        logits = network.eval()(torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))[None, None])
    return torch.softmax(logits[0, :, :height, :width], dim=0).numpy()


def instances_from_probabilities(probabilities: np.ndarray, min_area: float) -> np.ndarray:
    """Instance labels (H, W) uint16, 1..N, from class probabilities (3, H, W).

    Markers: the connected interiors (P(interior) > 1/2) larger than min_area / 4 px; each grows by a
    watershed on -P(interior) over the foreground (P(interior) + P(boundary) > 1/2), so the boundary
    band goes back to the cell it belongs to; then objects under `min_area` px are dropped.
    """
    interior = probabilities[INTERIOR]
    foreground = interior + probabilities[BOUNDARY] > 0.5
    markers, _ = ndimage.label(interior > 0.5)
    markers = drop_small(markers, min_area / 4)
    labels = drop_small(watershed(-interior, markers, mask=foreground), min_area)
    return relabel_sequential(labels)[0].astype(np.uint16)


def drop_small(labels: np.ndarray, min_area: float) -> np.ndarray:
    """Labels (H, W) with the objects smaller than `min_area` px set to 0."""
    areas = np.bincount(labels.ravel())
    small = areas < min_area
    small[0] = False
    return np.where(small[labels], 0, labels)


def segment_frame(network: UNet, image: np.ndarray, min_area: float, tile: int = 0) -> np.ndarray:
    """Instance labels (H, W) uint16 of one normalised frame (H, W); tile as in class_probabilities."""
    return instances_from_probabilities(class_probabilities(network, image, tile), min_area)


def save_network(path: str | os.PathLike, network: UNet, cfg: DictConfig, train_frames: list[int]) -> None:
    """Write the network atomically: its weights, the `stage2` config it was built and trained with,
    and the frames that trained it."""
    save_network_file(
        path,
        NETWORK_FORMAT,
        1,
        {
            "state_dict": network.state_dict(),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "train_frames": list(train_frames),
        },
    )


def load_network(path: str | os.PathLike) -> tuple[UNet, dict]:
    """A network written by `save_network`, in eval mode, and its `stage2` config; InputError in one
    line for a file that is missing, unreadable, another kind of file, or weights that do not fit."""
    saved = load_network_file(path, NETWORK_FORMAT, "a cell-seg stage-2 network (written by cell-seg --stage 2)")
    network = network_with_weights(
        path, lambda: build_network(OmegaConf.create(saved["config"])), saved, "the network the file"
    )
    return network, saved["config"]
