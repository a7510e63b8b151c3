"""The phase scheduler (invrender.core.optim.phases) on tiny models whose losses are known."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from invrender.core.losses import LOSSES, Quantities, check_weights, register_loss
from invrender.core.optim.multistart import MultiStartModule, per_start, stack_starts
from invrender.core.optim.phases import (
    OptimisationDiverged,
    Part,
    Ramp,
    learning_rate_factor,
    parse_phase,
    ramp_value,
    run_phases,
)


class Toy(MultiStartModule):
    """Two groups: `a` (S, 2) and `b` (S, 1); the objective puts both in `render` against zeros."""

    groups = {"a": ("a",), "b": ("b",), "unused": ("unused",)}

    def __init__(self, a=(1.0, -2.0), b=(3.0,)):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([a], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([b], dtype=torch.float64))
        self.unused = nn.Parameter(torch.zeros(1, 0, dtype=torch.float64))  # an empty group


def toy_objective(model, ctx):
    render = torch.cat([model.a, model.b], dim=-1)  # (S, 3)
    return {"render": render, "target": torch.zeros_like(render)}


def phase(**overrides):
    spec = {"name": "p", "train": ["a"], "lr": 0.1, "steps": 20}
    spec.update(overrides)
    return spec


def test_frozen_groups_do_not_change():
    model = Toy()
    b_before, a_before = model.b.detach().clone(), model.a.detach().clone()
    records = run_phases(model, toy_objective, [phase(train=["a"])], {"recon_mse": 1.0})
    assert torch.equal(model.b.detach(), b_before)
    assert not torch.equal(model.a.detach(), a_before)
    assert model.a.detach().abs().sum() < a_before.abs().sum()  # a moved towards the target 0
    assert records[0].steps == 20 and records[0].final["total"] < float(
        (torch.cat([a_before, b_before], -1) ** 2).mean()
    )
    # Afterwards nothing requires grad; a second phase trains only b.
    assert not any(p.requires_grad for p in model.parameters())
    a_after = model.a.detach().clone()
    run_phases(model, toy_objective, [phase(train=["b"])], {"recon_mse": 1.0})
    assert torch.equal(model.a.detach(), a_after)
    assert float(model.b.abs()) < 3.0


def test_spread_moves_all_starts_but_each_problems_first():
    class Spreading(Toy):
        def spread_seeds(self, distance, n_seeds, generator):
            with torch.no_grad():
                offsets = torch.arange(self.a.shape[0], dtype=self.a.dtype) % n_seeds
                self.a += distance * offsets[:, None]  # start k of a problem moves k * distance

    model = stack_starts([Spreading(a=(1.0, 1.0)), Spreading(a=(5.0, 5.0))])
    records = run_phases(model, toy_objective, [phase(seeds=3, spread=10.0, lr=0.0, steps=1)], {"recon_mse": 1.0})
    assert [r.best_seed for r in records] == [0, 0]  # the unmoved start is the nearest to the target 0
    losses = [r.seed_losses for r in records]
    assert losses[0][0] < losses[0][1] < losses[0][2] and losses[1][0] < losses[1][1] < losses[1][2]
    with pytest.raises(NotImplementedError, match="cannot spread"):
        run_phases(Toy(), toy_objective, [phase(seeds=2, spread=1.0)], {"recon_mse": 1.0})


def test_unknown_group_is_refused():
    with pytest.raises(KeyError, match="nosuch"):
        run_phases(Toy(), toy_objective, [phase(train=["nosuch"])], {"recon_mse": 1.0})


def test_lr_scale_for_an_untrained_group_is_refused():
    with pytest.raises(ValueError, match="lr_scale"):
        run_phases(Toy(), toy_objective, [phase(train=["a"], lr_scale={"b": 2.0})], {"recon_mse": 1.0})


def test_lr_scale_zero_freezes_a_trained_group():
    model = Toy()
    b_before = model.b.detach().clone()
    run_phases(model, toy_objective, [phase(train=["a", "b"], lr_scale={"b": 0.0})], {"recon_mse": 1.0})
    assert torch.equal(model.b.detach(), b_before)


# ---------------------------------------------------------------- multi-start


class SpreadSeeds(Toy):
    """Expanding to S seeds gives seed i the values of seed 0 plus `offsets[i]`: known losses."""

    offsets = (0.0, 1.0, -1.5, -0.5)

    @torch.no_grad()
    def expand_seeds(self, n_seeds):
        super().expand_seeds(n_seeds)
        shift = torch.tensor(self.offsets[:n_seeds], dtype=torch.float64)[:, None]
        self.a.data += shift


@register_loss("test_phases_shifted", reads=("shifted",))
def shifted_square(q: Quantities) -> torch.Tensor:
    """This file's own second term (core's tests need no method's losses): sum of `shifted`^2, (S, 1)."""
    return q["shifted"].pow(2).sum(-1)


