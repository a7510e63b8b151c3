"""`invrender.segment_spine` on arrays: the same result as `invrender spine-seg` on the same CT, seed
and config, and the command line's one-line errors as exceptions."""

import json

import nibabel
import numpy as np
import pytest
import torch
import trimesh

import invrender
from helpers import SHARED_DATA, SPINE_SHORT
from invrender.cli import main
from invrender.core.volumes import read_centroids, read_volume
from invrender.methods.spine_seg.synth import write_ct_dataset


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """A 3 mm synthetic CT of L3-L4 (from the VerSe mask verse004, deformed), its label mask and its
    VerSe centroids (the bodies'), as files and as arrays."""
    folder = tmp_path_factory.mktemp("ct")
    verse = SHARED_DATA / "verse"
    summary = write_ct_dataset(
        verse / "sub-verse004_seg-vert_msk.nii.gz",
        folder,
        verse / "sub-verse004_seg-subreg_ctd.json",
        levels=(22, 23),
        spacing=3.0,
        deform=3.0,
        seed=3,
        name="spine",
    )
    entries = json.loads((folder / "spine_ctd.json").read_text())
    kept = [entry for entry in entries if "label" not in entry or entry["label"] in (22, 23)]
    (folder / "ctd.json").write_text(json.dumps(kept))
    image = nibabel.load(summary["ct"])
    return {
        "files": (summary["ct"], folder / "ctd.json", summary["msk"]),
        "volume": np.asarray(image.dataobj),
        "affine": image.affine,
        "centroids": kept,
        "world": read_centroids(folder / "ctd.json", read_volume(summary["ct"])),  # {label: (3,) mm}
        "gt": np.asarray(nibabel.load(summary["msk"]).dataobj),
    }


def test_segment_spine_gives_what_the_command_line_writes(tmp_path, ct, capsys):
    image, centroids, mask = ct["files"]
    out = tmp_path / "out"
    args = ["spine-seg", str(image), "--centroids", str(centroids), "--gt", str(mask), "--out", str(out)]
    assert main([*args, "--device", "cpu", "--seed", "3", "-q", *SPINE_SHORT]) == 0, capsys.readouterr().err
    result = invrender.segment_spine(
        ct["volume"], ct["affine"], ct["centroids"], gt=ct["gt"], overrides=SPINE_SHORT, device="cpu", seed=3
    )
    assert result.labels.shape == ct["volume"].shape
    assert np.array_equal(result.labels, np.asarray(nibabel.load(out / "spine_ct.labels.nii.gz").dataobj))
    assert list(result.meshes) == [22, 23]
    for label, name in ((22, "L3"), (23, "L4")):
        written = trimesh.load(out / f"spine_ct.{name}.ply", process=False)
        assert np.allclose(result.meshes[label].vertices, written.vertices, atol=1e-4)
        assert np.array_equal(result.meshes[label].faces, written.faces)
    metrics = json.loads((out / "spine_ct.metrics.json").read_text())
    assert result.metrics["steps"] == metrics["steps"] == 6 and len(result.losses) == 6
    assert result.metrics["voxels"] == metrics["voxels"] and result.metrics["vertebrae"] == metrics["vertebrae"]
    assert result.metrics["dice"] == pytest.approx(metrics["dice"], rel=1e-9)
    assert result.metrics["final_losses"] == pytest.approx(metrics["final_losses"], rel=1e-5)
    assert set(result.metrics["placement"]) == {"L3", "L4"}
    # world mm: each vertebra's body centroid (mm, not voxels of 3 mm) lies within its mesh's box
    for label, mesh in result.meshes.items():
        low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
        assert np.all((low < ct["world"][label]) & (ct["world"][label] < high)), (label, low, high)


