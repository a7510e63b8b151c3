"""acdr-train / acdr-predict / acdr-eval through the command line: a tiny training run, its
checkpoint predicted and evaluated, resume, and one line with exit code 2 for each bad input."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import ACDR_TINY, assert_one_line_error
from invrender.cli import main
from invrender.core.figures import OVERLAY_SIZE, PANELS_SIZE
from invrender.core.io import write_png
from invrender.methods.acdr.checkpoint import read_checkpoint, save_checkpoint
from invrender.methods.acdr.figures import SHEET_SIZE
from invrender.methods.acdr.synth import write_shape_dataset


def epochs_logged(out) -> list[dict]:
    with open(out / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_shape_dataset(root, 40, size=32, seed=3)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes):
    out = tmp_path_factory.mktemp("run") / "run"
    # Without augmentation the loss of a few epochs is not drowned in the noise of random zooms.
    code = main(
        [
            "acdr-train",
            f"data.root={shapes}",
            *ACDR_TINY,
            "train.epochs=16",
            "train.lr=0.003",
            "data.augment.scales=[1.0]",
            "data.augment.angles=[0]",
            "--out",
            str(out),
            "--seed",
            "1",
            "-q",
        ]
    )
    assert code in (0, None)
    return out


def test_a_tiny_training_run_lowers_the_loss_and_writes_its_record(trained):
    rows = epochs_logged(trained)
    assert len(rows) == 16
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:2]), losses
    scores = [float(r["val_miou"]) for r in rows]
    assert max(scores) > scores[0] + 0.15, scores
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "curves.png", "examples.png", "manifest.json"):
        assert (trained / name).is_file(), name
    for name, size in (("curves.png", PANELS_SIZE), ("examples.png", SHEET_SIZE)):
        with Image.open(trained / name) as figure:
            assert figure.format == "PNG" and figure.size == size
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["epochs_done"] == 16 and manifest["model"] == "contour"
    # best.pt: the first maximum of the moving average (0.9 old + 0.1 new) of validation mIoU.
    smoothed = [scores[0]]
    for score in scores[1:]:
        smoothed.append(0.9 * smoothed[-1] + 0.1 * score)
    assert np.allclose([float(r["val_miou_smoothed"]) for r in rows], smoothed)
    best = read_checkpoint(trained / "checkpoints" / "best.pt")
    assert best["epoch"] == max(range(1, 17), key=lambda e: (smoothed[e - 1], -e))
    assert manifest["best"] == pytest.approx(
        {
            "epoch": best["epoch"],
            "val_miou": scores[best["epoch"] - 1],
            "val_miou_smoothed": smoothed[best["epoch"] - 1],
        }
    )


def test_predict_writes_mask_polygon_and_overlay_named_after_each_input(trained, shapes, tmp_path):
    out = tmp_path / "pred"
    code = main(
        [
            "acdr-predict",
            str(shapes / "images"),
            "--checkpoint",
            str(trained / "checkpoints" / "best.pt"),
            "--out",
            str(out),
            "-q",
        ]
    )
    assert code == 0
    for stem in ("shape_0000", "shape_0039"):
        mask = np.asarray(Image.open(out / f"{stem}.mask.png"))
        assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}
        polygon = json.loads((out / f"{stem}.polygon.json").read_text())
        assert polygon["format"] == "invrender.polygons" and polygon["image"] == f"{stem}.png"
        assert np.asarray(polygon["polygons"][0]["points"]).shape == (16, 2)
        with Image.open(out / f"{stem}.overlay.png") as overlay:
            assert overlay.format == "PNG" and overlay.size == OVERLAY_SIZE
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"] == {"done": 40}


def test_eval_writes_the_four_metrics_and_per_image_rows(trained, shapes, tmp_path):
    out = tmp_path / "eval"
    code = main(
        [
            "acdr-eval",
            "--checkpoint",
            str(trained / "checkpoints" / "best.pt"),
            "--data",
            str(shapes),
            "--out",
            str(out),
            "-q",
        ]
    )
    assert code in (0, None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 40 and len(metrics["rows"]) == 40
    for key in ("f1", "miou", "wcov", "boundf"):
        assert 0 <= metrics[key] <= 1
        assert metrics[key] == pytest.approx(np.mean([r["iou" if key == "miou" else key] for r in metrics["rows"]]))
    assert metrics["tta"] is False


def test_tta_averages_over_the_symmetries_in_eval_and_predict(trained, shapes, tmp_path):
    checkpoint = str(trained / "checkpoints" / "best.pt")
    assert main(
        ["acdr-eval", "--checkpoint", checkpoint, "--data", str(shapes), "--out", str(tmp_path / "plain"), "-q"]
    ) in (0, None)
    assert main(
        ["acdr-eval", "--checkpoint", checkpoint, "--data", str(shapes), "--out", str(tmp_path / "tta"), "--tta", "-q"]
    ) in (0, None)
    plain, tta = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("plain", "tta"))
    assert tta["tta"] is True and plain["rows"] != tta["rows"]  # a network trained for 16 epochs is not symmetric
    assert (
        main(
            [
                "acdr-predict",
                str(shapes / "images" / "shape_0000.png"),
                "--checkpoint",
                checkpoint,
                "--tta",
                "--out",
                str(tmp_path / "pred"),
                "-q",
            ]
        )
        == 0
    )
    assert (tmp_path / "pred" / "shape_0000.polygon.json").is_file()


def test_resume_goes_on_from_the_last_epoch(shapes, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["acdr-train", f"data.root={shapes}", *ACDR_TINY, "--out", str(out), "-q"]
    assert main([*common, "train.epochs=2"]) in (0, None)
    first = epochs_logged(out)
    capsys.readouterr()
    assert main([*common, "train.epochs=3"]) == 2  # no silent overwrite of a finished run
    assert "already holds a training run" in capsys.readouterr().err
    assert epochs_logged(out) == first
    assert main([*common, "train.epochs=3", "--resume"]) in (0, None)
    rows = epochs_logged(out)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[:2] == first
    # The moving average that picks best.pt goes on from where it was.
    assert float(rows[2]["val_miou_smoothed"]) == pytest.approx(
        0.9 * float(rows[1]["val_miou_smoothed"]) + 0.1 * float(rows[2]["val_miou"])
    )


def test_report_reads_a_training_run(trained, capsys):
    assert main(["report", str(trained)]) == 0
    with open(trained / "report.csv", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["kind"] == "train" and manifest["record_version"] == 1 and manifest["command"]
    assert row["status"] == "done" and row["job"] == "acdr-train (16 epochs)"
    assert Path(row["input"]) == Path(manifest["config"]["data"]["root"])
    assert float(row["loss"]) == pytest.approx(float(epochs_logged(trained)[-1]["loss"]), rel=1e-5)
    assert row["outputs"] == "3"  # last.pt, best.pt, log.csv


def test_eval_keeps_a_run_record_that_report_resume_and_timeout_use(trained, shapes, tmp_path, capsys):
    best, last = (str(trained / "checkpoints" / name) for name in ("best.pt", "last.pt"))
    out = tmp_path / "eval"
    common = ["acdr-eval", "--data", str(shapes), "--out", str(out), "-q"]
    assert main([*common, "--checkpoint", best]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "run" and manifest["method"] == "acdr-eval" and manifest["summary"] == {"done": 1}
    metrics = json.loads((out / "metrics.json").read_text())
    assert manifest["inputs"][0]["result"]["miou"] == metrics["miou"]
    assert main(["report", str(out)]) == 0
    with open(out / "report.csv", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["status"] == "done" and Path(row["input"]) == Path(best)
    # --resume skips the same checkpoint's scores and scores another one
    written = (out / "metrics.json").stat().st_mtime_ns
    assert main([*common, "--checkpoint", best, "--resume"]) == 0
    assert (out / "metrics.json").stat().st_mtime_ns == written
    assert json.loads((out / "manifest.json").read_text())["summary"] == {"skipped": 1}
    assert main([*common, "--checkpoint", last, "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["checkpoint"] == last
    # --timeout: the scoring stops, recorded as 'timeout' (exit 1), and no scores are written
    stopped = tmp_path / "stopped"
    capsys.readouterr()
    code = main(["acdr-eval", "--data", str(shapes), "--out", str(stopped), "--checkpoint", best, "--timeout", "1e-4"])
    assert code == 1 and "timeout" in capsys.readouterr().err
    assert json.loads((stopped / "manifest.json").read_text())["summary"] == {"timeout": 1}
    assert not (stopped / "metrics.json").exists()
    assert torch.is_grad_enabled()  # the timer fired inside torch.no_grad(): the runner restores autograd


def test_timeout_stops_training_cleanly_with_its_checkpoint_and_record(shapes, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["acdr-train", f"data.root={shapes}", *ACDR_TINY, "--out", str(out), "--quiet"]
    start = time.monotonic()
    code = main([*common, "train.epochs=100000", "--timeout", "5"])
    seconds = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 1 and "stopped by --timeout" in err, err
    assert seconds < 30  # 5 s, then at most one batch and the checkpoint (the data is read before)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "timeout"
    last = read_checkpoint(out / "checkpoints" / "last.pt")
    assert last["epoch"] == manifest["epochs_done"]
    # --resume goes on from the saved weights
    assert main([*common, f"train.epochs={last['epoch'] + 1}", "--resume"]) in (0, None)
    assert json.loads((out / "manifest.json").read_text())["status"] == "done"


def test_the_pixel_baseline_trains_and_evaluates(shapes, tmp_path):
    out = tmp_path / "pixel"
    assert main(
        ["acdr-train", f"data.root={shapes}", *ACDR_TINY, "train.epochs=2", "--model", "pixel", "--out", str(out), "-q"]
    ) in (0, None)
    assert read_checkpoint(out / "checkpoints" / "last.pt")["kind"] == "pixel"
    assert main(
        ["acdr-eval", "--checkpoint", str(out / "checkpoints" / "last.pt"), "--out", str(tmp_path / "eval"), "-q"]
    ) in (0, None)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["model"] == "pixel" and metrics["images"] == 40  # the generic layout's test set: every image


# ---------------------------------------------------------------- bad input


def test_an_image_without_a_mask(shapes, tmp_path, capsys):
    root = tmp_path / "data"
    write_shape_dataset(root, 3, size=32)
    (root / "masks" / "shape_0001.png").unlink()
    code = main(["acdr-train", f"data.root={root}", *ACDR_TINY, "--out", str(tmp_path / "out")])
    assert_one_line_error(code, capsys.readouterr().err, tmp_path / "out", "shape_0001.png", "no mask")


def test_a_mask_of_another_size(tmp_path, capsys):
    root = tmp_path / "data"
    write_shape_dataset(root, 3, size=32)
    write_png(root / "masks" / "shape_0002.png", np.zeros((30, 32), np.uint8))
    code = main(["acdr-train", f"data.root={root}", *ACDR_TINY, "--out", str(tmp_path / "out")])
    assert_one_line_error(code, capsys.readouterr().err, tmp_path / "out", "shape_0002.png", "mask is 32x30")


def test_an_empty_dataset(tmp_path, capsys):
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "masks").mkdir()
    code = main(["acdr-train", f"data.root={tmp_path / 'data'}", "--out", str(tmp_path / "out")])
    assert_one_line_error(code, capsys.readouterr().err, tmp_path / "out", "images", "no images found")


def test_missing_data_names_the_folder_and_the_layout(tmp_path, capsys):
    code = main(
        ["acdr-train", "--config", "vaihingen", f"data.root={tmp_path / 'buildings'}", "--out", str(tmp_path / "out")]
    )
    assert_one_line_error(
        code, capsys.readouterr().err, tmp_path / "out", "buildings", "building_NNN.tif with building_mask_NNN.tif"
    )


def test_a_labelled_region_outside_the_label_image(tmp_path, capsys):
    code = main(
        ["acdr-train", "--config", "nuclei", "data.labelled_region=[0,600,0,256]", "--out", str(tmp_path / "out")]
    )
    assert_one_line_error(
        code, capsys.readouterr().err, tmp_path / "out", "mask2d_left.tif", "is not a part of this 256x512 label image"
    )


@pytest.mark.parametrize("command", ["predict", "eval"])
@pytest.mark.parametrize("problem", ["corrupt", "another model", "weights that do not fit"])
def test_bad_checkpoints(command, problem, trained, shapes, tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    if problem == "corrupt":
        checkpoint.write_bytes((trained / "checkpoints" / "best.pt").read_bytes()[:1000])
        needle = "not a readable checkpoint"
    elif problem == "another model":
        torch.save({"state_dict": {}, "arch": "resnet"}, checkpoint)
        needle = "not an invrender segmentation checkpoint"
    else:
        saved = read_checkpoint(trained / "checkpoints" / "best.pt")
        saved["model"] = {**saved["model"], "widths": [8, 16, 32]}
        save_checkpoint(checkpoint, {k: v for k, v in saved.items() if k not in ("format", "version")})
        needle = "weights do not fit"
    out = tmp_path / "out"
    args = ["acdr-predict", str(shapes / "images")] if command == "predict" else ["acdr-eval", "--data", str(shapes)]
    code = main([*args, "--checkpoint", str(checkpoint), "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, out, "model.pt", needle)


def test_predict_refuses_an_image_with_other_channels(trained, tmp_path, capsys):
    write_png(tmp_path / "rgb.png", np.zeros((32, 32, 3), np.uint8))
    code = main(
        [
            "acdr-predict",
            str(tmp_path / "rgb.png"),
            "--checkpoint",
            str(trained / "checkpoints" / "best.pt"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert_one_line_error(code, capsys.readouterr().err, tmp_path / "out", "rgb.png", "3 channel(s)")


def test_a_training_run_into_a_folder_in_use_is_refused(shapes, tmp_path, capsys):
    from invrender.outdir import run_lock

    out = tmp_path / "run"
    with run_lock(out):  # another acdr-train or acdr-eval is writing there
        code = main(["acdr-train", f"data.root={shapes}", *ACDR_TINY, "train.epochs=1", "--out", str(out), "-q"])
        assert not any(out.iterdir())  # nothing written beside the other run's files
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "another run" in err and "--wait" in err, err
