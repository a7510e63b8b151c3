"""acdr's segmentation checkpoints: network files (`core/learn/network_file.py`) that have, besides
the format and version, `kind` (contour | pixel), `channels_in`, `size` (the network's input size),
`model` (the config section it was built from), `state_dict`, `optimizer`, `epoch`, `elapsed`
(training seconds), `best` ({epoch, miou}: the best moving average of validation mIoU), `history`
(one row per validation), `config` (the whole resolved config), `config_name` and `overrides` (how
that config was composed).

`read_checkpoint` checks every key the commands read before any of it is used: present and of its
type, the weights finite and of the shapes the recorded model has (compared on torch's meta device,
which allocates nothing), and the memory that `size` asks for within the machine's budget; the
record of the training run (epoch, config, optimiser) only where it is read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from invrender.core.budget import check_allocation
from invrender.core.io import InputError
from invrender.core.learn.network_file import load_network_file, network_with_weights, save_network_file
from invrender.methods.acdr.models import MODEL_KINDS, build_model

FORMAT = "invrender.segmentation-net"
VERSION = 1

#: Tensors as wide as the finest encoder level that are alive at once while the network reads one
#: image (a convolution's input and output, the block's skip, the decoder's concatenation): one image
#: of size S takes about 4 bytes x S^2 x (channels_in + LIVE_ACTIVATIONS x widths[0]).
LIVE_ACTIVATIONS = 4
#: Far beyond a useful polygon (the paper: 16 to 64 vertices, 3 steps), yet cheap to render.
MAX_VERTICES, MAX_ITERATIONS = 4096, 100


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    save_network_file(path, FORMAT, VERSION, checkpoint)


def read_checkpoint(path: str | os.PathLike, training_record: bool = False) -> dict[str, Any]:
    """Load and check a segmentation checkpoint; InputError (one line, naming the file and the key)
    when it is missing, corrupt, not ours, lacks a key that running the model reads or holds a bad
    value there, has weights that are not finite or do not fit its model, or a size this machine
    cannot run. With `training_record`, the record of its training run is checked too (what acdr-eval
    and acdr-train --resume read: `_check_training_record`)."""
    checkpoint = load_network_file(path, FORMAT, "an invrender segmentation checkpoint (written by acdr-train)")
    if checkpoint.get("version") != VERSION or checkpoint.get("kind") not in MODEL_KINDS:
        raise InputError(
            path,
            f"checkpoint version {checkpoint.get('version')!r} of kind {checkpoint.get('kind')!r} is not supported",
        )
    _check_model(path, checkpoint)
    if training_record:
        _check_training_record(path, checkpoint)
    _check_weights(path, checkpoint)
    size = checkpoint["size"]
    planned = 4 * size**2 * (checkpoint["channels_in"] + LIVE_ACTIVATIONS * checkpoint["model"]["widths"][0])
    check_allocation(path, f"checkpoint size {size} (the network's input, {size} x {size} px)", planned)
    return checkpoint


def model_from_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> nn.Module:
    """The network a checkpoint (checked by `read_checkpoint`) describes, with its weights."""
    return network_with_weights(path, lambda: _build(checkpoint), checkpoint, "the model the checkpoint")


def _build(checkpoint: dict[str, Any]) -> nn.Module:
    return build_model(checkpoint["kind"], int(checkpoint["channels_in"]), checkpoint["model"])


# ---------------------------------------------------------------- checks


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _field(path, content: dict, key: str, valid: Callable[[Any], bool], expected: str, where: str = "") -> Any:
    """`content[key]`; InputError naming the key (under `where`, e.g. "model.") when it is missing
    or not `valid`."""
    if not isinstance(content, dict) or key not in content:
        raise InputError(path, f"checkpoint has no {where}{key}: not written by acdr-train, or damaged")
    value = content[key]
    if not valid(value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise InputError(path, f"checkpoint {where}{key} = {shown}: expected {expected}")
    return value


def _check_model(path, checkpoint: dict) -> None:
    """`channels_in`, `size` and the `model` section that `build_model` and the commands read."""
    _field(path, checkpoint, "channels_in", lambda v: _is_int(v) and v >= 1, "a positive integer")
    model = _field(path, checkpoint, "model", lambda v: isinstance(v, dict), "the model's config section")
    widths = _field(
        path,
        model,
        "widths",
        lambda v: isinstance(v, list) and v and all(_is_int(w) and w >= 1 for w in v),
        "a list of positive integers",
        "model.",
    )
    _field(path, model, "convs", lambda v: _is_int(v) and v >= 1, "a positive integer", "model.")
    _field(path, model, "dropout", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)", "model.")
    if "relu_each" in model:
        _field(path, model, "relu_each", lambda v: isinstance(v, bool), "true or false", "model.")
    if checkpoint["kind"] == "contour":
        _field(
            path, model, "vertices", lambda v: _is_int(v) and 3 <= v <= MAX_VERTICES, f"3 to {MAX_VERTICES}", "model."
        )
        _field(
            path,
            model,
            "iterations",
            lambda v: _is_int(v) and 1 <= v <= MAX_ITERATIONS,
            f"1 to {MAX_ITERATIONS}",
            "model.",
        )
        _field(path, model, "init_diameter", lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]", "model.")
        _field(path, model, "max_shift", lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]", "model.")
    smallest = 2 ** len(widths)  # as config data.size: every encoder block halves the image
    _field(
        path,
        checkpoint,
        "size",
        lambda v: _is_int(v) and v >= smallest,
        f"an integer of at least 2^{len(widths)} = {smallest} (one halving per encoder block)",
    )


def _check_training_record(path, checkpoint: dict) -> None:
    """What acdr-eval records of the training run and how it composes its config, and what
    acdr-train --resume reads to go on."""
    _field(path, checkpoint, "epoch", lambda v: _is_int(v) and v >= 0, "a whole number of epochs")
    _field(path, checkpoint, "elapsed", lambda v: _is_number(v) and v >= 0, "seconds (a number, at least 0)")
    _field(path, checkpoint, "config_name", lambda v: isinstance(v, str) and v, "the name of a config")
    _field(
        path,
        checkpoint,
        "overrides",
        lambda v: isinstance(v, list) and all(isinstance(o, str) for o in v),
        "a list of key=value strings",
    )
    best = _field(path, checkpoint, "best", lambda v: isinstance(v, dict), "{epoch, miou}")
    _field(path, best, "epoch", lambda v: _is_int(v) and v >= 0, "a whole number of epochs", "best.")
    _field(path, best, "miou", _is_number, "a finite number", "best.")
    _field(
        path,
        checkpoint,
        "history",
        lambda v: isinstance(v, list) and all(isinstance(row, dict) for row in v),
        "a list of rows",
    )
    _field(path, checkpoint, "optimizer", lambda v: isinstance(v, dict), "the optimiser's state")


def _check_weights(path, checkpoint: dict) -> None:
    """`state_dict`: tensors, finite, with the names and shapes of the model the checkpoint describes
    (built on the meta device, so that a model claiming huge layers allocates nothing)."""
    weights = _field(
        path,
        checkpoint,
        "state_dict",
        lambda v: isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()),
        "a dict of tensors",
    )
    with torch.device("meta"):
        expected = {name: tuple(tensor.shape) for name, tensor in _build(checkpoint).state_dict().items()}
    unexpected, missing = sorted(weights.keys() - expected.keys()), sorted(expected.keys() - weights.keys())
    mismatched = [name for name in expected.keys() & weights.keys() if tuple(weights[name].shape) != expected[name]]
    if unexpected or missing or mismatched:
        if mismatched:
            name = sorted(mismatched)[0]
            detail = f"{name} is {tuple(weights[name].shape)}, the model's {expected[name]}"
        else:
            detail = f"unexpected {unexpected[0]}" if unexpected else f"no {missing[0]}"
        raise InputError(path, f"the weights do not fit the model the checkpoint describes ({detail})")
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(path, f"checkpoint weight {name} contains NaN or infinite values (a diverged training?)")
