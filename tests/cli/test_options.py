"""Options that `with_shared_options` generates from a method's declarations: the per-input options
(`MethodSpec.input_options`, also a CSV input list's columns) and the options that set one config
value (`ConfigOption`)."""

import pytest

from invrender.cli import main
from invrender.config import ConfigError
from invrender.options import ConfigOption


@pytest.mark.parametrize(
    "command, options",
    [("mesh-fit", ["init", "cells", "psf"]), ("spline-refine", ["init"]), ("spine-seg", ["centroids", "gt"])],
)
def test_the_per_input_options_say_how_a_csv_list_sets_them(command, options, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps the help to the terminal's width
    assert main([command, "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    for name in options:
        assert f"--{name}" in shown
        assert f"Per input: the `{name}` column of a CSV input list." in shown


def test_a_config_option_gives_one_override_only_when_given():
    text = ConfigOption("stage", str, "the stage")
    assert text.overrides("stage", None) == []
    assert text.overrides("stage", "2") == ["stage='2'"]  # quoted: the config's stage is text, not the number 2
    flag = ConfigOption("video.propagate", bool, "propagate")
    assert flag.overrides("propagate", False) == [] and flag.overrides("propagate", True) == ["video.propagate=true"]
    assert ConfigOption("a.b", float, "a number").overrides("b", 0.5) == ["a.b=0.5"]


def test_a_config_option_refuses_a_value_outside_its_choices_by_its_flag():
    method = ConfigOption("method", str, "the method", choices=("render", "active-contour"))
    with pytest.raises(ConfigError, match=r"^--method 'nosuch': expected one of render, active-contour$"):
        method.overrides("method", "nosuch")
