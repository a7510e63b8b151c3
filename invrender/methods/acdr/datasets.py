"""Object-segmentation data sets: images with one binary mask each, in train / val / test splits.

Layouts (`data.layout`), each reading `data.root`:

- `generic`: `images/` and `masks/` with matching names (PNG, TIFF or JPEG; masks 0/1, 0/255 or
  labels, anything above 0 being the object), and optionally `split.json`
  `{"train": [...], "val": [...], "test": [...]}` listing file names or stems. Without it, every
  `data.val_every`-th image is for validation and the rest for training, and all are the test set.
- `vaihingen`: `building_NNN.tif` with `building_mask_NNN.tif`; the first `data.train_count` (100)
  by number train, the rest (68) test (Gur et al.; Marcos et al.).
- `bing`: `building_N.png` with `building_mask_N.png`; the first 335 train, the rest (271) test.
- `instances`: one image `data.image` and its instance label image `data.labels`; a crop of
  `data.size` pixels centred on every labelled object, whose mask is that object alone. Split by
  position, so that no test object is seen in training: objects whose centroid lies at or below row
  `data.test_from` (a fraction of the height) are the test set; the training objects are those whose
  whole crop lies above that row, every `data.val_every`-th of them kept for validation. Where the
  labels cover only part of the image, `data.labelled_region` [top, bottom, left, right] names that
  part, and the rest of the image is treated as lying beyond its border.
- `shapes`: `data.count` synthetic images (core.synth.shapes), made from `data.seed`; 80% train, 10%
  val, 10% test.

Images are normalised per image and channel (the 0.5 and 99.5 percentiles to 0 and 1) and resized
to `data.size` x `data.size` (bilinear) for the network; each sample keeps its mask at its own size,
on which evaluation is done. A crop that reaches past its image's border (`instances`) is padded
there, and records which part of it shows the image (`bounds`): predictions stay inside that part,
as they stay inside a whole image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from invrender.core.io import (
    PICTURE_SUFFIXES,
    InputError,
    normalise_intensity,
    read_image,
    read_json,
    read_mask,
    read_picture,
)

SPLITS = ("train", "val", "test")
#: A relative `data.root` not found from the working directory is looked up here (the checkout's `data/` lives there).
PROJECT_ROOT = Path(__file__).resolve().parents[3]

LAYOUT_HELP = {
    "generic": "images/ and masks/ with matching names, optional split.json",
    "vaihingen": "building_NNN.tif with building_mask_NNN.tif",
    "bing": "building_N.png with building_mask_N.png",
    "instances": "one image (data.image) and its instance label image (data.labels)",
    "shapes": "synthetic, no files",
}


@dataclass
class Sample:
    name: str
    image: np.ndarray  # (C, H, W) float32, as read
    mask: np.ndarray  # (H, W) bool
    bounds: tuple[float, float, float, float] | None = (
        None  # (x_lo, y_lo, x_hi, y_hi): pixel edges of the part showing the image; None: all
    )


@dataclass
class SegmentationSet:
    """Samples ready for the network: images (N, C, S, S) normalised, masks (N, S, S) 0/1 float,
    each sample's mask at its own size, and bounds (N, 4): (x_lo, y_lo, x_hi, y_hi), the pixel
    edges of the part of each image that shows the picture, on the network's grid."""

    names: list[str]
    images: torch.Tensor
    masks: torch.Tensor
    full_masks: list[np.ndarray]
    bounds: torch.Tensor

    def __len__(self) -> int:
        return len(self.names)


def resize_picture(image: np.ndarray, size: int) -> torch.Tensor:
    """(C, H, W) -> (C, size, size) float32: normalised per channel, then resized bilinearly."""
    normalised = np.stack([normalise_intensity(channel)[0] for channel in image])
    tensor = torch.from_numpy(normalised)[None]
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return tensor[0]


def prepare(samples: list[Sample], size: int) -> SegmentationSet:
    """Normalise and resize samples for the network; refuses samples of differing channel counts."""
    if not samples:
        return SegmentationSet([], torch.zeros(0, 1, size, size), torch.zeros(0, size, size), [], torch.zeros(0, 4))
    channels = {s.image.shape[0] for s in samples}
    if len(channels) > 1:
        raise InputError(
            samples[0].name, f"images have different channel counts {sorted(channels)}; use all grey or all RGB"
        )
    images = torch.stack([resize_picture(s.image, size) for s in samples])
    masks = torch.stack([torch.from_numpy(s.mask.astype(np.float32)) for s in samples])[:, None]
    if masks.shape[-2:] != (size, size):
        masks = (F.interpolate(masks, size=(size, size), mode="bilinear", align_corners=False) > 0.5).float()
    return SegmentationSet(
        [s.name for s in samples],
        images,
        masks[:, 0],
        [s.mask for s in samples],
        torch.stack([_network_bounds(s, size) for s in samples]),
    )


