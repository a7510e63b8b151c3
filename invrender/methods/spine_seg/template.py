"""The vertebra template of spine-seg: one mean mesh (one connectivity for every vertebra) and its
Laplacian eigenbasis, built from a vertebra label mask.

Each vertebra L lives in its canonical frame: origin its body centroid c_L, axes superior, posterior
and left (`vertebra_frames`), lengths scaled by h_ref / h_L so that vertebrae at different levels
have comparable sizes (h_L the local centroid spacing, h_ref their mean). The fit places the
template at vertebra L by the inverse: x = c_L + (h_L / h_ref) R_L q.

Building (`build_template`): per label, a surface by marching cubes on the Gaussian-smoothed mask,
decimated with libigl (which keeps it closed and manifold); every surface is expressed in its
canonical frame; the middle label's surface is the reference, registered onto every other surface
(non-rigid ICP with symmetric matches, `register`) so all share its faces; the template is the
vertex-wise mean, with the spectral basis of its cotangent Laplacian.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from invrender.core.geometry.meshes import Mesh, write_mesh
from invrender.core.geometry.spectral import laplacian_eigenbasis
from invrender.core.io import InputError, atomic_path, read_json, write_json
from invrender.core.volumes import VERTEBRA_NAMES, Volume, index_to_world
from invrender.methods.spine_seg.frames import cranial_order, vertebra_frames
from invrender.options import OutFolder

TEMPLATE_VERSION = 1
MESH_FILE, ARRAYS_FILE, INFO_FILE = "template.ply", "template.npz", "template.json"
ARRAY_KEYS = ("vertices", "faces", "eigenvalues", "eigenvectors", "masses", "reference_spacing")
#: The canonical frame's axes (columns: superior, posterior, superior x posterior) in RAS for a spine
#: along the world's z axis: `chain_frames`' rotation there. `template.ply` is written through it.
CANONICAL_TO_RAS = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])

#: Fewer voxels than this cannot make a vertebra surface worth registering.
MIN_VOXELS = 100
#: Non-rigid ICP (trimesh's nricp_sumner), stages (wc, wi, ws, wl, wn): correspondence, identity,
#: smoothness, landmark and normal weights; the fit tightens from stage to stage. Each of the
#: NRICP_ROUNDS rounds renews the symmetric landmarks. Tuned on VerSe verse004: mean surface
#: distance about 0.4 mm, with few degenerate triangles.
NRICP_STEPS = ((10, 0.001, 1, 10, 0), (100, 0.001, 1, 100, 0), (1000, 0.001, 1, 1000, 0))
NRICP_ROUNDS = 4
#: Closest points farther than this (relative to the reference's bounding-box diagonal) are not matches.
NRICP_DISTANCE_THRESHOLD = 0.1
#: Targets with fewer vertices are subdivided twice (16x the faces) so closest vertices approximate
#: closest surface points to a fraction of the edge length.
DENSE_TARGET_VERTICES = 20000


@dataclass
class Template:
    vertices: np.ndarray  # (V, 3) float64, canonical frame, mm at the reference centroid spacing
    faces: np.ndarray  # (F, 3) int64, outward-oriented
    eigenvalues: np.ndarray  # (k,) ascending, 1 / mm^2
    eigenvectors: np.ndarray  # (V, k) M-orthonormal
    masses: np.ndarray  # (V,) lumped vertex areas, mm^2
    reference_spacing: float  # h_ref, mm
    source: dict = field(default_factory=dict)  # provenance: mask, labels, registration errors


def default_template_path() -> Path:
    """The folder of the shipped template (built from VerSe verse004, see its ATTRIBUTION.md),
    package data so that a non-editable install finds it (`data/spine_template` links there)."""
    return Path(__file__).resolve().parents[2] / "templates" / "spine"


# ---------------------------------------------------------------- surfaces


def label_surface(mask: Volume, label: int, faces: int, smoothing: float):
    """The closed surface of one label as a `trimesh.Trimesh` in world mm, outward-oriented,
    decimated to `faces` faces (fewer if marching cubes gives fewer).

    The binary mask is blurred by a Gaussian of `smoothing` mm before marching cubes at 0.5: this
    removes voxel staircases and the spurious handles of a voxel surface (a vertebra is genus 1,
    its canal) at a volume loss of a few percent. Only the largest connected piece is kept.
    """
    import igl
    import trimesh
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    sigma = smoothing / mask.spacing  # voxels, per axis
    box, offset = _padded_box(mask.data == label, margin=np.ceil(3 * sigma).astype(int) + 1)
    blurred = gaussian_filter(box.astype(np.float32), sigma)
    vertices, triangles, _, _ = marching_cubes(blurred, 0.5)
    surface = trimesh.Trimesh(index_to_world(mask.affine, vertices + offset), triangles)
    trimesh.repair.fix_inversion(surface)  # the affine may mirror; keep normals outward
    surface = max(surface.split(only_watertight=False), key=lambda piece: len(piece.faces))
    if len(surface.faces) > faces:
        decimated, triangles, _, _ = igl.decimate(
            np.asfortranarray(surface.vertices, dtype=np.float64),
            np.asfortranarray(surface.faces, dtype=np.int32),
            faces,
        )
        surface = trimesh.Trimesh(decimated, triangles)
    if not surface.is_watertight:
        raise RuntimeError(f"the surface of label {label} is not closed after decimation")
    return surface


def _padded_box(binary: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of `binary` (I, J, K) grown by `margin` (3,) voxels, zero-padded where it
    leaves the volume, and the voxel index (3,) of its first voxel."""
    index = np.argwhere(binary)
    low, high = index.min(axis=0) - margin, index.max(axis=0) + margin + 1
    inner_low, inner_high = np.maximum(low, 0), np.minimum(high, binary.shape)
    crop = binary[tuple(slice(a, b) for a, b in zip(inner_low, inner_high))]
    return np.pad(crop, list(zip(inner_low - low, high - inner_high))), low


