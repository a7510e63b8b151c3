"""The napari plugin's images and labels: TIFFs and NIfTI volumes read with the scale that puts them
over their input image, and a Labels layer written as a TIFF and read back."""

import numpy as np
import pytest
import tifffile

from ct_series import write_series
from invrender.core.io import InputError, write_tiff
from invrender.core.volumes import Volume, read_volume, write_nifti, write_on_grid
from invrender.napari.images import write_labels_tiff
from invrender.napari.readers import (
    get_dicom_reader,
    get_nifti_reader,
    get_tiff_reader,
    read_dicom_folder,
    read_nifti_file,
    read_tiff_file,
)
from invrender.napari.writers import write_labels_layer


def label_image(shape, seed: int = 0) -> np.ndarray:
    """Random blocks of labels 0..5 (0 the background)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 6, size=tuple(-(-n // 4) for n in shape))  # blocks of 4 px, enough to cover
    return np.kron(coarse, np.ones((4,) * len(shape), dtype=np.int64))[tuple(slice(0, n) for n in shape)]


def test_a_stack_reads_with_its_voxel_size_and_a_frame_in_pixels(tmp_path):
    stack = np.random.default_rng(0).random((6, 10, 12)).astype(np.float32)
    write_tiff(tmp_path / "stack.tif", stack, voxel_size=(2.0, 0.5, 0.25))
    assert get_tiff_reader(str(tmp_path / "stack.tif")) is read_tiff_file
    [(data, attributes, kind)] = read_tiff_file(str(tmp_path / "stack.tif"))
    assert kind == "image" and attributes["name"] == "stack"
    np.testing.assert_array_equal(data, stack)
    assert attributes["scale"] == pytest.approx((2.0, 0.5, 0.25))
    assert attributes["units"] == ("micrometer",) * 3  # write_tiff's default unit with a size

    write_tiff(tmp_path / "frame.tif", stack[0])
    [(_, attributes, kind)] = read_tiff_file(str(tmp_path / "frame.tif"))
    assert kind == "image" and attributes["scale"] == (1.0, 1.0)


@pytest.mark.parametrize("name", ["nuclei.labels.tif", "mask007.tif", "man_seg012.tif"])
def test_label_tiffs_read_as_labels(tmp_path, name):
    labels = label_image((20, 24))
    write_tiff(tmp_path / name, labels.astype(np.uint16))  # as cell-seg writes them
    [(data, attributes, kind)] = read_tiff_file(str(tmp_path / name))
    assert kind == "labels" and np.issubdtype(data.dtype, np.integer)
    np.testing.assert_array_equal(data, labels)
    assert attributes["scale"] == (1.0, 1.0)


def test_a_label_tiff_of_fractions_is_refused(tmp_path):
    write_tiff(tmp_path / "x.labels.tif", np.full((8, 8), 1.5, dtype=np.float32))
    with pytest.raises(InputError, match="non-integer"):
        read_tiff_file(str(tmp_path / "x.labels.tif"))


@pytest.mark.parametrize(("shape", "scale"), [((20, 24), (1.0, 1.0)), ((5, 16, 12), (2.0, 0.5, 0.5))])
def test_a_labels_layer_written_as_tiff_reads_back_the_same(tmp_path, shape, scale):
    napari = pytest.importorskip("napari")
    layer = napari.layers.Labels(label_image(shape, seed=1), scale=scale)
    data, attributes, _ = layer.as_layer_data_tuple()
    path = tmp_path / "edited.labels.tif"
    assert write_labels_layer(str(path), data, attributes) == [str(path)]
    assert tifffile.imread(path).dtype == np.uint16
    [(back, back_attributes, kind)] = read_tiff_file(str(path))
    assert kind == "labels"
    np.testing.assert_array_equal(back, layer.data)
    assert back_attributes["scale"] == pytest.approx(scale)


def test_labels_that_do_not_fit_16_bits_are_refused(tmp_path):
    with pytest.raises(ValueError, match="16-bit"):
        write_labels_tiff(tmp_path / "x.tif", np.array([[0, 70000], [1, 2]]), {})
    with pytest.raises(ValueError, match="16-bit"):
        write_labels_tiff(tmp_path / "x.tif", np.array([[0, -1], [1, 2]]), {})
    assert not (tmp_path / "x.tif").exists()


def test_spine_labels_and_their_ct_read_on_one_grid_with_the_header_spacing(tmp_path):
    """spine-seg writes `<stem>.labels.nii.gz` on the CT's grid and affine (`write_nifti`)."""
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 30.0]
    ct = np.random.default_rng(2).normal(size=(12, 10, 8)).astype(np.float32)
    labels = label_image(ct.shape, seed=3).astype(np.int16) * 4 + 18  # VerSe codes, e.g. T11..L5
    labels[labels == 18] = 0
    like = Volume(ct, affine)
    write_nifti(tmp_path / "ct.nii.gz", ct, like)
    write_nifti(tmp_path / "ct.labels.nii.gz", labels, like)
    assert get_nifti_reader(str(tmp_path / "ct.labels.nii.gz")) is read_nifti_file
    [(data, attributes, kind)] = read_nifti_file(str(tmp_path / "ct.labels.nii.gz"))
    assert kind == "labels" and attributes["name"] == "ct.labels"
    np.testing.assert_array_equal(data, labels)
    assert attributes["scale"] == pytest.approx((0.8, 0.9, 2.5)) and attributes["units"] == ("millimeter",) * 3
    [(image, image_attributes, image_kind)] = read_nifti_file(str(tmp_path / "ct.nii.gz"))
    assert image_kind == "image" and image.shape == data.shape
    np.testing.assert_allclose(image, ct)
    assert image_attributes["scale"] == attributes["scale"]