def _network_bounds(sample: Sample, size: int) -> torch.Tensor:
    height, width = sample.mask.shape
    if sample.bounds is None:
        return torch.tensor([-0.5, -0.5, size - 0.5, size - 0.5])
    # Pixel edges scale about the image's corner (-0.5, -0.5).
    factor = torch.tensor([size / width, size / height, size / width, size / height])
    return (torch.tensor(sample.bounds, dtype=torch.float32) + 0.5) * factor - 0.5


def resolve_root(root: str | None, layout: str) -> Path:
    if root is None:
        raise InputError(None, f"data.root is not set: give data.root=DIR (layout {layout}: {LAYOUT_HELP[layout]})")
    path = Path(root).expanduser()
    if not path.exists() and not path.is_absolute() and (PROJECT_ROOT / path).exists():
        path = PROJECT_ROOT / path
    if not path.is_dir():
        raise InputError(path, f"data folder not found (layout {layout}: {LAYOUT_HELP[layout]})")
    return path


def load_splits(data: Mapping, splits: tuple[str, ...] = SPLITS) -> dict[str, list[Sample]]:
    """The samples of the requested splits for the `data` section of a config."""
    layout = data["layout"]
    if layout not in LAYOUT_HELP:
        raise InputError(None, f"data.layout {layout!r}: expected one of {', '.join(LAYOUT_HELP)}")
    if layout == "shapes":
        return {name: part for name, part in _shapes(data).items() if name in splits}
    root = resolve_root(data.get("root"), layout)
    if layout == "instances":
        return {name: part for name, part in _instances(root, data).items() if name in splits}
    pairs = {"generic": _generic_pairs, "vaihingen": _numbered_pairs, "bing": _numbered_pairs}[layout](root, data)
    return {name: [_read_pair(*pair) for pair in pairs[name]] for name in splits}


# ---------------------------------------------------------------- layouts of files

Pair = tuple[str, Path, Path]


def _read_pair(name: str, image_path: Path, mask_path: Path) -> Sample:
    image, mask = read_picture(image_path), read_mask(mask_path)
    if mask.shape != image.shape[1:]:
        raise InputError(
            mask_path,
            f"mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path.name} is "
            f"{image.shape[2]}x{image.shape[1]}",
        )
    return Sample(name, image, mask)


def _pictures(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)


def _generic_pairs(root: Path, data: Mapping) -> dict[str, list[Pair]]:
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise InputError(root, f"expected the folders images/ and masks/ ({LAYOUT_HELP['generic']})")
    masks = {p.stem: p for p in _pictures(masks_dir)}
    pairs = []
    for image in _pictures(images_dir):
        if image.stem not in masks:
            raise InputError(
                image, f"no mask for this image: expected masks/{image.stem} with one of {', '.join(PICTURE_SUFFIXES)}"
            )
        pairs.append((image.name, image, masks[image.stem]))
    if not pairs:
        raise InputError(images_dir, f"no images found ({', '.join(PICTURE_SUFFIXES)})")
    split_file = root / "split.json"
    if split_file.is_file():
        return _listed_split(split_file, pairs)
    every = int(data["val_every"])
    val = [p for i, p in enumerate(pairs) if i % every == every - 1]
    return {"train": [p for p in pairs if p not in val], "val": val, "test": pairs}


def _listed_split(split_file: Path, pairs: list[Pair]) -> dict[str, list[Pair]]:
    listing = read_json(split_file)
    if not isinstance(listing, dict) or not all(isinstance(listing.get(s, []), list) for s in SPLITS):
        raise InputError(split_file, 'expected {"train": [names], "val": [names], "test": [names]}')
    by_name = {key: pair for pair in pairs for key in (pair[0], pair[1].stem)}
    result = {}
    for split in SPLITS:
        missing = [n for n in listing.get(split, []) if n not in by_name]
        if missing:
            raise InputError(split_file, f"{split} lists {missing[0]!r}, which is not in images/")
        result[split] = [by_name[n] for n in listing.get(split, [])]
    return result


