"""3D volumes, label masks, grids and vertebra centroids (invrender.core.volumes)."""

import contextlib
import json
from pathlib import Path

import nibabel
import numpy as np
import pytest
import tifffile
from nibabel.orientations import aff2axcodes, axcodes2ornt, io_orientation, ornt_transform

from ct_series import COL_DIR, INTERCEPT, PIXEL_SPACING, ROW_DIR, SLOPE, rotation, write_series, write_slice
from helpers import SHARED_DATA
from invrender.core.io import InputError, write_tiff
from invrender.core.volumes import (
    VERTEBRA_NAMES,
    Volume,
    check_affine,
    check_same_grid,
    grid_suffix,
    index_to_world,
    read_affine,
    read_centroids,
    read_grid,
    read_label_volume,
    read_volume,
    vertebra_name,
    world_to_index,
    write_nifti,
    write_on_grid,
)

VERSE = SHARED_DATA / "verse"
VERSE_MASK = VERSE / "sub-verse004_seg-vert_msk.nii.gz"
VERSE_CENTROIDS = VERSE / "sub-verse004_seg-subreg_ctd.json"
needs_verse = pytest.mark.skipif(not VERSE_MASK.is_file(), reason="VerSe sample not available")


@contextlib.contextmanager
def refused(path, *needles):
    """Expect an InputError whose one-line message names `path` and contains every needle."""
    with pytest.raises(InputError) as caught:
        yield
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, message


def oblique_affine(spacing=(0.8, 1.2, 2.5), origin=(-40.0, 25.0, -300.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation(20, 10) * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


def small_volume() -> Volume:
    return Volume(np.zeros((20, 30, 40), np.float32), oblique_affine())


# ---------------------------------------------------------------- NIfTI


def test_nifti_round_trip_keeps_data_and_oblique_affine(tmp_path):
    data = np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)
    like = Volume(data, oblique_affine())
    write_nifti(tmp_path / "ct.nii.gz", data, like)
    volume = read_volume(tmp_path / "ct.nii.gz")
    assert volume.data.dtype == np.float32
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, like.affine, atol=1e-4)
    np.testing.assert_allclose(volume.spacing, [0.8, 1.2, 2.5], atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 1), (5, 6, 4, 3)])
def test_nifti_that_is_not_3d_is_refused(tmp_path, shape):
    path = tmp_path / "flat.nii"
    nibabel.save(nibabel.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), path)
    for read in (read_volume, read_grid):
        with refused(path, "not 3D"):
            read(path)


def test_read_grid_gives_read_volumes_shape_and_affine_from_the_header(tmp_path):
    write_nifti(tmp_path / "ct.nii.gz", np.zeros((6, 7, 8), np.int16), Volume(np.zeros((6, 7, 8)), oblique_affine()))
    nibabel.save(nibabel.Nifti1Image(np.ones((5, 6, 4, 1), np.float32), oblique_affine()), tmp_path / "t1.nii")
    for name in ("ct.nii.gz", "t1.nii"):  # the second with a trailing singleton axis, dropped by both
        volume, grid = read_volume(tmp_path / name), read_grid(tmp_path / name)
        assert grid.shape == volume.shape
        np.testing.assert_array_equal(grid.affine, volume.affine)
    assert read_grid(tmp_path / "t1.nii").shape == (5, 6, 4)


def test_read_grid_refuses_a_missing_or_damaged_file(tmp_path):
    with refused(tmp_path / "none.nii.gz", "file not found"):
        read_grid(tmp_path / "none.nii.gz")
    damaged = tmp_path / "damaged.nii.gz"
    damaged.write_bytes(b"not a NIfTI file")
    with refused(damaged, "not a readable NIfTI volume"):
        read_grid(damaged)


def test_missing_and_unsupported_volumes_are_refused(tmp_path):
    with refused(tmp_path / "nope.nii.gz", "not found"):
        read_volume(tmp_path / "nope.nii.gz")
    other = tmp_path / "ct.mha"
    other.write_text("x")
    with refused(other, "NIfTI", "DICOM", "TIFF"):
        read_volume(other)


# ---------------------------------------------------------------- DICOM


