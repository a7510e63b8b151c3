"""The synthetic CT of vertebrae (`invrender synth ct`): the output grid, the identity without
deformation, the deformation's bounds and inverse, centroids inside their vertebrae, HU of the
tissues, determinism, the CLI."""

from __future__ import annotations

import json

import nibabel
import numpy as np
import pytest
from scipy.ndimage import binary_erosion, distance_transform_edt
from scipy.spatial.transform import Rotation

from helpers import SHARED_DATA, assert_one_line_error
from invrender.cli import main
from invrender.core.volumes import (
    Volume,
    index_to_world,
    read_centroids,
    read_label_volume,
    read_volume,
    world_to_index,
    write_nifti,
)
from invrender.methods.spine_seg.synth import rigid_motion, with_deformation, write_ct_dataset

SAMPLE = str(SHARED_DATA / "verse" / "sub-verse004_seg-vert_msk.nii.gz")
SAMPLE_CENTROIDS = str(SHARED_DATA / "verse" / "sub-verse004_seg-subreg_ctd.json")
SPACING = 1.5  # mm, of the outputs of the synthetic mask: not a multiple of its 2 mm
LEVELS = (20, 21, 22)
CENTRES = {20: (15.0, 15.0, 8.0), 21: (15.5, 14.0, 20.0), 22: (16.0, 13.0, 32.0)}  # voxel indices


@pytest.fixture(scope="module")
def mask(tmp_path_factory):
    """Three stacked ellipsoids (L1-L3, about 36 x 28 x 20 mm, 2 mm apart) on an oblique 2 mm grid,
    with their VerSe centroid file; returns (mask path, centroids path, Volume)."""
    folder = tmp_path_factory.mktemp("mask")
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [20, -10, 35], degrees=True).as_matrix() * 2.0
    affine[:3, 3] = [-40.0, 25.0, 100.0]
    index = np.indices((30, 30, 42)).astype(float)
    labels = np.zeros((30, 30, 42), np.int16)
    for label, centre in CENTRES.items():
        inside = sum(((index[a] - centre[a]) / r) ** 2 for a, r in enumerate((9.0, 7.0, 5.0))) <= 1
        labels[inside] = label
    volume = Volume(labels, affine)
    write_nifti(folder / "sub-x_seg-vert_msk.nii.gz", labels, volume)
    centroids = [{"direction": list(nibabel.aff2axcodes(affine))}]
    centroids += [{"label": label, "X": c[0], "Y": c[1], "Z": c[2]} for label, c in CENTRES.items()]
    (folder / "sub-x_ctd.json").write_text(json.dumps(centroids))
    return folder / "sub-x_seg-vert_msk.nii.gz", folder / "sub-x_ctd.json", volume


def read_outputs(summary: dict) -> tuple[Volume, Volume, dict[int, np.ndarray]]:
    """The CT, the mask and the centroids (world mm) written by write_ct_dataset."""
    labels = read_label_volume(summary["msk"])
    return read_volume(summary["ct"]), labels, read_centroids(summary["ctd"], labels)


def label_at(labels: Volume, points: dict[int, np.ndarray]) -> dict[int, int]:
    """{label: the label of the voxel holding its point (world mm)}."""
    index = np.rint(world_to_index(labels.affine, np.array(list(points.values())))).astype(int)
    return dict(zip(points, labels.data[tuple(index.T)].tolist()))


def test_identity_without_deformation(mask, tmp_path):
    path, centroids_path, source = mask
    summary = write_ct_dataset(path, tmp_path, deform=0.0, spacing=SPACING, seed=1)
    ct, labels, centroids = read_outputs(summary)
    assert summary["name"] == "synth-sub-x-s1" and summary["max_displacement"] < 1e-9
    # The grid: the source's directions, isotropic spacing, inside the source's field of view.
    np.testing.assert_allclose(labels.affine[:3, :3], source.affine[:3, :3] / 2.0 * SPACING, atol=1e-6)
    assert ct.shape == labels.shape and np.array_equal(ct.affine, labels.affine)
    # Every output voxel shows the nearest source voxel (except at exact ties of the rounding).
    index = world_to_index(source.affine, labels.voxel_centres())
    assert (index > -0.5).all() and (index < np.array(source.shape) - 0.5).all()
    clear = (np.abs(index - np.floor(index) - 0.5) > 1e-3).all(axis=1)
    assert clear.mean() > 0.3  # (3/4)^3 of the voxels: 1.5 mm steps on a 2 mm grid tie every 4th voxel
    nearest = source.data[tuple(np.rint(index[clear]).astype(int).T)]
    np.testing.assert_array_equal(labels.data.reshape(-1)[clear], nearest)
    # Without a centroid file: the centroids of the source's labels, which the output's resample.
    assert sorted(centroids) == list(LEVELS)
    for label, point in centroids.items():
        np.testing.assert_allclose(point, source.voxel_centres(source.data == label).mean(axis=0), atol=0.02)
        np.testing.assert_allclose(point, labels.voxel_centres(labels.data == label).mean(axis=0), atol=0.5)
    # With one: the same points, moved by the identity.
    again = write_ct_dataset(path, tmp_path / "given", centroids_path, deform=0.0, spacing=SPACING, seed=1)
    _, _, given = read_outputs(again)
    for label, point in given.items():
        np.testing.assert_allclose(point, index_to_world(source.affine, [CENTRES[label]])[0], atol=0.02)


