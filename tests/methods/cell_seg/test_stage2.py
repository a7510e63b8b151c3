"""cell-seg stage 2: training targets, instances from class probabilities, tracking by overlap,
and the command with `--stage both | 2` end to end on a tiny synthetic time-lapse."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile
import torch

from helpers import CELL_FAST, assert_one_line_error
from invrender.cli import main
from invrender.config import compose_config
from invrender.core.io import InputError
from invrender.core.metrics import seg_measure
from invrender.methods.acdr.checkpoint import save_checkpoint
from invrender.methods.cell_seg.ctc import read_label_frames, read_tracks
from invrender.methods.cell_seg.overlap_tracking import link_by_overlap
from invrender.methods.cell_seg.stage2 import (
    build_network,
    class_probabilities,
    class_targets,
    instances_from_probabilities,
    load_network,
    pad_to_crop,
    random_batch,
    save_network,
    training_indices,
)
from invrender.methods.cell_seg.synth import write_cell_dataset

SIZE = 48
#: SEG of the tiny test runs, measured: 0.89 (--stage both, 80 steps) and 0.85 (--stage 2, 40 steps);
#: stage 1 with the same short fits gives 0.90 (both merge the daughters of the last frame's division).
SEG_BOUND = 0.8


def disks(*cells: tuple[float, float, float, int]) -> np.ndarray:
    """A label frame (SIZE, SIZE) with a disk per (x, y, radius, label)."""
    rows, cols = np.mgrid[:SIZE, :SIZE]
    frame = np.zeros((SIZE, SIZE), np.uint16)
    for x, y, radius, label in cells:
        frame[(cols - x) ** 2 + (rows - y) ** 2 <= radius**2] = label
    return frame


def assert_tracks_match_frames(frames: np.ndarray, tracks: list[tuple[int, int, int, int]]) -> None:
    """Every track's label is in exactly the frames B..E, and every label of a frame has a track."""
    present = {
        label: [t for t in range(len(frames)) if (frames[t] == label).any()] for label in np.unique(frames) if label
    }
    assert sorted(present) == sorted(label for label, *_ in tracks)
    for label, begin, end, _ in tracks:
        assert present[label] == list(range(begin, end + 1)), (label, begin, end, present[label])


def test_a_still_and_a_moving_cell_keep_their_tracks():
    frames = np.stack([disks((12, 12, 6, 5), (30 + 3 * t, 30, 6, 9)) for t in range(4)])
    linked, tracks = link_by_overlap(frames)
    assert linked.dtype == np.uint16
    assert sorted(tracks) == [(1, 0, 3, 0), (2, 0, 3, 0)]
    assert_tracks_match_frames(linked, tracks)
    # The same pixels, new labels: one per track.
    np.testing.assert_array_equal(linked > 0, frames > 0)


def test_a_division_ends_the_mother_and_starts_two_daughters():
    mother = [disks((24, 24, 9, 3)), disks((25, 24, 9, 3))]
    daughters = [disks((19 - t, 24, 6, 4), (31 + t, 24, 6, 8)) for t in range(2)]
    linked, tracks = link_by_overlap(np.stack(mother + daughters))
    assert sorted(tracks) == [(1, 0, 1, 0), (2, 2, 3, 1), (3, 2, 3, 1)]
    assert_tracks_match_frames(linked, tracks)


def test_cells_entering_and_leaving_start_and_end_tracks():
    frames = np.stack(
        [
            disks((10, 10, 5, 1), (36, 36, 5, 2)),
            disks((10, 10, 5, 1), (36, 36, 5, 2), (36, 10, 5, 3)),  # 3 enters
            disks((10, 10, 5, 1), (36, 10, 5, 3)),  # 2 leaves
            disks((10, 10, 5, 1), (36, 10, 5, 3), (36, 36, 5, 7)),  # a cell where 2 was: a new track
        ]
    )
    linked, tracks = link_by_overlap(frames)
    assert sorted(tracks) == [(1, 0, 3, 0), (2, 0, 1, 0), (3, 1, 3, 0), (4, 3, 3, 0)]
    assert_tracks_match_frames(linked, tracks)


def test_a_jump_beyond_the_overlap_bound_is_a_new_track():
    frames = np.stack([disks((12, 24, 6, 1)), disks((22, 24, 6, 1))])  # IoU 0 after a 10 px jump
    _, tracks = link_by_overlap(frames)
    assert sorted(tracks) == [(1, 0, 0, 0), (2, 1, 1, 0)]