def test_dicom_series_reads_sorted_rescaled_and_in_ras(tmp_path):
    stored = np.random.default_rng(0).integers(-500, 1500, size=(5, 4, 6))  # (slices, rows, columns)
    positions = write_series(tmp_path / "ct", stored)
    (tmp_path / "ct" / "README.txt").write_text("not DICOM")  # stray files are skipped
    volume = read_volume(tmp_path / "ct")
    assert volume.shape == (6, 4, 5)  # (columns, rows, slices)
    np.testing.assert_allclose(volume.spacing, [0.9, 0.7, 2.5], atol=1e-4)
    # Every stored pixel, placed where DICOM says (LPS, then x and y negated), holds its rescaled value.
    for pixels, position in zip(stored, positions):
        rows, cols = np.indices(pixels.shape).reshape(2, -1)
        lps = position + cols[:, None] * PIXEL_SPACING[1] * ROW_DIR + rows[:, None] * PIXEL_SPACING[0] * COL_DIR
        ras = lps * [-1, -1, 1]
        index = world_to_index(volume.affine, ras)
        np.testing.assert_allclose(index, np.round(index), atol=1e-3)
        i, j, slice_k = np.round(index).astype(int).T
        np.testing.assert_array_equal(i, cols)
        np.testing.assert_array_equal(j, rows)
        np.testing.assert_allclose(volume.data[i, j, slice_k], pixels[rows, cols] * SLOPE + INTERCEPT)
    # Sorted along the normal: written head to foot, so the last slice written comes first.
    np.testing.assert_allclose(volume.affine[:3, 3], positions[-1] * [-1, -1, 1], atol=1e-4)


def test_dicom_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with refused(empty, "empty"):
        read_volume(empty)

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("hello")
    with refused(notes, "no DICOM"):
        read_volume(notes)

    stored = np.zeros((3, 4, 6))
    mixed = tmp_path / "mixed"
    write_series(mixed, stored, series="1.1")
    write_series(mixed, stored, series="1.2", start=10)
    with refused(mixed, "2 DICOM series"):
        read_volume(mixed)

    single = tmp_path / "single"
    write_series(single, stored[:1])
    with refused(single, "single slice"):
        read_volume(single)

    sizes = tmp_path / "sizes"
    write_series(sizes, stored)
    write_slice(sizes / "odd", np.zeros((5, 6)), np.array([0.0, 0.0, -50.0]), "1.2.3.4")
    with refused(sizes, "inconsistent Rows"):
        read_volume(sizes)

    with refused(sizes, "voxel-size"):
        read_volume(sizes, voxel_size=(1, 1, 1))


def test_one_dicom_file_points_to_its_folder(tmp_path):
    write_series(tmp_path / "ct", np.zeros((2, 4, 6)))
    one = tmp_path / "ct" / "one.dcm"
    (tmp_path / "ct" / "IM0000").rename(one)
    with refused(one, "folder"):
        read_volume(one)


# ---------------------------------------------------------------- TIFF


def test_tiff_3d_becomes_xyz_with_voxel_size(tmp_path):
    stack = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)  # (z, y, x)
    write_tiff(tmp_path / "stack.tif", stack, voxel_size=(2.0, 0.5, 0.25), unit="mm")
    volume = read_volume(tmp_path / "stack.tif")
    assert volume.shape == (6, 5, 4)
    np.testing.assert_array_equal(volume.data[3, 2, 1], stack[1, 2, 3])
    np.testing.assert_allclose(volume.affine, np.diag([0.25, 0.5, 2.0, 1.0]))

    given = read_volume(tmp_path / "stack.tif", voxel_size=(3.0, 1.0, 1.5))
    np.testing.assert_allclose(given.affine, np.diag([1.5, 1.0, 3.0, 1.0]))


@pytest.mark.parametrize(("unit", "in_mm"), [("micron", 1e-3), ("nm", 1e-6), ("mm", 1.0), ("pixel", 1.0)])
def test_a_tiff_voxel_size_is_converted_to_mm_from_its_unit(tmp_path, unit, in_mm):
    """World coordinates are mm: a stack calibrated in another unit of length is converted; one in
    pixels (no unit of length) is taken for mm, as `--voxel-size` is."""
    sizes = tuple(mm / in_mm for mm in (2.0, 1.0, 0.5))  # (z, y, x) in `unit`
    write_tiff(tmp_path / "s.tif", np.ones((4, 5, 6), np.float32), voxel_size=sizes, unit=unit)
    volume = read_volume(tmp_path / "s.tif")
    np.testing.assert_allclose(volume.affine, np.diag([0.5, 1.0, 2.0, 1.0]), rtol=1e-6)


