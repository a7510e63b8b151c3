"""`invrender.acdr`: ACDRNet from Python: `train` a network on a data set, `evaluate` a checkpoint on
a test set, `load` a checkpoint and segment images in memory with it.

The command lines call the same code: `acdr-train` composes its config and calls `train_with_config`
(what `train` calls), `acdr-eval` scores a `prepare_evaluation` (as `evaluate` does), and
`acdr-predict` reads each file and hands it to a `Predictor` (what `load` returns). Coordinates:
points `[x, y]` in pixels of the input image, x = column, the centre of the top-left pixel at
`[0, 0]`; images `(y, x)`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from invrender.config import ConfigError, check_config_values, to_plain
from invrender.core.geometry.polygons import mask_outlines
from invrender.core.io import InputError, check_picture
from invrender.core.losses import check_weights
from invrender.method import MethodConfig, api_steps, check_api_overrides, check_seed, check_timeout, config_renderer
from invrender.methods.acdr.checkpoint import model_from_checkpoint, read_checkpoint
from invrender.methods.acdr.datasets import LAYOUT_HELP, SegmentationSet, load_splits, prepare, resize_picture
from invrender.methods.acdr.evaluate import full_size_mask, predict_set, score_set, to_image_size
from invrender.methods.acdr.models import CONTOUR_QUANTITIES, MODEL_KINDS, PIXEL_QUANTITIES, build_model
from invrender.methods.acdr.schema import RULES
from invrender.methods.acdr.trainer import Trainer, TrainSettings
from invrender.outdir import check_out_folder, run_lock
from invrender.runner import StepCallback


def check_config(cfg: DictConfig, device: torch.device) -> None:
    check_config_values(cfg, RULES)
    try:
        check_weights(cfg.loss, CONTOUR_QUANTITIES)
        check_weights(cfg.pixel_loss, PIXEL_QUANTITIES)
    except ValueError as err:
        raise ConfigError(f"config loss: {err}") from None
    depth = len(cfg.model.widths)
    if cfg.data.size < 2**depth:
        raise ConfigError(f"config data.size {cfg.data.size}: must be at least 2^{depth} for {depth} encoder blocks")
    config_renderer(cfg, device, "polygons")


#: Training and evaluation: the whole config is checked.
CONFIG = MethodConfig("acdr-train", "acdr", check_config)
#: Prediction: the network comes from the checkpoint; of the config only the renderer is read.
PREDICT_CONFIG = MethodConfig("acdr-predict", "acdr", renderer_kind="polygons")


# ---------------------------------------------------------------- prediction


@dataclass
class Prediction:
    """One image's segmentation, at the input image's size.

    polygons: (K, 2) float64 arrays of [x, y] in the image's pixels: the contour model's final
    polygon, or the pixel model's longest mask outline (none for an empty mask).
    mask: (y, x) bool: the final polygon rendered at the image's size (contour model), or the
    probabilities resized to it (pixel model), thresholded at 1/2.
    """

    polygons: list[np.ndarray]
    mask: np.ndarray


class Predictor:
    """A trained network with its renderer on a device, segmenting one image at a time as
    `acdr-predict` does: normalised per channel, resized to the network's size, and the result
    scaled back to the image."""

    def __init__(self, network: torch.nn.Module, checkpoint: dict, render, device: torch.device):
        self.network, self.checkpoint, self.render, self.device = network, checkpoint, render, device

    @property
    def kind(self) -> str:
        """contour (ACDRNet) or pixel (the baseline)."""
        return self.checkpoint["kind"]

    @property
    def channels(self) -> int:
        """The channels of the images it takes: 1 (grey) or 3 (colour)."""
        return int(self.checkpoint["channels_in"])

    @property
    def size(self) -> int:
        """The network's input: images are resized to size x size pixels."""
        return int(self.checkpoint["size"])

    def predict(self, image: np.ndarray) -> Prediction:
        """Segment `image`: grey `(y, x)`, or colour `(y, x, 3)` or `(3, y, x)` (a 4th, alpha
        channel is dropped), of any numeric type and range (each channel is normalised by its 0.5 and
        99.5 percentiles). InputError (one line, naming `image`) for another
        shape, NaN or infinite values, or channels the network does not take."""
        return self.predict_picture(check_picture(image, "image"), "image")

    def predict_many(self, images: Iterable[np.ndarray]) -> list[Prediction]:
        """`predict` on each image in turn (they may differ in size)."""
        return [self.predict(image) for image in images]

    def predict_picture(self, picture: np.ndarray, source: str | os.PathLike) -> Prediction:
        """`predict` on a checked picture `(channels, y, x)` float32 (`read_picture`,
        `check_picture`); `source` names it in errors (the file on the command line)."""
        if picture.shape[0] != self.channels:
            raise InputError(
                source, f"image has {picture.shape[0]} channel(s) but the checkpoint's model takes {self.channels}"
            )
        if self.kind == "contour":
            # Set at every call: a renderer is not in the checkpoint, and the command line's jobs
            # share one network, each job with the renderer of its own config.
            self.network.render = self.render
        height, width = picture.shape[1:]
        prediction = predict_set(self.network, resize_picture(picture, self.size)[None], 1, self.device)
        mask = full_size_mask(prediction, 0, (height, width), self.render)
        if "polygons" in prediction:
            polygons = [to_image_size(prediction["polygons"][0, -1].double(), self.size, height, width).numpy()]
        else:  # the pixel model: the longest outline of its mask
            outlines = mask_outlines(mask)
            polygons = [max(outlines, key=len)] if outlines else []
        return Prediction(polygons, mask)


