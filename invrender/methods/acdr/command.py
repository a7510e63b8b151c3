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

from invrender.config import ConfigError, check_config_values, compose_config, resolve_device, to_plain
from invrender.core.geometry.polygons import write_polygons
from invrender.core.io import PICTURE_SUFFIXES, InputError, read_json, read_picture, write_json, write_png
from invrender.core.losses import check_weights
from invrender.core.overlay import FINAL_COLOUR, draw_curves, mask_outlines
from invrender.cpus import threads_record
from invrender.inputs import InputItem
from invrender.isolation import forks_jobs, prepare_parent
from invrender.method import (
    JobContext,
    MethodSpec,
    check_seed,
    check_threads,
    check_timeout,
    config_renderer,
    set_threads,
)
from invrender.methods.acdr.checkpoint import model_from_checkpoint, read_checkpoint
from invrender.methods.acdr.datasets import LAYOUT_HELP, load_splits, prepare, resize_picture
from invrender.methods.acdr.evaluate import full_size_mask, predict_set, score_set, to_image_size
from invrender.methods.acdr.models import CONTOUR_QUANTITIES, MODEL_KINDS, PIXEL_QUANTITIES, build_model
from invrender.methods.acdr.schema import RULES
from invrender.methods.acdr.trainer import Trainer, TrainSettings
from invrender.options import Arguments, SharedOptions, SynthOut, SynthSeed, shared_option, with_shared_options
from invrender.outdir import check_out_folder, run_lock
from invrender.run import run_method
from invrender.runner import Job, Runner, StepCallback

CONFIG_DIR = "acdr"
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


def start(
    config: str, overrides: list[str] | None, device: str, threads: int | None
) -> tuple[DictConfig, torch.device]:
    """Compose and check the config, choose the device and the threads."""
    dev = resolve_device(device)
    set_threads(threads)
    cfg = compose_config(CONFIG_DIR, config, list(overrides or []))
    check_config(cfg, dev)
    return cfg, dev


def model_info(kind: str, channels_in: int, cfg: DictConfig, config_name: str, overrides: list[str]) -> dict:
    """What a checkpoint records about its model besides the weights (and how its config was made)."""
    return {
        "kind": kind,
        "channels_in": channels_in,
        "size": int(cfg.data.size),
        "model": to_plain(cfg.model),
        "config": to_plain(cfg),
        "config_name": config_name,
        "overrides": overrides,
    }


def loaded_model(path: Path, device: torch.device, training_record: bool = False) -> tuple[torch.nn.Module, dict]:
    """The checkpoint's network on `device`, and the checkpoint (`read_checkpoint`: checked, with the
    record of its training run when `training_record`)."""
    checkpoint = read_checkpoint(path, training_record)
    return model_from_checkpoint(path, checkpoint).to(device), checkpoint


# ---------------------------------------------------------------- acdr-train


def acdr_train(
    overrides: Overrides = None,
    model: Annotated[
        str,
        typer.Option("--model", help="contour (ACDRNet) | pixel (the same U-Net as a pixel classifier, the baseline)."),
    ] = "contour",
    out: Annotated[Path, shared_option("out")] = Path("acdr-out"),
    config: Annotated[str, shared_option("config")] = "default",
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
    check_out_folder(out)
    if model not in MODEL_KINDS:
        raise ConfigError(f"--model {model!r}: expected one of {', '.join(MODEL_KINDS)}")
    cfg, dev = start(config, overrides, device, threads)
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
    render = config_renderer(cfg, dev, "polygons")
    if model == "contour":
        network.render = render
    run_info = {
        "method": "acdr-train",
        "model": model,
        "config_name": config,
        "overrides": list(overrides or []),
        "config": to_plain(cfg),
        "device": str(dev),
        "seed": seed,
        **threads_record(threads),
    }
    trainer = Trainer(
        network,
        model_info(model, channels, cfg, config, list(overrides or [])),
        TrainSettings.from_config(cfg),
        train_set,
        val_set,
        out,
        dev,
        seed,
        render,
        run_info,
        quiet,
        timeout,
    )
    with run_lock(out, wait=wait):
        if resume and trainer.resume() and not quiet:
            typer.echo(f"resuming after epoch {trainer.state.epoch} ({trainer.state.elapsed:.0f} s)", err=True)
        state = trainer.run()
    if trainer.timed_out():
        typer.echo(
            f"stopped by --timeout after {state.epoch} epoch(s) ({state.elapsed:.0f} s); the current weights are "
            f"{out / 'checkpoints' / 'last.pt'}; --resume goes on",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(
        f"trained {state.epoch} epochs in {state.elapsed:.0f} s; best smoothed validation mIoU {state.best_miou:.3f} "
        f"at epoch {state.best_epoch}; "
        f"checkpoints in {out / 'checkpoints'}",
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
            help="A preset whose test split to evaluate on (default: the data the checkpoint was trained on).",
        ),
    ] = None,
    tta: Tta = False,
    out: Annotated[Path, shared_option("out")] = Path("acdr-eval"),
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
    check_out_folder(out)
    check_threads(threads)
    prepare_parent()  # before anything is computed here: the scoring may run in a forked child
    if data is not None and config is not None:
        raise ConfigError("--data and --config: give one (a folder in the generic layout, or a preset's test split)")
    network, saved = loaded_model(checkpoint, resolve_device(device), training_record=True)  # epoch, config_name
    network.dihedral_average = tta
    # Without --config, the test split of the data the checkpoint was trained on.
    name, base = (config, []) if config is not None else (saved["config_name"], list(saved["overrides"]))
    all_overrides = base + list(overrides or [])
    cfg, dev = start(name, all_overrides, device, None)
    if data is not None:
        cfg.data.layout, cfg.data.root = "generic", str(data)
    network = network.to(dev)
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
    render = config_renderer(cfg, dev, "polygons")
    if saved["kind"] == "contour":
        network.render = render
    metrics_path = out / "metrics.json"
    identity = {"checkpoint": str(checkpoint), "model": saved["kind"], "epoch": saved["epoch"], "tta": tta}
    identity["data"] = to_plain(cfg.data)

    def score(on_step: StepCallback) -> dict:
        rows, means = score_set(
            network,
            test_set,
            int(cfg.train.eval_batch),
            dev,
            render,
            full_size=True,
            on_batch=lambda done, total: on_step("scoring", done - 1, total, float("nan")),
        )
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
        "config_name": name,
        "overrides": all_overrides,
        "config": to_plain(cfg),
        "device": str(dev),
        **threads_record(threads),
    }
    runner = Runner(
        out / "manifest.json",
        run_info,
        resume=resume,
        quiet=quiet,
        timeout=timeout,
        threads=threads,
        fork=forks_jobs(dev),
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
        "polygon": out / f"{image.stem}.polygon.json",  # written last: marks a complete output set
    }


