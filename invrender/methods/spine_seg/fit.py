"""Fitting the deformable spine to a CT: the chain of vertebrae and their frames, the placement
search, the region and its coarse-to-fine copies, the points the image is compared at, the
objective, and the label volume of the fitted meshes.

The CT is first put in the voxel order closest to RAS (`as_canonical`), so the work is the same for
any storage order. Each vertebra is placed by the search of `placement.py`; one more vertebra
beyond each end of the chain is fitted where the CT shows it (`chain.extend`), not returned. Each
step draws points on and around every vertebra's current surface (by the template's face areas,
then Gaussian offsets of the configured widths, mm), takes their signed distance to the vertebra
and its chain neighbours (libigl; the gradient reaches the vertices), and compares the appearance
model's intensity at the union distance with the CT sampled there (L1). The CT is low-passed by a
Gaussian whose width follows the phases' `blur` ramp (mm), precomputed at `coarse_to_fine.levels`
widths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from omegaconf import DictConfig
from scipy.ndimage import gaussian_filter

from invrender.core.io import normalise_intensity
from invrender.core.optim.divergence import Bound, far_outside
from invrender.core.optim.phases import PhaseContext, PhaseRecord, run_phases_recorded
from invrender.core.render.sampling import VolumeSampler
from invrender.core.render.sdf import DistancePool, mesh_to_mask, signed_distance, signed_distances
from invrender.core.volumes import Volume, as_canonical, index_to_world, world_to_index
from invrender.methods.spine_seg.frames import chain_frames, cranial_order
from invrender.methods.spine_seg.model import Appearance, SpineModel, vertex_normals
from invrender.methods.spine_seg.placement import Placement, place_vertebrae, probe_points
from invrender.methods.spine_seg.points import face_areas, sample_around_surfaces
from invrender.methods.spine_seg.template import Template


def crop_around(volume: Volume, points: np.ndarray, margin: float) -> Volume:
    """The sub-volume covering `points` (N, 3) world mm plus `margin` mm, with its own affine."""
    index = world_to_index(volume.affine, points)
    reach = margin / volume.spacing
    low = np.clip(np.floor(index.min(axis=0) - reach), 0, None).astype(int)
    high = np.minimum(np.ceil(index.max(axis=0) + reach).astype(int) + 1, volume.shape)
    data = volume.data[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    affine = volume.affine.copy()
    affine[:3, 3] = index_to_world(volume.affine, low[None])[0]
    return Volume(np.ascontiguousarray(data), affine, volume.path)


def blurred_samplers(volume: Volume, sigmas: list[float]) -> list[VolumeSampler]:
    """One sampler per blur width (mm) of the intensity and its world gradient (per mm):
    channels (intensity, d/dx, d/dy, d/dz)."""
    to_world = np.linalg.inv(volume.affine)[:3, :3].T  # d/dx = sum_i (d index_i / dx) d/d index_i
    samplers = []
    for sigma in sigmas:
        blurred = gaussian_filter(volume.data, sigma / volume.spacing) if sigma > 0 else volume.data
        index_gradient = np.stack(np.gradient(blurred), axis=-1)  # (I, J, K, 3) per voxel step
        world_gradient = np.moveaxis(index_gradient @ to_world.T, -1, 0)
        channels = np.concatenate([blurred[None], world_gradient]).astype(np.float32)
        samplers.append(VolumeSampler(torch.from_numpy(channels), volume.affine))
    return samplers


def sample_in_region(
    region: Volume, vertices: torch.Tensor, count: int, generator: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` points uniform in the region's box, each given to the mesh with the nearest centroid:
    per mesh of (M, V, 3) vertices, (N_m, 3) points and (N_m,) their distance to its nearest
    vertex, a bound on their distance to its surface. A sampling measure that does not follow the
    surfaces, so that the image is compared over the whole region too.

    The random numbers are drawn per world axis (x, y, z) and mapped onto the voxel axis that runs
    along it, so that a CT stored in another orientation gets the same points."""
    from nibabel.orientations import io_orientation

    draws = torch.rand(count, 3, generator=generator, dtype=vertices.dtype)  # per world axis
    orientation = io_orientation(region.affine)  # per voxel axis: (the world axis it runs along, +1 or -1)
    index = torch.empty_like(draws)
    for axis, (world, flip) in enumerate(orientation):
        fraction = draws[:, int(world)] if flip > 0 else 1 - draws[:, int(world)]
        index[:, axis] = fraction * (region.shape[axis] - 1)
    affine = torch.as_tensor(region.affine, dtype=vertices.dtype)
    points = index @ affine[:3, :3].T + affine[:3, 3]
    owner = torch.cdist(points, vertices.mean(1)).argmin(1)
    groups = []
    for m in range(len(vertices)):
        mine = points[owner == m]
        groups.append((mine, torch.cdist(mine, vertices[m]).amin(1) if len(mine) else mine[:, 0]))
    return groups


