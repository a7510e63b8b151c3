"""The signed distance to a mesh against brute force, its gradient against finite differences, and the
voxel mask of a mesh against an analytic ball."""

import numpy as np
import pytest
import torch
import trimesh

from invrender.core.render.sdf import SIGN_TYPES, mesh_to_mask, signed_distance, winding_inside

# ---------------------------------------------------------------- brute force


def closest_on_triangle(p, a, b, c):
    """The point of triangle abc closest to p: Ericson, Real-Time Collision Detection, 5.1.5 (by region)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = ab @ ap, ac @ ap
    if d1 <= 0 and d2 <= 0:
        return a
    bp = p - b
    d3, d4 = ab @ bp, ac @ bp
    if d3 >= 0 and d4 <= d3:
        return b
    vc = d1 * d4 - d3 * d2
    if vc <= 0 and d1 >= 0 and d3 <= 0:
        return a + d1 / (d1 - d3) * ab
    cp = p - c
    d5, d6 = ab @ cp, ac @ cp
    if d6 >= 0 and d5 <= d6:
        return c
    vb = d5 * d2 - d1 * d6
    if vb <= 0 and d2 >= 0 and d6 <= 0:
        return a + d2 / (d2 - d6) * ac
    va = d3 * d6 - d5 * d4
    if va <= 0 and d4 - d3 >= 0 and d5 - d6 >= 0:
        return b + (d4 - d3) / ((d4 - d3) + (d5 - d6)) * (c - b)
    return a + (ab * vb + ac * vc) / (va + vb + vc)


def brute_unsigned(points, vertices, faces):
    return np.array([min(np.linalg.norm(p - closest_on_triangle(p, *vertices[f])) for f in faces) for p in points])


def convex_inside(points, vertices, faces):
    """Inside a convex mesh: on the inner side of every face plane (outward normals)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    return np.all(np.einsum("nfi,fi->nf", points[:, None, :] - a[None], normals) < 0, axis=1)


def voxel_mesh(occupied):
    """The boundary of a union of unit voxels (voxel (i, j, k) is [i, i+1] x [j, j+1] x [k, k+1]): two
    triangles per exposed voxel face, oriented outwards. Closed and non-convex for an L or a notch."""
    index, faces = {}, []
    for voxel in np.argwhere(occupied):
        for axis in range(3):
            u, w = np.eye(3, dtype=int)[(axis + 1) % 3], np.eye(3, dtype=int)[(axis + 2) % 3]
            for side in (0, 1):
                neighbour = voxel.copy()
                neighbour[axis] += 2 * side - 1
                if np.all(neighbour >= 0) and np.all(neighbour < occupied.shape) and occupied[tuple(neighbour)]:
                    continue
                base = voxel.copy()
                base[axis] += side
                quad = [base, base + u, base + u + w, base + w]  # counter-clockwise about +axis
                if side == 0:
                    quad = quad[::-1]
                a, b, c, d = (index.setdefault(tuple(int(x) for x in q), len(index)) for q in quad)
                faces += [(a, b, c), (a, c, d)]
    return np.array(list(index), dtype=np.float64), np.array(faces, dtype=np.int64)


def voxel_inside(occupied):
    def inside(points):
        cell = np.floor(points).astype(int)
        ok = np.all((cell >= 0) & (cell < occupied.shape), axis=1)
        return ok & occupied[tuple(np.where(ok[:, None], cell, 0).T)]

    return inside


L_SHAPE = np.zeros((2, 2, 1), bool)
L_SHAPE[0, 0, 0] = L_SHAPE[1, 0, 0] = L_SHAPE[0, 1, 0] = True
NOTCHED = np.ones((2, 2, 2), bool)
NOTCHED[1, 1, 1] = False  # a cube with one octant cut away: reflex edges and a reflex corner at (1, 1, 1)


def make_mesh(name):
    """(vertices, faces, inside(points) -> bool) for each test mesh."""
    if name == "tetrahedron":
        v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
        f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    elif name == "box":
        m = trimesh.creation.box(extents=(1.0, 1.5, 0.7))
        v, f = m.vertices, m.faces
    elif name == "icosphere":
        m = trimesh.creation.icosphere(subdivisions=1, radius=2.0)
        v, f = m.vertices, m.faces
    else:
        v, f = voxel_mesh(L_SHAPE if name == "L" else NOTCHED)
        return v, f, voxel_inside(L_SHAPE if name == "L" else NOTCHED)
    v, f = np.asarray(v, np.float64), np.asarray(f, np.int64)
    return v, f, lambda p: convex_inside(p, v, f)


