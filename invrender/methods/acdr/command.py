"""`invrender acdr-train`, `acdr-eval`, `acdr-predict`: ACDRNet's command lines.

Training and evaluation run on a data set (a preset's layout or `--data DIR`); prediction is a
batch command like the other methods (files, folders, globs, lists, shards, resume, manifest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from omegaconf import DictConfig

from invrender.config import to_plain
from invrender.core.calibration import pixel_size_record
from invrender.core.figures import RESULT, Layer, image_overlay, write_figure
from invrender.core.geometry.polygons import write_polygons
from invrender.core.io import PICTURE_SUFFIXES, InputError, read_json, read_picture, write_json, write_png
from invrender.core.roi import Outline, write_roi_zip
from invrender.cpus import threads_record
from invrender.inputs import InputItem
from invrender.isolation import forks_jobs, prepare_parent
from invrender.messages import error_line
from invrender.method import (
    JobContext,
    MethodSpec,
    check_seed,
    check_threads,
    check_timeout,
    config_renderer,
    set_threads,
)
from invrender.methods.acdr.api import (
    CONFIG,
    PREDICT_CONFIG,
    Predictor,
    loaded_model,
    prepare_evaluation,
    train_with_config,
)
from invrender.options import (
    Arguments,
    CommandRun,
    OutFolder,
    SynthOut,
    SynthSeed,
    presets_help,
    shared_option,
    with_shared_options,
)
from invrender.outdir import run_lock
from invrender.run import run_method
from invrender.runner import Job, Runner, StepCallback

Overrides = Annotated[
    list[str] | None, typer.Argument(help="key=value config overrides, e.g. data.root=DIR.", show_default=False)
]
Checkpoint = Annotated[
    Path,
    typer.Option("--checkpoint", help="A checkpoint written by acdr-train (checkpoints/best.pt).", show_default=False),
]
Tta = Annotated[
    bool,
    typer.Option(
        "--tta",
        help="Average over the 8 rotations and mirror images of each image (test-time augmentation; 8x the time).",
    ),
]


def start(
    config: str, overrides: list[str] | None, device: str, threads: int | None
) -> tuple[DictConfig, torch.device]:
    """Compose and check the config, choose the device and the threads."""
    dev = CONFIG.device(device)
    set_threads(threads)
    return CONFIG.compose(config, list(overrides or []), dev), dev


# ---------------------------------------------------------------- acdr-train


def acdr_train(
    overrides: Overrides = None,
    model: Annotated[
        str,
        typer.Option("--model", help="contour (ACDRNet) | pixel (the same U-Net as a pixel classifier, the baseline)."),
    ] = "contour",
    out: OutFolder = None,
    config: Annotated[str, shared_option("config", CONFIG.config_dir)] = "default",
    device: Annotated[str, shared_option("device")] = "auto",
    seed: Annotated[int, shared_option("seed")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoints/last.pt.")] = False,
    threads: Annotated[int | None, shared_option("threads")] = None,
    quiet: Annotated[bool, shared_option("quiet")] = False,
    timeout: Annotated[float | None, shared_option("timeout")] = None,
    wait: Annotated[bool, shared_option("wait")] = False,
) -> None:
    """Train ACDRNet (or the pixel baseline) on a data set; checkpoints in OUT/checkpoints/."""
    check_timeout(timeout)
    check_seed(seed)
    cfg, dev = start(config, overrides, device, threads)
    trained = train_with_config(
        cfg,
        dev,
        model,
        out,
        seed,
        config,
        list(overrides or []),
        threads_record(threads),
        resume,
        timeout,
        wait,
        quiet=quiet,
    )
    if trained.timed_out:
        typer.echo(
            error_line(
                f"{out}: stopped by --timeout after {trained.epochs} epoch(s) ({trained.seconds:.0f} s); the current "
                f"weights are {trained.last}; --resume goes on"
            ),
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(
        f"trained {trained.epochs} epochs in {trained.seconds:.0f} s; best smoothed validation mIoU "
        f"{trained.best_miou:.3f} at epoch {trained.best_epoch}; checkpoints in {out / 'checkpoints'}",
        err=True,
    )


# ---------------------------------------------------------------- acdr-eval


def acdr_eval(
    checkpoint: Checkpoint,
    overrides: Overrides = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Evaluate on this folder (generic layout: images/ and masks/; its split.json's test list if any, "
            "else every image).",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="A preset whose test split to evaluate on (default: the data the checkpoint was trained on). "
            + presets_help(CONFIG.config_dir),
        ),
    ] = None,
    tta: Tta = False,
    out: OutFolder = None,
    device: Annotated[str, shared_option("device")] = "auto",
    threads: Annotated[int | None, shared_option("threads")] = None,
    quiet: Annotated[bool, shared_option("quiet")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip the scoring if OUT/metrics.json holds this checkpoint's.")
    ] = False,
    timeout: Annotated[float | None, shared_option("timeout")] = None,
    wait: Annotated[bool, shared_option("wait")] = False,
) -> None:
    """Score a checkpoint on a test set: F1, mIoU, WCov, BoundF per image and their means, in OUT/metrics.json
    (the run record in OUT/manifest.json, as for every command)."""
    check_timeout(timeout)
    check_threads(threads)
    prepare_parent()  # before anything is computed here: the scoring may run in a forked child
    evaluation = prepare_evaluation(checkpoint, data, config, list(overrides or []), tta, CONFIG.device(device))
    saved, cfg = evaluation.checkpoint, evaluation.cfg
    metrics_path = out / "metrics.json"
    identity = {"checkpoint": str(checkpoint), "model": saved["kind"], "epoch": saved["epoch"], "tta": tta}
    identity["data"] = to_plain(cfg.data)

    def score(on_step: StepCallback) -> dict:
        rows, means = evaluation.score(lambda done, total: on_step("scoring", done - 1, total, float("nan")))
        write_json(metrics_path, {**identity, "images": len(rows), **means, "rows": rows})
        return {"images": len(rows), **means}

    def scored_already() -> bool:
        try:
            previous = read_json(metrics_path)
        except InputError:
            return False
        return isinstance(previous, dict) and all(previous.get(key) == value for key, value in identity.items())

    run_info = {
        "method": "acdr-eval",
        "config_name": evaluation.config_name,
        "overrides": evaluation.overrides,
        "config": to_plain(cfg),
        "device": str(evaluation.device),
        **threads_record(threads),
    }
    runner = Runner(
        out / "manifest.json",
        run_info,
        resume=resume,
        quiet=quiet,
        timeout=timeout,
        threads=threads,
        fork=forks_jobs(evaluation.device),
    )
    with run_lock(out, wait=wait):
        code = runner.run([Job(str(checkpoint), [metrics_path], score, finished=scored_already)])
    record = runner.records[-1]
    if record.status in ("done", "skipped") and not quiet:
        from rich.console import Console
        from rich.table import Table

        means = {key: record.result[key] for key in ("f1", "miou", "wcov", "boundf")}
        table = Table(title=f"{checkpoint} ({saved['kind']}) on {record.result['images']} test images")
        for key in means:
            table.add_column(key, justify="right")
        table.add_row(*(f"{value:.4f}" for value in means.values()))
        Console().print(table)
        typer.echo(f"scores per image in {metrics_path}", err=True)
    raise typer.Exit(code)


# ---------------------------------------------------------------- acdr-predict


def output_paths(out: Path, image: Path) -> dict[str, Path]:
    return {
        "mask": out / f"{image.stem}.mask.png",
        "overlay": out / f"{image.stem}.overlay.png",
        "rois": out / f"{image.stem}.rois.zip",  # the polygons as ImageJ ROIs
        "polygon": out / f"{image.stem}.polygon.json",  # written last: marks a complete output set
    }


def predict_file(image_path: Path, predictor: Predictor, out: Path, reading: dict | None = None) -> dict:
    """Segment one picture (with `reading`'s `channel`, `--channel`) and write its outputs (the
    polygons JSON last); the job's result records the pixel size and its unit (`pixel_size_record`):
    `reading`'s `pixel_size` (`--pixel-size`), else the one a TIFF records."""
    reading = reading or {}
    picture = read_picture(image_path, reading.get("channel"))
    found = predictor.predict_picture(picture, image_path)
    paths = output_paths(out, image_path)
    write_png(paths["mask"], found.mask.astype(np.uint8) * 255)
    overlay = image_overlay(picture.mean(0), [Layer(RESULT, found.polygons, closed=True)], image_path.name)
    write_figure(paths["overlay"], overlay)
    extra = {"method": f"acdr ({predictor.kind})"}
    outlines = [Outline(polygon, f"polygon {index}") for index, polygon in enumerate(found.polygons)]
    write_roi_zip(paths["rois"], outlines, "polygon")
    write_polygons(paths["polygon"], found.polygons, image=image_path.name, extra=extra)
    scale = pixel_size_record(image_path, reading.get("pixel_size"))
    return {"outputs": [str(p) for p in paths.values()], "area": int(found.mask.sum()), **scale}


