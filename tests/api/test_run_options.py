"""The run options every method's Python function takes as `**run` (`invrender.method.RunOptions`):
a keyword that is none of them is refused as Python refuses an unknown keyword, before any work."""

import numpy as np
import pytest

import invrender
from invrender.method import RUN_DEFAULTS, run_options

CALLS = {
    "refine_splines": lambda **run: invrender.refine_splines(np.zeros((8, 8)), [np.zeros((4, 2))], **run),
    "fit_mesh": lambda **run: invrender.fit_mesh(np.zeros((8, 8, 8)), **run),
    "segment_cells": lambda **run: invrender.segment_cells(np.zeros((8, 8)), **run),
    "segment_spine": lambda **run: invrender.segment_spine(np.zeros((8, 8, 8)), np.eye(4), {}, **run),
}


@pytest.mark.parametrize("function", CALLS)
def test_a_misspelt_run_option_is_refused_by_name(function):
    with pytest.raises(TypeError, match=rf"^{function}\(\) got an unexpected keyword argument 'sed'$"):
        CALLS[function](sed=1)


def test_run_options_fill_the_defaults_of_the_keys_not_given():
    assert run_options("f", {}) == RUN_DEFAULTS
    assert run_options("f", {"seed": 3, "device": "cpu"}) == {**RUN_DEFAULTS, "seed": 3, "device": "cpu"}
    assert (
        set(RUN_DEFAULTS)
        == set(invrender.RunOptions.__optional_keys__)
        == {
            "config",
            "overrides",
            "device",
            "seed",
            "progress",
        }
    )
