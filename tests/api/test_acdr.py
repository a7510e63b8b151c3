"""`invrender.acdr` on arrays: `train` runs what `acdr-train` runs (the same record and weights for
the same seed and config), `evaluate` gives the scores `acdr-eval` writes, `load(...).predict` gives
what `acdr-predict` writes for the same image, and the command line's one-line errors come as
exceptions."""

import csv
import json
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image

import invrender
from helpers import ACDR_TINY
from invrender.cli import main
from invrender.core.io import check_picture, write_png, write_tiff
from invrender.methods.acdr.checkpoint import read_checkpoint, save_checkpoint
from invrender.methods.acdr.datasets import resize_picture
from invrender.methods.acdr.models import build_model
from invrender.methods.acdr.synth import make_shape_image

#: 24 synthetic 32 x 32 shapes (19 train, 2 validate) and a small network: a few seconds an epoch.
SHORT = [*ACDR_TINY, "data.count=24", "train.examples=2"]
EPOCHS = 3
#: An untrained model for the input forms: what it predicts is not the point, only that each form gives the same.
MODEL = {
    "widths": [4, 8],
    "convs": 1,
    "dropout": 0.0,
    "vertices": 8,
    "iterations": 2,
    "init_diameter": 0.3,
    "max_shift": 0.5,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    overrides = [*SHORT, f"train.epochs={EPOCHS}"]
    return invrender.acdr.train(config="shapes", overrides=overrides, out=out, device="cpu", seed=1)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    """A 40 x 56 float TIFF of a new shape: not the network's 32 x 32, and not square."""
    image, _ = make_shape_image(np.random.default_rng(11), size=56)
    path = tmp_path_factory.mktemp("image") / "shape.tif"
    write_tiff(path, image[8:48])
    return path, image[8:48]


def untrained_checkpoint(path, kind: str, channels: int, image: np.ndarray | None = None):
    """A checkpoint of a network with random weights; a pixel network's logits are centred on their
    median over `image`, so that its mask there is neither empty nor full."""
    torch.manual_seed(0)
    network = build_model(kind, channels, MODEL).eval()
    torch.nn.init.normal_(network.unet.head.weight, std=0.5)  # the contour model's head starts at zero: move it
    if image is not None:
        with torch.no_grad():
            network.unet.head.bias -= network(resize_picture(check_picture(image, "image"), 32)[None]).median()
    content = {"kind": kind, "channels_in": channels, "size": 32, "model": MODEL}
    save_checkpoint(path, {**content, "state_dict": network.state_dict()})
    return path


def predict_on_the_command_line(checkpoint, image, out, *options) -> tuple[list[np.ndarray], np.ndarray]:
    code = main(["acdr-predict", str(image), "--checkpoint", str(checkpoint), "--out", str(out), "-q", *options])
    assert code == 0
    stem = image.name.rsplit(".", 1)[0]
    polygons = json.loads((out / f"{stem}.polygon.json").read_text())["polygons"]
    mask = np.asarray(Image.open(out / f"{stem}.mask.png")) == 255
    return [np.asarray(p["points"]) for p in polygons], mask


def test_train_runs_what_the_command_line_runs(trained, tmp_path):
    out = tmp_path / "cli"
    # The same thread count as the Python run (the caller's, which an earlier test may have changed):
    # another count sums in another order, and the weights differ by more than rounding after 3 epochs.
    threads = json.loads((trained.out / "manifest.json").read_text())["torch_threads"]
    args = ["acdr-train", "--config", "shapes", *SHORT, f"train.epochs={EPOCHS}", "--device", "cpu", "--seed", "1"]
    args += ["--threads", str(threads)]
    assert main([*args, "--out", str(out), "-q"]) in (0, None)
    with open(out / "log.csv", newline="") as handle:
        logged = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in logged] == [row["epoch"] for row in trained.history] == [1, 2, 3]
    for key in ("loss", "val_miou", "val_miou_smoothed", "val_boundf"):
        assert [float(row[key]) for row in logged] == pytest.approx([row[key] for row in trained.history], rel=1e-5)
    assert trained.epochs == EPOCHS and not trained.timed_out
    assert trained.checkpoint == trained.out / "checkpoints" / "best.pt" and trained.last.is_file()
    ours, theirs = read_checkpoint(trained.checkpoint), read_checkpoint(out / "checkpoints" / "best.pt")
    assert ours["epoch"] == theirs["epoch"] == trained.best_epoch
    assert trained.best_miou == pytest.approx(theirs["best"]["miou"], rel=1e-5)
    for name, weight in theirs["state_dict"].items():
        torch.testing.assert_close(ours["state_dict"][name], weight, rtol=1e-4, atol=1e-5)
    manifest = json.loads((trained.out / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["method"] == "acdr-train" and manifest["seed"] == 1


def test_evaluate_gives_what_acdr_eval_writes(trained, tmp_path):
    steps = []
    result = invrender.acdr.evaluate(trained.checkpoint, device="cpu", progress=lambda *step: steps.append(step))
    out = tmp_path / "eval"
    assert main(["acdr-eval", "--checkpoint", str(trained.checkpoint), "--out", str(out), "--device", "cpu", "-q"]) == 0
    written = json.loads((out / "metrics.json").read_text())
    assert written["images"] == len(result.rows) > 0
    assert result.rows == written["rows"]  # JSON keeps a float exactly
    means = [result.f1, result.miou, result.wcov, result.boundf]
    assert means == [written[key] for key in ("f1", "miou", "wcov", "boundf")]
    assert (result.model, result.epoch) == ("contour", written["epoch"])
    assert steps and steps[-1][:3] == ("scoring", steps[-1][2] - 1, steps[-1][2])


@pytest.mark.parametrize("tta", [False, True])
def test_predict_gives_what_acdr_predict_writes(trained, image_file, tmp_path, tta):
    path, image = image_file
    options = ["--tta"] if tta else []
    polygons, mask = predict_on_the_command_line(
        trained.checkpoint, path, tmp_path / "out", "--device", "cpu", *options
    )
    found = invrender.acdr.load(trained.checkpoint, device="cpu", tta=tta).predict(image)
    assert found.mask.shape == (40, 56) and found.mask.dtype == bool
    assert np.array_equal(found.mask, mask)
    assert len(found.polygons) == len(polygons) == 1
    assert found.polygons[0].shape == (16, 2)
    np.testing.assert_allclose(found.polygons[0], polygons[0], atol=1e-6)
    # pixels of the input image: the polygon lies inside it, and the mask is what it encloses
    assert found.polygons[0][:, 0].max() <= 55.5 and found.polygons[0][:, 1].max() <= 39.5
    assert found.mask.sum() > 0


def test_the_pixel_model_and_colour_images_give_what_acdr_predict_writes(tmp_path):
    rng = np.random.default_rng(0)
    colour = (np.stack([make_shape_image(rng, 40)[0]] * 3, axis=-1) * rng.uniform(0.5, 1.0, 3) * 255).astype(np.uint8)
    write_png(tmp_path / "colour.png", colour)
    for kind in ("contour", "pixel"):
        checkpoint = untrained_checkpoint(tmp_path / f"{kind}.pt", kind, 3, colour if kind == "pixel" else None)
        polygons, mask = predict_on_the_command_line(checkpoint, tmp_path / "colour.png", tmp_path / kind)
        found = invrender.acdr.load(checkpoint).predict(colour)
        assert np.array_equal(found.mask, mask), kind
        assert len(found.polygons) == len(polygons) and found.polygons, kind
        for ours, theirs in zip(found.polygons, polygons):
            np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_the_image_forms_give_one_result(tmp_path):
    colour = np.random.default_rng(1).random((24, 36, 3)).astype(np.float32)
    predictor = invrender.acdr.load(untrained_checkpoint(tmp_path / "model.pt", "contour", 3), device="cpu")
    assert (predictor.kind, predictor.channels, predictor.size) == ("contour", 3, 32)
    channels_last = predictor.predict(colour)
    alpha = np.concatenate([colour, np.ones((24, 36, 1), np.float32)], axis=-1)
    many = predictor.predict_many([np.moveaxis(colour, -1, 0), alpha, colour.astype(np.float64)])
    for other in many:
        assert np.array_equal(other.mask, channels_last.mask)
        np.testing.assert_allclose(other.polygons[0], channels_last.polygons[0], atol=1e-6)
    assert channels_last.mask.shape == (24, 36)


def test_grey_forms_give_one_result(trained, image_file):
    _, image = image_file
    predictor = invrender.acdr.load(trained.checkpoint, device="cpu")
    plain = predictor.predict(image)
    for other in (image[None], torch.from_numpy(image)):
        found = predictor.predict(other)
        assert np.array_equal(found.mask, plain.mask)
        np.testing.assert_allclose(found.polygons[0], plain.polygons[0])


def test_train_is_silent_reports_its_epochs_and_keeps_a_temporary_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    steps = []
    threads = torch.get_num_threads()
    result = invrender.acdr.train(
        config="shapes", overrides=[*SHORT, "train.epochs=2"], device="cpu", progress=lambda *step: steps.append(step)
    )
    assert capsys.readouterr() == ("", "")
    assert torch.get_num_threads() == threads  # the caller's setting, untouched
    assert result.out.parent == tmp_path and result.checkpoint.is_file()
    assert [(phase, step, total) for phase, step, total, _ in steps] == [("epochs", 0, 2), ("epochs", 1, 2)]
    # validation every epoch: each row's training loss is the mean over that epoch's batches
    assert [loss for *_, loss in steps] == pytest.approx([row["loss"] for row in result.history])
    # a run that fails leaves no temporary folder behind
    with pytest.raises(invrender.InputError):
        invrender.acdr.train(config="default", device="cpu")
    assert sorted(tmp_path.iterdir()) == [result.out]


def test_training_resumes_and_refuses_to_overwrite(trained, tmp_path):
    out = tmp_path / "run"
    first = invrender.acdr.train(config="shapes", overrides=[*SHORT, "train.epochs=1"], out=out, device="cpu")
    with pytest.raises(invrender.ConfigError, match="already holds a training run"):
        invrender.acdr.train(config="shapes", overrides=[*SHORT, "train.epochs=2"], out=out, device="cpu")
    resumed = invrender.acdr.train(
        config="shapes", overrides=[*SHORT, "train.epochs=2"], out=out, device="cpu", resume=True
    )
    assert resumed.epochs == 2 and resumed.history[:1] == first.history


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda ckpt, tmp: invrender.acdr.load(tmp / "none.pt"), invrender.InputError, "none.pt: checkpoint not found"),
        (lambda ckpt, tmp: invrender.acdr.load(corrupt(ckpt, tmp)), invrender.InputError, "not a readable checkpoint"),
        (lambda ckpt, tmp: invrender.acdr.load(ckpt, device="gpu"), invrender.ConfigError, "'gpu'"),
        (
            lambda ckpt, tmp: invrender.acdr.load(ckpt, overrides="render.backend=nosuch"),
            invrender.ConfigError,
            "a list of key=value",
        ),
        (
            lambda ckpt, tmp: invrender.acdr.load(ckpt, overrides=["render.backend=nosuch"]),
            invrender.ConfigError,
            "nosuch",
        ),
        (
            lambda ckpt, tmp: predict(ckpt, np.zeros((5, 32, 32))),
            invrender.InputError,
            "image: image of shape (5, 32, 32)",
        ),
        (lambda ckpt, tmp: predict(ckpt, np.zeros(32)), invrender.InputError, "image: image of shape (32,)"),
        (lambda ckpt, tmp: predict(ckpt, np.zeros((32, 1))), invrender.InputError, "image: image of shape (32,)"),
        (lambda ckpt, tmp: predict(ckpt, np.full((32, 32), np.nan)), invrender.InputError, "image: image contains NaN"),
        (lambda ckpt, tmp: predict(ckpt, np.zeros((32, 32, 3))), invrender.InputError, "image: image has 3 channel(s)"),
        (lambda ckpt, tmp: predict(ckpt, np.array([["a", "b"], ["c", "d"]])), invrender.InputError, "pixel type"),
        (lambda ckpt, tmp: invrender.acdr.evaluate(tmp / "none.pt"), invrender.InputError, "checkpoint not found"),
        (
            lambda ckpt, tmp: invrender.acdr.evaluate(ckpt, data=tmp, config="shapes"),
            invrender.ConfigError,
            "give one",
        ),
        (lambda ckpt, tmp: invrender.acdr.evaluate(ckpt, data=tmp), invrender.InputError, "folders images/ and masks/"),
        (lambda ckpt, tmp: invrender.acdr.evaluate(ckpt, overrides="a=1"), invrender.ConfigError, "list of key=value"),
        (lambda ckpt, tmp: invrender.acdr.evaluate(ckpt, config="nosuch"), invrender.ConfigError, "nosuch"),
        (lambda ckpt, tmp: train(overrides=["train.lr=-1"]), invrender.ConfigError, "train.lr -1"),
        (lambda ckpt, tmp: train(overrides="train.epochs=1"), invrender.ConfigError, "a list of key=value"),
        (lambda ckpt, tmp: train(config="nosuch"), invrender.ConfigError, "nosuch"),
        (lambda ckpt, tmp: train(model="resnet", out=tmp / "x"), invrender.ConfigError, "model 'resnet'"),
        (lambda ckpt, tmp: train(seed=-1), invrender.ConfigError, "seed -1"),
        (lambda ckpt, tmp: train(config="default", out=tmp / "x"), invrender.InputError, "data.root is not set"),
        (lambda ckpt, tmp: train(out=ckpt), invrender.ConfigError, "is a file, not a folder"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_inputs_raise_the_command_lines_errors(trained, tmp_path, call, error, needle):
    with pytest.raises(error) as caught:
        call(trained.checkpoint, tmp_path)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "x").exists()  # nothing written


def corrupt(checkpoint, folder):
    path = folder / "model.pt"
    path.write_bytes(checkpoint.read_bytes()[:1000])
    return path


def predict(checkpoint, image):
    return invrender.acdr.load(checkpoint, device="cpu").predict(image)


def train(**kwargs):
    return invrender.acdr.train(**{"config": "shapes", "overrides": SHORT, "device": "cpu", **kwargs})
