"""`invrender report` reads every kind of run folder (issue 23): a run, a sweep, an acdr training
run, acdr-eval's record and cell-eval's scores, each from a tiny real run, and shows the quality
figures that the outputs hold (SSIM and PSNR of mesh-fit, mIoU of acdr, SEG of cell-eval) beside
the loss, in the table and the CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import ACDR_TINY, FAST, ellipsoid_stack, make_inputs
from invrender.cli import main
from invrender.core.io import write_tiff
from invrender.methods.acdr.synth import write_shape_dataset


def report(capsys, target: Path) -> tuple[list[dict], str]:
    """`invrender report target`: the CSV's rows and the printed table."""
    capsys.readouterr()
    assert main(["report", str(target)]) == 0
    written = target / "report.csv" if target.is_dir() else target.with_name(f"{target.stem}.report.csv")
    with open(written, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows, capsys.readouterr().out


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_a_run_and_a_sweep_of_spline_refine(tmp_path, capsys):
    make_inputs(tmp_path / "in", 1)
    run = tmp_path / "run"
    assert main(["spline-refine", str(tmp_path / "in"), *FAST, "--out", str(run), "--device", "cpu", "-q"]) == 0
    [row], table = report(capsys, run)
    [record] = manifest(run)["inputs"]
    assert row["status"] == "done" and float(row["loss"]) == pytest.approx(record["result"]["loss"], rel=1e-5)
    assert not {"SSIM", "mIoU", "SEG"} & set(row), row  # spline-refine's figure is its loss
    assert "1 input(s): 1 done" in table

    sweep = tmp_path / "sweep"
    steps = [o for o in FAST if not o.startswith("phases.2.steps=")]
    code = main(["spline-refine", "-m", str(tmp_path / "in"), *steps, "phases.2.steps=1,2", "--out", str(sweep), "-q"])
    assert code == 0
    rows, _ = report(capsys, sweep)
    assert manifest(sweep)["kind"] == "sweep"
    assert sorted((r["job"], r["overrides"].split()[-1]) for r in rows) == [
        ("0", "phases.2.steps=1"),
        ("1", "phases.2.steps=2"),
    ]
    assert all(r["status"] == "done" and float(r["loss"]) > 0 for r in rows)


def test_mesh_fit_shows_the_ssim_and_psnr_of_its_render(tmp_path, capsys):
    stack = ellipsoid_stack(tmp_path, size=24, subdivisions=2)
    out = tmp_path / "fit"
    assert main(["mesh-fit", str(stack), "--out", str(out), "-q", "phases.0.steps=3", "init.subdivisions=1"]) == 0
    [row], table = report(capsys, out)
    result = manifest(out)["inputs"][0]["result"]
    assert float(row["SSIM"]) == pytest.approx(result["ssim"], rel=1e-5)
    assert float(row["PSNR"]) == pytest.approx(result["psnr"], rel=1e-5)
    assert "SSIM" in table and "PSNR" in table


def test_an_acdr_training_run_and_its_evaluation_show_the_miou(tmp_path, capsys):
    shapes = tmp_path / "shapes"
    write_shape_dataset(shapes, 12, size=32, seed=0)
    trained = tmp_path / "train"
    args = ["acdr-train", f"data.root={shapes}", *ACDR_TINY, "train.epochs=2", "data.val_every=4"]
    assert main([*args, "--out", str(trained), "-q"]) == 0
    [row], _ = report(capsys, trained)
    record = manifest(trained)
    assert record["kind"] == "train" and row["job"] == "acdr-train (2 epochs)"
    assert float(row["mIoU"]) == pytest.approx(record["best"]["val_miou"], rel=1e-5)

    scored = tmp_path / "eval"
    checkpoint = trained / "checkpoints" / "best.pt"
    assert main(["acdr-eval", "--checkpoint", str(checkpoint), "--data", str(shapes), "--out", str(scored), "-q"]) == 0
    [row], table = report(capsys, scored)
    metrics = json.loads((scored / "metrics.json").read_text())
    assert Path(row["input"]) == checkpoint and float(row["mIoU"]) == pytest.approx(metrics["miou"], rel=1e-5)
    assert "mIoU" in table


def test_cell_eval_scores_are_one_row_with_their_seg(tmp_path, capsys):
    truth = np.zeros((40, 40), np.uint16)
    truth[5:15, 5:15], truth[20:35, 22:34] = 1, 2
    result = np.roll(truth, 2, axis=1)  # each object shifted by 2 px: a SEG below 1
    write_tiff(tmp_path / "truth.tif", truth)
    write_tiff(tmp_path / "result.tif", result)
    scores = tmp_path / "scores.json"
    assert main(["cell-eval", str(tmp_path / "result.tif"), str(tmp_path / "truth.tif"), "--json", str(scores)]) == 0
    [row], table = report(capsys, scores)
    seg = json.loads(scores.read_text())["seg"]
    assert 0 < seg < 1 and float(row["SEG"]) == pytest.approx(seg, rel=1e-5)
    assert row["job"] == "cell-eval" and Path(row["input"]) == tmp_path / "result.tif" and "SEG" in table