def load(
    checkpoint: str | os.PathLike,
    *,
    device: str | torch.device = "auto",
    tta: bool = False,
    config: str = "default",
    overrides: Sequence[str] = (),
) -> Predictor:
    """A checkpoint written by `train` or `acdr-train` (checkpoints/best.pt), ready to segment images.

    tta: average over the 8 rotations and mirror images of each image (8x the time). config and
    overrides as on the command line (`acdr-predict --config NAME key=value ...`); only the renderer
    (`render.backend`) is read from them. Raises InputError (one line, naming the file) for a missing,
    corrupt or foreign checkpoint, ConfigError for a bad device or config.
    """
    cfg, resolved = PREDICT_CONFIG.resolve(config, overrides, device)
    network, saved = loaded_model(checkpoint, resolved, tta)
    return Predictor(network, saved, config_renderer(cfg, resolved, "polygons"), resolved)


def loaded_model(
    path: str | os.PathLike, device: torch.device, tta: bool = False, training_record: bool = False
) -> tuple[torch.nn.Module, dict]:
    """The checkpoint's network on `device`, averaging over the square's symmetries with `tta`, and
    the checkpoint (`read_checkpoint`: checked, with the record of its training run when
    `training_record`)."""
    checkpoint = read_checkpoint(path, training_record)
    network = model_from_checkpoint(path, checkpoint).to(device)
    network.dihedral_average = tta
    return network, checkpoint


# ---------------------------------------------------------------- training


@dataclass
class TrainResult:
    """A training run: its checkpoints in `out` and its record."""

    checkpoint: Path | None  # out/checkpoints/best.pt, the best smoothed validation mIoU; None before a validation
    last: Path  # out/checkpoints/last.pt, the weights at the end (resume goes on from it)
    out: Path  # the run folder: also log.csv, curves.png, examples.png, manifest.json
    history: list[dict[str, float]]  # one row per validation, as in log.csv: epoch, seconds, loss, val_miou, ...
    epochs: int  # epochs trained, the resumed run's included
    seconds: float  # training and validation time, the resumed run's included
    best_epoch: int  # the epoch of best.pt
    best_miou: float  # its smoothed validation mIoU (-1 before a validation)
    timed_out: bool  # stopped by `timeout`; train again with resume=True to go on