def chain_distances(
    points: list[torch.Tensor],
    reach: list[torch.Tensor],
    vertices: torch.Tensor,
    faces: np.ndarray,
    sign: str,
    pool: DistancePool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For the points of each mesh of a chain, `points[m]` (N_m, 3), their union signed distance to
    the mesh and its chain neighbours, and the overlap depth sum_j relu(-d_m) relu(-d_j) over the
    neighbours j (mm^2); both concatenated over the meshes, (sum N_m,). `vertices` (M, V, 3).

    A point of mesh m is within `reach[m]` (N_m,) of its own surface, so a neighbour changes its
    union distance or overlap only if the point lies within that reach of the neighbour's bounding
    box; only those points are queried against the neighbour, and every mesh is queried once with
    all the points it needs (libigl builds its search trees per call), the meshes in parallel by `pool`.
    """
    n_meshes = len(vertices)
    low, high = vertices.detach().amin(1), vertices.detach().amax(1)  # (M, 3) bounding boxes
    queries: list[list[tuple[int, torch.Tensor]]] = [[] for _ in range(n_meshes)]  # per mesh: (point set, which points)
    for m in range(n_meshes):
        queries[m].append((m, torch.ones(len(points[m]), dtype=torch.bool)))
        for j in (m - 1, m + 1):
            if 0 <= j < n_meshes:
                gap = (torch.relu(low[j] - points[m]) + torch.relu(points[m] - high[j])).norm(dim=-1)
                queries[j].append((m, gap <= reach[m]))
    own = [None] * n_meshes
    neighbour_min = [torch.full((len(p),), torch.inf, dtype=p.dtype) for p in points]
    neighbour_depth = [torch.zeros(len(p), dtype=p.dtype) for p in points]
    selected = [(torch.cat([points[m][mask] for m, mask in queries[j]]), vertices[j]) for j in range(n_meshes)]
    for j, distances in enumerate(signed_distances(selected, faces, sign, pool)):
        for (m, mask), d in zip(queries[j], distances.split([int(mask.sum()) for _, mask in queries[j]])):
            if m == j:
                own[m] = d
            else:
                neighbour_min[m] = neighbour_min[m].masked_scatter(mask, torch.minimum(neighbour_min[m][mask], d))
                neighbour_depth[m] = neighbour_depth[m].masked_scatter(mask, neighbour_depth[m][mask] + torch.relu(-d))
    union = torch.cat([torch.minimum(own[m], neighbour_min[m]) for m in range(n_meshes)])
    overlap = torch.cat([torch.relu(-own[m]) * neighbour_depth[m] for m in range(n_meshes)])
    return union, overlap


#: What the objective returns for the loss registry (`losses.py` here reads them).
QUANTITIES = frozenset(
    {
        "predicted",
        "sampled",
        "known",
        "shape",
        "edges",
        "normals",
        "image_gradient",
        "known_vertices",
        "overlap",
        "coefficients",
        "eigenvalues",
        "drift",
    }
)


@dataclass
class SpineFit:
    labels: list[int]  # VerSe code of each vertebra, in chain order
    vertices: np.ndarray  # (M, V, 3) world mm
    faces: np.ndarray  # (F, 3)
    phases: list[PhaseRecord]
    losses: list[float] = field(default_factory=list)
    warning: str | None = None
    placement: Placement | None = None  # what the search before the fit moved (None when off)


def extend_chain(centres: np.ndarray, volume: Volume) -> tuple[np.ndarray, slice]:
    """`centres` (M, 3) mm with one more centre beyond each end of the chain, one spacing further
    along it, where that lies inside the CT or less than half a spacing beyond it (so that part of
    that vertebra is in view); and the slice of the given vertebrae in the result."""
    above, below = 2 * centres[0] - centres[1], 2 * centres[-1] - centres[-2]
    reach = [
        np.linalg.norm(centres[0] - centres[1]) / 2 / volume.spacing,
        np.linalg.norm(centres[-1] - centres[-2]) / 2 / volume.spacing,
    ]
    index = world_to_index(volume.affine, np.stack([above, below]))
    inside = [bool(np.all((i >= -r) & (i <= np.array(volume.shape) - 1 + r))) for i, r in zip(index, reach)]
    extended = np.concatenate(
        [[above] if inside[0] else np.empty((0, 3)), centres, [below] if inside[1] else np.empty((0, 3))]
    )
    return extended, slice(int(inside[0]), int(inside[0]) + len(centres))


def build_model(
    template: Template, centres: np.ndarray, rotations: np.ndarray, spacings: np.ndarray, cfg: DictConfig, seed: int
) -> SpineModel:
    """The spine model with one template per frame (chain order)."""
    k = min(int(cfg.shape.modes), template.eigenvectors.shape[1])
    appearance_cfg = cfg.appearance
    appearance = Appearance(
        int(appearance_cfg.frequencies),
        float(appearance_cfg.scale),
        float(appearance_cfg.max_frequency),
        int(appearance_cfg.hidden),
        seed,
    )
    return SpineModel(
        template.vertices,
        template.faces,
        template.eigenvectors[:, :k],
        template.eigenvalues[:k],
        template.masses,
        template.reference_spacing,
        centres,
        rotations,
        spacings,
        appearance,
    )


def template_extent(template: Template, centres: np.ndarray, rotations: np.ndarray, spacings: np.ndarray) -> np.ndarray:
    """(M V, 3) world mm: the undeformed template placed in every frame."""
    unit = template.vertices / template.reference_spacing
    return (centres[:, None] + spacings[:, None, None] * np.einsum("mij,vj->mvi", rotations, unit)).reshape(-1, 3)


def normalised_region(volume: Volume, extent: np.ndarray, margin: float, cfg: DictConfig) -> Volume:
    """The CT cropped to `extent` (N, 3) mm plus `margin` mm, intensities mapped to 0..1 between the
    configured percentiles."""
    region = crop_around(volume, extent, margin)
    region.data, _, _ = normalise_intensity(region.data, *cfg.region.percentiles)
    return region


def place(
    volume: Volume,
    template: Template,
    centres: np.ndarray,
    rotations: np.ndarray,
    spacings: np.ndarray,
    cfg: DictConfig,
    seed: int,
) -> Placement:
    """The search for every vertebra's similarity transform (`placement.py`) in the CT low-passed by
    `placement.blur` mm, cropped wide enough for every candidate."""
    search = cfg.placement
    reach = max(
        float(search.posterior_reach), float(search.left_reach), float(search.superior_reach) * float(spacings.max())
    )
    extent = template_extent(template, centres, rotations, spacings * max(search.scales))
    region = normalised_region(volume, extent, float(cfg.region.margin) + reach, cfg)
    blur = float(search.blur)
    blurred = gaussian_filter(region.data, blur / region.spacing) if blur > 0 else region.data
    sampler = VolumeSampler(torch.from_numpy(np.ascontiguousarray(blurred, dtype=np.float32)), region.affine)
    probe = probe_points(
        template.vertices, template.faces, template.reference_spacing, int(search.points), float(search.band), seed
    )
    return place_vertebrae(sampler, centres, rotations, spacings, probe, search)


def fit_spine(
    volume: Volume, centroids: dict[int, np.ndarray], template: Template, cfg: DictConfig, seed: int, on_step=None
) -> SpineFit:
    """Fit one template per centroid to `volume` (a CT in any units: it is normalised here): place
    each vertebra by the search (when `placement.enabled`), then run the configured phases. With
    `chain.extend`, one more vertebra beyond each end of the chain, where the CT shows it, is
    fitted with them but not returned: the end vertebrae then have a neighbour on both sides, which
    keeps them off the next vertebra's bone (or the sacrum's)."""
    torch.manual_seed(seed)
    volume = as_canonical(volume)  # the same floating-point work for a CT stored in any voxel order
    labels = sorted(centroids, key=cranial_order)
    centres = np.stack([centroids[label] for label in labels])
    given = slice(0, len(labels))
    if cfg.chain.extend:
        centres, given = extend_chain(centres, volume)
    rotations, spacings = chain_frames(centres)
    placement = None
    if cfg.placement.enabled:
        placement = place(volume, template, centres, rotations, spacings, cfg, seed)
        centres, rotations, spacings = placement.centres, placement.rotations, placement.spacings
    model = build_model(template, centres, rotations, spacings, cfg, seed)
    region = normalised_region(
        volume, template_extent(template, centres, rotations, spacings), float(cfg.region.margin), cfg
    )
    widest = max(
        [float(phase.ramps.blur.start) for phase in cfg.phases if "blur" in (phase.get("ramps") or {})], default=0.0
    )
    widths = np.linspace(widest, 0.0, int(cfg.coarse_to_fine.levels)).tolist()
    samplers = blurred_samplers(region, widths)
    generator = torch.Generator().manual_seed(seed)
    points_cfg = cfg.points
    n_uniform = int(round(int(points_cfg.count) * float(points_cfg.uniform_fraction)))
    per_mesh = max(1, (int(points_cfg.count) - n_uniform) // model.n_vertebrae)
    faces_np = template.faces
    template_areas = face_areas(model.template, model.faces)

    def objective(model: SpineModel, context: PhaseContext) -> dict:
        model.set_spectral_step(context.ramps.get("alpha", 0.0))
        sigma = context.ramps.get("blur", 0.0)
        sampler = samplers[int(np.argmin([abs(w - sigma) for w in widths]))]
        world = model.world()  # (1, M, V, 3)
        with torch.no_grad():
            near, reach = sample_around_surfaces(
                world[0], model.faces, per_mesh, list(points_cfg.sigmas), generator, template_areas
            )
            spread = sample_in_region(region, world[0], n_uniform, generator)
        points = [torch.cat([near[m], spread[m][0]]) for m in range(model.n_vertebrae)]
        reach = [torch.cat([reach[m], spread[m][1]]) for m in range(model.n_vertebrae)]
        union, overlap = chain_distances(points, reach, world[0], faces_np, str(cfg.sdf.sign), pool)
        union, overlap = union[None], overlap[None]
        points = torch.cat(points)
        sampled = sampler(points)[:, 0][None]
        at_vertices = sampler(world.reshape(-1, 3))[:, 1:].reshape(world.shape)
        known_vertices = sampler.inside(world[0].reshape(-1, 3)).reshape(world.shape[1:3])
        # beyond the CT's field of view (or the region) nothing is known: no image term there
        return {
            "predicted": model.appearance(union),
            "sampled": sampled,
            "known": sampler.inside(points),
            "shape": model.canonical(),
            "edges": model.edges,
            "normals": vertex_normals(world, model.faces),
            "image_gradient": at_vertices,
            "known_vertices": known_vertices,
            "overlap": overlap,
            "coefficients": model.coefficients,
            "eigenvalues": model.eigenvalues,
            "drift": model.drift(),
        }

    workers = int(cfg.sdf.workers) or torch.get_num_threads()
    with DistancePool(min(workers, model.n_vertebrae)) as pool:
        history = run_phases_recorded(
            model,
            objective,
            list(cfg.phases),
            dict(cfg.loss),
            on_step,
            seed=seed,
            select_by="appearance_l1",
            bound=outside_ct(volume),
        )
    with torch.no_grad():
        vertices = model.world()[0, given].double().numpy()
    return SpineFit(
        labels,
        vertices,
        np.asarray(template.faces),
        history.phases,
        history.losses,
        history.warning,
        None if placement is None else placement.select(given),
    )


def outside_ct(volume: Volume) -> Bound:
    """The fit's divergence bound (core/optim/divergence.py): vertices far outside the CT's voxels."""
    size = [n - 1.0 for n in volume.shape]  # voxel centres span [0, n - 1] along each index axis

    def bound(model: SpineModel) -> str | None:
        with torch.no_grad():
            index = world_to_index(volume.affine, model.world().reshape(-1, 3).double().numpy())
        return far_outside(torch.from_numpy(index), size, "the vertebra vertices", "voxels")

    return bound


def label_volume(volume: Volume, fit: SpineFit) -> np.ndarray:
    """(I, J, K) int16 on the volume's grid: each voxel centre inside a fitted mesh takes its label;
    where meshes overlap, the one the voxel is deeper inside wins."""
    labels = np.zeros(volume.shape, dtype=np.int16)
    owner = np.full(volume.shape, -1, dtype=np.int32)  # which mesh (chain index) holds the voxel
    for m, (label, vertices) in enumerate(zip(fit.labels, fit.vertices)):
        inside = mesh_to_mask(vertices, fit.faces, volume.affine, volume.shape)
        contested = inside & (owner >= 0)
        if contested.any():
            index = np.argwhere(contested)
            points = torch.from_numpy(index_to_world(volume.affine, index))
            mine = signed_distance(points, torch.from_numpy(vertices), fit.faces).numpy()
            theirs = np.empty(len(index))
            previous = owner[contested]
            for other in np.unique(previous):
                rows = previous == other
                theirs[rows] = signed_distance(points[rows], torch.from_numpy(fit.vertices[other]), fit.faces).numpy()
            lost = index[mine >= theirs]
            inside[lost[:, 0], lost[:, 1], lost[:, 2]] = False
        labels[inside], owner[inside] = label, m
    return labels
