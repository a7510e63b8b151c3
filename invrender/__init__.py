"""invrender: explicit shapes (splines, meshes, polygons) from images by differentiable rendering."""

import os

# GNU OpenMP (torch's and finufft's thread pools) spins for 300 000 iterations before a waiting
# thread sleeps. When another process shares the cores, the spinning threads take the CPU from the
# ones doing work, and a fit runs 3-4 times slower instead of about 1.5 times (bench/README.md,
# "Shared cores"). 1000 is what libgomp itself uses when it knows the cores are oversubscribed.
# It must be set before libgomp is loaded (by `import torch`); a user's own setting wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"

# The Python API, one function per method (each in its method's api.py, which the command line calls
# too). Imported on first use, so that `import invrender` stays light and the CLI loads one method.
_API = {
    "refine_splines": "invrender.methods.spline_refine.api",
    "SplineRefineResult": "invrender.methods.spline_refine.api",
    "fit_mesh": "invrender.methods.mesh_fit.api",
    "MeshFitResult": "invrender.methods.mesh_fit.api",
    "segment_cells": "invrender.methods.cell_seg.api",
    "CellSegResult": "invrender.methods.cell_seg.api",
    "segment_spine": "invrender.methods.spine_seg.api",
    "SpineSegResult": "invrender.methods.spine_seg.api",
    "Mesh": "invrender.core.geometry.meshes",
    "InputError": "invrender.core.io",
    "ConfigError": "invrender.config",
    "RunOptions": "invrender.method",  # the keywords config, overrides, device, seed, progress of every function
}
_MODULES = {"acdr": "invrender.methods.acdr.api"}  # invrender.acdr.train(...), .evaluate(checkpoint), .load(checkpoint)
__all__ = sorted([*_API, *_MODULES])


def __getattr__(name: str):
    import importlib

    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'invrender' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