def test_other_files_are_left_to_other_readers(tmp_path):
    assert get_tiff_reader(str(tmp_path / "x.png")) is None
    assert get_nifti_reader(str(tmp_path / "x.tif")) is None
    assert get_tiff_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None


@pytest.mark.parametrize(("unit", "napari_unit"), [("nm", "nanometer"), ("mm", "millimeter")])
def test_a_stack_and_its_labels_keep_their_unit_through_napari(tmp_path, unit, napari_unit):
    """A stack calibrated in nm reads with napari units nm (its scale bar says so), and a Labels
    layer drawn over it is written back in nm; a layer in pixels is written in pixels."""
    napari = pytest.importorskip("napari")
    write_tiff(tmp_path / "stack.tif", np.ones((4, 6, 8), np.float32), voxel_size=(300.0, 65.0, 65.0), unit=unit)
    [(data, attributes, kind)] = read_tiff_file(str(tmp_path / "stack.tif"))
    image = napari.layers.Layer.create(data, attributes, kind)
    assert [str(u) for u in image.units] == [napari_unit] * 3

    layer = napari.layers.Labels(label_image((4, 6, 8), seed=2), scale=image.scale, units=image.units)
    path = tmp_path / "drawn.labels.tif"
    write_labels_layer(str(path), *layer.as_layer_data_tuple()[:2])
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["unit"] == unit
    [(_, back, _)] = read_tiff_file(str(path))
    assert back["scale"] == pytest.approx((300.0, 65.0, 65.0)) and back["units"] == (napari_unit,) * 3

    plain = napari.layers.Labels(label_image((4, 6, 8), seed=2), scale=(2.0, 1.0, 1.0))
    write_labels_layer(str(tmp_path / "plain.labels.tif"), *plain.as_layer_data_tuple()[:2])
    with tifffile.TiffFile(tmp_path / "plain.labels.tif") as tif:
        assert tif.imagej_metadata["unit"] == "pixel"


def test_a_dicom_series_opens_under_the_labels_spine_seg_makes_on_its_grid(tmp_path):
    """A DICOM CT folder opens as spine-seg reads it, (columns, rows, slices) in mm, and the labels
    NIfTI written on that grid opens over it: same shape, same scale."""
    stored = np.random.default_rng(0).integers(-500, 1500, size=(5, 4, 6))  # (slices, rows, columns)
    write_series(tmp_path / "ct", stored)
    (tmp_path / "ct" / "notes.txt").write_text("not DICOM")
    assert get_dicom_reader(str(tmp_path / "ct")) is read_dicom_folder
    [(image, attributes, kind)] = read_dicom_folder(str(tmp_path / "ct"))
    volume = read_volume(tmp_path / "ct")
    assert kind == "image" and image.shape == (6, 4, 5) and attributes["units"] == ("millimeter",) * 3
    np.testing.assert_array_equal(image, volume.data)
    labels = (volume.data > 500).astype(np.int16)
    write_on_grid(tmp_path / "ct.labels.nii.gz", labels, volume)
    [(label_layer, label_attributes, label_kind)] = read_nifti_file(str(tmp_path / "ct.labels.nii.gz"))
    assert label_kind == "labels"
    np.testing.assert_array_equal(label_layer, labels)
    assert label_attributes["scale"] == pytest.approx(attributes["scale"])
    assert get_dicom_reader(str(tmp_path)) is None  # a folder without DICOM files
    assert get_dicom_reader(str(tmp_path / "ct.labels.nii.gz")) is None
