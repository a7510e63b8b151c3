"""The values acdr's config keys may take (configs/acdr/default.yaml holds the keys): one rule per
leaf key, checked with the config before any data is read (`check_config`)."""

from __future__ import annotations

from invrender.core import schema as rule
from invrender.core.optim.phases import SCHEDULES
from invrender.methods.acdr.checkpoint import MAX_ITERATIONS, MAX_VERTICES
from invrender.methods.acdr.datasets import LAYOUT_HELP

SHARE_OF_IMAGE = rule.number(0, 1, open_low=True)  # a length as a fraction of the image size
DROPOUT = rule.number(0, 1, open_high=True)

RULES: dict[str, rule.Rule] = {
    "data.layout": rule.one_of(*LAYOUT_HELP),
    "data.root": rule.optional(rule.STRING),
    "data.size": rule.POSITIVE_INT,  # at least 2^depth: check_config
    "data.val_every": rule.POSITIVE_INT,
    "data.train_count": rule.optional(rule.POSITIVE_INT),
    "data.image": rule.optional(rule.STRING),
    "data.labels": rule.optional(rule.STRING),
    "data.test_from": rule.PROBABILITY,
    # checked against the labels' size when they are read
    "data.labelled_region": rule.optional(rule.list_of(rule.NON_NEGATIVE_INT, length=4)),
    "data.count": rule.NON_NEGATIVE_INT,
    "data.seed": rule.SEED,
    "data.augment.scales": rule.list_of(rule.POSITIVE),
    "data.augment.angles": rule.list_of(rule.NUMBER),
    "model.widths": rule.list_of(rule.POSITIVE_INT),
    "model.convs": rule.POSITIVE_INT,
    "model.dropout": DROPOUT,
    "model.relu_each": rule.BOOLEAN,
    "model.vertices": rule.integer(3, MAX_VERTICES),  # the bounds a checkpoint is read with
    "model.iterations": rule.integer(1, MAX_ITERATIONS),
    "model.init_diameter": SHARE_OF_IMAGE,
    "model.max_shift": SHARE_OF_IMAGE,
    "render.backend": rule.STRING,  # a polygon renderer, checked against the registry
    "loss": rule.WEIGHTS,
    "pixel_loss": rule.WEIGHTS,
    "train.epochs": rule.POSITIVE_INT,
    "train.batch_size": rule.POSITIVE_INT,
    "train.lr": rule.POSITIVE,
    "train.schedule": rule.one_of(*SCHEDULES),
    "train.max_minutes": rule.optional(rule.POSITIVE),  # null: no time budget
    "train.val_every": rule.POSITIVE_INT,
    "train.best_smoothing": DROPOUT,  # the weight of the old average, below 1 so that a new score counts
    "train.eval_batch": rule.POSITIVE_INT,
    "train.examples": rule.NON_NEGATIVE_INT,
}