MESHES = ["tetrahedron", "box", "icosphere", "L", "notched"]


def test_test_meshes_are_closed_and_outward():
    for name in MESHES:
        v, f, _ = make_mesh(name)
        m = trimesh.Trimesh(v, f, process=False)
        assert m.is_watertight and m.is_winding_consistent and m.volume > 0, name


def probe_points(vertices, faces, rng):
    """Random points in and around the mesh, edge midpoints pushed outwards, points near the corners
    (out along the vertex normal and in), points on the surface and far away."""
    m = trimesh.Trimesh(vertices, faces, process=False)
    lo, hi = vertices.min(0), vertices.max(0)
    size = np.linalg.norm(hi - lo)
    edges = m.face_adjacency_edges
    normals = m.face_normals[m.face_adjacency].sum(1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    parts = [
        rng.uniform(lo - 0.3 * size, hi + 0.3 * size, (40, 3)),
        vertices[edges].mean(1) + 0.07 * size * normals,
        vertices + 0.05 * size * m.vertex_normals,
        vertices - 0.02 * size * m.vertex_normals,
        m.triangles_center,
        100 * size * rng.normal(size=(5, 3)),
    ]
    return np.concatenate(parts)


@pytest.mark.parametrize("name", MESHES)
def test_signed_distance_matches_brute_force(name):
    v, f, inside = make_mesh(name)
    points = probe_points(v, f, np.random.default_rng(0))
    unsigned = brute_unsigned(points, v, f)
    expected = np.where(inside(points), -unsigned, unsigned)
    assert (expected < -1e-3).any() and (expected > 1e-3).any()
    for sign in SIGN_TYPES:
        d = signed_distance(torch.from_numpy(points), torch.from_numpy(v), f, sign=sign).numpy()
        np.testing.assert_allclose(d, expected, rtol=1e-9, atol=1e-12, err_msg=f"{name}, {sign}")


# ---------------------------------------------------------------- gradients

# (mesh, points): the closest feature is a face interior, an edge and a corner, outside and inside.
GRADIENT_CASES = {
    "face outside": ("box", [[0.8, 0.3, -0.05]]),
    "face inside": ("box", [[0.1, 0.6, -0.05]]),
    "edge outside": ("box", [[0.7, 0.9, 0.1]]),
    "corner outside": ("box", [[0.8, 0.9, 0.6]]),
    "edge inside": ("notched", [[0.9, 0.9, 1.5]]),
    "corner inside": ("notched", [[0.9, 0.85, 0.95]]),
    "all at once": ("icosphere", [[0.3, 2.2, 0.1], [0.1, -0.2, 1.7], [3.0, 1.0, -2.0], [0.13, -0.41, 0.27]]),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
@pytest.mark.parametrize("sign", ["fast_winding_number", "pseudonormal"])
def test_gradient_matches_finite_differences(case, sign):
    name, p = GRADIENT_CASES[case]
    v, f, _ = make_mesh(name)
    points = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    vertices = torch.tensor(v, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, v: signed_distance(p, v, f, sign=sign), (points, vertices), eps=1e-6, atol=1e-7
    )


def test_gradient_of_a_vertex_closest_point_moves_only_that_vertex():
    v, f, _ = make_mesh("box")  # extents (1, 1.5, 0.7): corner (0.5, 0.75, 0.35)
    vertices = torch.tensor(v, requires_grad=True)
    points = torch.tensor([[0.8, 0.9, 0.6]], dtype=torch.float64, requires_grad=True)
    signed_distance(points, vertices, f).sum().backward()
    corner = np.flatnonzero(np.all(np.isclose(v, [0.5, 0.75, 0.35]), axis=1))[0]
    direction = np.array([0.3, 0.15, 0.25]) / np.linalg.norm([0.3, 0.15, 0.25])
    np.testing.assert_allclose(points.grad[0], direction, atol=1e-12)
    np.testing.assert_allclose(vertices.grad[corner], -direction, atol=1e-12)
    assert vertices.grad.abs().sum() == pytest.approx(np.abs(direction).sum())


@pytest.mark.parametrize("flip", [False, True])
def test_gradient_on_the_surface_is_the_outward_normal(flip):
    v, f, _ = make_mesh("box")
    f = f[:, ::-1] if flip else f  # an inward-oriented mesh: the fast winding number sign ignores it, so must g
    on_face = v[f[np.argmax(v[f].mean(1)[:, 0])]].mean(0)  # a face centre on the face x = +0.5
    points = torch.tensor(on_face[None], requires_grad=True)
    d = signed_distance(points, torch.from_numpy(v), f)
    d.sum().backward()
    assert abs(d.item()) < 1e-12
    np.testing.assert_allclose(points.grad[0], [1.0, 0.0, 0.0], atol=1e-12)


def test_float32_inputs_give_float32_results_and_gradients():
    v, f, _ = make_mesh("icosphere")
    p64 = torch.tensor([[0.3, 2.2, 0.1], [0.1, -0.2, 1.7]], dtype=torch.float64)
    points, vertices = p64.float().requires_grad_(), torch.tensor(v, dtype=torch.float32, requires_grad=True)
    d = signed_distance(points, vertices, torch.from_numpy(f))
    d.sum().backward()
    assert d.dtype == points.grad.dtype == vertices.grad.dtype == torch.float32
    p64.requires_grad_()
    d64 = signed_distance(p64, torch.from_numpy(v), f)
    d64.sum().backward()
    np.testing.assert_allclose(d.detach().numpy(), d64.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(points.grad.numpy(), p64.grad.numpy(), atol=1e-6)


def test_bad_arguments_raise():
    v, f, _ = make_mesh("box")
    with pytest.raises(ValueError, match="sign"):
        signed_distance(torch.zeros(1, 3, dtype=torch.float64), torch.from_numpy(v), f, sign="unsigned")
    with pytest.raises(ValueError, match="points"):
        signed_distance(torch.zeros(1, 2, dtype=torch.float64), torch.from_numpy(v), f)
    with pytest.raises(ValueError, match="faces"):
        signed_distance(torch.zeros(1, 3, dtype=torch.float64), torch.from_numpy(v), f + 1)


# ---------------------------------------------------------------- inside tests and masks


def test_winding_inside_a_cube():
    m = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    points = np.random.default_rng(1).uniform(-2, 2, (500, 3))
    points = points[np.abs(np.abs(points).max(1) - 1) > 1e-3]  # not on the surface
    np.testing.assert_array_equal(winding_inside(points, m.vertices, m.faces), np.abs(points).max(1) < 1)


def rotation(angles):
    out = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i] = r[j, j] = c
        r[i, j], r[j, i] = -s, s
        out = r @ out
    return out


SHAPE = (28, 22, 18)
AFFINE = np.eye(4)
AFFINE[:3, :3] = rotation([0.3, -0.5, 0.9]) @ np.diag([0.8, 1.1, 1.5])
AFFINE[:3, 3] = [-12.0, 30.0, 5.0]


@pytest.mark.parametrize("centre_index", [(13.2, 10.7, 8.9), (1.0, 20.5, 9.0)], ids=["inside", "clipped"])
def test_mesh_to_mask_of_an_icosphere_is_the_ball(centre_index):
    radius = 6.0
    centre = AFFINE[:3, :3] @ centre_index + AFFINE[:3, 3]
    m = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    vertices = m.vertices + centre
    inscribed = np.min(np.abs(np.einsum("fi,fi->f", m.face_normals, m.triangles[:, 0])))  # nearest face plane

    mask = mesh_to_mask(vertices, m.faces, AFFINE, SHAPE)
    ijk = np.stack(np.meshgrid(*map(np.arange, SHAPE), indexing="ij"), -1)
    r = np.linalg.norm(ijk @ AFFINE[:3, :3].T + AFFINE[:3, 3] - centre, axis=-1)
    assert mask.shape == SHAPE and mask.dtype == bool
    assert mask[r < inscribed].all() and (r < inscribed).sum() > 100
    assert not mask[r >= radius].any()


def test_mesh_outside_the_grid_gives_an_empty_mask():
    m = trimesh.creation.icosphere(subdivisions=2, radius=3.0)
    for centre_index in [(-10.0, 5.0, 5.0), (5.0, 40.0, 5.0)]:
        centre = AFFINE[:3, :3] @ centre_index + AFFINE[:3, 3]
        assert not mesh_to_mask(m.vertices + centre, m.faces, AFFINE, SHAPE).any()