def seed_objective(model, ctx):
    # With a = (1, -2) + offset, the seeds hold a = (1, -2), (2, -1), (-0.5, -3.5), (0.5, -2.5):
    # recon_mse (mean of a^2) = 2.5, 2.5, 6.25, 3.25, and test_phases_shifted ((a_0 + shift)^2 with
    # the shifts below) = 1, 4, 0.25, 0.5625, so the two terms pick different seeds.
    return {
        "render": model.a,
        "target": torch.zeros_like(model.a),
        "shifted": model.a[:, :1]
        + torch.tensor([[0.0], [0.0], [0.0], [0.25]], dtype=torch.float64)[: model.a.shape[0]],
    }


def test_multistart_keeps_the_seed_with_the_lowest_select_by_term():
    # lr 0: the parameters stay where expand_seeds put them, so every seed's loss is known.
    spec = phase(train=["a"], lr=0.0, steps=2, seeds=4)
    weights = {"recon_mse": 1.0, "test_phases_shifted": 100.0}
    expected_recon = [2.5, 2.5, 6.25, 3.25]
    expected_shifted = [1.0, 4.0, 0.25, 0.5625]  # (a_0 + [0, 0, 0, 0.25])^2

    model = SpreadSeeds()
    [record] = run_phases(model, seed_objective, [spec], weights, select_by="test_phases_shifted")
    assert record.seed_losses == pytest.approx(expected_shifted)
    assert record.best_seed == 2
    assert model.n_seeds == 1
    np.testing.assert_allclose(model.a.detach().numpy(), [[-0.5, -3.5]])
    assert record.final["test_phases_shifted"] == pytest.approx(0.25)
    assert record.final["recon_mse"] == pytest.approx(6.25)

    model = SpreadSeeds()
    [record] = run_phases(model, seed_objective, [spec], weights, select_by="recon_mse")
    assert record.seed_losses == pytest.approx(expected_recon)
    assert record.best_seed == 0  # a tie between seeds 0 and 1 goes to the first
    np.testing.assert_allclose(model.a.detach().numpy(), [[1.0, -2.0]])


def test_multistart_seeds_are_optimised_independently():
    model = SpreadSeeds()
    [record] = run_phases(model, seed_objective, [phase(train=["a"], lr=0.05, steps=30, seeds=3)], {"recon_mse": 1.0})
    assert len(record.seed_losses) == 3
    # Every seed improved on its start (2.5, 2.5, 6.25), and the kept one is the best of them.
    assert max(record.seed_losses) < 6.25 and record.seed_losses[record.best_seed] == min(record.seed_losses)
    assert record.final["recon_mse"] == pytest.approx(min(record.seed_losses))


