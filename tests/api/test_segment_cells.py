"""`invrender.segment_cells` on arrays: the same result as `invrender cell-seg` on the same
time-lapse, seed and config (stage 1 and stage both), and the command line's one-line errors as
exceptions."""

import json

import numpy as np
import pytest
import tifffile
import torch

import invrender
from invrender.cli import main
from invrender.methods.cell_seg.ctc import read_label_frames, read_tracks
from invrender.methods.cell_seg.stage2 import load_network
from invrender.methods.cell_seg.synth import write_cell_dataset

FRAMES = 3
#: A short stage-1 schedule, and a small network trained briefly on 2 frames.
FAST = ["phases.0.steps=5", "phases.1.steps=20"]
SMALL_NETWORK = [
    "stage2.train_frames=2",
    "stage2.crop=32",
    "stage2.batch=2",
    "stage2.steps=20",
    "stage2.widths=[4,8]",
]
#: Barely a fit: for the tests of input forms, progress and errors.
TINY = ["phases.0.steps=2", "phases.1.steps=3", "rounds=1"]


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """A synthetic time-lapse of 3 frames of 64 x 64 px, 3 nuclei one of which divides: its CTC
    sequence folder and the frames (t, y, x)."""
    out = tmp_path_factory.mktemp("movie")
    write_cell_dataset(out, frames=FRAMES, size=64, cells=3, divisions=1, seed=1)
    stack = np.stack([tifffile.imread(out / "01" / f"t{t:03d}.tif") for t in range(FRAMES)])
    return out / "01", stack


def run_both(movie, out, stage: str, overrides: list[str], seed: int):
    """`cell-seg --stage STAGE` on the movie into `out`, and `segment_cells` on its frames."""
    folder, stack = movie
    args = ["cell-seg", str(folder), "--out", str(out), "--device", "cpu", "--seed", str(seed), "-q"]
    assert main([*args, "--stage", stage, *overrides]) == 0
    return invrender.segment_cells(stack, stage=stage, overrides=overrides, device="cpu", seed=seed)


def assert_result_is_written(result, out):
    """The result's labels, tracks, contours and divisions are those the command line wrote."""
    masks = read_label_frames(out, "mask")
    assert result.labels.dtype == np.uint16 and result.labels.shape == (FRAMES, 64, 64)
    np.testing.assert_array_equal(result.labels, np.stack([masks[t] for t in range(FRAMES)]))
    assert result.tracks.dtype == np.int64
    np.testing.assert_array_equal(result.tracks, np.array(read_tracks(out / "res_track.txt")).reshape(-1, 4))
    record = json.loads((out / "01.cells.json").read_text())
    assert result.divisions == record["divisions"]
    assert len(result.records) == len(record["frames"]) == FRAMES
    for frame, written, contours in zip(result.records, record["frames"], result.contours):
        assert frame["frame"] == written["frame"]
        assert list(contours) == [cell["label"] for cell in written["cells"]]
        for cell in written["cells"]:
            np.testing.assert_allclose(contours[cell["label"]], cell["points"], rtol=1e-6, atol=1e-6)
    return record


def test_stage_1_gives_what_the_command_line_writes(movie, tmp_path):
    out = tmp_path / "01_RES"
    result = run_both(movie, out, "1", FAST, seed=2)
    record = assert_result_is_written(result, out)
    assert result.stage == "1" and len(result.tracks) >= 3 and result.labels.max() > 0
    assert result.losses == pytest.approx([frame["loss"] for frame in record["frames"]], rel=1e-6)
    assert sorted(result.phases) == list(range(FRAMES)) and all(result.phases.values())
    for frame, written in zip(result.records, record["frames"]):
        assert frame["psf_sigma"] == pytest.approx(written["psf_sigma"], rel=1e-6)
        assert [c["brightness"] for c in frame["cells"]] == pytest.approx(
            [c["brightness"] for c in written["cells"]], rel=1e-6
        )
    # Every label of a frame is a cell with a contour there.
    for labels, contours in zip(result.labels, result.contours):
        assert set(np.unique(labels)) - {0} == set(contours)
    assert result.network is None and result.stage1_masks is None and result.training_loss is None


def test_stage_both_gives_what_the_command_line_writes_and_stage_2_trains_on_its_masks(movie, tmp_path):
    out = tmp_path / "01_RES"
    result = run_both(movie, out, "both", [*FAST, *SMALL_NETWORK], seed=0)
    record = assert_result_is_written(result, out)
    assert result.records == record["frames"]  # outlines of the network's masks: JSON holds them exactly
    assert result.stage == "both" and result.train_frames == record["stage2"]["train_frames"] == [0, FRAMES - 1]
    stage1 = read_label_frames(out / "stage1", "mask")
    np.testing.assert_array_equal(result.stage1_masks, np.stack([stage1[t] for t in result.train_frames]))
    assert sorted(result.phases) == result.train_frames
    written_losses = np.loadtxt(out / "stage2" / "loss.csv", delimiter=",", skiprows=1)[:, 1]
    np.testing.assert_allclose(result.training_losses, written_losses, rtol=1e-5)
    assert result.training_loss == pytest.approx(record["stage2"]["final_loss"], rel=1e-12)
    network, _ = load_network(out / "stage2" / "network.pt")
    saved = network.state_dict()
    for name, weights in result.network.state_dict().items():
        torch.testing.assert_close(weights, saved[name])
    # Stage 2 on these masks trains the same network (same settings and seed): the same segmentation.
    masks = dict(zip(result.train_frames, result.stage1_masks))
    again = invrender.segment_cells(movie[1], stage=2, stage1_masks=masks, overrides=SMALL_NETWORK, device="cpu")
    np.testing.assert_array_equal(again.labels, result.labels)
    np.testing.assert_array_equal(again.tracks, result.tracks)
    assert again.stage == "2" and again.phases == {} and again.train_frames == result.train_frames