def to_canonical(points: np.ndarray, centre: np.ndarray, rotation: np.ndarray, scale: float) -> np.ndarray:
    """(N, 3) world mm -> canonical coordinates `scale * R^T (x - c)` (N, 3)."""
    return scale * (points - centre) @ rotation


# ---------------------------------------------------------------- registration


def register(reference, target) -> np.ndarray:
    """(V, 3) the reference's vertices moved onto the target surface (both `trimesh.Trimesh` in the
    same canonical frame, so the start is the identity). The result lies in the target's frame.

    Non-rigid ICP (Sumner and Popovic 2004, trimesh's `nricp_sumner`) matches every reference
    vertex to the target, a one-sided pull that lets the mesh shrink into the target; so each round
    also pulls, as landmarks, the reference's closest point to every target vertex onto that vertex
    (a symmetric match), and the next round restarts from the result. A rigid or scaled ICP first
    is left out for the same reason: one-sided, it shrinks the reference (by 10-20 % on VerSe).

    Reference-to-target matches are closest vertices of the target densified by midpoint
    subdivision (the same surface): trimesh's closest point on triangles needs `rtree`, not a
    dependency.
    """
    import trimesh

    dense = target.subdivide().subdivide() if len(target.vertices) < DENSE_TARGET_VERTICES else target
    anchors = np.asarray(target.vertices)
    current = reference
    for _ in range(NRICP_ROUNDS):
        landmarks = _closest_surface_points(current, anchors)
        moved = trimesh.registration.nricp_sumner(
            current.copy(),
            dense,
            source_landmarks=landmarks,
            target_positions=anchors,
            steps=NRICP_STEPS,
            distance_threshold=NRICP_DISTANCE_THRESHOLD,
            use_faces=False,
        )
        current = trimesh.Trimesh(moved, reference.faces, process=False)
    return np.asarray(current.vertices)


