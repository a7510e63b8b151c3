"""VerSe centroid files open as Points over their CT as the plugin opens it (voxel index times
spacing, in the CT's storage order), each point named by its vertebra."""

import shutil

import numpy as np
import pytest

from helpers import VERSE_CENTROIDS, VERSE_MASK, l3_l4_ct
from invrender.core.io import InputError
from invrender.core.volumes import VERTEBRA_NAMES, read_centroids, read_volume, vertebra_code, world_to_index
from invrender.napari.readers import get_centroids_reader, get_json_reader, read_nifti_file

needs_sample = pytest.mark.skipif(not VERSE_MASK.is_file(), reason=f"VerSe sample not found at {VERSE_MASK}")


@needs_sample
@pytest.mark.parametrize("orientation", ["LPS", "PIR"])
def test_centroids_lie_at_their_voxels_of_the_ct_as_napari_opens_it(tmp_path, orientation):
    """The CT stored in LPS or PIR order (axes permuted): each point is at the voxel of the CT
    layer that spine-seg reads the centroid at."""
    l3_l4_ct(tmp_path, "spine", orientation)
    path = tmp_path / "spine_ctd.json"
    reader = get_centroids_reader(str(path))
    assert reader is not None and get_json_reader(str(path)) is None  # not invrender's splines or polygons
    [(points, attributes, kind)] = reader(str(path))
    [(_, ct_attributes, _)] = read_nifti_file(str(tmp_path / "spine_ct.nii.gz"))
    truth = read_centroids(path, read_volume(tmp_path / "spine_ct.nii.gz"))  # what spine-seg reads
    affine = ct_attributes["metadata"]["affine"]
    assert kind == "points" and attributes["name"] == "spine_ctd" and attributes["units"] == ct_attributes["units"]
    assert attributes["features"]["label"] == [VERTEBRA_NAMES[label] for label in truth]
    index = np.stack([world_to_index(affine, point[None])[0] for point in truth.values()])
    np.testing.assert_allclose(points / np.asarray(ct_attributes["scale"]), index, atol=1e-9)


@needs_sample
def test_the_real_samples_centroids_lie_in_their_vertebrae(tmp_path):
    """verse004's body centroids beside its vertebra mask (the sample has no CT): each point, in
    the mask's layer coordinates, falls in a voxel of its own vertebra."""
    for source in (VERSE_CENTROIDS, VERSE_MASK):
        shutil.copy(source, tmp_path / source.name)
    path = str(tmp_path / VERSE_CENTROIDS.name)
    [(points, attributes, _)] = get_centroids_reader(path)(path)
    [(mask, mask_attributes, kind)] = read_nifti_file(str(tmp_path / VERSE_MASK.name))
    assert kind == "labels" and len(points) >= 5
    voxels = np.rint(points / np.asarray(mask_attributes["scale"])).astype(int)
    found = [int(mask[tuple(voxel)]) for voxel in voxels]
    assert found == [vertebra_code(name) for name in attributes["features"]["label"]], found


@needs_sample
def test_the_centroid_reader_reads_the_cts_header_not_its_voxels(tmp_path, monkeypatch):
    """The CT opens as its own layer: the points need its grid only, not a second read of its voxels."""
    from nibabel.arrayproxy import ArrayProxy

    l3_l4_ct(tmp_path, "spine", "LPS")
    path = str(tmp_path / "spine_ctd.json")
    [(expected, _, _)] = get_centroids_reader(path)(path)

    def refuse(*args, **kwargs):
        raise AssertionError("the CT's voxels were read")

    monkeypatch.setattr(ArrayProxy, "__array__", refuse)
    monkeypatch.setattr(ArrayProxy, "__getitem__", refuse)
    [(points, _, _)] = get_centroids_reader(path)(path)
    np.testing.assert_array_equal(points, expected)


def test_centroids_without_their_ct_beside_are_refused_in_one_line(tmp_path):
    path = tmp_path / "sub-verse9_seg-subreg_ctd.json"
    path.write_text('[{"direction": ["L", "A", "S"]}, {"label": 20, "X": 1, "Y": 2, "Z": 3}]')
    with pytest.raises(InputError) as err:
        get_centroids_reader(str(path))(str(path))
    message = str(err.value)
    assert "\n" not in message and path.name in message and "sub-verse9_ct.nii.gz" in message


def test_other_json_is_not_taken_for_centroids(tmp_path):
    assert get_centroids_reader(str(tmp_path / "worms.splines.json")) is None