@with_shared_options(PREDICT_CONFIG, reading=("channel", "pixel_size"))
def acdr_predict(
    arguments: Arguments,
    checkpoint: Checkpoint,
    tta: Tta = False,
    *,
    run: CommandRun,
) -> None:
    """Segment images with a trained checkpoint: <stem>.mask.png, <stem>.polygon.json, <stem>.overlay.png,
    <stem>.rois.zip (ImageJ ROIs)."""
    network, saved = loaded_model(checkpoint, PREDICT_CONFIG.device(run.shared.device), tta)

    def make_job(item: InputItem, cfg: DictConfig, context: JobContext) -> Job:
        predictor = Predictor(network, saved, config_renderer(cfg, context.device, "polygons"), context.device)

        def work(on_step: StepCallback) -> dict:
            return predict_file(item.path, predictor, context.out, context.options)

        paths = output_paths(context.out, item.path)
        return Job(str(item.path), [paths["rois"], paths["polygon"]], work)

    spec = MethodSpec(PREDICT_CONFIG, make_job, input_suffixes=PICTURE_SUFFIXES)
    raise typer.Exit(run_method(spec, arguments, run, {"checkpoint": checkpoint}))


def synth_shapes(
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="Number of images.")] = 200,
    size: Annotated[int, typer.Option("--size", min=16, help="Image size in pixels (square).")] = 64,
    seed: SynthSeed = 0,
    out: SynthOut = None,
) -> None:
    """Images of one star-shaped (often concave) object each, with a distractor, uneven background,
    blur and noise, and the object's mask: images/ and masks/ (the generic layout of acdr-train)."""
    from invrender.methods.acdr.synth import write_shape_dataset

    write_shape_dataset(out, count, size, seed)
    typer.echo(f"wrote {count} image(s) and mask(s) to {out}", err=True)