def _closest_surface_points(surface, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The closest point of `surface` to each of `points` (N, 3): face indices (N,) and
    barycentric coordinates (N, 3)."""
    import igl
    import trimesh

    _, face_index, closest = igl.point_mesh_squared_distance(
        points, np.asarray(surface.vertices, dtype=np.float64), np.asarray(surface.faces, dtype=np.int64)
    )
    return face_index, trimesh.triangles.points_to_barycentric(surface.triangles[face_index], closest)


def surface_distances(points: np.ndarray, surface) -> np.ndarray:
    """(N,) distance mm from each point (N, 3) to the closest point of `surface` (a Trimesh)."""
    import igl

    squared, _, _ = igl.point_mesh_squared_distance(
        np.asarray(points, dtype=np.float64),
        np.asarray(surface.vertices, dtype=np.float64),
        np.asarray(surface.faces, dtype=np.int64),
    )
    return np.sqrt(squared)


def _distance_summary(registered, target, to_mm: float) -> dict:
    """Mean and 95th percentile of the surface distances, mm of the vertebra itself (`to_mm`
    undoes the canonical scaling): registered vertices -> target surface, and back (which sees
    parts of the target the registered mesh missed)."""
    forward = surface_distances(registered.vertices, target) * to_mm
    backward = surface_distances(target.vertices, registered) * to_mm
    return {
        "mean_mm": float(forward.mean()),
        "p95_mm": float(np.percentile(forward, 95)),
        "reverse_mean_mm": float(backward.mean()),
        "reverse_p95_mm": float(np.percentile(backward, 95)),
    }


# ---------------------------------------------------------------- the template


def build_template(
    mask: Volume,
    centroids: dict[int, np.ndarray] | None = None,
    labels: list[int] | None = None,
    faces: int = 2500,
    modes: int = 200,
    smoothing: float = 1.0,
) -> Template:
    """The mean vertebra of `labels` (default: every label of the mask) in `mask` (I, J, K).

    `centroids` `{label: (3,) world mm}` are the vertebral body centroids that define the frames
    (all of them are used for the superior axes, even those not in `labels`). Without them, each
    label's voxel centroid stands in: the frames then centre on the whole vertebra (arch
    included), a few mm posterior of the body, so the template's origin is not the body centroid
    a fit initialised from body centroids expects; prefer body centroids.
    `faces` is the face count of every surface, `modes` the number of Laplacian modes kept (at
    most V), `smoothing` the Gaussian sigma in mm applied to the mask before meshing.
    InputError (naming the mask) for no selected label, a label too small to mesh, fewer than two
    vertebrae, a label without a centroid, or coinciding centroids.
    """
    import trimesh

    labels = _present_labels(mask, labels)
    origin = "body centroids" if centroids is not None else "voxel centroids"
    if centroids is None:
        centroids = {int(v): mask.voxel_centres(mask.data == v).mean(axis=0) for v in np.unique(mask.data) if v > 0}
    require_centroids(labels, centroids, mask.path)
    try:
        frames = vertebra_frames(centroids)
    except ValueError as err:
        raise InputError(mask.path, f"no vertebra frames from the centroids: {err}") from None
    reference_spacing = float(np.mean([frames[label][1] for label in labels]))
    surfaces = {}
    for label in labels:
        rotation, spacing = frames[label]
        surface = label_surface(mask, label, faces, smoothing)
        surface.vertices = to_canonical(surface.vertices, centroids[label], rotation, reference_spacing / spacing)
        surfaces[label] = surface
    reference_label = labels[len(labels) // 2]
    reference = surfaces[reference_label]
    registered, errors = [], {}
    for label in labels:
        moved = reference.vertices if label == reference_label else register(reference, surfaces[label])
        registered.append(moved)
        errors[str(label)] = _distance_summary(
            trimesh.Trimesh(moved, reference.faces, process=False),
            surfaces[label],
            frames[label][1] / reference_spacing,
        )
    vertices = np.mean(registered, axis=0)
    triangles = np.asarray(reference.faces, dtype=np.int64)
    eigenvalues, eigenvectors, masses = laplacian_eigenbasis(vertices, triangles, min(modes, len(vertices)))
    source = {
        "mask": None if mask.path is None else str(mask.path),
        "labels": labels,
        "vertebrae": [VERTEBRA_NAMES.get(label, str(label)) for label in labels],
        "reference_label": reference_label,
        "origin": origin,
        "smoothing_mm": smoothing,
        "registration": errors,
    }
    return Template(vertices, triangles, eigenvalues, eigenvectors, masses, reference_spacing, source)


def _present_labels(mask: Volume, labels: list[int] | None) -> list[int]:
    """The asked-for labels (default all) that the mask holds, each with enough voxels; InputError if none."""
    values, counts = np.unique(mask.data, return_counts=True)
    present = {int(v): int(n) for v, n in zip(values, counts) if v > 0}
    chosen = sorted(present if labels is None else set(labels) & present.keys(), key=cranial_order)
    if not chosen:
        asked = "any label" if labels is None else f"labels {_label_list(labels)}"
        raise InputError(mask.path, f"the mask holds no {asked} (labels present: {_label_list(present) or 'none'})")
    small = [label for label in chosen if present[label] < MIN_VOXELS]
    if small:
        raise InputError(
            mask.path,
            f"label {small[0]} has {present[small[0]]} voxels; at least {MIN_VOXELS} are needed to mesh a vertebra",
        )
    return chosen


def require_centroids(labels: list[int], centroids: dict[int, np.ndarray], path: Path | None) -> None:
    """InputError (naming `path`) unless every label has a centroid and there are at least two."""
    missing = [label for label in labels if label not in centroids]
    if missing:
        raise InputError(path, f"no centroid for label(s) {_label_list(missing)}")
    if len(centroids) < 2:
        raise InputError(path, "one vertebra only: the superior axis of the frame needs at least 2 centroids")


def _label_list(labels) -> str:
    return ", ".join(str(label) for label in sorted(labels))


# ---------------------------------------------------------------- saving and loading


def template_in_ras(template: Template) -> Mesh:
    """The template as a vertebra of an upright spine in a CT's world frame (RAS mm, its body
    centroid at the origin): canonical `q` (superior, posterior, s x p) to `CANONICAL_TO_RAS @ q`,
    the frame `vertebra_frames` gives a spine running straight up the world's z axis. A rotation, so
    the faces stay outward-oriented."""
    return Mesh(template.vertices @ CANONICAL_TO_RAS.T, template.faces)


def save_template(template: Template, folder: str | Path) -> None:
    """Write `template.ply` (the mean mesh for viewing, upright in RAS: `template_in_ras`),
    `template.npz` (the arrays) and `template.json` (provenance, counts, version) into `folder`,
    each atomically, the JSON last: a folder with a JSON holds a complete template. Other files in
    the folder are left alone."""
    folder = Path(folder)
    write_mesh(folder / MESH_FILE, template_in_ras(template), space="RAS")
    with atomic_path(folder / ARRAYS_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            vertices=template.vertices,
            faces=template.faces,
            eigenvalues=template.eigenvalues,
            eigenvectors=template.eigenvectors,
            masses=template.masses,
            reference_spacing=np.float64(template.reference_spacing),
        )
    write_json(
        folder / INFO_FILE,
        {
            "version": TEMPLATE_VERSION,
            "vertices": len(template.vertices),
            "faces": len(template.faces),
            "modes": len(template.eigenvalues),
            "reference_spacing_mm": template.reference_spacing,
            "source": template.source,
        },
    )


def load_template(folder: str | Path) -> Template:
    """Read a template written by `save_template` (the `.npz` and `.json`; the `.ply` is for
    viewers). InputError naming the folder or file when it is missing, unreadable, of another
    version, empty, or has inconsistent shapes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "template folder not found")
    info = read_json(folder / INFO_FILE)
    if not isinstance(info, dict) or info.get("version") != TEMPLATE_VERSION:
        raise InputError(folder / INFO_FILE, f"not a spine template of version {TEMPLATE_VERSION}")
    arrays = _read_arrays(folder / ARRAYS_FILE)
    template = Template(
        arrays["vertices"].astype(np.float64),
        arrays["faces"].astype(np.int64),
        arrays["eigenvalues"].astype(np.float64),
        arrays["eigenvectors"].astype(np.float64),
        arrays["masses"].astype(np.float64),
        float(arrays["reference_spacing"]),
        info.get("source", {}),
    )
    _check_template(folder / ARRAYS_FILE, template)
    return template


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ARRAY_KEYS if key not in data.files]
            if missing:
                raise InputError(path, f"missing array(s) {', '.join(missing)}")
            return {key: data[key] for key in ARRAY_KEYS}
    except InputError:
        raise
    except Exception as err:  # numpy and zipfile raise many types for damaged files
        raise InputError(path, f"not a readable template archive ({type(err).__name__}: {err})") from None


