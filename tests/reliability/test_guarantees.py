"""What the tool promises under hostile or unlucky input (issue 20), one place for the cases."""

from __future__ import annotations

import argparse

import pytest
import torch

from helpers import FAST, assert_one_line_error, make_input, write_init
from invrender.cli import main


def test_a_log_that_is_a_symlink_is_not_followed_out_of_the_output_folder(tmp_path, capsys):
    image, records = make_input(tmp_path / "data", "f0")
    write_init(tmp_path / "data" / "f0.json", records)
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "f0.tif.log").symlink_to(outside)
    code = main(["spline-refine", *FAST, str(image), "--out", str(out), "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "f0.tif.log" in err and "symbolic link" in err, err
    assert outside.read_text() == "precious\n"


def test_a_pickled_checkpoint_is_refused_without_advising_to_load_it_unsafely(tmp_path, capsys):
    checkpoint = tmp_path / "evil.pt"
    payload = argparse.Namespace(run="code")  # any object that torch's safe loader refuses
    torch.save({"format": "invrender.segmentation-net", "model": payload}, checkpoint)
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    out = tmp_path / "out"
    code = main(["acdr-predict", str(image), "--checkpoint", str(checkpoint), "--out", str(out)])
    line = assert_one_line_error(code, capsys.readouterr().err, out, str(checkpoint), "never loaded")
    assert "weights_only" not in line


@pytest.mark.parametrize("threads", ["0", "100000"])
@pytest.mark.parametrize("command", ["spline-refine", "acdr-train"])
def test_threads_beyond_the_machine_are_a_usage_error(tmp_path, capsys, command, threads):
    """--threads 100000 crashed OpenMP (a segmentation fault); now it is refused before anything runs."""
    image = tmp_path / "f0.tif"
    image.write_bytes(b"")  # never read: the options are checked first
    out = tmp_path / "out"
    inputs = [] if command == "acdr-train" else [str(image)]
    code = main([command, *inputs, "--threads", threads, "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, out, f"--threads {threads}", "must be from 1 to")


@pytest.mark.parametrize("column", ["hydra.launcher.n_jobs", "hydra/launcher", "+hydra.job.chdir"])
def test_a_csv_column_cannot_set_hydra(tmp_path, capsys, column):
    """Launcher settings need -m on the command line; an input list's column sets one input's config."""
    image, records = make_input(tmp_path, "f0")
    write_init(tmp_path / "f0.json", records)
    listing = tmp_path / "list.csv"
    listing.write_text(f"input,{column}\nf0.tif,2\n")
    out = tmp_path / "out"
    code = main(["spline-refine", *FAST, str(listing), "--out", str(out), "--device", "cpu", "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, f"{listing} line 2", column.lstrip("+"))
