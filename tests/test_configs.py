"""Every shipped config composes, names only registered losses and renderers, and keeps the
paper's phase order."""

from __future__ import annotations

import pytest
import torch

from invrender.config import available_configs, compose_config
from invrender.core.losses import check_weights
from invrender.core.render.registry import get_renderer


@pytest.mark.parametrize("name", available_configs("spline_refine"))
def test_spline_refine_config(name):
    cfg = compose_config("spline_refine", name, [])
    check_weights(cfg.loss)
    get_renderer(cfg.render.backend, torch.device("cpu"))
    first, second, third = (set(p.train) for p in cfg.phases)
    assert first == {"background"}  # (1) splines frozen
    assert "splines" in second and not second & {"filter", "blob"}  # (2) all but filter and blob
    assert {"splines", "filter", "blob"} <= third  # (3) everything


def test_presets_exist():
    assert {"default", "synthetic", "real"} <= set(available_configs("spline_refine"))