class Problems(Toy):
    """P problems side by side: slice p holds `a = starts[p]`; expanding to n seeds shifts start i
    of every problem by `shifts[i]` (a (n, 2) table), so every slice's loss is known."""

    def __init__(self, starts, shifts):
        super().__init__()
        self.a.data = torch.as_tensor(starts, dtype=torch.float64)
        self.b.data = self.b.data.expand(len(starts), -1).clone()
        self.unused.data = self.unused.data.expand(len(starts), -1).clone()
        self.shifts = torch.as_tensor(shifts, dtype=torch.float64)

    @torch.no_grad()
    def expand_seeds(self, n_seeds):
        super().expand_seeds(n_seeds)
        self.a.data += self.shifts[:n_seeds].repeat(self.a.shape[0] // n_seeds, 1)


def test_each_problem_keeps_its_own_best_seed_as_brute_force_finds_it():
    rng = np.random.default_rng(3)
    starts, shifts = rng.normal(size=(5, 2)), rng.normal(size=(4, 2))
    spec = phase(train=["a"], lr=0.0, steps=2, seeds=4)  # lr 0: the slices stay where the seeds put them
    model = Problems(starts, shifts)
    records = run_phases(model, toy_objective, [spec], {"recon_mse": 1.0})
    assert len(records) == 5 and model.n_seeds == 5
    for p, record in enumerate(records):
        # Brute force: every start of problem p, its loss (the mean of a^2 and b^2), the smallest.
        candidates = starts[p] + shifts
        losses = [(np.sum(c**2) + 9.0) / 3 for c in candidates]
        assert record.seed_losses == pytest.approx(losses)
        assert record.best_seed == int(np.argmin(losses))
        np.testing.assert_allclose(model.a[p].numpy(), candidates[record.best_seed])
        assert record.final["recon_mse"] == pytest.approx(min(losses))


class Watched(Problems):
    """Problems that keep what `starts_ended` is told, and the starts it is told about."""

    def starts_ended(self, losses, kept):
        self.told = (losses.clone(), self.a.detach().clone(), list(kept))


def test_a_model_is_told_every_starts_loss_before_the_best_are_kept():
    rng = np.random.default_rng(5)
    starts, shifts = rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    model = Watched(starts, shifts)
    records = run_phases(model, toy_objective, [phase(train=["a"], lr=0.0, steps=2, seeds=4)], {"recon_mse": 1.0})
    losses, slices, kept = model.told
    assert losses.shape == (3, 4) and slices.shape == (12, 2)  # all starts, before select_seeds
    for p, record in enumerate(records):
        assert losses[p].tolist() == pytest.approx(record.seed_losses)
        assert kept[p] == record.best_seed
        np.testing.assert_allclose(slices[p * 4 : p * 4 + 4].numpy(), starts[p] + shifts)
    model.told = None
    run_phases(model, toy_objective, [phase(train=["a"], steps=2)], {"recon_mse": 1.0})
    assert model.told is None  # one start: nothing to choose from


def test_problems_side_by_side_are_fitted_as_each_alone():
    rng = np.random.default_rng(4)
    starts, shifts = rng.normal(size=(3, 2)), rng.normal(size=(2, 2))
    phases = [phase(train=["a"], lr=0.05, steps=15, seeds=2), phase(train=["a", "b"], lr=0.02, steps=10)]
    together = Problems(starts, shifts)
    records = run_phases(together, toy_objective, phases, {"recon_mse": 1.0})
    assert [r.name for r in records] == ["p"] * 6  # phase by phase, each phase's records in problem order
    for p in range(3):
        alone = Problems(starts[p : p + 1], shifts)
        [first, second] = run_phases(alone, toy_objective, phases, {"recon_mse": 1.0})
        assert records[p].best_seed == first.best_seed and records[p].seed_losses == pytest.approx(first.seed_losses)
        assert records[3 + p].final == pytest.approx(second.final)
        torch.testing.assert_close(together.a[p : p + 1], alone.a)
        torch.testing.assert_close(together.b[p : p + 1], alone.b)


def test_stack_starts_and_per_start_lay_out_problems_and_their_starts():
    models = [Toy(a=(1.0, 2.0), b=(3.0,)), Toy(a=(4.0, 5.0), b=(6.0,))]
    model = stack_starts(models)
    model.expand_seeds(3)
    np.testing.assert_array_equal(model.a[:, 0].detach().numpy(), [1, 1, 1, 4, 4, 4])
    data = torch.tensor([[10.0], [20.0]])
    np.testing.assert_array_equal(per_start(data, 6)[:, 0].numpy(), [10, 10, 10, 20, 20, 20])
    np.testing.assert_array_equal(per_start(data[:1], 4)[:, 0].numpy(), [10, 10, 10, 10])
    model.select_seeds([2, 3])
    np.testing.assert_array_equal(model.b[:, 0].detach().numpy(), [3, 6])


# ---------------------------------------------------------------- stopping, schedule, noise


def flat_objective(model, ctx):
    # A loss that depends on the parameters (so it has a gradient) but never changes: a * 0 + 1.
    render = model.a * 0.0 + 1.0
    return {"render": render, "target": torch.zeros_like(render)}


def test_patience_stops_early():
    steps = []
    [record] = run_phases(
        Toy(),
        flat_objective,
        [phase(steps=100, stop={"patience": 3, "rtol": 1e-4})],
        {"recon_mse": 1.0},
        on_step=lambda name, step, n, loss: steps.append(step),
    )
    # Step 0 sets the best loss; steps 1, 2, 3 do not improve on it; the third of them stops.
    assert record.steps == 4
    assert steps == [0, 1, 2, 3]


def test_without_patience_every_step_runs():
    [record] = run_phases(Toy(), flat_objective, [phase(steps=12, stop={"patience": 0})], {"recon_mse": 1.0})
    assert record.steps == 12


def test_improving_loss_is_not_stopped():
    [record] = run_phases(
        Toy(), toy_objective, [phase(steps=25, lr=0.01, stop={"patience": 2, "rtol": 1e-6})], {"recon_mse": 1.0}
    )
    assert record.steps == 25


def part(**settings) -> Part:
    """The single part of a phase with these settings."""
    return parse_phase({"train": ["a"], "lr": 0.1, "steps": 1, **settings}).parts[0]


def test_cosine_schedule_reaches_final_lr_factor():
    n = 50
    factors = [learning_rate_factor(part(schedule="cosine", final_lr_factor=0.02), step, n) for step in range(n + 1)]
    assert factors[0] == pytest.approx(1.0)
    assert factors[n] == pytest.approx(0.02)
    assert factors[n // 2] == pytest.approx(0.51)
    assert all(b <= a for a, b in zip(factors, factors[1:]))
    assert learning_rate_factor(part(schedule="constant"), 30, n) == 1.0
    assert learning_rate_factor(part(), 30, n) == 1.0
    with pytest.raises(ValueError, match="phase.schedule: unknown learning-rate schedule 'nosuch'"):
        part(schedule="nosuch")


def test_cosine_schedule_shrinks_the_steps():
    # Adam's first steps have size ~lr whatever the gradient; on a linear loss (constant gradient)
    # every step has size ~lr * factor, so the last step is ~final_lr_factor of the first.
    seen = []

    def linear(model, ctx):
        seen.append(model.a.detach().clone())
        render = model.a.sum(-1, keepdim=True) + 100.0  # d loss / d a is ~constant
        return {"render": render, "target": torch.zeros_like(render)}

    run_phases(Toy(), linear, [phase(steps=40, lr=0.1, schedule="cosine", final_lr_factor=0.1)], {"recon_mse": 1.0})
    moves = [float((b - a).abs().max()) for a, b in zip(seen[:-1], seen[1:])]
    assert moves[0] == pytest.approx(0.1, rel=0.05)
    assert moves[-2] == pytest.approx(
        0.1 * learning_rate_factor(part(schedule="cosine", final_lr_factor=0.1), 39, 40), rel=0.05
    )


def test_ramps_move_linearly_and_reach_the_objective():
    assert ramp_value(Ramp(3.0, 0.0, 0.6), 0.0) == 3.0
    assert ramp_value(Ramp(3.0, 0.0, 0.6), 0.3) == pytest.approx(1.5)
    assert ramp_value(Ramp(3.0, 0.0, 0.6), 0.9) == 0.0
    seen = []

    def objective(model, ctx):
        seen.append(ctx.ramps["blur"])
        return toy_objective(model, ctx)

    run_phases(
        Toy(),
        objective,
        [phase(steps=10, ramps={"blur": {"start": 2.0, "end": 0.0, "until": 0.5}})],
        {"recon_mse": 1.0},
    )
    assert seen[0] == 2.0 and seen[5] == 0.0 and seen[-1] == 0.0 and seen[2] == pytest.approx(1.2)


def _noisy_run(seed, train=("a",)):
    model = Toy()
    spec = phase(train=list(train), steps=10, lr=0.1, grad_noise={"eta": 1.0, "gamma": 0.55})
    run_phases(model, flat_objective, [spec], {"recon_mse": 1.0}, seed=seed)
    return model.a.detach().clone()


def test_grad_noise_is_deterministic_for_a_seed():
    first, again, other = _noisy_run(0), _noisy_run(0), _noisy_run(1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # The flat loss has zero gradient: only the noise moved the parameters.
    assert not torch.equal(first, Toy().a.detach())


def test_grad_noise_skips_trained_parameters_the_loss_does_not_use():
    # Regression: an empty (unused) group in `train` has no gradient; the noise must skip it.
    moved = _noisy_run(0, train=("a", "unused"))
    assert torch.equal(moved, _noisy_run(0))


def test_nan_loss_raises_and_keeps_the_last_finite_parameters():
    seen = []

    def objective(model, ctx):
        seen.append(model.a.detach().clone())
        quantities = toy_objective(model, ctx)
        if ctx.step == 4:
            quantities["render"] = quantities["render"] * float("nan")
        return quantities

    model = Toy()
    with pytest.raises(OptimisationDiverged, match="non-finite"):
        run_phases(model, objective, [phase(steps=10)], {"recon_mse": 1.0})
    # Steps 0..3 were finite; the parameters of step 4 gave NaN, so those of step 3 are kept.
    assert torch.equal(model.a.detach(), seen[3])
    assert not torch.equal(seen[3], seen[4])
    assert torch.isfinite(model.a).all()


def test_infinite_loss_raises_too():
    def objective(model, ctx):
        quantities = toy_objective(model, ctx)
        quantities["render"] = quantities["render"] + (math.inf if ctx.step == 2 else 0.0)
        return quantities

    with pytest.raises(OptimisationDiverged):
        run_phases(Toy(), objective, [phase(steps=10)], {"recon_mse": 1.0})


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"sedes": 4}, "unknown key phases.1.sedes (did you mean phases.1.seeds?)"),
        ({"stop": {"patince": 3}}, "unknown key phases.1.stop.patince (did you mean phases.1.stop.patience?)"),
        ({"grad_noise": {"eta": 1.0, "gama": 0.5}}, "unknown key phases.1.grad_noise.gama (did you mean "),
        ({"ramps": {"blur": {"start": 1.0, "ned": 0.0}}}, "unknown key phases.1.ramps.blur.ned (did you mean "),
        ({"ramps": {"blur": {"start": 1.0}}}, "phases.1.ramps.blur: needs `start` and `end`"),
        ({"alternate": [{"lr": 0.1}, {"evry": 2}]}, "unknown key phases.1.alternate.1.evry (did you mean "),
        ({"lr": None}, "phases.1: no `lr`"),
    ],
)
def test_a_phase_with_an_unknown_or_missing_key_is_refused(settings, message):
    spec = {k: v for k, v in {**phase(), **settings}.items() if v is not None}
    with pytest.raises(ValueError) as refused:
        parse_phase(spec, "phases.1")
    assert str(refused.value).startswith(message), refused.value


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="optimizer"):
        run_phases(Toy(), toy_objective, [phase(optimizer="nosuch")], {"recon_mse": 1.0})