def _check_template(path: Path, template: Template) -> None:
    """InputError (naming `path`) for an empty template or arrays whose shapes disagree."""
    n_vertices, n_faces = len(template.vertices), len(template.faces)
    if n_vertices == 0 or n_faces == 0:
        raise InputError(path, f"the template is empty ({n_vertices} vertices, {n_faces} faces)")
    k = len(template.eigenvalues)
    expected = {
        "vertices": (n_vertices, 3),
        "faces": (n_faces, 3),
        "eigenvalues": (k,),
        "eigenvectors": (n_vertices, k),
        "masses": (n_vertices,),
    }
    for name, shape in expected.items():
        if getattr(template, name).shape != shape:
            raise InputError(path, f"{name} has shape {getattr(template, name).shape}, expected {shape}")
    if k == 0:
        raise InputError(path, "the template has no spectral modes")
    if template.faces.min() < 0 or template.faces.max() >= n_vertices:
        raise InputError(
            path, f"a face refers to vertex {int(template.faces.max())}, but there are {n_vertices} vertices"
        )
    numbers = (template.vertices, template.eigenvalues, template.eigenvectors, template.masses)
    if (
        not all(np.isfinite(a).all() for a in numbers)
        or not math.isfinite(template.reference_spacing)
        or template.reference_spacing <= 0
    ):
        raise InputError(path, "non-finite values or a non-positive reference spacing")


