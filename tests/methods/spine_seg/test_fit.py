"""spine-seg's pieces: VectorAdam, per-group optimisers, volume sampling, the spine model, its
losses, labels from meshes, Dice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.ndimage import map_coordinates

from helpers import SHARED_DATA
from invrender.core.geometry.spectral import laplacian_eigenbasis, spectral_coefficients
from invrender.core.losses import LOSSES
from invrender.core.metrics import dice_per_label
from invrender.core.optim.adam_variants import VectorAdam
from invrender.core.optim.multistart import MultiStartModule
from invrender.core.optim.phases import run_phases
from invrender.core.render.sampling import VolumeSampler
from invrender.core.volumes import Volume
from invrender.methods.spine_seg.fit import SpineFit, crop_around, label_volume
from invrender.methods.spine_seg.model import Appearance, SpineModel, unique_edges, vertex_normals
from invrender.methods.spine_seg.points import sample_around_surfaces


def random_rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.det(q))


def test_vector_adam_steps_rotate_with_the_gradients():
    """Rotating every gradient vector rotates every step: the optimiser has no preferred axes
    (per-component Adam does not)."""
    generator = torch.Generator().manual_seed(0)
    gradients = [torch.randn(5, 3, generator=generator, dtype=torch.float64) for _ in range(4)]
    rotation = random_rotation(1)

    def run(optimizer_class, rotate: bool) -> torch.Tensor:
        p = torch.nn.Parameter(torch.zeros(5, 3, dtype=torch.float64))
        optimizer = optimizer_class([p], lr=0.1)
        for g in gradients:
            p.grad = g @ rotation.T if rotate else g.clone()
            optimizer.step()
        return p.detach()

    assert torch.allclose(run(VectorAdam, True), run(VectorAdam, False) @ rotation.T, atol=1e-12)
    assert not torch.allclose(run(torch.optim.Adam, True), run(torch.optim.Adam, False) @ rotation.T, atol=1e-3)


def test_vector_adam_first_step_has_length_lr_and_step_scale_multiplies_it():
    p = torch.nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
    p.step_scale = torch.tensor([[1.0], [0.25]], dtype=torch.float64)
    p.grad = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, -2.0]], dtype=torch.float64)
    VectorAdam([p], lr=0.1, eps=0.0).step()
    assert torch.allclose(p.detach().norm(dim=1), torch.tensor([0.1, 0.025], dtype=torch.float64))
    assert torch.allclose(p.detach()[0], torch.tensor([-0.06, -0.08, 0.0], dtype=torch.float64))


class _TwoGroups(MultiStartModule):
    groups = {"a": ("a",), "b": ("b",)}

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(1, 4, 3))
        self.b = torch.nn.Parameter(torch.zeros(1, 4, 3))


def test_group_optimizers_give_each_group_its_own_optimizer():
    """One phase, two optimisers stepped together: VectorAdam for `a`, Adam for `b`; both reach the
    target, and the first step of each matches its optimiser run alone."""
    target = torch.tensor([1.0, -2.0, 0.5])

    def objective(model, context):
        return {"render": torch.cat([model.a, model.b], 1), "target": target.expand(1, 8, 3)}

    model = _TwoGroups()
    phase = {
        "name": "p",
        "train": ["a", "b"],
        "optimizer": "vector_adam",
        "group_optimizers": {"b": "adam"},
        "lr": 0.05,
        "steps": 1,
        "optimizer_options": {"betas": [0.9, 0.9]},
    }
    run_phases(model, objective, [phase], {"recon_mse": 1.0})
    # first step: VectorAdam moves each vector by lr along -grad; Adam moves each component by lr
    assert torch.allclose(model.a[0, 0], 0.05 * target / target.norm(), atol=1e-6)
    assert torch.allclose(model.b[0, 0], 0.05 * torch.sign(target), atol=1e-6)
    model = _TwoGroups()
    run_phases(model, objective, [{**phase, "steps": 400}], {"recon_mse": 1.0})
    assert torch.allclose(model.a[0], target.expand(4, 3), atol=0.02) and torch.allclose(
        model.b[0], target.expand(4, 3), atol=0.02
    )
    with pytest.raises(ValueError, match="group_optimizers names group"):
        run_phases(_TwoGroups(), objective, [{**phase, "train": ["a"]}], {"recon_mse": 1.0})


def test_volume_sampler_matches_scipy_trilinear_on_an_oblique_grid():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(7, 9, 5))
    rotation = random_rotation(2).numpy()
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.0, 2.5])
    affine[:3, 3] = [10.0, -4.0, 3.0]
    index = rng.uniform([0, 0, 0], [6, 8, 4], size=(50, 3))
    points = index @ affine[:3, :3].T + affine[:3, 3]
    sampler = VolumeSampler(torch.from_numpy(data), affine)
    sampled = sampler(torch.from_numpy(points))[:, 0].numpy()
    assert np.allclose(sampled, map_coordinates(data, index.T, order=1), atol=1e-12)
    outside = np.array([[-0.1, 3, 3], [6.1, 3, 3], [3, 8.2, 2], [3, 3, 4.0]]) @ affine[:3, :3].T + affine[:3, 3]
    assert sampler.inside(torch.from_numpy(points)).all()
    assert sampler.inside(torch.from_numpy(outside)).tolist() == [False, False, False, True]


def test_crop_keeps_world_positions():
    data = np.arange(20 * 30 * 10, dtype=np.float32).reshape(20, 30, 10)
    affine = np.diag([1.0, 1.5, 2.0, 1.0])
    affine[:3, 3] = [5.0, 6.0, 7.0]
    volume = Volume(data, affine)
    crop = crop_around(volume, np.array([[12.0, 30.0, 15.0]]), margin=3.0)
    assert crop.shape < volume.shape
    point = torch.tensor([[12.5, 29.0, 16.0]], dtype=torch.float64)
    whole = VolumeSampler(torch.from_numpy(data.astype(np.float64)), affine)(point)
    part = VolumeSampler(torch.from_numpy(crop.data.astype(np.float64)), crop.affine)(point)
    assert torch.allclose(whole, part)


def sphere_model(n: int = 2, k: int = 12, spacing: float = 30.0) -> SpineModel:
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=10.0)
    vertices, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    eigenvalues, eigenvectors, masses = laplacian_eigenbasis(vertices, faces, k)
    centres = np.stack([[0.0, 0.0, -spacing * m] for m in range(n)])
    rotations = np.stack([np.eye(3)] * n)
    return SpineModel(
        vertices,
        faces,
        eigenvectors,
        eigenvalues,
        masses,
        spacing,
        centres,
        rotations,
        np.full(n, spacing),
        Appearance(4, 32.0, 0.5, 16, seed=0),
    )


def test_model_places_the_template_on_each_centre_and_its_basis_moves_by_rms_units():
    model = sphere_model()
    with torch.no_grad():
        world = model.world()[0]
        assert torch.allclose(world[1] - world[0], torch.tensor([0.0, 0.0, -30.0]), atol=1e-4)
        assert torch.allclose(world[0].norm(dim=-1), torch.tensor(10.0), atol=1e-4)
        # a coefficient of 0.1 on one mode moves the surface by 0.1 * spacing = 3 mm root-mean-square (area-weighted)
        model.coefficients[0, 0, 5, 0] = 0.1
        moved = model.world()[0, 0] - world[0]
    areas = trimesh.Trimesh(world[0].numpy(), model.faces.numpy()).area_faces
    vertex_area = np.zeros(len(world[0]))
    np.add.at(vertex_area, model.faces.numpy(), areas[:, None] / 3)
    rms = math.sqrt((vertex_area * moved.pow(2).sum(-1).numpy()).sum() / vertex_area.sum())
    assert rms == pytest.approx(3.0, rel=0.05)


def test_spectral_step_scale_falls_with_frequency():
    model = sphere_model()
    model.set_spectral_step(1.0)
    scale = model.coefficients.step_scale[:, 0]
    assert scale[0] == scale[1] == 1.0 and torch.all(scale[1:].diff() <= 1e-6) and scale[-1] < 0.2
    model.set_spectral_step(0.0)
    assert torch.all(model.coefficients.step_scale == 1.0)


def test_spectral_basis_reconstructs_a_mesh_with_all_modes():
    mesh = trimesh.creation.icosphere(subdivisions=1)
    vertices = np.asarray(mesh.vertices) * [1.0, 2.0, 0.5]
    _, vectors, masses = laplacian_eigenbasis(vertices, np.asarray(mesh.faces), len(vertices))
    assert np.allclose(vectors @ spectral_coefficients(vertices, vectors, masses), vertices, atol=1e-10)


def test_mesh_losses_by_hand():
    vertices = torch.tensor([[[[0.0, 0, 0], [1, 0, 0], [0, 2, 0]]]])
    edges = torch.tensor([[0, 1], [1, 2], [0, 2]])
    assert LOSSES["edge_length"].fn({"shape": vertices, "edges": edges}).item() == pytest.approx((1 + 5 + 4) / 3)
    normals = torch.tensor([[[[0.0, 0, 1], [0, 0, 1]]]])
    gradient = torch.tensor([[[[0.0, 0, -2], [3, 0, 0]]]])
    assert LOSSES["normal_alignment"].fn({"normals": normals, "image_gradient": gradient}).item() == pytest.approx(
        (math.exp(-2) + 1) / 2
    )
    known = torch.tensor([[True, False]])  # a vertex beyond the image does not count
    assert LOSSES["normal_alignment"].fn(
        {"normals": normals, "image_gradient": gradient, "known_vertices": known}
    ).item() == pytest.approx(math.exp(-2))
    coefficients = torch.zeros(1, 3, 2, 3)
    coefficients[0, 1, 1] = torch.tensor([1.0, 0, 0])
    value = LOSSES["spectral_variance"].fn({"coefficients": coefficients, "eigenvalues": torch.tensor([0.0, 4.0])})
    assert value.item() == pytest.approx(8.0)  # |0.5 * 2|^2... twice: 4 * 1 for (0,1) and 4 * 1 for (1,2)
    coefficients[0, 2, 0] = torch.tensor([0.0, 5.0, 0])  # the constant mode (eigenvalue 0) costs nothing
    coefficients[0, 2, 1] = torch.tensor([0.0, 0, -0.5])
    value = LOSSES["spectral_energy"].fn({"coefficients": coefficients, "eigenvalues": torch.tensor([0.0, 4.0])})
    assert value.item() == pytest.approx(4 * 1.0 + 4 * 0.25)
    assert (
        LOSSES["appearance_l1"]
        .fn({"predicted": torch.tensor([[1.0, 2.0]]), "sampled": torch.tensor([[0.0, 4.0]])})
        .item()
        == 1.5
    )
    known = torch.tensor([False, True])  # a point outside the image does not count
    assert (
        LOSSES["appearance_l1"]
        .fn({"predicted": torch.tensor([[1.0, 2.0]]), "sampled": torch.tensor([[0.0, 4.0]]), "known": known})
        .item()
        == 2.0
    )


def test_vertex_normals_of_a_sphere_point_outwards():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices = torch.tensor(sphere.vertices, dtype=torch.float64)
    normals = vertex_normals(vertices, torch.tensor(sphere.faces))
    assert torch.allclose((normals * vertices).sum(-1), torch.ones(len(vertices), dtype=torch.float64), atol=0.01)
    assert len(unique_edges(np.asarray(sphere.faces))) == len(sphere.edges_unique)


def test_points_are_drawn_around_the_surfaces_at_the_configured_widths():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=100.0)  # large: offsets move nearly along the normal
    vertices = torch.tensor(sphere.vertices, dtype=torch.float64)[None]
    points, reach = sample_around_surfaces(
        vertices, torch.tensor(sphere.faces), 30000, [1.0, 4.0], torch.Generator().manual_seed(0)
    )
    assert torch.all((points[0].norm(dim=-1) - 100.0).abs() <= reach[0] + 1.5)  # 1.5: the icosphere's chord error
    radial = points[0].norm(dim=-1) - 100.0
    assert radial[0::2].std().item() == pytest.approx(1.0, rel=0.05)  # every other point has width 1, the rest 4
    assert radial[1::2].std().item() == pytest.approx(4.0, rel=0.08)
    directions = torch.nn.functional.normalize(points[0], dim=-1).mean(0)
    assert directions.norm() < 0.02  # uniform over the sphere


def test_labels_from_overlapping_meshes_go_to_the_deeper_one():
    """Two balls that overlap: every voxel inside one is labelled, shared voxels by the nearer centre."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=6.0)
    a, b = np.asarray(sphere.vertices) + [10.0, 10, 8], np.asarray(sphere.vertices) + [10.0, 10, 16]
    volume = Volume(np.zeros((20, 20, 25), dtype=np.float32), np.eye(4))
    fit = SpineFit([20, 21], np.stack([a, b]), np.asarray(sphere.faces), [])
    labels = label_volume(volume, fit)
    index = np.indices(volume.shape).reshape(3, -1).T.astype(float)
    da, db = np.linalg.norm(index - [10, 10, 8], axis=1), np.linalg.norm(index - [10, 10, 16], axis=1)
    expected = np.where((da < 5.9) & (da < db - 0.2), 20, np.where((db < 5.9) & (db < da - 0.2), 21, -1))
    sure = expected >= 0
    assert (labels.reshape(-1)[sure] == expected[sure]).all()
    assert ((labels.reshape(-1) > 0) == ((da < 5.9) | (db < 5.9)))[
        (np.abs(da - 6) > 0.2) & (np.abs(db - 6) > 0.2)
    ].all()


