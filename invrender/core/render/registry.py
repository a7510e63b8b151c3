"""The renderer interface: every backend registers here by name, with where it can run.

A method names its renderer in its config (e.g. `render.backend: splat2d`) and asks for it with
`get_renderer(name, device)`. A backend that cannot run on the device, or whose optional package
(e.g. nvdiffrast for CUDA rasterisation) is missing, raises RendererUnavailable with a one-line
reason, which the CLI reports as a config error (exit code 2) instead of silently doing less.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import torch


class RendererUnavailable(ValueError):
    """The requested renderer does not exist or cannot run here."""


@dataclass(frozen=True)
class RendererSpec:
    name: str
    render: Callable[..., torch.Tensor]
    device_types: tuple[str, ...]  # torch device types it runs on, e.g. ("cpu", "cuda")
    requires: str | None = None  # an optional package it needs, e.g. "nvdiffrast"
    cost: str = ""  # the cost model in one line (bench/ prints the measured figures)


RENDERERS: dict[str, RendererSpec] = {}

#: Modules whose import registers the built-in backends.
BUILTIN_BACKENDS = (
    "invrender.core.render.splat2d",
    "invrender.core.render.microscope",
    "invrender.core.render.polygon2d",
    "invrender.core.render.polygon_nvdiffrast",
)


def register_renderer(spec: RendererSpec) -> RendererSpec:
    if spec.name in RENDERERS:
        raise ValueError(f"renderer {spec.name!r} registered twice")
    RENDERERS[spec.name] = spec
    return spec


def get_renderer(name: str, device: torch.device) -> Callable[..., torch.Tensor]:
    """The render function of backend `name`, checked to run on `device`."""
    for module in BUILTIN_BACKENDS:
        importlib.import_module(module)
    if name not in RENDERERS:
        raise RendererUnavailable(f"unknown renderer {name!r}; known: {', '.join(sorted(RENDERERS))}")
    spec = RENDERERS[name]
    if torch.device(device).type not in spec.device_types:
        raise RendererUnavailable(f"renderer {name!r} runs on {', '.join(spec.device_types)}, not on {device}")
    if spec.requires and importlib.util.find_spec(spec.requires) is None:
        raise RendererUnavailable(f"renderer {name!r} needs the package {spec.requires!r}, which is not installed")
    return spec.render