def test_motion_is_bounded_and_invertible(mask):
    _, _, source = mask
    deform = 4.0
    rng = np.random.default_rng(3)
    centre = index_to_world(source.affine, (np.array(source.shape)[None] - 1) / 2)[0]
    motion = with_deformation(rigid_motion(centre, deform, rng), source.shape, source.affine, deform, rng)
    points = source.voxel_centres()
    displacement = np.linalg.norm(motion.displacement.at(points), axis=1)
    assert displacement.max() <= deform + 1e-9 and displacement.max() > deform / 2
    # The whole motion moves no point further than the deformation plus the rigid part.
    angle = Rotation.from_matrix(motion.rotation).magnitude()
    assert 0 < np.degrees(angle) <= 3 and 0 < np.linalg.norm(motion.shift) <= 2
    rigid = 2 * np.sin(angle / 2) * np.linalg.norm(points - motion.centre, axis=1) + np.linalg.norm(motion.shift)
    assert (np.linalg.norm(motion.backward(points) - points, axis=1) <= displacement + rigid + 1e-9).all()
    # forward inverts backward.
    some = points[::97]
    np.testing.assert_allclose(motion.backward(motion.forward(some)), some, atol=1e-4)


@pytest.mark.parametrize("given", [False, True])
def test_deformed_labels_and_centroids(mask, tmp_path, given):
    path, centroids_path, source = mask
    summary = write_ct_dataset(path, tmp_path, centroids_path if given else None, deform=4.0, spacing=SPACING, seed=0)
    _, labels, centroids = read_outputs(summary)
    identity = read_label_volume(write_ct_dataset(path, tmp_path / "still", deform=0.0, spacing=SPACING, seed=0)["msk"])
    assert labels.shape == identity.shape and (labels.data != identity.data).mean() > 0.01
    assert (
        0 < summary["max_displacement"] <= 4.0 + 2 * np.sin(np.radians(summary["rotation"]) / 2) * 60 + summary["shift"]
    )
    for label in LEVELS:  # the volumes, mm^3, change a little
        assert np.sum(labels.data == label) * SPACING**3 == pytest.approx(np.sum(source.data == label) * 8.0, rel=0.1)
    assert sorted(centroids) == list(LEVELS)
    assert label_at(labels, centroids) == {label: label for label in LEVELS}


def test_intensities_of_the_tissues(mask, tmp_path):
    path, _, _ = mask
    ct, labels, _ = read_outputs(write_ct_dataset(path, tmp_path, deform=4.0, spacing=1.0, seed=0))
    bone = labels.data > 0
    shell = bone & ~binary_erosion(bone)
    interior = binary_erosion(bone, iterations=3)
    background = distance_transform_edt(~bone) > 3
    shell_hu, interior_hu, background_hu = (np.median(ct.data[region]) for region in (shell, interior, background))
    assert shell_hu > 600 and 180 < interior_hu < 320 and 0 < background_hu < 80, (shell_hu, interior_hu, background_hu)
    assert 10 < ct.data[background].std() < 40  # noise and the slow variation


def test_real_sample_lumbar(tmp_path):
    summary = write_ct_dataset(SAMPLE, tmp_path, SAMPLE_CENTROIDS, levels=(22, 24), spacing=2.0, seed=0)
    ct, labels, centroids = read_outputs(summary)
    assert nibabel.aff2axcodes(labels.affine) == ("P", "I", "R")
    assert np.allclose(labels.spacing, 2.0) and ct.data.min() >= -1024
    assert {22, 23, 24} <= set(summary["labels"]) and {22, 23, 24} <= set(centroids)
    # The body centroids land inside their own vertebra (a neighbour cut by the grid may lack one).
    assert all(label_at(labels, centroids)[label] == label for label in (22, 23, 24))