def test_dice_per_label_by_hand():
    result = np.array([[0, 1, 1, 2], [0, 1, 2, 2]])
    truth = np.array([[0, 1, 1, 1], [0, 0, 2, 2]])
    dice = dice_per_label(result, truth, [1, 2, 3])
    assert dice[1] == pytest.approx(2 * 2 / (3 + 3)) and dice[2] == pytest.approx(2 * 2 / (3 + 2)) and dice[3] == 1.0


def test_chain_distances_equal_querying_every_point_against_every_neighbour():
    """The bounding-box pruning changes nothing: union distance and overlap depth as if every point
    were queried against its own mesh and both chain neighbours (and their gradients too)."""
    from invrender.core.render.sdf import signed_distance
    from invrender.methods.spine_seg.fit import chain_distances

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=8.0)
    faces = np.asarray(sphere.faces)
    vertices = torch.tensor(
        np.stack([np.asarray(sphere.vertices) * [1.0, 1.0, 0.8] + [0, 0, 10.0 * m] for m in range(4)]),
        requires_grad=True,
    )
    points, reach = sample_around_surfaces(
        vertices.detach(), torch.tensor(faces), 500, [1.0, 4.0, 10.0], torch.Generator().manual_seed(1)
    )
    from invrender.core.render.sdf import DistancePool

    with DistancePool(2) as pool:  # the queries in two worker processes give what one process gives
        union, overlap = chain_distances(list(points), list(reach), vertices, faces, "fast_winding_number", pool)
    expected_union, expected_overlap = [], []
    for m in range(4):
        around = [j for j in (m - 1, m, m + 1) if 0 <= j < 4]
        d = {j: signed_distance(points[m], vertices[j], faces) for j in around}
        expected_union.append(torch.stack(list(d.values())).min(0).values)
        expected_overlap.append(sum(torch.relu(-d[m]) * torch.relu(-d[j]) for j in around if j != m))
    expected_union, expected_overlap = torch.cat(expected_union), torch.cat(expected_overlap)
    assert (expected_overlap > 0).sum() > 50  # the spheres do overlap
    assert torch.allclose(union, expected_union) and torch.allclose(overlap, expected_overlap)
    weights = torch.randn(union.shape, generator=torch.Generator().manual_seed(2), dtype=union.dtype)
    gradient = torch.autograd.grad((weights * union).sum() + overlap.sum(), vertices)[0]
    expected = torch.autograd.grad((weights * expected_union).sum() + expected_overlap.sum(), vertices)[0]
    assert torch.allclose(gradient, expected)