def test_a_cell_growing_next_to_a_fragment_is_no_division():
    # A cell and, at t = 1, a second object mostly outside it: the cell goes on, the other is new.
    frames = np.stack([disks((20, 24, 8, 1)), disks((20, 24, 8, 1), (31, 24, 4, 2))])
    _, tracks = link_by_overlap(frames)
    assert sorted(tracks) == [(1, 0, 1, 0), (2, 1, 1, 0)]


def test_empty_frames():
    frames = np.stack([np.zeros((SIZE, SIZE), np.uint16), disks((20, 20, 5, 1)), np.zeros((SIZE, SIZE), np.uint16)])
    linked, tracks = link_by_overlap(frames)
    assert tracks == [(1, 1, 1, 0)]
    assert_tracks_match_frames(linked, tracks)


# ---------------------------------------------------------------- targets, batches, instances


def test_training_frames_are_evenly_spaced_with_both_ends():
    assert training_indices(5, 20) == [0, 5, 10, 14, 19]
    assert training_indices(2, 10) == [0, 9]
    assert training_indices(1, 10) == [0]
    assert training_indices(8, 3) == [0, 1, 2]


def test_targets_mark_the_boundary_between_touching_cells():
    labels = np.zeros((5, 8), np.uint16)
    labels[1:4, 1:4], labels[1:4, 4:7] = 1, 2  # two touching 3 x 3 cells
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0, 2, 2, 2, 2, 2, 2, 0],
            [0, 2, 1, 2, 2, 1, 2, 0],
            [0, 2, 2, 2, 2, 2, 2, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(class_targets(labels, boundary=1), expected)
    square = np.zeros((9, 9), np.uint16)
    square[1:8, 1:8] = 4
    wide = class_targets(square, boundary=2)  # a band 2 px wide: the 3 x 3 centre stays interior
    assert (wide[3:6, 3:6] == 1).all() and (wide == 1).sum() == 9
    assert ((wide == 2) == ((square > 0) & (wide != 1))).all()


def test_random_crops_keep_images_and_targets_aligned():
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(3, (2, 20, 24), generator=generator)
    images, labels = random_batch(targets.float() * 10, targets, 16, 12, generator)
    assert images.shape == (12, 1, 16, 16) and labels.shape == (12, 16, 16) and labels.dtype == torch.int64
    torch.testing.assert_close(images[:, 0], labels.float() * 10)
    # A frame smaller than the crop is mirrored at its borders.
    small = np.arange(12.0).reshape(1, 3, 4)
    padded, padded_targets = pad_to_crop(small, small.astype(np.int64), 6)
    assert padded.shape == (1, 6, 6) and (padded == padded_targets).all()
    np.testing.assert_array_equal(padded[0, 1:4, 1:5], small[0])
    np.testing.assert_array_equal(padded[0, 0, 1:5], small[0, 1])


def test_instances_from_probabilities_split_touching_cells():
    rows, cols = np.mgrid[:40, :48]
    probabilities = np.zeros((3, 40, 48), np.float32)
    probabilities[0] = 1

    def paint(where: np.ndarray, background: float, interior: float, boundary: float) -> None:
        probabilities[:, where] = np.array([[background], [interior], [boundary]])

    truth = np.zeros((40, 48), np.uint16)
    for label, (x, y) in enumerate([(15, 20), (31, 20)], start=1):  # radius 8: the two disks touch
        distance = np.hypot(cols - x, rows - y)
        truth[distance <= 8] = label
        paint(distance <= 8, 0.1, 0.2, 0.7)  # a boundary band ...
        paint(distance <= 6, 0.0, 0.9, 0.1)  # ... around the interior
    paint((rows < 2) & (cols < 2), 0.0, 0.9, 0.1)  # an interior of 4 px: under min_area / 4, no cell
    paint((rows >= 30) & (cols < 8), 0.1, 0.1, 0.8)  # a boundary without interior: no cell
    labels = instances_from_probabilities(probabilities, min_area=20)
    assert labels.dtype == np.uint16 and set(np.unique(labels)) == {0, 1, 2}
    assert seg_measure({0: labels}, {0: truth})["seg"] > 0.95


def test_a_saved_network_loads_with_its_config(tmp_path):
    cfg = compose_config("cell_seg", "default", ["stage2.widths=[4,8]"]).stage2
    network = build_network(cfg).eval()
    save_network(tmp_path / "network.pt", network, cfg, [0, 9])
    loaded, settings = load_network(tmp_path / "network.pt")
    assert settings["widths"] == [4, 8]
    image = np.random.default_rng(0).random((30, 34)).astype(np.float32)
    np.testing.assert_allclose(class_probabilities(loaded, image), class_probabilities(network, image))
    (tmp_path / "other.pt").write_bytes(b"not a network")
    with pytest.raises(InputError, match="other.pt.*not a cell-seg stage-2 network.*torch.save"):
        load_network(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "acdr.pt", {"kind": "pixel", "state_dict": network.state_dict()})
    with pytest.raises(InputError, match="acdr.pt.*not a cell-seg stage-2 network"):
        load_network(tmp_path / "acdr.pt")
    save_network(
        tmp_path / "narrow.pt",
        build_network(compose_config("cell_seg", "default", ["stage2.widths=[2,4]"]).stage2),
        cfg,
        [0],
    )
    with pytest.raises(InputError, match="narrow.pt.*weights do not fit"):
        load_network(tmp_path / "narrow.pt")


def test_tiles_give_the_one_pass_probabilities():
    # Random weights with batch-norm statistics taken from the image itself, so that the output
    # varies with the input over the whole field of view (at most 49 px for 3 levels of 2
    # convolutions, the default margin; 40 px suffice, 24 do not).
    torch.manual_seed(0)
    network = build_network(compose_config("cell_seg", "default", []).stage2)
    image = np.random.default_rng(1).random((203, 150)).astype(np.float32)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average: after one pass, the statistics of that pass
    with torch.no_grad():
        network.train()(torch.from_numpy(image[:200, :144])[None, None])
        network.head.weight *= 30
    whole = class_probabilities(network, image)
    assert whole.std(axis=(1, 2)).min() > 0.05
    assert network.field_of_view == 49
    for tile in (40, 64, 100):  # 100 rounds up to 104 (a multiple of 8); the tiles cut the frame unevenly
        np.testing.assert_allclose(class_probabilities(network, image, tile), whole, atol=1e-4)
    # Too small a margin changes the result: the test can tell tiles from one pass.
    assert np.abs(class_probabilities(network, image, 40, margin=8) - whole).max() > 0.1


# ---------------------------------------------------------------- the command

#: A small, briefly trained network, for tests.
SMALL_NETWORK = [
    "stage2.train_frames=2",
    "stage2.crop=48",
    "stage2.batch=4",
    "stage2.steps=80",
    "stage2.widths=[8,16,32]",
]


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    out = tmp_path_factory.mktemp("movie")
    write_cell_dataset(out, frames=4, size=96, cells=4, divisions=1, seed=1)
    return out


@pytest.fixture(scope="module")
def both_run(movie, tmp_path_factory):
    """`cell-seg --stage both` on the movie: its output folder."""
    out = tmp_path_factory.mktemp("res") / "01_RES"
    assert (
        main(["cell-seg", str(movie / "01"), "--out", str(out), "--stage", "both", "-q", *CELL_FAST, *SMALL_NETWORK])
        == 0
    )
    return out


def test_stage_both_writes_the_ctc_layout_the_masks_and_the_network(movie, both_run):
    out = both_run
    masks = read_label_frames(out, "mask")
    assert sorted(masks) == [0, 1, 2, 3] and all(
        tifffile.imread(out / f"mask{t:03d}.tif").dtype == np.uint16 for t in masks
    )
    assert sorted(read_label_frames(out / "stage1", "mask")) == [0, 3]  # first and last frame trained it
    tracks = read_tracks(out / "res_track.txt")
    assert_tracks_match_frames(np.stack([masks[t] for t in range(4)]), tracks)
    ends = {label: end for label, _, end, _ in tracks}
    assert all(ends[parent] == begin - 1 for _, begin, _, parent in tracks if parent)
    measure = seg_measure(masks, read_label_frames(movie / "01_GT" / "SEG", "man_seg"))
    assert measure["seg"] > SEG_BOUND, measure
    losses = np.loadtxt(out / "stage2" / "loss.csv", delimiter=",", skiprows=1)
    assert losses.shape == (80, 2) and losses[-10:, 1].mean() < 0.5 * losses[:10, 1].mean()
    network, settings = load_network(out / "stage2" / "network.pt")
    assert settings["widths"] == [8, 16, 32]
    assert (out / "tracks.png").is_file() and (out / "01.loss.png").is_file()  # stage 1's steps, then training's
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [f"t{t:03d}.png" for t in range(4)]
    record = json.loads((out / "01.cells.json").read_text())
    assert record["stage"] == "both" and record["stage2"]["train_frames"] == [0, 3]
    cell = record["frames"][1]["cells"][0]
    assert {"label", "centre", "area", "points"} <= set(cell) and cell["area"] == (masks[1] == cell["label"]).sum()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["stage"] == "both" and manifest["inputs"][0]["status"] == "done"


def test_stage_2_trains_again_on_the_masks_in_out_stage1(movie, both_run, tmp_path):
    out = tmp_path / "01_RES"
    shutil.copytree(both_run, out)
    stage1 = {p.name: p.read_bytes() for p in (out / "stage1").iterdir()}
    # The same training settings and seed: the same network, so the same masks (deterministic).
    assert main(["cell-seg", str(movie / "01"), "--out", str(out), "--stage", "2", "-q", *SMALL_NETWORK]) == 0
    for t in range(4):
        np.testing.assert_array_equal(
            tifffile.imread(out / f"mask{t:03d}.tif"), tifffile.imread(both_run / f"mask{t:03d}.tif")
        )
    assert (
        main(
            ["cell-seg", str(movie / "01"), "--out", str(out), "--stage", "2", "-q", *SMALL_NETWORK, "stage2.steps=40"]
        )
        == 0
    )
    assert {p.name: p.read_bytes() for p in (out / "stage1").iterdir()} == stage1  # reused, not refitted
    assert len((out / "stage2" / "loss.csv").read_text().splitlines()) == 41
    record = json.loads((out / "01.cells.json").read_text())
    assert record["stage"] == "2" and record["stage2"]["train_frames"] == [0, 3]
    assert (
        seg_measure(read_label_frames(out, "mask"), read_label_frames(movie / "01_GT" / "SEG", "man_seg"))["seg"]
        > SEG_BOUND
    )
    # Resume: the finished time-lapse is skipped (with the config that made it), unless another stage is asked for.
    again = ["cell-seg", str(movie / "01"), "--out", str(out), "--stage", "2", "-q", "--resume", *SMALL_NETWORK]
    assert main([*again, "stage2.steps=40"]) == 0
    assert json.loads((out / "manifest.json").read_text())["inputs"][0]["status"] == "skipped"
    assert main(["cell-seg", str(movie / "01"), "--out", str(out), "--stage", "1", "-q", "--resume", *CELL_FAST]) == 0
    assert json.loads((out / "manifest.json").read_text())["inputs"][0]["status"] == "done"
    assert json.loads((out / "01.cells.json").read_text())["stage"] == "1"


def test_an_unknown_stage_or_a_bad_stage2_setting(movie, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["cell-seg", str(movie / "01"), "--out", str(out), "--stage", "3", "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, "--stage", "'3'")
    code = main(["cell-seg", str(movie / "01"), "--out", str(out), "-q", "stage=fast"])
    assert_one_line_error(code, capsys.readouterr().err, out, "config stage", "'fast'")
    code = main(["cell-seg", str(movie / "01"), "--out", str(out), "--stage", "both", "-q", "stage2.crop=4"])
    assert_one_line_error(code, capsys.readouterr().err, out, "stage2.crop")
    code = main(["cell-seg", str(movie / "01"), "--out", str(out), "--stage", "both", "-q", "stage2.tile=-1"])
    assert_one_line_error(code, capsys.readouterr().err, out, "stage2.tile")


def test_stage_2_without_stage1_masks(movie, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["cell-seg", str(movie / "01"), "--out", str(out), "--stage", "2", "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, str(out / "stage1"), "--stage both")


def test_stage_2_on_a_single_image(movie, tmp_path, capsys):
    image = tmp_path / "frame.tif"
    image.write_bytes((movie / "01" / "t000.tif").read_bytes())
    out = tmp_path / "out"
    code = main(["cell-seg", str(image), "--out", str(out), "--stage", "both", "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, "frame.tif", "needs a time-lapse")
