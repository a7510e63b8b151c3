"""Training a segmentation network on a data set: epochs of augmented batches, validation,
checkpoints, a time budget, resume, and a record of it all in the output folder.

Writes into `out`: `checkpoints/last.pt` (after every validation, every `val_every` epochs) and
`checkpoints/best.pt` (the best validation mIoU, smoothed over validations by an exponential moving
average as nnU-Net does, because a few validation images make single scores noisy), `log.csv` (one
row per validation), `curves.png` (training loss and validation scores; redrawn at most every
CURVES_INTERVAL seconds, and at the end), `examples.png` (validation
images with the ground truth, the initial polygon and the result in the colours of core/figures.py) and
`manifest.json` (config, versions, device, status).
Every file is written atomically. An epoch's shuffling, augmentation and dropout come from
`seed` and the epoch number, so a resumed run goes on as the uninterrupted one would.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from invrender.core.figures import write_figure
from invrender.core.io import atomic_path
from invrender.interrupt import raise_if_stopping
from invrender.methods.acdr.augment import rescale_and_rotate
from invrender.methods.acdr.checkpoint import read_checkpoint, save_checkpoint
from invrender.methods.acdr.datasets import SegmentationSet
from invrender.methods.acdr.evaluate import predict_set, score_set
from invrender.methods.acdr.figures import example_sheet, training_curves
from invrender.record import write_run_record
from invrender.runner import StepCallback, progress_bar

#: Seconds between drawings of curves.png while training: a drawing takes about 0.4 s, which at
#: every validation would cost the nuclei preset about a tenth of its time. It is drawn at the end.
CURVES_INTERVAL = 30.0

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class TrainSettings:
    """The `train` section of a config, with the loss weights and augmentation."""

    epochs: int
    batch_size: int
    lr: float
    max_minutes: float | None
    val_every: int  # epochs between validations (and checkpoints)
    eval_batch: int
    loss: Mapping[str, float]
    schedule: str  # constant | cosine (to 0 over the epochs or the time budget, whichever ends first)
    scales: list[float]
    angles: list[float]
    best_smoothing: (
        float  # the weight of the past in the moving average of validation mIoU that picks best.pt (0: none)
    )
    examples: int = 8

    @classmethod
    def from_config(cls, cfg: Mapping) -> TrainSettings:
        train, augment = cfg["train"], cfg["data"]["augment"]
        budget = train.get("max_minutes")
        return cls(
            int(train["epochs"]),
            int(train["batch_size"]),
            float(train["lr"]),
            None if budget is None else float(budget),
            int(train["val_every"]),
            int(train["eval_batch"]),
            dict(cfg["loss"]),
            str(train["schedule"]),
            [float(s) for s in augment["scales"]],
            [float(a) for a in augment["angles"]],
            float(train["best_smoothing"]),
            int(train["examples"]),
        )


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    elapsed: float = 0.0  # seconds of training and validation so far
    best_epoch: int = 0
    best_miou: float = -1.0  # the best smoothed validation mIoU
    smoothed_miou: float | None = None  # the moving average of validation mIoU so far
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Pending:
    """Training losses since the last validation."""

    losses: list[float] = field(default_factory=list)
    terms: dict[str, float] = field(default_factory=dict)

    def add(self, loss: float, terms: Mapping[str, float]) -> None:
        self.losses.append(loss)
        for name, value in terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + value


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        checkpoint_info: dict[str, Any],
        settings: TrainSettings,
        train_set: SegmentationSet,
        val_set: SegmentationSet,
        out: Path,
        device: torch.device,
        seed: int,
        render: Callable,
        run_info: dict[str, Any],
        quiet: bool = False,
        timeout: float | None = None,
        on_step: StepCallback | None = None,
    ):
        self.model = model.to(device)
        self.info = checkpoint_info  # kind, channels_in, size, model, config: what a checkpoint says of the model
        self.settings = settings
        self.train_set, self.val_set = train_set, val_set
        self.out, self.device, self.seed, self.render = Path(out), device, seed, render
        self.run_info = run_info
        self.quiet = quiet  # no progress bar and no line per validation on stderr
        self.on_step = on_step  # called after every epoch: ("epochs", epoch - 1, epochs, its mean training loss)
        # --timeout: wall-clock seconds of this invocation, checked after every batch
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)
        self.state = TrainState()
        self._reserve = 0.0  # seconds the last validation and saving took
        self._curves_drawn = -math.inf  # time.monotonic() of the last drawing of curves.png
        self.console = Console(stderr=True)

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    def resume(self) -> bool:
        """Continue from `checkpoints/last.pt` when it exists; True if it did."""
        path = self.checkpoints / "last.pt"
        if not path.is_file():
            return False
        saved = read_checkpoint(path, training_record=True)
        self.model.load_state_dict(saved["state_dict"])
        self.optimizer.load_state_dict(saved["optimizer"])
        best = saved["best"]
        history = list(saved["history"])
        smoothed = history[-1].get("val_miou_smoothed") if history else None
        self.state = TrainState(
            int(saved["epoch"]), float(saved["elapsed"]), int(best["epoch"]), float(best["miou"]), smoothed, history
        )
        return True

    def run(self) -> TrainState:
        """Train until the epochs or the time budget are used up; Ctrl-C keeps the last checkpoint;
        at --timeout the current weights are saved as the last checkpoint (status `timeout`)."""
        self._write_manifest("running")
        progress = progress_bar(self.console, not self.quiet and self.console.is_terminal)
        try:
            with progress:
                task = progress.add_task("epochs", total=self.settings.epochs, completed=self.state.epoch)
                pending = _Pending()
                while self.state.epoch < self.settings.epochs and not self._out_of_time():
                    batches_before = len(pending.losses)
                    self._train_epoch(pending)
                    progress.update(task, completed=self.state.epoch)
                    if self.timed_out():
                        self._save(improved=False, status="timeout")
                        return self.state
                    if self.on_step is not None:
                        epoch_loss = float(np.mean(pending.losses[batches_before:]))
                        self.on_step("epochs", self.state.epoch - 1, self.settings.epochs, epoch_loss)
                    if (
                        self.state.epoch % self.settings.val_every
                        and self.state.epoch < self.settings.epochs
                        and not self._out_of_time()
                    ):
                        continue
                    row = self._validate(pending)
                    pending = _Pending()
                    progress.update(
                        task, description=f"epoch {row['epoch']} loss {row['loss']:.4f} val mIoU {row['val_miou']:.3f}"
                    )
                    if not self.quiet:
                        self.console.print(
                            f"epoch {row['epoch']}: loss {row['loss']:.4f}, val F1 {row['val_f1']:.3f}, mIoU "
                            f"{row['val_miou']:.3f} ({row['seconds']:.0f} s)",
                            markup=False,
                            highlight=False,
                        )
        except KeyboardInterrupt:
            self._draw_curves()
            self._write_manifest("interrupted")
            raise
        self._draw_curves()
        self._write_manifest("done")
        return self.state

    # ---------------------------------------------------------------- one epoch

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _out_of_time(self) -> bool:
        budget = self.settings.max_minutes
        return budget is not None and self.state.elapsed >= budget * 60

    def _train_epoch(self, pending: _Pending) -> None:
        settings, state = self.settings, self.state
        epoch = state.epoch + 1
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        torch.manual_seed(self.seed * 100_003 + epoch)  # dropout
        order = torch.randperm(len(self.train_set), generator=generator)
        budget = None if settings.max_minutes is None else settings.max_minutes * 60
        start = time.perf_counter()
        self.model.train()
        for first in range(0, len(order), settings.batch_size):
            raise_if_stopping()  # a SIGTERM whose KeyboardInterrupt a library swallowed (see interrupt.py)
            self._set_learning_rate(epoch - 1 + first / len(order), state.elapsed + time.perf_counter() - start)
            index = order[first : first + settings.batch_size]
            images, masks = rescale_and_rotate(
                self.train_set.images[index], self.train_set.masks[index], settings.scales, settings.angles, generator
            )
            loss, terms = self.model.loss(images.to(self.device), masks.to(self.device), settings.loss)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            pending.add(float(loss.detach()), terms)
            if self.timed_out():  # the epoch is not counted: a resumed run trains it again
                state.elapsed += time.perf_counter() - start
                return
            # What validating and saving took last time is kept free at the end of the budget.
            if budget is not None and state.elapsed + time.perf_counter() - start + self._reserve >= budget:
                break
        state.epoch, state.elapsed = epoch, state.elapsed + time.perf_counter() - start

    def _validate(self, pending: _Pending) -> dict[str, float]:
        """Score the validation set, record the epochs trained since the last validation, save."""
        state = self.state
        start = time.perf_counter()
        _, scores = score_set(
            self.model, self.val_set, self.settings.eval_batch, self.device, self.render, full_size=False
        )
        row = {
            "epoch": state.epoch,
            "seconds": state.elapsed,
            "loss": float(np.mean(pending.losses)),
            "batches": len(pending.losses),
            **{name: value / len(pending.losses) for name, value in pending.terms.items()},
            **{f"val_{k}": v for k, v in scores.items()},
        }
        weight = self.settings.best_smoothing
        state.smoothed_miou = (
            scores["miou"]
            if state.smoothed_miou is None
            else weight * state.smoothed_miou + (1 - weight) * scores["miou"]
        )
        row["val_miou_smoothed"] = state.smoothed_miou
        state.history.append(row)
        improved = state.smoothed_miou > state.best_miou
        if improved:
            state.best_epoch, state.best_miou = state.epoch, state.smoothed_miou
        row["validation_seconds"] = time.perf_counter() - start
        state.elapsed += row["validation_seconds"]
        row["seconds"] = state.elapsed
        saving = time.perf_counter()
        self._save(improved)
        state.elapsed += time.perf_counter() - saving
        self._reserve = time.perf_counter() - start
        return row

    def _set_learning_rate(self, epochs_done: float, seconds: float) -> None:
        settings = self.settings
        if settings.schedule == "constant":
            return
        progress = epochs_done / settings.epochs
        if settings.max_minutes is not None:
            progress = max(progress, seconds / (settings.max_minutes * 60))
        for group in self.optimizer.param_groups:
            group["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    # ---------------------------------------------------------------- records

    def _checkpoint(self) -> dict[str, Any]:
        state = self.state
        return {
            **self.info,
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": state.epoch,
            "elapsed": state.elapsed,
            "best": {"epoch": state.best_epoch, "miou": state.best_miou},
            "history": state.history,
        }

    def _save(self, improved: bool, status: str = "running") -> None:
        checkpoint = self._checkpoint()
        if improved:
            save_checkpoint(self.checkpoints / "best.pt", checkpoint)
            write_figure(self.out / "examples.png", self._examples())
        save_checkpoint(self.checkpoints / "last.pt", checkpoint)
        self._write_log()
        if status != "running" or time.monotonic() - self._curves_drawn >= CURVES_INTERVAL:
            self._draw_curves()
        self._write_manifest(status)

    def _write_log(self) -> None:
        history = self.state.history
        columns = list(dict.fromkeys(key for row in history for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
        with atomic_path(self.out / "log.csv") as tmp:
            tmp.write_text(text.getvalue(), encoding="utf-8")

    def _draw_curves(self) -> None:
        write_figure(self.out / "curves.png", training_curves(self.state.history, self.state.best_epoch))
        self._curves_drawn = time.monotonic()

    def _examples(self) -> Figure:
        count = min(self.settings.examples, len(self.val_set))
        images, masks = self.val_set.images[:count], self.val_set.masks[:count]
        prediction = predict_set(self.model, images, self.settings.eval_batch, self.device, self.val_set.bounds[:count])
        polygons = prediction.get("polygons")
        return example_sheet(
            images.mean(1).numpy(),
            masks.numpy() > 0.5,
            prediction["masks"].numpy() > 0.5,
            None if polygons is None else polygons.numpy(),
        )

    def _best_row(self) -> dict[str, float]:
        """The log row of the validation that chose best.pt ({} before the first)."""
        return next((row for row in self.state.history if row["epoch"] == self.state.best_epoch), {})

    def _write_manifest(self, status: str) -> None:
        state, best = self.state, self._best_row()
        write_run_record(
            self.out / "manifest.json",
            "train",
            {
                **self.run_info,
                "status": status,
                "epochs_done": state.epoch,
                "seconds": state.elapsed,
                "best": {
                    "epoch": state.best_epoch,
                    "val_miou": best.get("val_miou"),
                    "val_miou_smoothed": best.get("val_miou_smoothed"),
                },
                "history_tail": state.history[-1:],  # the last validation's row (loss, scores)
                "train_images": len(self.train_set),
                "val_images": len(self.val_set),
                "outputs": {
                    "last": str(self.checkpoints / "last.pt"),
                    "best": str(self.checkpoints / "best.pt"),
                    "log": str(self.out / "log.csv"),
                },
            },
        )