def test_auto_device_stays_on_the_cpu_for_cpu_only_methods(monkeypatch):
    """On a GPU node, `--device auto` of a CPU-only method (spine-seg, cell-seg, mesh-fit) is the
    CPU rather than a refusal, and an explicit cuda is refused; other methods take the GPU."""
    from invrender.methods.cell_seg.command import SPEC as CELL_SEG
    from invrender.methods.mesh_fit.command import SPEC as MESH_FIT
    from invrender.methods.spine_seg.command import SPEC as SPINE_SEG
    from invrender.methods.spline_refine.command import SPEC as SPLINE_REFINE

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    from invrender.config import ConfigError

    for spec in (SPINE_SEG, CELL_SEG, MESH_FIT):
        assert spec.config.device("auto").type == "cpu"
        with pytest.raises(ConfigError, match=f"{spec.name} runs on the CPU"):
            spec.config.device("cuda")
    assert SPLINE_REFINE.config.device("auto").type == "cuda"


# ---------------------------------------------------------------- placement and the chain


@pytest.fixture(scope="module")
def lumbar_ct(tmp_path_factory):
    """A 2 mm synthetic CT of L2-L4 and the centroids of its vertebrae: the bodies' and the whole labels'."""
    from invrender.core.volumes import read_centroids, read_volume
    from invrender.methods.spine_seg.synth import write_ct_dataset

    folder = tmp_path_factory.mktemp("lumbar")
    shared = f"{SHARED_DATA}/verse/"
    body = write_ct_dataset(
        shared + "sub-verse004_seg-vert_msk.nii.gz",
        folder / "body",
        shared + "sub-verse004_seg-subreg_ctd.json",
        levels=(21, 23),
        spacing=2.0,
        deform=3.0,
        seed=1,
    )
    label = write_ct_dataset(
        shared + "sub-verse004_seg-vert_msk.nii.gz", folder / "label", levels=(21, 23), spacing=2.0, deform=3.0, seed=1
    )
    volume = read_volume(body["ct"])
    return volume, read_centroids(body["ctd"], volume), read_centroids(label["ctd"], volume)