def train(
    *,
    config: str = "nuclei",
    overrides: Sequence[str] = (),
    out: str | os.PathLike | None = None,
    model: str = "contour",
    device: str | torch.device = "auto",
    seed: int = 0,
    resume: bool = False,
    timeout: float | None = None,
    wait: bool = False,
    progress: bool | StepCallback | None = None,
) -> TrainResult:
    """Train ACDRNet (model="contour") or its pixel baseline (model="pixel") as `acdr-train` does.

    config and overrides as on the command line (`acdr-train --config NAME key=value ...`; e.g.
    `data.root=DIR` for images/ and masks/); the default, `nuclei`, trains on the real nuclei in
    data/nuclei for 14.5 minutes (the command line's `default` needs a `data.root`). out: the run
    folder (default: a new temporary folder, kept). resume: go on from out/checkpoints/last.pt.
    timeout: stop after this many seconds, saving the weights (the result's `timed_out`). wait: wait
    for another run writing into `out` instead of refusing. progress: a `(phase, epoch, epochs, loss)`
    callback after every epoch, or True for a progress bar. Torch's thread count is left as the
    caller set it. Raises ConfigError or InputError (one line) on a bad config or data, as the
    command line does.
    """
    check_timeout(timeout)
    check_seed(seed)
    cfg, resolved = CONFIG.resolve(config, overrides, device)
    run_folder = Path(tempfile.mkdtemp(prefix="invrender-acdr-")) if out is None else Path(out)
    check_out_folder(run_folder, "out")
    threads = {"torch_threads": torch.get_num_threads(), "torch_threads_from": "the caller (Python API)"}
    try:
        with api_steps(progress) as on_step:
            return train_with_config(
                cfg, resolved, model, run_folder, seed, config, list(overrides), threads, resume, timeout, wait, on_step
            )
    except BaseException:
        if out is None and not any(run_folder.iterdir()):
            run_folder.rmdir()  # the temporary folder of a run that wrote nothing
        raise


def train_with_config(
    cfg: DictConfig,
    device: torch.device,
    model: str,
    out: Path,
    seed: int,
    config_name: str,
    overrides: list[str],
    threads: dict,
    resume: bool = False,
    timeout: float | None = None,
    wait: bool = False,
    on_step: StepCallback | None = None,
    quiet: bool = True,
) -> TrainResult:
    """`train` with its config composed and checked for `device`; threads: the run record's entries on
    torch's threads. quiet: no progress bar and no line per validation on stderr (the command line's
    output without --quiet)."""
    if model not in MODEL_KINDS:
        raise ConfigError(f"model {model!r}: expected one of {', '.join(MODEL_KINDS)}")
    if model == "pixel":
        cfg.loss = cfg.pixel_loss
    last = out / "checkpoints" / "last.pt"
    if last.exists() and not resume:
        raise ConfigError(
            f"{out} already holds a training run ({last}): add --resume to continue it, or choose another --out"
        )
    if resume and last.exists() and (previous := read_checkpoint(last)["kind"]) != model:
        raise ConfigError(f"--resume: {last} is a {previous} model, not {model} (--model)")
    splits = load_splits(cfg.data, ("train", "val"))
    size = int(cfg.data.size)
    train_set, val_set = prepare(splits["train"], size), prepare(splits["val"], size)
    for name, part in (("training", train_set), ("validation", val_set)):
        if len(part) == 0:
            raise InputError(
                cfg.data.root,
                f"no {name} images (layout {cfg.data.layout}: {LAYOUT_HELP[cfg.data.layout]}; "
                "a split.json or a smaller data.val_every sets the validation images)",
            )
    if train_set.images.shape[1] != val_set.images.shape[1]:
        raise InputError(cfg.data.root, "training and validation images have different channel counts")
    torch.manual_seed(seed)
    channels = int(train_set.images.shape[1])
    network = build_model(model, channels, cfg.model)
    render = config_renderer(cfg, device, "polygons")
    if model == "contour":
        network.render = render
    run_info = {
        "method": "acdr-train",
        "model": model,
        "config_name": config_name,
        "overrides": overrides,
        "config": to_plain(cfg),
        "device": str(device),
        "seed": seed,
        **threads,
    }
    checkpoint_info = {
        "kind": model,
        "channels_in": channels,
        "size": size,
        "model": to_plain(cfg.model),
        "config": to_plain(cfg),
        "config_name": config_name,
        "overrides": overrides,
    }
    trainer = Trainer(
        network,
        checkpoint_info,
        TrainSettings.from_config(cfg),
        train_set,
        val_set,
        out,
        device,
        seed,
        render,
        run_info,
        quiet,
        timeout,
        on_step,
    )
    with run_lock(out, wait=wait):
        if resume and trainer.resume() and not quiet:
            trainer.console.print(
                f"resuming after epoch {trainer.state.epoch} ({trainer.state.elapsed:.0f} s)",
                markup=False,
                highlight=False,
            )
        state = trainer.run()
    best = trainer.checkpoints / "best.pt"
    return TrainResult(
        best if best.is_file() else None,
        last,
        out,
        list(state.history),
        state.epoch,
        state.elapsed,
        state.best_epoch,
        state.best_miou,
        trainer.timed_out(),
    )


