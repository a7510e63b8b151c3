"""Shared by the tests: small synthetic spline inputs and CTs, short schedules, the bad-input check,
a tiny acdr checkpoint, a test that points lie on a label's surface."""

import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from invrender.core.geometry.spline_io import write_splines
from invrender.core.io import write_tiff
from invrender.methods.acdr.checkpoint import save_checkpoint
from invrender.methods.acdr.models import build_model
from invrender.methods.spine_seg.synth import write_ct_dataset
from invrender.methods.spline_refine.synth import make_frame

#: The project's real sample data (../shared/data, see its README).
SHARED_DATA = Path("/work/shared/data")

SIZE = 48
#: A schedule short enough for tests: a few steps per phase, two seeds in the multi-start phase, no
#: restarts (their own schedule would refit whatever so short a fit leaves doubtful; see
#: FAST_RESTARTS and tests/methods/spline_refine/test_accuracy.py).
FAST = ["phases.0.steps=2", "phases.1.steps=3", "phases.1.seeds=2", "phases.2.steps=2", "restart.enabled=false"]
#: FAST with restarts, themselves as short.
FAST_RESTARTS = [
    *FAST[:-1],
    "restart.phases.0.steps=3",
    "restart.phases.0.seeds=2",
    "restart.phases.1.steps=2",
    "restart.polish.0.steps=2",
    "restart.polish.1.steps=2",
]
#: A short cell-seg schedule for tests.
CELL_FAST = ["phases.0.steps=10", "phases.1.steps=40"]
#: A short spine-seg fit: few steps and points, no vertebra fitted beyond the chain's ends, no
#: worker processes.
SPINE_SHORT = ["phases.0.steps=6", "points.count=1000", "placement.points=300", "chain.extend=false", "sdf.workers=1"]
#: VerSe's sample verse004: its vertebra mask and centroids, the source of the synthetic CTs.
VERSE_MASK = SHARED_DATA / "verse" / "sub-verse004_seg-vert_msk.nii.gz"
VERSE_CENTROIDS = SHARED_DATA / "verse" / "sub-verse004_seg-subreg_ctd.json"


# ---------------------------------------------------------------- inputs


def make_input(folder: Path, stem: str, seed: int = 0, bodies: int = 2) -> tuple[Path, list[dict]]:
    """A synthetic frame `<stem>.tif` and its init records (every 9th label point, shifted 1 px)."""
    folder.mkdir(parents=True, exist_ok=True)
    image, labels = make_frame(np.random.default_rng(seed), bodies, size=SIZE)
    write_tiff(folder / f"{stem}.tif", image)
    records = [{"id": i, "points": b["points"][::9] + [1.0, -0.5], "widths": None} for i, b in enumerate(labels)]
    return folder / f"{stem}.tif", records


def l3_l4_ct(folder: Path, name: str, orientation: str | None = None, spacing: float = 2.0, seed: int = 5) -> Path:
    """A synthetic CT of L3-L4 (verse004's mask, deformed) stored in `orientation` (default: the
    mask's), `<name>_ct.nii.gz` in `folder`; the path of its L3 and L4 centroids (VerSe JSON)."""
    write_ct_dataset(
        VERSE_MASK,
        folder,
        VERSE_CENTROIDS,
        levels=(22, 23),
        spacing=spacing,
        deform=2.0,
        seed=seed,
        name=name,
        orientation=orientation,
    )
    entries = json.loads((folder / f"{name}_ctd.json").read_text())
    centroids = folder / "ctd.json"
    centroids.write_text(json.dumps([e for e in entries if "label" not in e or e["label"] in (22, 23)]))
    return centroids


def write_init(path: Path, records: list[dict]) -> Path:
    write_splines(path, [records], image="x.tif")
    return path


def make_inputs(folder: Path, n: int) -> list[Path]:
    """`n` synthetic frames `f0.tif` ... with their inits beside them (`f0.json` ...)."""
    images = []
    for i in range(n):
        image, records = make_input(folder, f"f{i}", seed=i)
        write_init(folder / f"f{i}.json", records)
        images.append(image)
    return images


