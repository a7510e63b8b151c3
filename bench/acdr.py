"""ACDRNet on the `nuclei` preset against the same U-Net as a pixel classifier, same budget; and the
training throughput of both at 64 x 64.

Each model is trained by `invrender acdr-train --config nuclei` (a time budget of `train.max_minutes`,
14.5 by default, training and validation together, 2 torch threads), its best checkpoint (by the
moving average of validation mIoU) is scored by `invrender acdr-eval` on the preset's test split (the nuclei in the
bottom quarter of the image, none of them seen in training), through the command line, as it is
and with `--tta` (the prediction averaged over the 8 rotations and mirror images). Throughput:
images per second of one training step (forward, loss, backward, Adam) on random 64 x 64 images,
median of 5 timed steps after 2 warm-up steps, for each batch size. A reference for the scores:
the test masks themselves with their outline moved by one pixel everywhere (eroded or dilated
with the 4-neighbourhood; the edge of the image is not an outline), scored as the models are.

    python bench/acdr.py [--skip-training] [--batches 16 100] [overrides ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from scipy import ndimage

from invrender.config import compose_config
from invrender.core.metrics import mask_scores
from invrender.core.render.polygon2d import render_polygons
from invrender.methods.acdr.datasets import load_splits, prepare
from invrender.methods.acdr.evaluate import inside_bounds, mean_scores
from invrender.methods.acdr.models import build_model

OUT = Path(__file__).parent / "out" / "acdr"
KINDS = ("contour", "pixel")


INVRENDER = [sys.executable, "-m", "invrender.cli"]


def train_and_evaluate(kind: str, overrides: list[str]) -> dict:
    """Train one model; its scores on the test split without and with --tta."""
    run = OUT / kind
    shutil.rmtree(run, ignore_errors=True)
    subprocess.run(
        [
            *INVRENDER,
            "acdr-train",
            "--config",
            "nuclei",
            "--model",
            kind,
            "--out",
            str(run),
            "--threads",
            "2",
            "--device",
            "cpu",
            "-q",
            *overrides,
        ],
        check=True,
    )
    manifest = json.loads((run / "manifest.json").read_text())
    return {
        "seconds": manifest["seconds"],
        "epochs": manifest["epochs_done"],
        "best_epoch": manifest["best"]["epoch"],
        "train_images": manifest["train_images"],
        "plain": evaluate(run, tta=False),
        "tta": evaluate(run, tta=True),
    }


def evaluate(run: Path, tta: bool) -> dict:
    evaluation = run.parent / (f"{run.name}-eval" + ("-tta" if tta else ""))
    subprocess.run(
        [
            *INVRENDER,
            "acdr-eval",
            "--checkpoint",
            str(run / "checkpoints" / "best.pt"),
            "--out",
            str(evaluation),
            "--threads",
            "2",
            "--device",
            "cpu",
            "-q",
            *(["--tta"] if tta else []),
        ],
        check=True,
    )
    metrics = json.loads((evaluation / "metrics.json").read_text())
    return {k: metrics[k] for k in ("f1", "miou", "wcov", "boundf", "images")}


def one_pixel_off() -> dict[str, dict]:
    """The four means of the test masks eroded and dilated by one pixel, against themselves."""
    cfg = compose_config("acdr", "nuclei", [])
    test = prepare(load_splits(cfg.data, ("test",))["test"], int(cfg.data.size))
    rows: dict[str, list] = {"eroded": [], "dilated": []}
    for truth, bounds in zip(test.full_masks, test.bounds):  # the crops are not resized: the bounds hold at full size
        inside = inside_bounds(bounds[None], *truth.shape)[0].numpy()
        rows["eroded"].append(mask_scores(ndimage.binary_erosion(truth | ~inside) & inside, truth))
        rows["dilated"].append(mask_scores(ndimage.binary_dilation(truth) & inside, truth))
    return {name: mean_scores(part) for name, part in rows.items()}


def throughput(kind: str, batch: int) -> float:
    cfg = compose_config("acdr", "nuclei", [])
    model = build_model(kind, 1, cfg.model)
    if kind == "contour":
        model.render = render_polygons
    weights = OmegaConf.to_container(cfg.loss if kind == "contour" else cfg.pixel_loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, masks = torch.rand(batch, 1, 64, 64), (torch.rand(batch, 64, 64) > 0.5).float()
    times = []
    for i in range(7):
        start = time.perf_counter()
        loss, _ = model.loss(images, masks, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-training", action="store_true", help="only the throughput table")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 100])
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not args.skip_training:
        results = {kind: train_and_evaluate(kind, args.overrides) for kind in KINDS}
        first = results["contour"]
        print(
            f"nuclei preset: {first['train_images']} training crops, {first['plain']['images']} test nuclei; 2 CPU "
            f"threads {' '.join(args.overrides)}"
        )
        print()
        print("| model | F1 | mIoU | WCov | BoundF | training s | epochs (best) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for mode in ("plain", "tta"):
            for kind, r in results.items():
                name = "ACDRNet (polygon, rendered)" if kind == "contour" else "pixel classifier (same U-Net, BCE)"
                m = r[mode]
                print(
                    f"| {name}{', --tta' if mode == 'tta' else ''} | {m['f1']:.4f} | {m['miou']:.4f} | "
                    f"{m['wcov']:.4f} | {m['boundf']:.4f} | {r['seconds']:.0f} | {r['epochs']} ({r['best_epoch']}) |"
                )
        for name, m in one_pixel_off().items():
            print(
                f"| the test masks, {name} by 1 px | {m['f1']:.4f} | {m['miou']:.4f} | {m['wcov']:.4f} | "
                f"{m['boundf']:.4f} | | |"
            )
        print()
    print("training throughput at 64 x 64, images/s (forward + loss + backward + Adam step), 2 threads")
    print()
    print("| model | " + " | ".join(f"batch {b}" for b in args.batches) + " |")
    print("| --- | " + " | ".join("---" for _ in args.batches) + " |")
    for kind in KINDS:
        print(f"| {kind} | " + " | ".join(f"{throughput(kind, b):.1f}" for b in args.batches) + " |")


if __name__ == "__main__":
    main()