@pytest.mark.parametrize(("unit", "written"), [("micron", "micron"), ("nm", "nm"), ("mm", "mm"), ("pixel", "mm")])
def test_labels_on_a_tiff_grid_are_a_tiff_in_its_unit(tmp_path, unit, written):
    """`write_on_grid` writes a TIFF volume's labels back as it came, (z, y, x) in its unit of length
    (mm, the volume's own, when it names none): read again, they are on the same grid."""
    write_tiff(tmp_path / "ct.tif", np.ones((4, 5, 6), np.float32), voxel_size=(3.0, 2.0, 1.0), unit=unit)
    volume = read_volume(tmp_path / "ct.tif")
    labels = np.random.default_rng(0).integers(0, 30, size=volume.shape)
    assert grid_suffix(tmp_path / "ct.tif") == ".tif" and grid_suffix(tmp_path / "ct.nii.gz") == ".nii.gz"
    write_on_grid(tmp_path / "ct.labels.tif", labels, volume)
    with tifffile.TiffFile(tmp_path / "ct.labels.tif") as tif:
        assert tif.pages[0].dtype == np.uint16 and tif.imagej_metadata["unit"] == written
    back = read_label_volume(tmp_path / "ct.labels.tif")
    np.testing.assert_array_equal(back.data, labels)
    np.testing.assert_allclose(back.affine, volume.affine, rtol=1e-6)


def test_read_affine_gives_read_volumes_affine_from_the_header(tmp_path):
    oblique = np.array([[0, 0, 1.2, -5.0], [-0.9, 0.1, 0, 7.0], [0, -2.0, 0, 60.0], [0, 0, 0, 1.0]])
    write_nifti(tmp_path / "ct.nii.gz", np.zeros((4, 5, 6), np.int16), Volume(np.zeros((4, 5, 6)), oblique))
    write_tiff(tmp_path / "ct.tif", np.ones((4, 5, 6), np.float32), voxel_size=(30.0, 20.0, 10.0), unit="um")
    for name in ("ct.nii.gz", "ct.tif"):
        np.testing.assert_allclose(read_affine(tmp_path / name), read_volume(tmp_path / name).affine, rtol=1e-6)
    with refused(tmp_path / "none.nii.gz", "file not found"):
        read_affine(tmp_path / "none.nii.gz")
    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, np.ones((4, 5, 6), np.float32), photometric="minisblack")
    with refused(bare, "--voxel-size"):
        read_affine(bare)


