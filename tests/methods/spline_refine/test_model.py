"""The spline scene's starts (spread apart for a multi-start phase) and how it combines overlapping bodies."""

import pytest
import torch

from invrender.methods.spline_refine.model import SplineScene


def scene(knots: torch.Tensor, shape=(64, 64), overlap: str = "sum-max") -> SplineScene:
    return SplineScene(
        knots, torch.full(knots.shape[:2], 0.8), 3.0, shape, brightness=0.5, contrast=-0.4, overlap=overlap
    )


def test_spread_seeds_shifts_each_body_of_every_later_start_by_the_distance():
    knots = torch.tensor([[[10.0, 20.0], [20.0, 22.0], [30.0, 30.0]], [[40.0, 40.0], [45.0, 50.0], [50.0, 45.0]]])
    model = scene(knots)
    model.expand_seeds(4)
    before = model.knots_px().detach().clone()
    model.spread_seeds(6.0, 4, torch.Generator().manual_seed(0))
    shift = model.knots_px().detach() - before  # (S, N, K, 2)
    assert torch.equal(shift[0], torch.zeros_like(shift[0]))  # the first start stays where it was
    assert torch.allclose(shift[1:].norm(dim=-1), torch.full(shift[1:].shape[:-1], 6.0), atol=1e-4)
    assert torch.allclose(shift[1:], shift[1:, :, :1].expand_as(shift[1:]), atol=1e-5)  # a body moves as a whole
    assert not torch.allclose(shift[1, 0], shift[1, 1])  # each body its own way


# A loop crossing itself at (32, 32): the same crossing drawn by one body, or by two bodies each
# taking one of its strokes. Strokes are straight through the crossing and far apart elsewhere.
LOOP = torch.tensor([[[12.0, 12.0], [32.0, 32.0], [52.0, 52.0], [52.0, 12.0], [32.0, 32.0], [12.0, 52.0]]])
CROSS = torch.stack([LOOP[0, :3], LOOP[0, 3:]])


@pytest.mark.parametrize(("overlap", "alike"), [("absorb", True), ("sum-max", False)])
def test_a_body_crossing_itself_darkens_like_two_bodies_crossing_only_when_depths_absorb(overlap, alike):
    """Light crossing a coil twice is absorbed as in two worms; sum-max mixes bodies, not a body's
    own strokes, so its coil is a full sum (twice as dark) where a crossing of two is a mix."""
    with torch.no_grad():
        coil, pair = (scene(k, overlap=overlap) for k in (LOOP, CROSS))
        one, two = (m.compose(m.render_bodies()[0])[0] for m in (coil, pair))
    darkest = (0.5 - one[32, 32]) / (0.5 - two[32, 32])
    assert (abs(float(darkest) - 1.0) < 0.05) is alike, float(darkest)
    assert float(two[32, 32]) < float(two[12, 12])  # the crossing is darker than a lone stroke
