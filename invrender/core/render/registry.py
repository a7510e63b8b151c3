"""The renderer interface: every backend registers here by name and kind, with where it can run.

A renderer's kind is what it draws, and fixes its call signature (the Protocols below): a method
renders one kind and names its backend in its config (e.g. `render.backend: splat2d`); it asks for
it with `get_renderer(name, device, kind)`. An unknown backend, one of another kind, one that cannot
run on the device, or one whose optional package (e.g. nvdiffrast for CUDA rasterisation) is
missing raises RendererUnavailable with a one-line reason that lists the backends of the kind;
the CLI reports it as a config error (exit code 2) instead of silently doing less. `auto` takes
the most preferred backend of the kind that runs here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class CurveRenderer(Protocol):
    """Curves as chains of blobs: (B, N, P, 2) centres, (B, N, P) radii and weights, a radial
    profile, (H, W) shape -> (B, N, H, W), one image per curve (see `splat2d.render_curves`)."""

    def __call__(
        self, centers: Tensor, radii: Tensor, weights: Tensor, profile: Tensor, shape: tuple[int, int], cut: float = 2.0
    ) -> Tensor: ...


class PolygonRenderer(Protocol):
    """Closed polygons: (..., K, 2) vertices [x, y] in pixels, height, width -> (..., H, W) soft
    masks (pixel coverage in 0..1)."""

    def __call__(self, vertices: Tensor, height: int, width: int) -> Tensor: ...


class MeshSpectrumRenderer(Protocol):
    """The Fourier transform of a triangle mesh's weighted surface: (V, 3) vertices, (F, 3) faces,
    (F,) face weights, a frequency band -> (K,) complex128 on the band's frequencies."""

    def __call__(self, vertices: Tensor, faces: Tensor, face_weights: Tensor, band, **options) -> Tensor: ...


#: The kinds of renderer and their call signatures.
KINDS: dict[str, type] = {"curves": CurveRenderer, "polygons": PolygonRenderer, "mesh spectrum": MeshSpectrumRenderer}


class RendererUnavailable(ValueError):
    """The requested renderer does not exist, is of another kind, or cannot run here."""


@dataclass(frozen=True)
class RendererSpec:
    name: str
    kind: str  # a key of KINDS
    render: Callable[..., torch.Tensor]
    device_types: tuple[str, ...]  # torch device types it runs on, e.g. ("cpu", "cuda")
    requires: str | None = None  # an optional module it imports, e.g. "nvdiffrast.torch"
    cost: str = ""  # the cost model in one line (bench/ prints the measured figures)
    preference: int = 0  # `auto` takes the available backend of the kind with the highest preference


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
    if spec.kind not in KINDS:
        raise ValueError(f"renderer {spec.name!r}: unknown kind {spec.kind!r}; known: {', '.join(KINDS)}")
    RENDERERS[spec.name] = spec
    return spec


def renderer_names(kind: str) -> list[str]:
    """The registered backends of `kind`, sorted."""
    _register_builtins()
    return sorted(name for name, spec in RENDERERS.items() if spec.kind == kind)


def get_renderer(name: str, device: torch.device, kind: str) -> Callable[..., torch.Tensor]:
    """The render function of backend `name` (or `auto`) of `kind`, checked to run on `device`."""
    if kind not in KINDS:
        raise ValueError(f"unknown renderer kind {kind!r}; known: {', '.join(KINDS)}")
    names = renderer_names(kind)
    if name == "auto":
        runnable = [RENDERERS[n] for n in names if _unavailable(RENDERERS[n], device) is None]
        if not runnable:
            raise RendererUnavailable(f"no {kind} renderer runs on {device}; {kind} renderers: {', '.join(names)}")
        return max(runnable, key=lambda spec: spec.preference).render
    if name not in names:
        what = f"a {RENDERERS[name].kind} renderer" if name in RENDERERS else "unknown"
        raise RendererUnavailable(
            f"{name!r} is {what}, not a {kind} renderer; {kind} renderers: auto, {', '.join(names)}"
        )
    reason = _unavailable(RENDERERS[name], device)
    if reason:
        raise RendererUnavailable(f"renderer {name!r} {reason}")
    return RENDERERS[name].render


def _register_builtins() -> None:
    for module in BUILTIN_BACKENDS:
        importlib.import_module(module)


def _unavailable(spec: RendererSpec, device: torch.device) -> str | None:
    """Why `spec` cannot run on `device`, or None."""
    if torch.device(device).type not in spec.device_types:
        return f"runs on {', '.join(spec.device_types)}, not on {device}"
    if spec.requires:
        try:
            importlib.import_module(spec.requires)
        except Exception as err:  # missing, or present but broken (e.g. built for another CUDA)
            return (
                f"needs the package {spec.requires.split('.')[0]!r}, which does not import here ({type(err).__name__})"
            )
    return None
