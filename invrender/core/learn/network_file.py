"""Files of trained networks: a dict saved with `torch.save`, with a `format` name and a `version`,
holding tensors and plain Python values only, so it loads with `weights_only=True` (no code is run
on loading). acdr's segmentation checkpoints and cell-seg's stage-2 network are such files.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from invrender.core.io import InputError, atomic_path

#: The first bytes of every file `torch.save` writes (a zip archive).
ZIP_MAGIC = b"PK\x03\x04"


def save_network_file(path: str | os.PathLike, format_name: str, version: int, content: dict[str, Any]) -> None:
    """Write `content` with its format name and version, atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": format_name, "version": version, **content}, tmp)


def load_network_file(path: str | os.PathLike, format_name: str, what: str) -> dict[str, Any]:
    """Load a file written by `save_network_file` in `format_name`; InputError (one line) when it is
    missing, corrupt or another kind of file. what: how to name the file kind, e.g. "an invrender
    segmentation checkpoint (written by acdr-train)"."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        with open(path, "rb") as file:
            start = file.read(len(ZIP_MAGIC))
    except OSError as err:
        raise InputError(path, f"cannot read the checkpoint ({err.strerror})") from None
    if start != ZIP_MAGIC:  # an image, a text, a legacy pickle: not ours, and never unpickled
        raise InputError(path, f"not {what}: not a file written by torch.save")
    # torch's own messages are not shown: they run to many lines and advise weights_only=False.
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(
            path,
            "not a readable checkpoint: it holds Python objects besides tensors and plain values, which are "
            "never loaded (loading them would run code)",
        ) from None
    except Exception as err:  # a truncated or damaged archive
        problem = f"not a readable checkpoint: a damaged or truncated torch file ({type(err).__name__})"
        raise InputError(path, problem) from None
    if not isinstance(content, dict) or content.get("format") != format_name:
        raise InputError(path, f"not {what} (expected format {format_name!r})")
    return content


def network_with_weights(
    path: str | os.PathLike, build: Callable[[], nn.Module], content: dict[str, Any], described_by: str
) -> nn.Module:
    """`build()` (the network the file describes) with the file's `state_dict` loaded, in eval mode;
    InputError (one line) when the description or the weights do not fit. described_by: e.g.
    "the model the checkpoint"."""
    try:
        network = build()
        network.load_state_dict(content["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = " ".join(str(err).split())[:200]
        raise InputError(
            path, f"the weights do not fit {described_by} describes ({type(err).__name__}: {first})"
        ) from None
    return network.eval()