def test_a_degenerate_affine_is_refused_and_nanometre_voxels_are_not():
    nanometres = np.diag([4e-6, 4e-6, 3e-5, 1.0])  # an EM stack's voxels, in mm
    np.testing.assert_array_equal(check_affine("em.tif", nanometres), nanometres)
    flat = np.diag([1.0, 1.0, 0.0, 1.0])
    collinear = np.array([[1.0, 1.0, 0, 0], [0, 1e-9, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    for affine in (flat, collinear):
        with pytest.raises(InputError, match="degenerate"):
            check_affine("ct.nii.gz", affine)


def test_a_tiff_is_written_on_a_tiff_grid_only(tmp_path):
    nifti_grid = Volume(np.zeros((4, 5, 6)), np.diag([-1.0, -1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="TIFF volume only"):
        write_on_grid(tmp_path / "x.tif", np.zeros((4, 5, 6), np.int32), nifti_grid)
    tiff_grid = Volume(np.zeros((4, 5, 6)), np.diag([1.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="16-bit"):
        write_on_grid(tmp_path / "x.tif", np.full((4, 5, 6), 70000), tiff_grid)
    assert not (tmp_path / "x.tif").exists()


def test_tiff_without_voxel_size_or_2d_is_refused(tmp_path):
    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, np.ones((4, 5, 6), np.float32), photometric="minisblack")
    with refused(bare, "--voxel-size"):
        read_volume(bare)
    flat = tmp_path / "flat.tif"
    write_tiff(flat, np.ones((5, 6), np.float32))
    with refused(flat, "is 2D; spine-seg needs a 3D volume"):
        read_volume(flat, voxel_size=(1, 1, 1))


# ---------------------------------------------------------------- label masks and grids


def test_label_volume_is_int32_and_refuses_fractions_and_negatives(tmp_path):
    like = Volume(np.zeros((4, 5, 6)), oblique_affine())
    labels = np.zeros((4, 5, 6))
    labels[1:3, 1:3, 1:3] = 20
    write_nifti(tmp_path / "mask.nii.gz", labels, like)
    mask = read_label_volume(tmp_path / "mask.nii.gz")
    assert mask.data.dtype == np.int32
    np.testing.assert_array_equal(mask.data, labels)

    write_nifti(tmp_path / "soft.nii.gz", labels / 8 + 0.5, like)
    with refused(tmp_path / "soft.nii.gz", "not a label mask: non-integer values"):
        read_label_volume(tmp_path / "soft.nii.gz")
    write_nifti(tmp_path / "negative.nii.gz", -labels.astype(np.int16), like)
    with refused(tmp_path / "negative.nii.gz", "negative label -20"):
        read_label_volume(tmp_path / "negative.nii.gz")


def test_check_same_grid(tmp_path):
    volume = Volume(np.zeros((4, 5, 6)), oblique_affine(), tmp_path / "ct.nii.gz")
    check_same_grid(volume, Volume(np.zeros((4, 5, 6)), volume.affine + 1e-6), "mask.nii.gz")

    with refused("mask.nii.gz", "(4, 5, 7)", "(4, 5, 6)", "spacing"):
        check_same_grid(volume, Volume(np.zeros((4, 5, 7)), volume.affine), "mask.nii.gz")
    shifted = volume.affine.copy()
    shifted[0, 3] += 0.01
    with refused("mask.nii.gz", "differ by up to 0.01 mm"):
        check_same_grid(volume, Volume(np.zeros((4, 5, 6)), shifted), "mask.nii.gz")


def test_vertebra_names():
    assert [vertebra_name(code) for code in (1, 7, 8, 19, 20, 24, 25, 26, 28)] == [
        "C1",
        "C7",
        "T1",
        "T12",
        "L1",
        "L5",
        "L6",
        "S1",
        "T13",
    ]
    assert len(VERTEBRA_NAMES) == 27
    with pytest.raises(ValueError, match="27"):
        vertebra_name(27)


# ---------------------------------------------------------------- centroids: VerSe


@needs_verse
def test_verse_centroids_land_in_their_vertebra():
    mask = read_label_volume(VERSE_MASK)
    centroids = read_centroids(VERSE_CENTROIDS, mask)
    assert list(centroids) == list(range(16, 25))
    # The sample mask is itself PIR, so the centroids are its plain voxel indices.
    np.testing.assert_allclose(centroids[16], index_to_world(mask.affine, [79.1, 40.9, 32.3]))
    for label, point in centroids.items():
        i, j, k = np.round(world_to_index(mask.affine, point)).astype(int)
        assert mask.data[i, j, k] == label, vertebra_name(label)


@needs_verse
@pytest.mark.parametrize("codes", ["RAS", "LPI", "SAL"])
def test_verse_centroids_follow_a_reoriented_image(tmp_path, codes):
    original = read_label_volume(VERSE_MASK)
    expected = read_centroids(VERSE_CENTROIDS, original)
    image = nibabel.load(VERSE_MASK)
    reoriented = image.as_reoriented(ornt_transform(io_orientation(image.affine), axcodes2ornt(codes)))
    nibabel.save(reoriented, tmp_path / "mask.nii.gz")
    mask = read_label_volume(tmp_path / "mask.nii.gz")
    assert "".join(aff2axcodes(mask.affine)) == codes

    # The same PIR file, applied to the reoriented image, gives the same world points.
    centroids = read_centroids(VERSE_CENTROIDS, mask)
    for label, point in centroids.items():
        np.testing.assert_allclose(point, expected[label], atol=1e-3)
        i, j, k = np.round(world_to_index(mask.affine, point)).astype(int)
        assert mask.data[i, j, k] == label

    # And a file written in the reoriented image's own axes gives them too.
    own = [{"direction": list(codes)}] + [
        dict(zip(("label", "X", "Y", "Z"), [label, *world_to_index(mask.affine, point[None])[0].tolist()]))
        for label, point in expected.items()
    ]
    (tmp_path / "own.json").write_text(json.dumps(own))
    for label, point in read_centroids(tmp_path / "own.json", original).items():
        np.testing.assert_allclose(point, expected[label], atol=1e-3)


def write_verse(path: Path, entries: list[dict], direction=("P", "I", "R")) -> Path:
    path.write_text(json.dumps([{"direction": list(direction)}, *entries]))
    return path


def test_verse_json_errors(tmp_path):
    volume = small_volume()
    cases = {
        "missing.json": (None, "not found"),
        "empty.json": ([], "no centroids"),
        "unknown.json": ([{"label": 27, "X": 1, "Y": 1, "Z": 1}], "label 27 is not a VerSe vertebra code"),
        "twice.json": (
            [{"label": 20, "X": 1, "Y": 1, "Z": 1}, {"label": 20, "X": 2, "Y": 2, "Z": 2}],
            "label 20 (L1) appears twice",
        ),
        "text.json": ([{"label": 20, "X": "a", "Y": 1, "Z": 1}], "not a number"),
    }
    for name, (entries, needle) in cases.items():
        path = tmp_path / name
        if entries is not None:
            write_verse(path, entries)
        with refused(path, needle):
            read_centroids(path, volume)

    bad_axes = write_verse(tmp_path / "axes.json", [{"label": 20, "X": 1, "Y": 1, "Z": 1}], direction="PAR")
    with refused(bad_axes, "different axes"):
        read_centroids(bad_axes, volume)
    (tmp_path / "plain.json").write_text('[{"label": 20, "X": 1, "Y": 1, "Z": 1}]')
    with refused(tmp_path / "plain.json", "direction"):
        read_centroids(tmp_path / "plain.json", volume)
    (tmp_path / "broken.json").write_text('[{"direction": ')
    with refused(tmp_path / "broken.json", "malformed JSON"):
        read_centroids(tmp_path / "broken.json", volume)


# ---------------------------------------------------------------- centroids: lists


def test_csv_centroids_in_voxel_and_world_space(tmp_path):
    volume = small_volume()
    voxels = {20: [1.0, 2.0, 3.0], 21: [19.4, 29.0, 0.0]}
    (tmp_path / "voxel.csv").write_text("label,x,y,z\n20, 1, 2, 3\n\n21,19.4,29,0\n")
    from_voxels = read_centroids(tmp_path / "voxel.csv", volume, space="voxel")
    worlds = {label: index_to_world(volume.affine, p) for label, p in voxels.items()}
    for label in voxels:
        np.testing.assert_allclose(from_voxels[label], worlds[label])

    (tmp_path / "world.txt").write_text("".join(f"{label} {x} {y} {z}\n" for label, (x, y, z) in worlds.items()))
    from_world = read_centroids(tmp_path / "world.txt", volume, space="world")
    for label in voxels:
        np.testing.assert_allclose(from_world[label], worlds[label])


def test_csv_centroid_errors(tmp_path):
    volume = small_volume()
    cases = {
        "unknown.csv": ("27,1,1,1\n", "label 27 is not a VerSe vertebra code (valid: 1-7 C1-C7"),
        "twice.csv": ("20,1,1,1\n20,2,2,2\n", "line 2: label 20 (L1) appears twice"),
        "outside.csv": (
            "20,1,1,1\n22,20,1,1\n",
            "label 22 (L3) at voxel (20, 1, 1) is outside the volume of shape (20, 30, 40)",
        ),
        "text.csv": ("20,1,one,1\n", "line 1: 'one' is not a number"),
        "short.csv": ("20,1,1\n", "3 fields"),
        "header_only.csv": ("label,x,y,z\n", "no centroids"),
    }
    for name, (text, needle) in cases.items():
        (tmp_path / name).write_text(text)
        with refused(tmp_path / name, needle):
            read_centroids(tmp_path / name, volume, space="voxel")

    (tmp_path / "ok.csv").write_text("20,1,1,1\n")
    with refused(tmp_path / "ok.csv", "--centroid-space voxel|world"):
        read_centroids(tmp_path / "ok.csv", volume)
    with refused(tmp_path / "nope.csv", "not found"):
        read_centroids(tmp_path / "nope.csv", volume, space="world")
    (tmp_path / "ctd.xml").write_text("<x/>")
    with refused(tmp_path / "ctd.xml", ".json", ".csv"):
        read_centroids(tmp_path / "ctd.xml", volume, space="world")
