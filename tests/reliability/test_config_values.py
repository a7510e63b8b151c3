"""Every config value is checked against its rule when the config is composed (issue 20, config
part): a value that cannot work is a usage error in one line naming the key and the value (exit 2),
before anything is written, for every method; the shipped configs pass; every key has a rule."""

from __future__ import annotations

import importlib

import pytest
import torch

from helpers import FAST, assert_one_line_error, make_input, write_init
from invrender.cli import main
from invrender.config import available_configs, compose_config, to_plain
from invrender.core.optim.phases import parse_phase
from invrender.core.schema import BadValue, uncovered_keys

#: config folder -> (the command that runs it, the method's package under invrender.methods).
METHODS = {
    "spline_refine": "spline-refine",
    "mesh_fit": "mesh-fit",
    "acdr": "acdr-train",
    "spine_seg": "spine-seg",
    "cell_seg": "cell-seg",
}
INPUT_NAMES = {"spline-refine": "f0.tif", "mesh-fit": "stack.tif", "spine-seg": "ct.nii.gz", "cell-seg": "frame.tif"}


def run_command(tmp_path, command: str, *arguments: str) -> tuple[int, object]:
    """`command` on an empty input file (never read: the config is checked first), into tmp_path/out."""
    inputs = []
    if command in INPUT_NAMES:
        image = tmp_path / INPUT_NAMES[command]
        image.write_bytes(b"")
        inputs = [str(image)]
    out = tmp_path / "out"
    return main([command, *inputs, "--out", str(out), "--device", "cpu", *arguments]), out


BAD_VALUES = [
    # the tester's reports: each became a failed input or was accepted silently
    ("spline-refine", "model.knots=0", "model.knots 0"),
    ("spline-refine", "phases.0.lr=-0.1", "phases.0.lr -0.1"),
    ("spline-refine", "prior.width=-5", "prior.width -5"),
    ("spline-refine", "phases.1.train=[splines,nosuch]", "phases.1.train.1 'nosuch'"),
    ("spline-refine", "phases=[]", "phases []"),
    ("spline-refine", "loss={}", "loss={}"),
    ("spline-refine", "output.points=0", "output.points 0"),
    ("spline-refine", "init.mix=1", "init.mix 1"),  # a logit: was a ZeroDivisionError per input
    ("spline-refine", "init.mix=0", "init.mix 0"),
    ("spline-refine", "phases.0.steps=-1", "phases.0.steps -1"),
    # types and ranges, at least two per method
    ("spline-refine", "model.knots=2.5", "model.knots 2.5"),
    ("spline-refine", "init.polarity=grey", "init.polarity 'grey'"),
    ("spline-refine", "model.background_grid=1", "model.background_grid 1"),
    ("spline-refine", "phases.1.seeds=0", "phases.1.seeds 0"),
    ("spline-refine", "phases.1.ramps.blur.until=2", "phases.1.ramps.blur.until 2"),
    ("spline-refine", "loss.curvature=-1", "loss.curvature -1"),
    ("mesh-fit", "psf.sigma=[1.0,2.0]", "psf.sigma [1.0, 2.0]"),
    ("mesh-fit", "render.quadrature.degree=3", "render.quadrature.degree 3"),
    ("mesh-fit", "phases.0.alternate.1.every=0", "phases.0.alternate.1.every 0"),
    ("mesh-fit", "phases.0.alternate.0.train=[vertices]", "phases.0.alternate.0.train.0 'vertices'"),
    ("mesh-fit", "phases.0.stop.patience=-3", "phases.0.stop.patience -3"),
    ("acdr-train", "train.lr=-0.001", "train.lr -0.001"),
    ("acdr-train", "model.vertices=2", "model.vertices 2"),
    ("acdr-train", "data.layout=nosuch", "data.layout 'nosuch'"),
    ("acdr-train", "pixel_loss.mask_bce=-1", "pixel_loss.mask_bce -1"),
    ("acdr-train", "train.max_minutes=0", "train.max_minutes 0"),
    ("spine-seg", "points.uniform_fraction=1.5", "points.uniform_fraction 1.5"),
    ("spine-seg", "sdf.sign=exact", "sdf.sign 'exact'"),
    ("spine-seg", "phases.0.train=[affine,shape,appearance,bones]", "phases.0.train.3 'bones'"),
    ("spine-seg", "region.percentiles=[99.5,0.5]", "region.percentiles [99.5, 0.5]"),
    ("cell-seg", "contour.radii=2", "contour.radii 2"),
    ("cell-seg", "stage2.dropout=1.0", "stage2.dropout 1.0"),
    ("cell-seg", "seeds.method=watershed", "seeds.method 'watershed'"),
    ("cell-seg", "phases.1.lr_scale.centres=-1", "phases.1.lr_scale.centres -1"),
    ("cell-seg", "stage=3", "stage '3'"),
]


