"""The spline scene's starts: spread apart for a multi-start phase."""

import torch

from invrender.methods.spline_refine.model import SplineScene


def scene(knots: torch.Tensor, shape=(64, 64)) -> SplineScene:
    return SplineScene(knots, torch.full(knots.shape[:2], 0.8), 3.0, shape, brightness=0.5, contrast=-0.4)


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
