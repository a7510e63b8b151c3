"""Every shipped config composes, names only registered losses and renderers, and keeps the
paper's phase order."""

from __future__ import annotations

import pytest
import torch

from invrender.config import ConfigError, available_configs, compose_config
from invrender.core.losses import check_weights
from invrender.core.render.registry import get_renderer
from invrender.methods.spine_seg.fit import QUANTITIES as SPINE_QUANTITIES
from invrender.methods.spline_refine.fit import QUANTITIES as SPLINE_QUANTITIES


@pytest.mark.parametrize("name", available_configs("spline_refine"))
def test_spline_refine_config(name):
    cfg = compose_config("spline_refine", name, [])
    check_weights(cfg.loss, SPLINE_QUANTITIES)
    get_renderer(cfg.render.backend, torch.device("cpu"), "curves")
    first, second, third = (set(p.train) for p in cfg.phases)
    assert first == {"background"}  # (1) splines frozen
    assert "splines" in second and not second & {"filter", "blob"}  # (2) all but filter and blob
    assert {"splines", "filter", "blob"} <= third  # (3) everything


def test_presets_exist():
    assert {"default", "synthetic", "real", "tangled"} <= set(available_configs("spline_refine"))


def test_spine_seg_config_has_the_papers_numbers():
    """Kim and Park's settings: loss weights, VectorAdam + Adam at lr 0.01 with betas (0.9, 0.9),
    alpha 1 -> 0.4, the CT low-passed by 2.56 mm falling to none at 80% of the steps; plus our
    additions, the spectral energy (the template as an extra neighbour) and the prior on the drift
    from the placement search; the neighbours' spectral variance at 0.005, not the paper's 0.02
    (measured on the combined synthetic CT and the real one)."""
    cfg = compose_config("spine_seg", "default", [])
    check_weights(cfg.loss, SPINE_QUANTITIES)
    assert dict(cfg.loss) == {
        "appearance_l1": 1.0,
        "edge_length": 0.02,
        "normal_alignment": 0.1,
        "mesh_overlap": 1.0,
        "spectral_variance": 0.005,
        "spectral_energy": 0.02,
        "placement_drift": 1.0,
    }
    (phase,) = cfg.phases
    assert phase.optimizer == "vector_adam" and dict(phase.group_optimizers) == {"appearance": "adam"}
    assert phase.lr == 0.01 and list(phase.optimizer_options.betas) == [0.9, 0.9]
    assert dict(phase.ramps.alpha) == {"start": 1.0, "end": 0.4, "until": 1.0}
    assert dict(phase.ramps.blur) == {"start": 2.56, "end": 0.0, "until": 0.8}
    assert cfg.points.count == 10000


def test_a_number_where_the_config_has_text_is_read_as_text():
    assert compose_config("cell_seg", "default", ["stage=2"]).stage == "2"
    assert compose_config("acdr", "nuclei", ["data.root=2024"]).data.root == "2024"
    with pytest.raises(ConfigError, match="train.lr must be a number"):
        compose_config("acdr", "nuclei", ["train.lr=abc"])


def test_null_unsets_an_optional_value_that_a_preset_sets():
    assert compose_config("acdr", "nuclei", ["data.labelled_region=null"]).data.labelled_region is None
    assert compose_config("acdr", "nuclei", ["train.max_minutes=null"]).train.max_minutes is None
    with pytest.raises(ConfigError, match="train.lr must be a number"):
        compose_config("acdr", "nuclei", ["train.lr=null"])  # not optional: the default config sets it too