# ---------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """A checkpoint's network and the test set it is scored on, as `acdr-eval` and `evaluate` set
    them up."""

    network: torch.nn.Module
    checkpoint: dict  # read_checkpoint's, with the record of its training run
    config_name: str  # the preset `cfg` was composed from (by default the checkpoint's training preset)
    overrides: list[str]  # ... and its overrides (by default the training's, then the caller's)
    cfg: DictConfig  # the test data's config (data.*), its renderer's and train.eval_batch
    device: torch.device
    test_set: SegmentationSet
    render: Callable  # the polygon renderer that turns a contour into a mask

    def score(self, on_batch: Callable[[int, int], None] | None = None) -> tuple[list[dict], dict[str, float]]:
        """Per image (name, f1, iou, wcov, boundf) at its own size, and the means (f1, miou, wcov,
        boundf); `on_batch(done, total)` after every batch."""
        return score_set(
            self.network, self.test_set, int(self.cfg.train.eval_batch), self.device, self.render, True, on_batch
        )


def prepare_evaluation(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike | None,
    config: str | None,
    overrides: Sequence[str],
    tta: bool,
    device: torch.device,
) -> Evaluation:
    """The checkpoint and its test set: the test images of `data` (the generic layout: images/ and
    masks/, its split.json's test list if any, else every image), or of a preset's split (`config`),
    by default those of the data the checkpoint was trained on. InputError for a bad checkpoint or
    test set, ConfigError for a bad config."""
    if data is not None and config is not None:
        raise ConfigError("--data and --config: give one (a folder in the generic layout, or a preset's test split)")
    network, saved = loaded_model(checkpoint, device, tta, training_record=True)
    name, base = (config, []) if config is not None else (saved["config_name"], list(saved["overrides"]))
    all_overrides = [*base, *overrides]
    cfg = CONFIG.compose(name, all_overrides, device)
    if data is not None:
        cfg.data.layout, cfg.data.root = "generic", str(data)
    cfg.data.size = int(saved["size"])
    samples = load_splits(cfg.data, ("test",))["test"]
    if not samples:
        raise InputError(cfg.data.root, f"no test images (layout {cfg.data.layout}: {LAYOUT_HELP[cfg.data.layout]})")
    test_set = prepare(samples, cfg.data.size)
    if test_set.images.shape[1] != saved["channels_in"]:
        raise InputError(
            cfg.data.root,
            f"images have {test_set.images.shape[1]} channel(s) but the checkpoint's model takes "
            f"{saved['channels_in']}",
        )
    render = config_renderer(cfg, device, "polygons")
    if saved["kind"] == "contour":
        network.render = render
    return Evaluation(network, saved, name, all_overrides, cfg, device, test_set, render)


@dataclass
class EvalResult:
    """A checkpoint's scores on a test set, as `acdr-eval` writes them to metrics.json."""

    f1: float  # the means over the test images
    miou: float
    wcov: float
    boundf: float
    rows: list[dict[str, float | str]]  # per image: name, f1, iou, wcov, boundf
    model: str  # the checkpoint's kind: contour | pixel
    epoch: int  # the epoch it was saved at


def evaluate(
    checkpoint: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    config: str | None = None,
    overrides: Sequence[str] = (),
    tta: bool = False,
    device: str | torch.device = "auto",
    progress: bool | StepCallback | None = None,
) -> EvalResult:
    """Score a checkpoint as `acdr-eval` does: F1, mIoU, WCov and BoundF of each test image at its
    own size, and their means.

    data: a folder in the generic layout (images/ and masks/; its split.json's test list if any, else
    every image); config: a preset whose test split to use instead; neither: the test split of the
    data the checkpoint was trained on. overrides as on the command line. tta: average over the 8
    rotations and mirror images. progress: a `(phase, batch, batches, nan)` callback after every
    batch, or True for a progress bar. Raises InputError or ConfigError (one line) as the command
    line does. Writes nothing.
    """
    check_api_overrides(overrides)
    evaluation = prepare_evaluation(checkpoint, data, config, list(overrides), tta, CONFIG.device(device))
    with api_steps(progress) as on_step:
        on_batch = None if on_step is None else lambda done, total: on_step("scoring", done - 1, total, float("nan"))
        rows, means = evaluation.score(on_batch)
    saved = evaluation.checkpoint
    return EvalResult(**means, rows=rows, model=saved["kind"], epoch=int(saved["epoch"]))
