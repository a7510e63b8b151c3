"""spine-seg's PLY meshes line up with their CT in world coordinates as 3D Slicer reads them: the
header says `SPACE=RAS`, and the vertices, mapped through the labels NIfTI's inverse affine (nibabel),
lie on the labelled vertebra's boundary; read as Slicer reads a PLY without that comment (LPS), they
do not. The template's `template.ply` is a vertebra upright in RAS."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest
import trimesh
from nibabel.affines import apply_affine

from helpers import VERSE_MASK, fraction_of_indices_on_surface, l3_l4_ct
from invrender.cli import main
from invrender.core.io import write_tiff
from invrender.methods.spine_seg.frames import chain_frames
from invrender.methods.spine_seg.template import (
    CANONICAL_TO_RAS,
    MESH_FILE,
    default_template_path,
    load_template,
    save_template,
)
from invrender.napari.readers import get_mesh_reader, read_nifti_file, read_tiff_file

needs_sample = pytest.mark.skipif(not VERSE_MASK.is_file(), reason=f"VerSe sample not found at {VERSE_MASK}")
#: A very short fit: the meshes need not fit the CT well, the labels are made from them either way.
FAST = ["phases.0.steps=5", "points.count=1000"]
#: At least this share of a mesh's vertices must lie on its label's surface (helpers.NEAR_SURFACE).
ON_SURFACE = 0.95


def ply_space(path: Path) -> str | None:
    """The coordinate system a PLY's header comments name, as 3D Slicer finds it (`SPACE=RAS` or
    `SPACE=LPS` anywhere in a comment; vtkMRMLModelStorageNode), None if none does."""
    header = path.read_bytes().split(b"end_header", 1)[0].decode("ascii")
    for line in header.splitlines():
        if line.startswith("comment "):
            for space in ("RAS", "LPS"):
                if f"SPACE={space}" in line:
                    return space
    return None


def slicer_ras(path: Path, honour_space: bool = True) -> np.ndarray:
    """(V, 3) the vertices in RAS mm as Slicer places them: as they are under `SPACE=RAS`, else taken
    for LPS (Slicer's default for meshes) and turned to RAS by negating x and y. `honour_space=False`
    reads the file as if the comment were missing."""
    vertices = np.asarray(trimesh.load(path, process=False).vertices, dtype=np.float64)
    if honour_space and ply_space(path) == "RAS":
        return vertices
    return vertices * [-1.0, -1.0, 1.0]


def fraction_on_surface(points_ras: np.ndarray, labels: np.ndarray, affine: np.ndarray, label: int) -> float:
    """The share of points within helpers.NEAR_SURFACE voxels of the boundary of `label`'s voxels, the points mapped
    to voxel indices by the inverse affine; points outside the grid count as off it."""
    return fraction_of_indices_on_surface(apply_affine(np.linalg.inv(affine), points_ras), labels, label)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """spine-seg on a 2 mm synthetic CT of L3-L4 stored in LPS order (an affine with negative x and y
    steps, as a CT converted from DICOM has): the output folder."""
    folder = tmp_path_factory.mktemp("ct")
    centroids = l3_l4_ct(folder, "spine", "LPS")
    out = folder / "seg"
    argv = ["spine-seg", str(folder / "spine_ct.nii.gz"), "--centroids", str(centroids), "--out", str(out)]
    assert main([*argv, "-q", *FAST]) == 0
    return out


@needs_sample
@pytest.mark.parametrize(("name", "label"), [("L3", 22), ("L4", 23)])
def test_the_meshes_lie_on_their_labels_in_world_coordinates(segmented, name, label):
    image = nibabel.load(segmented / "spine_ct.labels.nii.gz")
    labels, affine = np.asarray(image.dataobj), image.affine
    assert (np.diag(affine)[:2] < 0).all()  # the grid runs right-to-left and anterior-to-posterior
    path = segmented / f"spine_ct.{name}.ply"
    assert ply_space(path) == "RAS"
    on = fraction_on_surface(slicer_ras(path), labels, affine, label)
    assert on >= ON_SURFACE, f"{name}: only {on:.1%} of the vertices on the label's surface"
    mirrored = fraction_on_surface(slicer_ras(path, honour_space=False), labels, affine, label)
    assert mirrored < 0.5, f"{name}: {mirrored:.1%} on the surface even when read as LPS"


@needs_sample
@pytest.mark.parametrize(("name", "label"), [("L3", 22), ("L4", 23)])
def test_the_meshes_lie_on_their_labels_as_napari_opens_them(segmented, name, label):
    """Opened with the plugin, the mesh (world mm) and the labels (voxel grid times spacing, in the
    file's LPS storage order) lie over each other."""
    [(labels, attributes, _)] = read_nifti_file(str(segmented / "spine_ct.labels.nii.gz"))
    path = segmented / f"spine_ct.{name}.ply"
    reader = get_mesh_reader(str(path))
    assert reader is not None
    [((vertices, _), _, _)] = reader(str(path))
    on = fraction_of_indices_on_surface(vertices / np.asarray(attributes["scale"]), labels, label)
    assert on >= ON_SURFACE, f"{name}: only {on:.1%} of the vertices on the label's surface in napari"


def test_the_template_ply_is_an_upright_vertebra_in_ras(tmp_path):
    template = load_template(default_template_path())
    save_template(template, tmp_path)
    path = tmp_path / MESH_FILE
    assert ply_space(path) == "RAS"
    vertices = slicer_ras(path)
    np.testing.assert_allclose(vertices, template.vertices @ CANONICAL_TO_RAS.T, atol=1e-4)
    # The canonical frame of a spine running straight up the world's z axis (cranial first).
    rotations, _ = chain_frames(np.array([[0.0, 0.0, 30.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(rotations[0], CANONICAL_TO_RAS, atol=1e-12)
    # Upright: the body centroid at the origin, the spinous process reaching far behind it (-y in
    # RAS), the body less far in front; the vertebra is wider (x) than tall (z).
    assert -vertices[:, 1].min() > 1.5 * vertices[:, 1].max() > 0
    extent = np.ptp(vertices, axis=0)
    assert extent[0] > extent[2]
    assert np.array_equal(trimesh.load(path, process=False).faces, template.faces)


def test_the_shipped_template_ply_is_the_template_in_ras():
    folder = default_template_path()
    template = load_template(folder)
    assert ply_space(folder / MESH_FILE) == "RAS"
    np.testing.assert_allclose(slicer_ras(folder / MESH_FILE), template.vertices @ CANONICAL_TO_RAS.T, atol=1e-3)


@needs_sample
def test_a_tiff_ct_in_micrometres_gets_its_labels_as_a_tiff_over_it(tmp_path):
    """The same CT as a NIfTI (RAS) and as a TIFF (z, y, x) in micrometres, as micro-CT comes: the
    TIFF's labels are a TIFF on its grid and in its unit, napari and Fiji lay them over it, and they
    are the NIfTI's labels; the meshes are the same in world mm but for the NIfTI's origin."""
    centroids = l3_l4_ct(tmp_path, "s", "RAS")  # voxel indices (i, j, k): the same in both files
    nifti = nibabel.load(tmp_path / "s_ct.nii.gz")
    assert np.allclose(nifti.affine[:3, :3], np.diag([2.0, 2.0, 2.0]))  # RAS-stored: i, j, k along x, y, z
    tiff = tmp_path / "tiff" / "s_ct.tif"
    tiff.parent.mkdir()
    write_tiff(tiff, np.asarray(nifti.dataobj, dtype=np.float32).transpose(2, 1, 0), (2000.0,) * 3, unit="um")
    runs = {}
    for ct in (tmp_path / "s_ct.nii.gz", tiff):
        out = ct.parent / "seg"
        assert main(["spine-seg", str(ct), "--centroids", str(centroids), "--out", str(out), "-q", *FAST]) == 0
        runs[ct.suffix] = out
    assert not (runs[".tif"] / "s_ct.labels.nii.gz").exists()
    [(image, image_attributes, _)] = read_tiff_file(str(tiff))
    [(labels, label_attributes, kind)] = read_tiff_file(str(runs[".tif"] / "s_ct.labels.tif"))
    assert kind == "labels" and labels.shape == image.shape
    assert label_attributes["scale"] == image_attributes["scale"] == pytest.approx((2000.0,) * 3)
    assert label_attributes["units"] == image_attributes["units"] == ("micrometer",) * 3
    from_nifti = np.asarray(nibabel.load(runs[".gz"] / "s_ct.labels.nii.gz").dataobj).transpose(2, 1, 0)
    assert {22, 23} <= set(np.unique(labels))
    assert np.mean(labels == from_nifti) > 0.999
    origin = nifti.affine[:3, 3]
    for name in ("L3", "L4"):
        from_tiff = trimesh.load(runs[".tif"] / f"s_ct.{name}.ply", process=False).vertices
        nifti_mesh = trimesh.load(runs[".gz"] / f"s_ct.{name}.ply", process=False).vertices
        np.testing.assert_allclose(from_tiff + origin, nifti_mesh, atol=0.05)