# ---------------------------------------------------------------- loss weights


def test_check_weights_accepts_known_losses_with_numbers():
    check_weights({"recon_mse": 1.0, "mask_dice": 0, "intensity_weighted_mse": 2e-4})
    check_weights({})


def test_check_weights_refuses_a_loss_whose_quantities_are_not_produced():
    check_weights({"recon_mse": 1.0}, produced={"render", "target"})
    with pytest.raises(
        ValueError, match="loss 'mask_bce' reads 'logits', which this method does not produce; its losses: "
    ):
        check_weights({"recon_mse": 1.0, "mask_bce": 0.0}, produced={"render", "target"})


def test_check_weights_rejects_unknown_names():
    with pytest.raises(ValueError, match="nosuch"):
        check_weights({"recon_mse": 1.0, "nosuch": 1.0})


@pytest.mark.parametrize("weight", ["abc", "1.0", None, True, [1.0], {"a": 1}])
def test_check_weights_rejects_non_numbers(weight):
    with pytest.raises(ValueError, match="recon_mse"):
        check_weights({"recon_mse": weight})


def test_every_registered_loss_is_known_to_check_weights():
    check_weights({name: 1.0 for name in LOSSES})


def test_alternating_parts_train_their_own_groups_with_their_own_weights_and_options():
    model = Toy()
    calls = []

    def objective(model, ctx):
        calls.append((ctx.option("which"), ctx.step))
        return toy_objective(model, ctx)

    spec = phase(
        steps=10,
        alternate=[
            {"name": "a-part", "train": ["a"], "lr": 0.1, "options": {"which": "a"}},
            {
                "name": "b-part",
                "train": ["b"],
                "lr": 0.1,
                "every": 2,
                "optimizer": "adam_uniform",
                "loss": {"recon_mse": 2.0},
                "options": {"which": "b"},
            },
        ],
    )
    a_before, b_before = model.a.detach().clone(), model.b.detach().clone()
    [record] = run_phases(model, objective, [spec], {"recon_mse": 1.0})
    assert [c for c in calls if c[0] == "b"] == [("b", s) for s in range(0, 10, 2)]
    assert len([c for c in calls if c[0] == "a"]) == 10 + 1  # every step, and the final evaluation
    assert not torch.equal(model.a.detach(), a_before) and not torch.equal(model.b.detach(), b_before)
    # AdamUniform moves b by about lr per step while its gradient keeps its sign: 5 steps of 0.1
    assert 0.45 < b_before.item() - model.b.item() <= 0.5 + 1e-9
    assert record.steps == 10 and record.final["total"] == pytest.approx(record.final["recon_mse"])