def test_centroids_in_world_mm_as_a_mapping_or_rows_give_the_json_files_points(ct):
    """The three forms of centroids give the same fit; the mapping's run also reports its steps and
    leaves torch's global generator as it found it."""
    world = ct["world"]
    rows = np.array([[label, *point] for label, point in world.items()])
    steps = ["phases.0.steps=2", *SPINE_SHORT[1:]]
    torch.manual_seed(11)
    before = torch.get_rng_state()
    reported = []
    from_mapping = invrender.segment_spine(
        ct["volume"], ct["affine"], world, overrides=steps, progress=lambda *step: reported.append(step)
    )
    assert torch.equal(torch.get_rng_state(), before)
    assert [step[1:3] for step in reported] == [(0, 2), (1, 2)]
    from_rows = invrender.segment_spine(ct["volume"], ct["affine"], rows, overrides=steps)
    from_json = invrender.segment_spine(ct["volume"], ct["affine"], ct["centroids"], overrides=steps)
    for other in (from_rows, from_json):
        assert np.array_equal(from_mapping.labels, other.labels)
        for label, mesh in from_mapping.meshes.items():
            assert np.allclose(mesh.vertices, other.meshes[label].vertices, atol=1e-6)
    assert "dice" not in from_mapping.metrics  # no gt given


def l3_and(ct: dict, points: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """L3's centroid and `points` {label: (3,)}, world mm."""
    return {22: ct["world"][22], **points}


@pytest.mark.parametrize(
    ("given", "error", "needle"),
    [
        (lambda ct: {"volume": np.zeros((8, 8))}, invrender.InputError, "volume: image is 2D"),
        (lambda ct: {"volume": np.full((8, 8, 8), np.nan)}, invrender.InputError, "volume: image contains NaN"),
        (lambda ct: {"affine": np.eye(3)}, invrender.InputError, "affine: the voxel-to-world affine has shape (3, 3)"),
        (lambda ct: {"affine": np.full((4, 4), np.nan)}, invrender.InputError, "affine: the voxel-to-world affine con"),
        (lambda ct: {"affine": np.diag([1e-6, 1, 1, 1])}, invrender.InputError, "volume: voxel size (1e-06, 1, 1) mm"),
        (lambda ct: {"centroids": l3_and(ct, {})}, invrender.InputError, "centroids: a single centroid, L3 (22)"),
        (
            lambda ct: {"centroids": l3_and(ct, {27: np.zeros(3)})},
            invrender.InputError,
            "centroids: key 27: label 27 is not a VerSe vertebra code",
        ),
        (
            lambda ct: {"centroids": l3_and(ct, {23: np.array([0.0, 0.0, 1e4])})},
            invrender.InputError,
            "centroids: centroid of label 23 (L4) at voxel",
        ),
        (
            lambda ct: {"centroids": l3_and(ct, {23: np.array([0.0, np.nan, 0.0])})},
            invrender.InputError,
            "not three finite coordinates",
        ),
        (
            lambda ct: {"centroids": l3_and(ct, {23: ct["world"][22] + 0.1})},
            invrender.InputError,
            "centroids of L3 (22) and L4 (23) are 0.173 mm apart",
        ),
        (lambda ct: {"centroids": np.zeros((2, 3))}, invrender.InputError, "got an array of shape (2, 3)"),
        (lambda ct: {"centroids": []}, invrender.InputError, "centroids: no centroids"),
        (
            lambda ct: {"centroids": [{"label": 22, "X": 1, "Y": 1, "Z": 1}]},
            invrender.InputError,
            'centroids: not a VerSe centroid file: expected a list starting with {"direction"',
        ),
        (
            lambda ct: {"centroids": [ct["centroids"][0], {"label": 22, "X": float("inf"), "Y": 1, "Z": 1}]},
            invrender.InputError,
            "centroids: entry 1: coordinate inf is not a finite number",
        ),
        (lambda ct: {"gt": np.zeros((4, 4, 4), np.int16)}, invrender.InputError, "gt: label mask of shape (4, 4, 4)"),
        (lambda ct: {"gt": ct["gt"] + 0.5}, invrender.InputError, "gt: not a label mask: non-integer values"),
        (lambda ct: {"overrides": ["points.count=-1"]}, invrender.ConfigError, "points.count"),
        (lambda ct: {"overrides": "phases.0.steps=3"}, invrender.ConfigError, "a list of key=value"),
        (lambda ct: {"config": "nonexistent"}, invrender.ConfigError, "nonexistent"),
        (lambda ct: {"device": "cuda"}, invrender.ConfigError, "cuda"),
    ],
)
def test_segment_spine_raises_the_command_lines_errors(ct, given, error, needle):
    kwargs = {
        "volume": ct["volume"],
        "affine": ct["affine"],
        "centroids": ct["centroids"],
        "overrides": ["phases.0.steps=1"],
        **given(ct),
    }
    with pytest.raises(error) as caught:
        invrender.segment_spine(**kwargs)
    assert needle in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