@pytest.mark.parametrize("command, override, named", BAD_VALUES)
def test_a_bad_config_value_is_a_usage_error_naming_the_key_and_value(tmp_path, capsys, command, override, named):
    code, out = run_command(tmp_path, command, override)
    line = assert_one_line_error(code, capsys.readouterr().err, out, named)
    assert "must be" in line or "leaves" in line  # says what is allowed (or why the override does nothing)


@pytest.mark.parametrize(
    "option, value, named",
    [
        ("--timeout", "nan", "--timeout nan"),
        ("--timeout", "inf", "--timeout inf"),
        ("--timeout", "0", "--timeout 0"),
        ("--seed", str(10**23), f"--seed {10**23}"),
        ("--seed", "-1", "--seed -1"),
        ("--seed", "1e23", "--seed"),  # Typer refuses the text itself
    ],
)
@pytest.mark.parametrize("command", ["spline-refine", "acdr-train"])
def test_timeout_and_seed_out_of_range_are_usage_errors(tmp_path, capsys, command, option, value, named):
    code, out = run_command(tmp_path, command, option, value)
    assert_one_line_error(code, capsys.readouterr().err, out, named)


def test_a_bad_value_in_a_sweep_is_reported_once_before_launch(tmp_path, capsys):
    code, out = run_command(tmp_path, "spline-refine", "-m", "model.knots=5,0")
    assert_one_line_error(code, capsys.readouterr().err, out, "model.knots 0")


def test_a_sweep_prints_a_failed_input_once(tmp_path, capsys):
    """The sweep's job used to print the error, then the sweep's summary printed it again."""
    image, _ = make_input(tmp_path / "data", "f0")  # no init beside it: a bad input when its job runs
    out = tmp_path / "out"
    code = main(["spline-refine", "-m", *FAST, str(image), "--out", str(out), "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert code == 2, err  # every input bad
    lines = [line for line in err.splitlines() if "no init splines" in line]
    assert len(lines) == 1, err
    assert lines[0].count(str(image)) == 1, err


def test_a_bad_value_in_a_csv_input_list_names_the_input(tmp_path, capsys):
    image, records = make_input(tmp_path / "data", "f0")
    write_init(tmp_path / "data" / "f0.json", records)
    listing = tmp_path / "inputs.csv"
    listing.write_text(f"input,model.knots\n{image},1\n")
    out = tmp_path / "out"
    code = main(["spline-refine", *FAST, str(listing), "--out", str(out), "--device", "cpu", "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, "model.knots 1", "integer >= 2")


# ---------------------------------------------------------------- the shipped configs and the rules


def method_module(config_dir: str, name: str):
    return importlib.import_module(f"invrender.methods.{config_dir}.{name}")


SHIPPED = [(config_dir, name) for config_dir in METHODS for name in available_configs(config_dir)]


@pytest.mark.parametrize("config_dir, name", SHIPPED)
def test_every_shipped_config_passes_its_checks(config_dir, name):
    cfg = compose_config(config_dir, name, [])
    method_module(config_dir, "api").CONFIG.check(cfg, torch.device("cpu"))


@pytest.mark.parametrize("config_dir", METHODS)
def test_every_key_of_the_default_config_has_a_value_rule(config_dir):
    """A new key in default.yaml needs its rule in methods/<name>/schema.py (ANY for free-form)."""
    default = to_plain(compose_config(config_dir, "default", []))
    missing, stale = uncovered_keys(default, method_module(config_dir, "schema").RULES)
    assert missing == [], f"keys of configs/{config_dir}/default.yaml without a rule: {missing}"
    assert stale == [], f"rules for keys configs/{config_dir}/default.yaml does not have: {stale}"


def test_the_coverage_check_sees_a_new_key_and_a_stale_rule():
    from invrender.core.schema import ANY, POSITIVE_INT

    rules = {"model.knots": POSITIVE_INT, "loss": ANY, "model.gone": ANY}
    default = {"model": {"knots": 10, "new": 1.0}, "loss": {"a": 1.0}, "optional": None}
    assert uncovered_keys(default, rules) == (["model.new", "optional"], ["model.gone"])


def test_phase_values_and_groups_are_checked_by_the_scheduler():
    groups = ("a", "b")
    phase = {"train": ["a"], "lr": 0.1, "steps": 3}
    assert parse_phase(phase, "phases.0", groups).steps == 3
    for bad, named in [
        ({"steps": 0}, "phases.0.steps 0"),
        ({"lr": float("nan")}, "phases.0.lr nan"),
        ({"seeds": 1.5}, "phases.0.seeds 1.5"),
        ({"train": ["c"]}, "phases.0.train.0 'c'"),
        ({"train": []}, "phases.0.train []"),
        ({"stop": {"rtol": -1}}, "phases.0.stop.rtol -1"),
        ({"grad_noise": {"eta": True}}, "phases.0.grad_noise.eta true"),
    ]:
        with pytest.raises(BadValue) as refused:
            parse_phase({**phase, **bad}, "phases.0", groups)
        assert str(refused.value).startswith(named), refused.value