def test_a_list_of_frames_and_one_image(movie):
    stack = movie[1]
    result = invrender.segment_cells(stack, overrides=TINY, device="cpu")
    from_list = invrender.segment_cells(list(stack), overrides=TINY, device="cpu")
    np.testing.assert_array_equal(from_list.labels, result.labels)
    np.testing.assert_array_equal(from_list.tracks, result.tracks)
    # The first frame of a time-lapse is fitted from its own seeds, as one image is.
    image = invrender.segment_cells(stack[0], overrides=TINY, device="cpu")
    assert image.labels.shape == (1, 64, 64)
    np.testing.assert_array_equal(image.labels[0], result.labels[0])


def test_segment_cells_reports_its_steps_to_a_callback_and_leaves_torchs_generator_alone(movie):
    calls = []
    generator = torch.get_rng_state()
    result = invrender.segment_cells(movie[1][0], overrides=TINY, device="cpu", progress=lambda *a: calls.append(a))
    assert torch.equal(torch.get_rng_state(), generator)
    phases = result.phases[0]
    assert [phase.name for phase in phases] == ["appearance", "shape"]
    assert len(calls) == sum(phase.steps for phase in phases) and {c[0] for c in calls} == {"appearance", "shape"}
    assert all(0 <= step < steps for _, step, steps, _ in calls)


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"frames": np.zeros((2, 2, 8, 8))}, invrender.InputError, "frames: image is 4D"),
        ({"frames": np.full((2, 8, 8), np.nan)}, invrender.InputError, "frames: image contains NaN"),
        ({"frames": [np.ones((8, 8)), np.ones((8, 9))]}, invrender.InputError, "frames[1]: frame of shape (8, 9)"),
        ({"frames": []}, invrender.InputError, "frames: an empty list"),
        ({"frames": np.ones((3, 16, 16))}, invrender.InputError, "frames: all 3 frames are blank"),
        ({"stage": 3}, invrender.ConfigError, "config stage"),
        (
            {"stage": "both", "frames": lambda stack: stack[0]},
            invrender.InputError,
            "frames: a single 2D image: stage 2 needs",
        ),
        ({"stage": 2}, invrender.ConfigError, "stage 2 trains on stage1_masks"),
        ({"overrides": ["stage=2"]}, invrender.ConfigError, "stage 2 trains on stage1_masks"),
        ({"stage1_masks": {0: np.zeros((64, 64))}}, invrender.ConfigError, "stage1_masks: only stage 2"),
        ({"stage": 2, "stage1_masks": {}}, invrender.InputError, "stage1_masks: no stage-1 masks"),
        ({"stage": 2, "stage1_masks": np.zeros((1, 64, 64))}, invrender.InputError, "stage1_masks: got ndarray"),
        ({"stage": 2, "stage1_masks": {5: np.zeros((64, 64))}}, invrender.InputError, "mask of frame 5, which"),
        ({"stage": 2, "stage1_masks": {0: np.zeros((32, 64))}}, invrender.InputError, "has shape (32, 64)"),
        ({"stage": 2, "stage1_masks": {0: -np.ones((64, 64))}}, invrender.InputError, "stage1_masks[0]: negative"),
        ({"stage": 2, "stage1_masks": {"a": np.ones((64, 64))}}, invrender.InputError, "key 'a'"),
        ({"overrides": ["contour.harmonics=40"]}, invrender.ConfigError, "contour.harmonics"),
        ({"overrides": "rounds=1"}, invrender.ConfigError, "a list of key=value"),
        ({"config": "nonexistent"}, invrender.ConfigError, "nonexistent"),
        ({"device": "cuda"}, invrender.ConfigError, "cuda"),
        ({"diameter": -3}, invrender.ConfigError, "diameter -3: must be a positive number of pixels"),
        ({"diameter": float("inf")}, invrender.ConfigError, "diameter inf: must be a positive"),
    ],
)
def test_segment_cells_raises_the_command_lines_errors(movie, kwargs, error, needle):
    stack = movie[1]
    kwargs = {"frames": stack, "overrides": TINY, **kwargs}
    if callable(kwargs["frames"]):  # made from the movie's frames
        kwargs["frames"] = kwargs["frames"](stack)
    with pytest.raises(error) as caught:
        invrender.segment_cells(**kwargs)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
