"""acdr's segmentation checkpoints: network files (`core/learn/network_file.py`) that have, besides
the format and version, `kind` (contour | pixel), `channels_in`, `size` (the network's input size),
`model` (the config section it was built from), `state_dict`, `optimizer`, `epoch`, `elapsed`
(training seconds), `best` ({epoch, miou}: the best moving average of validation mIoU), `history`
(one row per validation) and `config` (the whole resolved config).
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from invrender.core.io import InputError
from invrender.core.learn.network_file import load_network_file, network_with_weights, save_network_file
from invrender.methods.acdr.models import MODEL_KINDS, build_model

FORMAT = "invrender.segmentation-net"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    save_network_file(path, FORMAT, VERSION, checkpoint)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a segmentation checkpoint; InputError (one line) when it is missing, corrupt or not ours."""
    checkpoint = load_network_file(path, FORMAT, "an invrender segmentation checkpoint (written by acdr-train)")
    if checkpoint.get("version") != VERSION or checkpoint.get("kind") not in MODEL_KINDS:
        raise InputError(
            path,
            f"checkpoint version {checkpoint.get('version')!r} of kind {checkpoint.get('kind')!r} is not supported",
        )
    return checkpoint


def model_from_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> nn.Module:
    """The network a checkpoint describes, with its weights; InputError when they do not fit."""
    return network_with_weights(
        path,
        lambda: build_model(checkpoint["kind"], int(checkpoint["channels_in"]), checkpoint["model"]),
        checkpoint,
        "the model the checkpoint",
    )
