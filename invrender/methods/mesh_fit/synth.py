"""Synthetic fluorescence stacks of a known mesh: `invrender synth mesh`.

The mesh (or `copies` of it side by side along x, each turned by its own random rotation, as a
cluster of separate cells) is scaled (its largest extent to `fill` of the box) and centred in a cube of `size`
voxels, rendered through a Gaussian PSF of `sigma` voxels with the NUFFT renderer on the full
spectrum (each triangle subdivided 3 x 3 for the quadrature, so that the data is not made by the
exact settings the fit uses), scaled to a peak of 1, plus Gaussian noise of standard deviation
`noise` (relative to the peak). Written: the stack, the placed mesh (the ground truth, physical
units; a foam also as one PLY per cell) and the PSF.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from invrender.core.geometry.meshes import Mesh, write_cell_meshes, write_mesh
from invrender.core.io import write_json, write_tiff
from invrender.core.render.microscope import render_stack, surface_spectrum
from invrender.core.render.psf import GaussianPSF
from invrender.core.render.registry import get_renderer
from invrender.core.render.spectrum import Band, Grid

SYNTH_SUBDIVISIONS = 3


def side_by_side(mesh: Mesh, copies: int, seed: int) -> Mesh:
    """`copies` of the mesh along x, each turned by a random rotation about its centre, with gaps of
    a tenth of the mesh's largest extent between them; a multi-material mesh's cells are numbered on
    (copy k's cell c is k * n_cells + c), a plain mesh stays one surface."""
    from scipy.spatial.transform import Rotation

    centre = (mesh.vertices.min(axis=0) + mesh.vertices.max(axis=0)) / 2
    gap = 0.1 * (mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)).max()
    rotations = Rotation.random(copies, random_state=seed)
    vertices, faces, materials, right = [], [], [], 0.0
    for k in range(copies):
        turned = rotations[k].apply(mesh.vertices - centre)
        left = turned[:, 0].min()
        vertices.append(turned + [right - left + (gap if k else 0.0), 0.0, 0.0])
        right = vertices[-1][:, 0].max()
        faces.append(mesh.faces + k * len(mesh.vertices))
        if mesh.materials is not None:
            materials.append(np.where(mesh.materials > 0, mesh.materials + k * mesh.n_cells, 0))
    return Mesh(np.concatenate(vertices), np.concatenate(faces), np.concatenate(materials) if materials else None)


def place_mesh(mesh: Mesh, size: int, fill: float = 0.6) -> Mesh:
    """The mesh scaled so that its largest extent is `fill * size` and centred in the box."""
    low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    scale = fill * size / (high - low).max()
    centre = np.full(3, (size - 1) / 2)
    return Mesh((mesh.vertices - (low + high) / 2) * scale + centre, mesh.faces, mesh.materials)


def render_mesh_stack(mesh: Mesh, size: int, sigma: float, noise: float, seed: int) -> np.ndarray:
    """(size, size, size) float64 stack (z, y, x) of the mesh (voxel 1), peak 1 before noise."""
    grid = Grid((size, size, size), (1.0, 1.0, 1.0))
    band = Band.full(grid)
    psf = GaussianPSF((sigma, sigma, sigma))
    vertices = torch.from_numpy(mesh.vertices)
    with torch.no_grad():
        spectrum = surface_spectrum(
            get_renderer("nufft", torch.device("cpu"), "mesh spectrum"),
            vertices,
            torch.from_numpy(mesh.faces),
            torch.from_numpy(mesh.face_weights),
            band,
            subdivisions=SYNTH_SUBDIVISIONS,
        )
        clean = render_stack(spectrum, psf.transfer(band.freqs), band).numpy()
    clean = clean / clean.max()
    return clean + np.random.default_rng(seed).normal(scale=noise, size=clean.shape)


def write_mesh_dataset(
    mesh: Mesh, name: str, out: Path, size: int, sigma: float, noise: float, seed: int, copies: int = 1
) -> list[Path]:
    """Write `<name>.tif`, `<name>.truth.ply` (or `<name>.truth.rec` and a `<name>.truth.cell<N>.ply`
    per cell) and `<name>.psf.json` into `out`; their paths."""
    placed = place_mesh(mesh if copies == 1 else side_by_side(mesh, copies, seed), size)
    stack = render_mesh_stack(placed, size, sigma, noise, seed)
    stack_path = out / f"{name}.tif"
    truth_path = out / f"{name}.truth.{'rec' if mesh.materials is not None else 'ply'}"
    psf_path = out / f"{name}.psf.json"
    write_tiff(stack_path, stack.astype(np.float32), (1.0, 1.0, 1.0), axes="ZYX", unit="pixel")  # sizes in voxels
    write_mesh(truth_path, placed)
    cell_paths = write_cell_meshes(truth_path, placed) if placed.materials is not None else []
    write_json(
        psf_path,
        {
            "kind": "gaussian",
            "covariance_xyz": (np.eye(3) * sigma**2).tolist(),
            "sigmas": [sigma] * 3,
            "unit": None,  # in voxels, as mesh-fit's record of a stack that names no unit
            "voxel_size_zyx": [1.0, 1.0, 1.0],
            "noise": noise,
            "seed": seed,
            "copies": copies,
        },
    )
    return [stack_path, truth_path, *cell_paths, psf_path]