def test_cli_writes_the_dataset_deterministically(mask, tmp_path, capsys):
    path, centroids_path, _ = mask
    runs = {}
    for run, seed in (("a", 5), ("b", 5), ("c", 6)):
        code = main(
            [
                "synth",
                "ct",
                "--labels",
                str(path),
                "--centroids",
                str(centroids_path),
                "--levels",
                "21-22",
                "--spacing",
                "2",
                "--deform",
                "3",
                "--seed",
                str(seed),
                "--out",
                str(tmp_path / run),
            ]
        )
        err = capsys.readouterr().err
        assert code == 0 and len(err.strip().splitlines()) == 1 and "wrote synth-sub-x" in err, err
        runs[run] = sorted(p.name for p in (tmp_path / run).iterdir())
    assert (
        runs["a"] == runs["b"] == ["synth-sub-x-s5_ct.nii.gz", "synth-sub-x-s5_ctd.json", "synth-sub-x-s5_msk.nii.gz"]
    )
    for name in runs["a"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = tmp_path / "c" / "synth-sub-x-s6_ct.nii.gz"
    assert not np.array_equal(read_volume(tmp_path / "a" / runs["a"][0]).data, read_volume(other).data)


@pytest.mark.parametrize(
    "levels, needle", [("20", "A-B"), ("22-20", "A-B"), ("L1-L3", "A-B"), ("1-7", "no levels 1-7")]
)
def test_cli_refuses_bad_levels(mask, tmp_path, capsys, levels, needle):
    path, _, _ = mask
    code = main(["synth", "ct", "--labels", str(path), "--levels", levels, "--out", str(tmp_path / "x")])
    assert_one_line_error(code, capsys.readouterr().err, tmp_path / "x", "--levels", needle)


def test_cli_refuses_a_missing_or_empty_mask(mask, tmp_path, capsys):
    code = main(["synth", "ct", "--labels", str(tmp_path / "none.nii.gz"), "--out", str(tmp_path / "x")])
    assert_one_line_error(code, capsys.readouterr().err, tmp_path / "x", "none.nii.gz", "not found")
    _, _, source = mask
    write_nifti(tmp_path / "empty.nii.gz", np.zeros(source.shape, np.uint8), source)
    code = main(["synth", "ct", "--labels", str(tmp_path / "empty.nii.gz"), "--out", str(tmp_path / "x")])
    assert_one_line_error(code, capsys.readouterr().err, tmp_path / "x", "--labels", "no labels")


# ---------------------------------------------------------------- the factors in which real CTs differ


def test_orientation_and_anisotropic_spacing(mask, tmp_path):
    """Axis codes and a voxel size per anatomical axis: the stored grid follows them, and every
    voxel still shows the source's label at its world position."""
    path, _, source = mask
    summary = write_ct_dataset(path, tmp_path, deform=0.0, spacing=(1.0, 1.5, 3.0), orientation="LAS", seed=1)
    ct, labels, centroids = read_outputs(summary)
    assert nibabel.aff2axcodes(labels.affine) == ("L", "A", "S") and summary["orientation"] == "LAS"
    np.testing.assert_allclose(labels.affine[:3, :3], np.diag([-1.0, 1.5, 3.0]), atol=1e-9)
    index = world_to_index(source.affine, labels.voxel_centres())
    clear = (
        (np.abs(index - np.floor(index) - 0.5) > 1e-3).all(axis=1)
        & (index > -0.5).all(axis=1)
        & (index < np.array(source.shape) - 0.5).all(axis=1)
    )
    assert clear.mean() > 0.3
    nearest = source.data[tuple(np.rint(index[clear]).astype(int).T)]
    np.testing.assert_array_equal(labels.data.reshape(-1)[clear], nearest)
    for label, point in centroids.items():  # the labels' centroids, within a voxel of the source's
        assert np.linalg.norm(point - index_to_world(source.affine, [CENTRES[label]])[0]) < 1.5


def test_thick_slices_average_what_they_span():
    """The fine grid splits each voxel evenly and the block mean is the mean over the voxel's box:
    on a linear ramp it gives the value at the voxel's centre."""
    from invrender.methods.spine_seg.synth import block_mean, fine_grid

    affine = np.diag([0.7, 0.7, 2.5, 1.0])
    affine[:3, 3] = [5.0, -3.0, 10.0]
    shape = (4, 3, 5)
    fine_shape, fine_affine, factors = fine_grid(shape, affine)
    assert list(factors) == [1, 1, 3] and fine_shape == (4, 3, 15)
    ramp = lambda points: points @ np.array([0.3, -1.2, 2.0])  # noqa: E731
    fine = ramp(index_to_world(fine_affine, np.indices(fine_shape).reshape(3, -1).T)).reshape(fine_shape)
    coarse = ramp(index_to_world(affine, np.indices(shape).reshape(3, -1).T)).reshape(shape)
    np.testing.assert_allclose(block_mean(fine, factors), coarse, atol=1e-9)


def test_tilt_and_scale_move_the_spine(mask, tmp_path):
    path, centroids_path, source = mask
    straight = read_outputs(write_ct_dataset(path, tmp_path / "a", centroids_path, deform=0.0, spacing=SPACING, seed=2))
    tilted_summary = write_ct_dataset(
        path, tmp_path / "b", centroids_path, deform=0.0, spacing=SPACING, seed=2, tilt=15.0, scale=1.2
    )
    tilted = read_outputs(tilted_summary)
    assert tilted_summary["rotation"] == pytest.approx(15.0) and tilted_summary["scale"] == 1.2
    axis = lambda c: c[LEVELS[0]] - c[LEVELS[-1]]  # noqa: E731
    a, b = axis(straight[2]), axis(tilted[2])
    # a rotation by 15 degrees turns the chain by at most 15 (exactly 15 when the chain is normal to its axis)
    assert 7.5 < np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b))) <= 15.0 + 1e-6
    assert np.linalg.norm(b) == pytest.approx(1.2 * np.linalg.norm(a), rel=1e-3)
    for label in LEVELS:
        volume = np.sum(tilted[1].data == label) / np.sum(straight[1].data == label)
        assert volume == pytest.approx(1.2**3, rel=0.1)
    assert label_at(tilted[1], tilted[2]) == {label: label for label in LEVELS}


