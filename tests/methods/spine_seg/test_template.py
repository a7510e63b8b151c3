"""The spine-seg vertebra template: frames, building, saving and loading, the shipped default."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel
import numpy as np
import pytest
import trimesh
import typer

from invrender.core.geometry.spectral import spectral_coefficients
from invrender.core.io import InputError
from invrender.core.volumes import Volume
from invrender.methods.spine_seg.frames import vertebra_frames
from invrender.methods.spine_seg.template import (
    Template,
    build_template,
    default_template_path,
    label_surface,
    load_template,
    save_template,
    spine_template,
)

#: Three stacked "vertebrae" on a 1 mm grid (x, y, z = i, j, k, RAS): label, centre z, semi-axes of
#: the body (mm), length of a posterior process (mm). The gaps between centres differ (17, 19 mm)
#: so the canonical scaling matters.
BLOBS = ((20, 52.0, (11.0, 9.0, 6.0), 8.0), (21, 35.0, (12.0, 10.0, 6.5), 10.0), (22, 16.0, (13.0, 10.0, 7.0), 12.0))
GRID = (48, 56, 68)
CENTRE_XY = (24.0, 30.0)


def synthetic_mask() -> tuple[Volume, dict[int, np.ndarray]]:
    """A label mask of three body-plus-process blobs stacked along z, and their body centroids."""
    x, y, z = np.indices(GRID, dtype=np.float64)
    data = np.zeros(GRID, dtype=np.int32)
    centroids = {}
    for label, height, (a, b, c), process in BLOBS:
        body = ((x - CENTRE_XY[0]) / a) ** 2 + ((y - CENTRE_XY[1]) / b) ** 2 + ((z - height) / c) ** 2 <= 1
        behind = (
            (abs(x - CENTRE_XY[0]) <= 2.5)
            & (abs(z - height) <= 2.5)
            & (y <= CENTRE_XY[1] - b + 2)
            & (y >= CENTRE_XY[1] - b - process)
        )
        data[body | behind] = label
        centroids[label] = np.array([CENTRE_XY[0], CENTRE_XY[1], height])
    return Volume(data, np.eye(4)), centroids


@pytest.fixture(scope="module")
def built() -> tuple[Template, Volume, dict[int, np.ndarray]]:
    mask, centroids = synthetic_mask()
    return build_template(mask, centroids, faces=400, modes=1000), mask, centroids


def as_trimesh(template: Template) -> trimesh.Trimesh:
    return trimesh.Trimesh(template.vertices, template.faces, process=False)


# ---------------------------------------------------------------- frames


def test_frames_of_a_straight_chain_are_superior_posterior_left():
    frames = vertebra_frames(
        {22: np.array([5.0, 2.0, -60.0]), 20: np.array([5.0, 2.0, 0.0]), 21: np.array([5.0, 2.0, -30.0])}
    )
    for rotation, spacing in frames.values():
        np.testing.assert_allclose(rotation, np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]]).T, atol=1e-12)
        assert spacing == pytest.approx(30.0)


def test_frames_are_rotations_and_t13_sits_between_t12_and_l1():
    tilted = {19: np.array([0.0, 0.0, 0.0]), 28: np.array([0.0, 10.0, -20.0]), 20: np.array([0.0, 30.0, -40.0])}
    frames = vertebra_frames(tilted)
    rotation, spacing = frames[28]
    np.testing.assert_allclose(rotation[:, 0], np.array([0.0, -30.0, 40.0]) / 50.0)  # from L1 up to T12
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    assert rotation[1, 1] < 0  # posterior still points to world -y
    assert spacing == pytest.approx((np.hypot(10, 20) + np.hypot(20, 20)) / 2)


# ---------------------------------------------------------------- building


def test_template_is_one_closed_mesh_with_the_mean_volume(built):
    template, mask, centroids = built
    mesh = as_trimesh(template)
    assert mesh.is_watertight and mesh.body_count == 1 and mesh.volume > 0
    assert abs(len(template.faces) - 400) <= 4
    frames = vertebra_frames(centroids)
    scaled = [
        label_surface(mask, label, 400, 1.0).volume * (template.reference_spacing / frames[label][1]) ** 3
        for label in (20, 21, 22)
    ]
    assert mesh.volume == pytest.approx(np.mean(scaled), rel=0.15)
    assert abs(mesh.vertices.mean(axis=0)).max() < 3.0  # the body centroids are the origin
    assert template.source["labels"] == [20, 21, 22] and template.source["reference_label"] == 21
    for errors in template.source["registration"].values():
        assert errors["mean_mm"] < 1.0 and errors["reverse_mean_mm"] < 1.0


def test_all_modes_reconstruct_the_template(built):
    template, _, _ = built
    assert template.eigenvectors.shape == (len(template.vertices), len(template.vertices))
    coefficients = spectral_coefficients(template.vertices, template.eigenvectors, template.masses)
    np.testing.assert_allclose(template.eigenvectors @ coefficients, template.vertices, atol=1e-8)


def test_save_then_load_is_exact(built, tmp_path):
    template, _, _ = built
    save_template(template, tmp_path / "tpl")
    loaded = load_template(tmp_path / "tpl")
    for name in ("vertices", "faces", "eigenvalues", "eigenvectors", "masses"):
        assert np.array_equal(getattr(loaded, name), getattr(template, name)), name
    assert loaded.reference_spacing == template.reference_spacing and loaded.source == template.source
    assert sorted(p.name for p in (tmp_path / "tpl").iterdir()) == ["template.json", "template.npz", "template.ply"]


# ---------------------------------------------------------------- loading errors


def test_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="template folder not found") as caught:
        load_template(tmp_path / "nowhere")
    assert caught.value.path == str(tmp_path / "nowhere")


def _folder_with_npz(tmp_path: Path, write_npz) -> Path:
    """A template folder with a valid JSON and the `.npz` that `write_npz(path)` writes."""
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "template.json").write_text(json.dumps({"version": 1, "source": {}}))
    write_npz(folder / "template.npz")
    return folder


def test_empty_template_is_an_input_error(tmp_path):
    folder = _folder_with_npz(
        tmp_path,
        lambda path: np.savez(
            path,
            vertices=np.zeros((0, 3)),
            faces=np.zeros((0, 3), int),
            eigenvalues=np.zeros(0),
            eigenvectors=np.zeros((0, 0)),
            masses=np.zeros(0),
            reference_spacing=np.float64(30.0),
        ),
    )
    with pytest.raises(InputError, match="empty") as caught:
        load_template(folder)
    assert caught.value.path == str(folder / "template.npz")


def test_corrupt_npz_is_an_input_error(tmp_path):
    folder = _folder_with_npz(tmp_path, lambda path: path.write_bytes(b"PK\x03\x04 not really a zip"))
    with pytest.raises(InputError, match="not a readable template archive") as caught:
        load_template(folder)
    assert caught.value.path == str(folder / "template.npz")


def test_missing_json_is_an_input_error(tmp_path):
    (tmp_path / "tpl").mkdir()
    with pytest.raises(InputError, match="file not found") as caught:
        load_template(tmp_path / "tpl")
    assert caught.value.path == str(tmp_path / "tpl" / "template.json")


# ---------------------------------------------------------------- the command's input checks


@pytest.fixture
def mask_file(tmp_path):
    mask, _ = synthetic_mask()
    path = tmp_path / "mask.nii.gz"
    nibabel.save(nibabel.Nifti1Image(mask.data, mask.affine), path)
    return path


def test_labels_selecting_nothing_is_an_input_error(mask_file, tmp_path):
    with pytest.raises(InputError, match="holds no labels 1, 2, 3"):
        spine_template(mask_file, out=tmp_path / "out", labels="1-3")


def test_malformed_labels_are_a_bad_parameter(mask_file, tmp_path):
    with pytest.raises(typer.BadParameter):
        spine_template(mask_file, out=tmp_path / "out", labels="L1-L5")


def test_a_tiny_label_is_an_input_error(tmp_path):
    data = np.zeros((20, 20, 20), dtype=np.int32)
    data[5:8, 5:8, 5:8] = 20
    data[10:16, 10:16, 10:16] = 21
    path = tmp_path / "tiny.nii.gz"
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(InputError, match="label 20 has 27 voxels"):
        spine_template(path, out=tmp_path / "out", labels="20-21")


# ---------------------------------------------------------------- the shipped template


def test_the_shipped_template_loads_and_is_sound():
    template = load_template(default_template_path())
    mesh = as_trimesh(template)
    assert mesh.is_watertight and mesh.body_count == 1 and mesh.volume > 0
    assert template.eigenvectors.shape == (len(template.vertices), len(template.eigenvalues))
    assert abs(template.eigenvalues[0]) < 1e-8
    assert np.all(np.diff(template.eigenvalues) >= 0)
    assert template.source["labels"] == list(range(16, 25))
    assert (default_template_path() / "ATTRIBUTION.md").is_file()