def assert_one_line_error(code: int, err: str, out: Path, *needles: str) -> str:
    """Exit code 2, one line on stderr naming what is wrong, no traceback, nothing in `out`."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert "Traceback" not in err and 'File "' not in err
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))
    return line


def central_gradient(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) -> (B, 2, S, S): (d/dx, d/dy) by central differences, zero outside."""
    padded = F.pad(images, (1, 1, 1, 1))
    dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    return torch.cat([dx, dy], dim=1)


def ellipsoid_stack(folder: Path, size: int = 32, subdivisions: int = 3, name: str = "ellipsoid") -> Path:
    """`invrender synth mesh` of an ellipsoid (an icosphere of `subdivisions`, semi-axes 1, 0.75,
    0.6 before placing) in a `size`^3 stack through a Gaussian PSF (sigma 1.5 voxels), 2% noise:
    `folder/<name>.tif`, with `<name>.truth.ply` beside it."""
    import trimesh

    from invrender.cli import main

    ellipsoid = trimesh.creation.icosphere(subdivisions=subdivisions)
    ellipsoid.vertices *= [1.0, 0.75, 0.6]
    source = folder / f"{name}.ply"
    source.write_bytes(ellipsoid.export(file_type="ply"))
    args = [
        "synth",
        "mesh",
        str(source),
        "--size",
        str(size),
        "--sigma",
        "1.5",
        "--noise",
        "0.02",
        "--out",
        str(folder),
    ]
    assert main(args) == 0
    return folder / f"{name}.tif"


#: acdr-train overrides for a small, fast network and schedule on 32 x 32 synthetic shapes.
ACDR_TINY = [
    "data.size=32",
    "model.widths=[8,16]",
    "model.convs=2",
    "model.dropout=0",
    "model.vertices=16",
    "train.batch_size=8",
    "train.eval_batch=16",
]


# ---------------------------------------------------------------- acdr checkpoints

#: A tiny contour model that reads 32 x 32 grey images.
TINY_MODEL = {
    "widths": [4, 8],
    "convs": 1,
    "dropout": 0.0,
    "relu_each": False,
    "vertices": 8,
    "iterations": 1,
    "init_diameter": 0.25,
    "max_shift": 0.5,
}


def tiny_checkpoint(path, drop=(), **changes):
    """A checkpoint as acdr-train writes it (untrained weights), without the keys `drop` and with `changes`."""
    network = build_model("contour", 1, TINY_MODEL)
    content = {
        "kind": "contour",
        "channels_in": 1,
        "size": 32,
        "model": dict(TINY_MODEL),
        "config": {},
        "config_name": "default",
        "overrides": ["data.size=32"],
        "state_dict": network.state_dict(),
        "optimizer": torch.optim.Adam(network.parameters()).state_dict(),
        "epoch": 1,
        "elapsed": 1.0,
        "best": {"epoch": 1, "miou": 0.5},
        "history": [],
    }
    content.update(changes)
    save_checkpoint(path, {key: value for key, value in content.items() if key not in drop})
    return path


# ---------------------------------------------------------------- surfaces


#: Points within this distance (voxels) of a label's surface count as on it (a 2 mm grid cuts the
#: thinnest processes, so a mesh has some vertices off it).
NEAR_SURFACE = 1.5


def fraction_of_indices_on_surface(index: np.ndarray, labels: np.ndarray, label: int) -> float:
    """The share of (N, 3) points, continuous voxel indices of `labels`, within NEAR_SURFACE voxels
    of the boundary of `label`'s voxels; points outside the grid count as off it."""
    mask = labels == label
    boundary = mask & ~ndimage.binary_erosion(mask)
    distance = ndimage.distance_transform_edt(~boundary)  # voxels to the nearest boundary voxel
    inside = np.all((index >= -0.5) & (index <= np.array(labels.shape) - 0.5), axis=1)
    near = ndimage.map_coordinates(distance, index.T, order=1, mode="nearest") <= NEAR_SURFACE
    return float(np.mean(inside & near))