def _numbered_pairs(root: Path, data: Mapping) -> dict[str, list[Pair]]:
    """Vaihingen and Bing: `building_N.<ext>` with `building_mask_N.<ext>`, split by number."""
    layout = data["layout"]
    found = {}
    for path in _pictures(root):
        match = re.fullmatch(r"building_(\d+)", path.stem)
        if match:
            mask = next(
                (m for m in (root / f"building_mask_{match.group(1)}{s}" for s in PICTURE_SUFFIXES) if m.is_file()),
                None,
            )
            if mask is None:
                raise InputError(path, f"no mask for this image: expected building_mask_{match.group(1)} beside it")
            found[int(match.group(1))] = (path.name, path, mask)
    if not found:
        raise InputError(root, f"no images found (layout {layout}: {LAYOUT_HELP[layout]})")
    pairs = [found[n] for n in sorted(found)]
    train_count = int(data["train_count"])
    train, test = pairs[:train_count], pairs[train_count:]
    every = int(data["val_every"])
    val = [p for i, p in enumerate(train) if i % every == every - 1]
    return {"train": [p for p in train if p not in val], "val": val, "test": test}


# ---------------------------------------------------------------- crops and synthetic images


def _instances(root: Path, data: Mapping) -> dict[str, list[Sample]]:
    from scipy import ndimage

    image_path, labels_path = root / data["image"], root / data["labels"]
    image = read_image(image_path, ndims=(2,))
    labels = read_image(labels_path, ndims=(2,)).astype(np.int64)
    if labels.shape != image.shape:
        raise InputError(
            labels_path,
            f"label image is {labels.shape[1]}x{labels.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}",
        )
    if data.get("labelled_region") is not None:
        top, bottom, left, right = _labelled_region(data["labelled_region"], labels_path, labels.shape)
        image, labels = image[top:bottom, left:right], labels[top:bottom, left:right]
    ids = [int(i) for i in np.unique(labels) if i > 0]
    if not ids:
        raise InputError(labels_path, "no labelled objects")
    size, half = int(data["size"]), int(data["size"]) // 2
    boundary = float(data["test_from"]) * image.shape[0]
    padded_image = np.pad(image, half, mode="constant", constant_values=float(np.median(image)))
    padded_labels = np.pad(labels, half)
    splits: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    train_index = 0
    for label, (row, col) in zip(ids, ndimage.center_of_mass(labels > 0, labels, ids)):
        r, c = int(round(row)), int(round(col))
        window = (slice(r, r + size), slice(c, c + size))  # in padded coordinates: centred on (r, c)
        # The image's pixel edges in the crop's pixels, where the crop reaches past the image.
        bounds = (
            max(half - c, 0) - 0.5,
            max(half - r, 0) - 0.5,
            min(half + image.shape[1] - c, size) - 0.5,
            min(half + image.shape[0] - r, size) - 0.5,
        )
        sample = Sample(
            f"{image_path.stem}_object{label:04d}",
            padded_image[window][None].copy(),
            padded_labels[window] == label,
            bounds,
        )
        if row >= boundary:
            splits["test"].append(sample)
        elif r - half + size <= boundary:
            every = int(data["val_every"])
            splits["val" if train_index % every == every - 1 else "train"].append(sample)
            train_index += 1
    return splits


def _labelled_region(region, labels_path: Path, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """`data.labelled_region` [top, bottom, left, right] (pixels, ends exclusive), checked against the
    label image's shape."""
    try:
        if isinstance(region, str):
            raise TypeError
        top, bottom, left, right = (int(v) for v in region)
    except (TypeError, ValueError):
        raise InputError(
            None, f"data.labelled_region {region!r}: expected [top, bottom, left, right] in pixels"
        ) from None
    if not (0 <= top < bottom <= shape[0] and 0 <= left < right <= shape[1]):
        raise InputError(
            labels_path,
            f"data.labelled_region {[top, bottom, left, right]} is not a part of this {shape[1]}x{shape[0]} label "
            "image",
        )
    return top, bottom, left, right


def _shapes(data: Mapping) -> dict[str, list[Sample]]:
    from invrender.methods.acdr.synth import make_shape_image

    rng = np.random.default_rng(int(data["seed"]))
    count, size = int(data["count"]), int(data["size"])
    samples = []
    for i in range(count):
        image, mask = make_shape_image(rng, size)
        samples.append(Sample(f"shape_{i:04d}", image[None], mask))
    n_train, n_val = int(0.8 * count), int(0.1 * count)
    return {"train": samples[:n_train], "val": samples[n_train : n_train + n_val], "test": samples[n_train + n_val :]}