def test_distractors_surround_the_spine_without_changing_its_labels(tmp_path):
    """Ribs (bone outside the labels, touching the thoracic bodies), the aorta and kidneys with
    contrast and the lungs appear; the labels are those of the same CT without them."""
    plain = read_outputs(
        write_ct_dataset(SAMPLE, tmp_path / "plain", SAMPLE_CENTROIDS, levels=(18, 21), spacing=2.0, seed=4)
    )
    busy = read_outputs(
        write_ct_dataset(
            SAMPLE, tmp_path / "busy", SAMPLE_CENTROIDS, levels=(18, 21), spacing=2.0, seed=4, distractors=True
        )
    )
    np.testing.assert_array_equal(plain[1].data, busy[1].data)
    outside = distance_transform_edt(busy[1].data == 0, sampling=2.0)
    hu = busy[0].data
    assert (hu[outside > 6] < -500).mean() > 0.05  # lungs
    assert (plain[0].data[outside > 6] < -500).mean() == 0
    bone_beside = (hu > 450) & (outside > 3)  # ribs, clear of the vertebrae
    assert bone_beside.sum() * 8 > 2000, bone_beside.sum()  # mm^3: more than a few cm of rib
    touching = (hu > 450) & (outside > 0) & (outside <= 2)
    assert touching.sum() > (plain[0].data[(outside > 0) & (outside <= 2)] > 450).sum()
    contrast = (hu > 150) & (hu < 350) & (outside > 4)  # aorta and kidneys
    assert contrast.sum() * 8 > 20000, contrast.sum()


@pytest.mark.parametrize(
    "option, value, needle",
    [
        ("--spacing", "1,2", "one or three"),
        ("--spacing", "0.1", "0.25"),
        ("--orientation", "LAX", "axis codes"),
        ("--orientation", "LLS", "axis codes"),
    ],
)
def test_cli_refuses_bad_grids(mask, tmp_path, capsys, option, value, needle):
    path, _, _ = mask
    code = main(["synth", "ct", "--labels", str(path), option, value, "--out", str(tmp_path / "x")])
    assert_one_line_error(code, capsys.readouterr().err, tmp_path / "x", option, needle)
