"""Method inputs checked before the work starts (issue 20): sizes and values read from the input
files (voxel sizes, affines, centroids, spline widths, a checkpoint's keys, sizes and weights) are
refused in one line naming the file and the value, exit 2, nothing written; a frame without cells
is valid data."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel
import numpy as np
import pytest
import tifffile
import torch

from helpers import FAST, TINY_MODEL, assert_one_line_error, make_input, tiny_checkpoint, write_init
from invrender.cli import main
from invrender.core.budget import available_bytes, check_allocation, format_bytes
from invrender.core.io import InputError, write_png, write_tiff
from invrender.methods.acdr.models import build_model
from invrender.methods.cell_seg.synth import write_cell_dataset

# ---------------------------------------------------------------- the memory budget


def test_an_allocation_beyond_the_available_memory_is_refused_naming_the_value():
    available = available_bytes()
    assert available > 0  # Linux: /proc/meminfo
    check_allocation("x.pt", "size 64", 1e6)  # a megabyte fits anywhere
    with pytest.raises(InputError) as caught:
        check_allocation("x.pt", "size 1000000", 4e12 + 2 * available)
    message = str(caught.value)
    assert message.startswith("x.pt: size 1000000 needs ") and "of memory" in message, message
    assert format_bytes(7.8e9) == "7.8 GB" and format_bytes(512) == "512 bytes"


# ---------------------------------------------------------------- spine-seg


def write_ct(path, affine, shape=(12, 12, 12)):
    """A small NIfTI CT (a bright block in the middle) with `affine`."""
    data = np.full(shape, -1000.0, np.float32)
    data[4:8, 4:8, 2:10] = 400.0
    image = nibabel.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    nibabel.save(image, path)
    return path


def spine_seg(capsys, ct, centroids, out, *extra):
    # The time limit makes a check that lets the work start fail in seconds rather than run for hours.
    code = main(
        ["spine-seg", str(ct), "--centroids", str(centroids), "--out", str(out), "-q", "--timeout", "30", *extra]
    )
    return code, capsys.readouterr().err


@pytest.mark.parametrize("spacing, shown", [(1e-6, "1e-06"), (50.0, "50")])
def test_spine_seg_refuses_a_voxel_size_absurd_for_a_ct(tmp_path, capsys, spacing, shown):
    ct = write_ct(tmp_path / "ct.nii.gz", np.diag([spacing, 1.0, 1.0, 1.0]))
    centroids = tmp_path / "c.csv"
    centroids.write_text("label,x,y,z\n20,6,6,3\n21,6,6,8\n")
    out = tmp_path / "out"
    code, err = spine_seg(capsys, ct, centroids, out, "--centroid-space", "voxel")
    assert_one_line_error(code, err, out, "ct.nii.gz", f"voxel size ({shown}, 1, 1) mm", "absurd for a CT")


def test_spine_seg_refuses_a_nan_affine(tmp_path, capsys):
    affine = np.eye(4)
    affine[0, 3] = np.nan
    ct = write_ct(tmp_path / "ct.nii.gz", affine)
    assert np.isnan(nibabel.load(ct).affine).any()  # the file really holds it
    centroids = tmp_path / "c.csv"
    centroids.write_text("label,x,y,z\n20,6,6,3\n21,6,6,8\n")
    out = tmp_path / "out"
    code, err = spine_seg(capsys, ct, centroids, out, "--centroid-space", "voxel")
    assert_one_line_error(code, err, out, "ct.nii.gz", "affine contains NaN")


def verse_json(path, entries):
    path.write_text(json.dumps([{"direction": ["R", "A", "S"]}, *entries]).replace('"LABEL"', "1e400"))
    return path


@pytest.mark.parametrize(
    "entries, needles",
    [
        ([{"label": 20, "X": 6, "Y": 6, "Z": 3}], ["a single centroid, L1 (20)", "at least two"]),
        (
            [{"label": 20, "X": 6, "Y": 6, "Z": 5}, {"label": 21, "X": 6, "Y": 6, "Z": 5}],
            ["L1 (20) and L2 (21) are 0 mm apart"],
        ),
        (
            [{"label": 20, "X": 6, "Y": 3, "Z": 6}, {"label": 21, "X": 6, "Y": 9, "Z": 6}],
            ["no vertebra frames", "runs posterior"],
        ),
        ([{"label": "LABEL", "X": 6, "Y": 6, "Z": 3}], ["1e400", "out of the range"]),
        ([{"label": 20, "X": 6, "Y": "LABEL", "Z": 3}], ["1e400", "out of the range"]),
    ],
    ids=["single", "coincident", "posterior", "label 1e400", "coordinate 1e400"],
)
def test_spine_seg_refuses_centroids_that_make_no_chain(tmp_path, capsys, entries, needles):
    ct = write_ct(tmp_path / "ct.nii.gz", np.eye(4))
    centroids = verse_json(tmp_path / "ctd.json", entries)
    out = tmp_path / "out"
    code, err = spine_seg(capsys, ct, centroids, out)
    assert_one_line_error(code, err, out, "ctd.json", *needles)


def test_spine_seg_bad_input_in_a_batch_is_that_inputs_status_and_the_batch_goes_on(tmp_path, capsys):
    """Checked in the job (the values need the loaded file): a bad CT among good ones is `bad-input`
    in the manifest; the good one goes on to the fit (stopped here by a time limit: it is long)."""
    tiny = write_ct(tmp_path / "tiny.nii.gz", np.diag([1e-6, 1.0, 1.0, 1.0]))
    good = write_ct(tmp_path / "good.nii.gz", np.diag([2.0, 2.0, 2.0, 1.0]))
    (tmp_path / "c.csv").write_text("label,x,y,z\n20,6,6,3\n21,6,6,8\n")
    listing = tmp_path / "inputs.csv"
    listing.write_text(f"input,centroids\n{tiny},{tmp_path / 'c.csv'}\n{good},{tmp_path / 'c.csv'}\n")
    out = tmp_path / "out"
    code = main(["spine-seg", str(listing), "--centroid-space", "voxel", "--out", str(out), "-q", "--timeout", "2"])
    err = capsys.readouterr().err
    statuses = {Path(r["input"]).name: r for r in json.loads((out / "manifest.json").read_text())["inputs"]}
    assert statuses["tiny.nii.gz"]["status"] == "bad-input" and "1e-06" in statuses["tiny.nii.gz"]["error"]
    assert statuses["good.nii.gz"]["status"] != "bad-input", statuses
    assert code == 1 and "tiny.nii.gz" in err, err


# ---------------------------------------------------------------- spline-refine


@pytest.mark.parametrize("wide", [1e4, 1e6])
def test_spline_refine_refuses_widths_wider_than_the_image(tmp_path, capsys, wide):
    image = tmp_path / "f0.tif"
    write_tiff(image, np.random.default_rng(0).random((32, 32)).astype(np.float32))
    records = [{"id": 0, "points": np.array([[5.0, 5.0], [16.0, 16.0], [26.0, 20.0]]), "widths": np.full(3, wide)}]
    init = write_init(tmp_path / "f0.json", records)
    out = tmp_path / "out"
    code = main(
        [
            "spline-refine",
            str(image),
            "--init",
            str(init),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--timeout",
            "30",
            *FAST,
        ]
    )
    assert_one_line_error(
        code, capsys.readouterr().err, out, "f0.json", f"widths[0] = {wide:g} px is wider than the 32 x 32 image"
    )


def test_spline_refine_keeps_widths_within_the_image(tmp_path, capsys):
    """The bound is the diagonal, not tighter: synthetic bodies with their own widths still run."""
    image, records = make_input(tmp_path, "f0")
    for record in records:
        record["widths"] = np.full(len(record["points"]), 4.0)
    init = write_init(tmp_path / "f0.json", records)
    out = tmp_path / "out"
    code = main(["spline-refine", str(image), "--init", str(init), "--out", str(out), "--device", "cpu", "-q", *FAST])
    assert code == 0, capsys.readouterr().err


# ---------------------------------------------------------------- acdr


def predict(capsys, tmp_path, checkpoint):
    image = tmp_path / "x.png"
    write_png(image, (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    code = main(["acdr-predict", str(image), "--checkpoint", str(checkpoint), "--out", str(out), "-q"])
    return code, capsys.readouterr().err, out


def test_a_tiny_checkpoint_predicts(tmp_path, capsys):
    """The control of the cases below: the checkpoint they damage is a good one."""
    code, err, out = predict(capsys, tmp_path, tiny_checkpoint(tmp_path / "model.pt"))
    assert code == 0, err
    assert (out / "x.polygon.json").is_file()


def nan_weights(path):
    weights = build_model("contour", 1, TINY_MODEL).state_dict()
    weights["unet.head.weight"] = torch.full_like(weights["unet.head.weight"], float("nan"))
    return tiny_checkpoint(path, state_dict=weights)


@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda p: tiny_checkpoint(p, size=10**6), ["checkpoint size 1000000", "of memory"]),
        (lambda p: tiny_checkpoint(p, size=2), ["checkpoint size = 2", "at least 2^2"]),
        (lambda p: tiny_checkpoint(p, size="64"), ["checkpoint size = '64'"]),
        (lambda p: tiny_checkpoint(p, drop=["size"]), ["checkpoint has no size"]),
        (lambda p: tiny_checkpoint(p, model={**TINY_MODEL, "vertices": 10**9}), ["model.vertices = 1000000000"]),
        (
            lambda p: tiny_checkpoint(p, model={**TINY_MODEL, "widths": [10**6, 10**6]}),
            ["the weights do not fit the model the checkpoint describes"],
        ),
        (nan_weights, ["unet.head.weight contains NaN"]),
    ],
    ids=["size 10**6", "size too small", "size a string", "no size", "vertices", "huge widths", "NaN weights"],
)
def test_acdr_predict_refuses_a_checkpoint_with_bad_values(tmp_path, capsys, make, needles):
    code, err, out = predict(capsys, tmp_path, make(tmp_path / "model.pt"))
    assert_one_line_error(code, err, out, "model.pt", *needles)


@pytest.mark.parametrize("key", ["config_name", "overrides", "epoch"])
def test_acdr_eval_refuses_a_checkpoint_without_a_key_it_reads(tmp_path, capsys, key):
    checkpoint = tiny_checkpoint(tmp_path / "model.pt", drop=[key])
    out = tmp_path / "out"
    code = main(["acdr-eval", "--checkpoint", str(checkpoint), "--data", str(tmp_path), "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, out, "model.pt", f"checkpoint has no {key}")


# ---------------------------------------------------------------- cell-seg

CELL_FAST = ["phases.0.steps=5", "phases.1.steps=5"]


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    write_cell_dataset(root, frames=3, size=64, cells=3, divisions=0, seed=1)
    return root / "01"


def test_cell_seg_gives_a_blank_first_frame_no_cells_and_goes_on(cells, tmp_path, capsys):
    sequence = tmp_path / "01"
    sequence.mkdir()
    for frame in sorted(cells.glob("t*.tif")):
        (sequence / frame.name).write_bytes(frame.read_bytes())
    tifffile.imwrite(sequence / "t000.tif", np.zeros_like(tifffile.imread(sequence / "t000.tif")))
    out = tmp_path / "01_RES"
    code = main(["cell-seg", str(sequence), "--out", str(out), "-q", *CELL_FAST])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "01.cells.json").read_text())
    assert record["frames"][0]["cells"] == [] and all(f["cells"] for f in record["frames"][1:])
    assert tifffile.imread(out / "mask000.tif").max() == 0 and tifffile.imread(out / "mask001.tif").max() > 0


def test_cell_seg_refuses_a_wholly_blank_sequence_in_one_line(tmp_path, capsys):
    sequence = tmp_path / "01"
    sequence.mkdir()
    for t in range(2):
        tifffile.imwrite(sequence / f"t{t:03d}.tif", np.zeros((64, 64), np.uint16))
    out = tmp_path / "out"
    code = main(["cell-seg", str(sequence), "--out", str(out), "-q", *CELL_FAST])
    assert_one_line_error(code, capsys.readouterr().err, out, str(sequence), "all 2 frames are blank (every pixel 0)")


def test_cell_seg_refuses_a_flat_image_in_one_line(tmp_path, capsys):
    image = tmp_path / "flat.tif"
    tifffile.imwrite(image, np.full((64, 64), 7, np.uint16))
    out = tmp_path / "out"
    code = main(["cell-seg", str(image), "--out", str(out), "-q", *CELL_FAST])
    assert_one_line_error(code, capsys.readouterr().err, out, "flat.tif", "the image is blank (every pixel 7)")