# ---------------------------------------------------------------- the command


def parse_labels(text: str) -> list[int]:
    """ "16-24" or "16,18,20-22" -> sorted label codes; ValueError for anything else."""
    labels = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not a label or a range like 16-24")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise ValueError(f"the range {first}-{last} is empty")
        labels.update(range(first, last + 1))
    return sorted(labels)


def spine_template(
    mask: Annotated[
        Path,
        typer.Argument(
            help="A vertebra label mask (NIfTI, DICOM folder or TIFF), VerSe label codes.", show_default=False
        ),
    ],
    out: OutFolder = None,
    centroids: Annotated[
        Path | None,
        typer.Option(
            "--centroids", help="Vertebral body centroids (VerSe .json); default: each label's voxel centroid."
        ),
    ] = None,
    labels: Annotated[str, typer.Option("--labels", help="Labels to average, e.g. 16-24 or 20,21,23.")] = "16-24",
    faces: Annotated[int, typer.Option("--faces", min=100, help="Faces of the template mesh.")] = 2500,
    modes: Annotated[
        int, typer.Option("--modes", min=1, help="Laplacian eigenvectors kept (at most the vertex count).")
    ] = 200,
) -> None:
    """Build the spine-seg vertebra template: the mean of the label surfaces, registered to one
    connectivity, with its Laplacian eigenbasis (OUT/template.ply, .npz and .json)."""
    from invrender.core.volumes import read_centroids, read_label_volume

    try:
        selected = parse_labels(labels)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--labels") from None
    start = time.perf_counter()
    volume = read_label_volume(mask)
    points = None
    if centroids is not None:
        points = read_centroids(centroids, volume)
        require_centroids([label for label in selected if (volume.data == label).any()], points, centroids)
    template = build_template(volume, points, selected, faces=faces, modes=modes)
    template.source["centroids"] = None if centroids is None else str(centroids)
    save_template(template, out)
    # the reference label is not registered (its error is 0): leave it out of the summary
    errors = [
        e for label, e in template.source["registration"].items() if label != str(template.source["reference_label"])
    ]
    error = (
        f"registration error mean {np.mean([e['mean_mm'] for e in errors]):.2f} mm, worst p95 "
        f"{max(e['p95_mm'] for e in errors):.2f} mm"
        if errors
        else "one label, no registration"
    )
    typer.echo(
        f"template of labels {_label_list(template.source['labels'])}: {len(template.vertices)} vertices, "
        f"{len(template.faces)} faces, {len(template.eigenvalues)} modes; {error}; "
        f"{time.perf_counter() - start:.0f} s -> {out}",
        err=True,
    )