@pytest.mark.parametrize("given", ["body", "label"])
def test_the_search_places_the_template_on_the_vertebral_bodies(lumbar_ct, given):
    """From the bodies' centroids the search stays near them; from the whole labels' (10-15 mm
    behind), it moves the template forward onto the bodies (within 3 mm)."""
    from invrender.config import compose_config
    from invrender.methods.spine_seg.fit import place
    from invrender.methods.spine_seg.frames import chain_frames
    from invrender.methods.spine_seg.template import default_template_path, load_template

    volume, bodies, labels = lumbar_ct
    centroids = bodies if given == "body" else labels
    common = sorted(set(bodies) & set(labels) & {21, 22, 23})
    centres = np.stack([centroids[label] for label in common])
    rotations, spacings = chain_frames(centres)
    cfg = compose_config("spine_seg", "default", [])
    placement = place(volume, load_template(default_template_path()), centres, rotations, spacings, cfg, seed=0)
    for m, label in enumerate(common):
        error = np.linalg.norm(placement.centres[m] - bodies[label])
        moved = np.linalg.norm(bodies[label] - centroids[label])
        assert error < 3.0, (label, error, moved)
    if given == "label":
        assert min(np.linalg.norm(bodies[label] - labels[label]) for label in common) > 8.0  # the search had far to go


def test_the_chain_extends_one_spacing_beyond_its_ends_inside_the_ct():
    from invrender.methods.spine_seg.fit import extend_chain

    volume = Volume(np.zeros((20, 20, 100), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))  # z 0..99 mm
    centres = np.array(
        [[10.0, 10.0, 95.0], [10.0, 10.0, 70.0], [10.0, 10.0, 45.0]]
    )  # cranial first (z superior), 25 mm apart
    extended, given = extend_chain(centres, volume)
    np.testing.assert_allclose(
        extended, [*centres, [10, 10, 20]]
    )  # above, z = 120, is 21 mm beyond the CT: more than half a spacing
    assert np.array_equal(extended[given], centres)
    # an end vertebra whose neighbour's centre lies less than half a spacing beyond the CT gets it
    # (part of it is in view)
    extended, given = extend_chain(centres - [0.0, 0.0, 10.0], volume)
    np.testing.assert_allclose(extended[0], [10, 10, 110])
    np.testing.assert_allclose(extended[given], centres - [0.0, 0.0, 10.0])