def predict_file(
    image_path: Path, network: torch.nn.Module, saved: dict, render, out: Path, device: torch.device
) -> dict:
    picture = read_picture(image_path)
    if picture.shape[0] != saved["channels_in"]:
        raise InputError(
            image_path,
            f"image has {picture.shape[0]} channel(s) but the checkpoint's model takes {saved['channels_in']}",
        )
    height, width = picture.shape[1:]
    size = int(saved["size"])
    prediction = predict_set(network, resize_picture(picture, size)[None], 1, device)
    mask = full_size_mask(prediction, 0, (height, width), render)
    if "polygons" in prediction:
        polygons = [to_image_size(prediction["polygons"][0, -1].double(), size, height, width).numpy()]
    else:  # the pixel model: the longest outline of its mask
        outlines = mask_outlines(mask)
        polygons = [max(outlines, key=len)] if outlines else []
    paths = output_paths(out, image_path)
    write_png(paths["mask"], mask.astype(np.uint8) * 255)
    closed = [np.concatenate([p, p[:1]]) for p in polygons]
    write_png(paths["overlay"], draw_curves(picture.mean(0), [(closed, FINAL_COLOUR)]))
    write_polygons(paths["polygon"], polygons, image=image_path.name, extra={"method": f"acdr ({saved['kind']})"})
    return {"outputs": [str(p) for p in paths.values()], "area": int(mask.sum())}


@with_shared_options
def acdr_predict(
    arguments: Arguments,
    checkpoint: Checkpoint,
    tta: Tta = False,
    shared: SharedOptions = SharedOptions(),
) -> None:
    """Segment images with a trained checkpoint: <stem>.mask.png, <stem>.polygon.json, <stem>.overlay.png."""
    device = resolve_device(shared.device)
    network, saved = loaded_model(checkpoint, device)
    network.dihedral_average = tta

    def make_job(item: InputItem, cfg: DictConfig, context: JobContext) -> Job:
        render = config_renderer(cfg, context.device, "polygons")
        if saved["kind"] == "contour":
            network.render = render

        def work(on_step: StepCallback) -> dict:
            return predict_file(item.path, network, saved, render, context.out, context.device)

        return Job(str(item.path), [output_paths(context.out, item.path)["polygon"]], work)

    spec = MethodSpec(
        "acdr-predict",
        CONFIG_DIR,
        make_job,
        input_suffixes=PICTURE_SUFFIXES,
        renderer_kind="polygons",
    )
    raise typer.Exit(run_method(spec, arguments, shared, [], {"checkpoint": checkpoint}))


def synth_shapes(
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="Number of images.")] = 200,
    size: Annotated[int, typer.Option("--size", min=16, help="Image size in pixels (square).")] = 64,
    seed: SynthSeed = 0,
    out: SynthOut = Path("synth-shapes"),
) -> None:
    """Images of one star-shaped (often concave) object each, with a distractor, uneven background,
    blur and noise, and the object's mask: images/ and masks/ (the generic layout of acdr-train)."""
    from invrender.methods.acdr.synth import write_shape_dataset

    write_shape_dataset(out, count, size, seed)
    typer.echo(f"wrote {count} image(s) and mask(s) to {out}", err=True)
