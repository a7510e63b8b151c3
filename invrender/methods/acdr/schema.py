"""The values acdr's config keys may take (configs/acdr/default.yaml holds the keys): one rule per
leaf key, checked with the config before any data is read (`check_config`)."""

from __future__ import annotations

from invrender.core.optim.phases import SCHEDULES
from invrender.core.schema import (
    BOOLEAN,
    NON_NEGATIVE_INT,
    NUMBER,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    SEED,
    STRING,
    WEIGHTS,
    Rule,
    integer,
    list_of,
    number,
    one_of,
    optional,
)
from invrender.methods.acdr.checkpoint import MAX_ITERATIONS, MAX_VERTICES
from invrender.methods.acdr.datasets import LAYOUT_HELP

SHARE_OF_IMAGE = number(0, 1, open_low=True)  # a length as a fraction of the image size
DROPOUT = number(0, 1, open_high=True)

RULES: dict[str, Rule] = {
    "data.layout": one_of(*LAYOUT_HELP),
    "data.root": optional(STRING),
    "data.size": POSITIVE_INT,  # at least 2^depth: check_config
    "data.val_every": POSITIVE_INT,
    "data.train_count": optional(POSITIVE_INT),
    "data.image": optional(STRING),
    "data.labels": optional(STRING),
    "data.test_from": PROBABILITY,
    "data.labelled_region": optional(list_of(NON_NEGATIVE_INT, length=4)),  # against the labels' size when read
    "data.count": NON_NEGATIVE_INT,
    "data.seed": SEED,
    "data.augment.scales": list_of(POSITIVE),
    "data.augment.angles": list_of(NUMBER),
    "model.widths": list_of(POSITIVE_INT),
    "model.convs": POSITIVE_INT,
    "model.dropout": DROPOUT,
    "model.relu_each": BOOLEAN,
    "model.vertices": integer(3, MAX_VERTICES),  # the bounds a checkpoint is read with
    "model.iterations": integer(1, MAX_ITERATIONS),
    "model.init_diameter": SHARE_OF_IMAGE,
    "model.max_shift": SHARE_OF_IMAGE,
    "render.backend": STRING,  # a polygon renderer, checked against the registry
    "loss": WEIGHTS,
    "pixel_loss": WEIGHTS,
    "train.epochs": POSITIVE_INT,
    "train.batch_size": POSITIVE_INT,
    "train.lr": POSITIVE,
    "train.schedule": one_of(*SCHEDULES),
    "train.max_minutes": optional(POSITIVE),  # null: no time budget
    "train.val_every": POSITIVE_INT,
    "train.best_smoothing": DROPOUT,  # the weight of the old average, below 1 so that a new score counts
    "train.eval_batch": POSITIVE_INT,
    "train.examples": NON_NEGATIVE_INT,
}
