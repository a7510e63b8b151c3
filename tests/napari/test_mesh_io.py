"""The napari plugin's meshes: `.mesh.ply` and multi-material `.rec` read as Surface layers in the
stack's physical coordinates, (z, y, x) as napari orders them, over the stack read with its voxel size;
spine-seg's vertebra meshes (world mm) over their CT and labels, NIfTI in any storage order or TIFF."""

import numpy as np
import pytest
import tifffile
import trimesh
from nibabel.affines import apply_affine

from invrender.cli import main
from invrender.core.geometry.meshes import Mesh, read_mesh, write_mesh
from invrender.core.io import InputError, write_tiff
from invrender.core.volumes import Volume, read_volume, write_nifti, write_on_grid
from invrender.napari.readers import get_mesh_reader, read_mesh_file, read_nifti_file, read_tiff_file
from invrender.napari.surfaces import mesh_from_surface


def sphere(centre, radius: float, subdivisions: int = 2) -> Mesh:
    ball = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(np.asarray(ball.vertices) + centre, np.asarray(ball.faces, dtype=np.int64))


def test_a_ply_mesh_reads_as_a_surface_with_its_coordinates_reversed(tmp_path):
    path = tmp_path / "cell.mesh.ply"
    write_mesh(path, sphere([10.0, 20.0, 30.0], 4.0))
    assert get_mesh_reader(str(path)) is read_mesh_file
    [((vertices, faces), attributes, kind)] = read_mesh_file(str(path))
    mesh = read_mesh(path)
    assert kind == "surface" and attributes["name"] == "cell mesh"
    np.testing.assert_array_equal(vertices, mesh.vertices[:, ::-1])  # x, y, z -> z, y, x
    np.testing.assert_array_equal(faces, mesh.faces)
    back = mesh_from_surface((vertices, faces))
    np.testing.assert_array_equal(back.vertices, mesh.vertices)


def test_a_foam_reads_as_one_closed_surface_per_cell(tmp_path):
    cells = [sphere([8.0, 8.0, 8.0], 3.0), sphere([20.0, 9.0, 7.0], 2.5, subdivisions=1)]
    foam = Mesh(
        np.concatenate([c.vertices for c in cells]),
        np.concatenate([cells[0].faces, cells[1].faces + len(cells[0].vertices)]),
        np.concatenate([np.tile([cell, 0], (len(c.faces), 1)) for cell, c in enumerate(cells, start=1)]),
    )
    path = tmp_path / "embryo.mesh.rec"
    write_mesh(path, foam)
    layers = read_mesh_file(str(path))
    assert [attributes["name"] for _, attributes, _ in layers] == ["embryo mesh cell 1", "embryo mesh cell 2"]
    for ((vertices, faces), _, kind), cell in zip(layers, cells):
        assert kind == "surface" and faces.max() == len(vertices) - 1
        np.testing.assert_allclose(vertices, cell.vertices[:, ::-1], atol=1e-6)  # .rec keeps 9 digits
        np.testing.assert_array_equal(faces, cell.faces)
        assert trimesh.Trimesh(vertices, faces, process=False).is_watertight


def test_a_fitted_mesh_lies_over_its_anisotropic_stack(tmp_path):
    """`mesh-fit` on a stack of 2 x 1 x 1 voxels starts from a sphere on the bright region, in
    physical units; read back, the mesh's centre is where the stack's brightness is in napari's
    world coordinates (voxel index times the stack layer's scale)."""
    source = tmp_path / "blob.ply"
    blob = trimesh.creation.icosphere(subdivisions=2)
    blob.vertices *= [1.0, 0.7, 0.5]
    source.write_bytes(blob.export(file_type="ply"))
    assert (
        main(["synth", "mesh", str(source), "--size", "16", "--sigma", "1", "--noise", "0", "--out", str(tmp_path)])
        == 0
    )
    synthetic = tifffile.imread(tmp_path / "blob.tif")
    z = np.arange(16) // 2  # squeezed to 8 slices of 2 units: an anisotropic stack of the same blob
    stack = np.stack([synthetic[z == k].mean(axis=0) for k in range(8)])
    write_tiff(tmp_path / "stack.tif", stack.astype(np.float32), voxel_size=(2.0, 1.0, 1.0), unit="um")
    args = ["mesh-fit", str(tmp_path / "stack.tif"), "--out", str(tmp_path / "out"), "--device", "cpu", "-q"]
    assert main([*args, "phases.0.steps=2", "init.subdivisions=1"]) == 0

    [(image, image_attributes, _)] = read_tiff_file(str(tmp_path / "stack.tif"))
    [((vertices, _), mesh_attributes, _)] = read_mesh_file(str(tmp_path / "out" / "stack.mesh.ply"))
    assert mesh_attributes["units"] == image_attributes["units"] == ("micrometer",) * 3  # from stack.render.tif
    scale = np.asarray(image_attributes["scale"])
    assert scale == pytest.approx([2.0, 1.0, 1.0])
    bright = np.where(image > 0.5 * image.max(), image, 0.0)
    index = np.stack(np.meshgrid(*map(np.arange, image.shape), indexing="ij"), axis=-1)
    world_centre = (bright[..., None] * index * scale).reshape(-1, 3).sum(axis=0) / bright.sum()
    assert np.abs(vertices.mean(axis=0) - world_centre).max() < 0.5
    assert (vertices.min(axis=0) >= 0).all() and (vertices.max(axis=0) <= scale * (np.array(image.shape) - 1)).all()


def test_other_meshes_are_left_to_other_readers(tmp_path):
    for name in ("x.obj", "x.ply", "spine.L7.ply", "spine.L1.obj", "template.ply"):
        assert get_mesh_reader(str(tmp_path / name)) is None, name


def read_mesh_file_for(path):
    """The layers of a mesh file as napari gets them from the plugin."""
    reader = get_mesh_reader(str(path))
    assert reader is not None
    return reader(str(path))


def box_in_index_space() -> Mesh:
    """The closed surface around the voxels i 3..8, j 4..11, k 2..6 (a label's block), in voxel indices."""
    low, high = np.array([3, 4, 2]) - 0.5, np.array([8, 11, 6]) + 0.5
    box = trimesh.creation.box(bounds=[low, high])
    return Mesh(np.asarray(box.vertices), np.asarray(box.faces, dtype=np.int64))


#: Voxel-to-world affines (mm) of one grid stored in other orders: RAS, LPS as from DICOM, PIR (axes
#: permuted), and one turned 20 degrees about z; all anisotropic and moved off the origin.
TURN = np.deg2rad(20.0)
STORAGE = {
    "RAS": np.diag([0.8, 0.8, 2.5, 1.0])
    + np.array([[0, 0, 0, -12.0], [0, 0, 0, 30.0], [0, 0, 0, 100.0], [0, 0, 0, 0]]),
    "LPS": np.array([[-0.7, 0, 0, 40.0], [0, -0.7, 0, 25.0], [0, 0, 3.0, -200.0], [0, 0, 0, 1.0]]),
    "PIR": np.array([[0, 0, 1.2, -5.0], [-0.9, 0, 0, 7.0], [0, -2.0, 0, 60.0], [0, 0, 0, 1.0]]),
    "turned": np.array(
        [
            [np.cos(TURN) * 0.6, -np.sin(TURN) * 0.6, 0, 10.0],
            [np.sin(TURN) * 0.6, np.cos(TURN) * 0.6, 0, -20.0],
            [0, 0, 1.5, 5.0],
            [0, 0, 0, 1.0],
        ]
    ),
}


@pytest.mark.parametrize("storage", list(STORAGE))
@pytest.mark.parametrize("space", ["RAS", "LPS"])
def test_a_vertebra_mesh_lies_over_its_ct_whatever_order_the_ct_is_stored_in(tmp_path, storage, space):
    """spine-seg's `<stem>.L3.ply` holds world mm; napari opens the CT and its labels on their voxel
    grid (i, j, k) times the spacing. Read by the plugin, the mesh of a label's block lies on that
    block's faces in those coordinates, whatever the affine and whichever frame the PLY says."""
    affine = STORAGE[storage]
    labels = np.zeros((12, 16, 9), dtype=np.int16)
    labels[3:9, 4:12, 2:7] = 22
    write_nifti(tmp_path / "spine.labels.nii.gz", labels, Volume(labels, affine))
    box = box_in_index_space()
    ras = apply_affine(affine, box.vertices)
    stored = ras * [-1.0, -1.0, 1.0] if space == "LPS" else ras
    write_mesh(tmp_path / "spine.L3.ply", Mesh(stored, box.faces), space=space)

    [((vertices, faces), attributes, kind)] = read_mesh_file_for(tmp_path / "spine.L3.ply")
    [(label_layer, label_attributes, _)] = read_nifti_file(str(tmp_path / "spine.labels.nii.gz"))
    assert kind == "surface" and attributes["name"] == "spine L3"
    assert attributes["units"] == label_attributes["units"]  # napari uses units only when all layers agree
    index = vertices / np.asarray(label_attributes["scale"])  # napari world -> the labels layer's voxels
    np.testing.assert_allclose(index, box.vertices, atol=1e-4)  # PLY floats: 1e-4 voxels
    np.testing.assert_array_equal(faces, box.faces)
    assert (label_layer[3:9, 4:12, 2:7] == 22).all()


def test_a_vertebra_mesh_lies_over_a_tiff_ct_in_micrometres(tmp_path):
    """A micro-CT stored as a TIFF (z, y, x) in micrometres: spine-seg writes its labels as a TIFF on
    that grid in that unit, and the plugin puts the mesh (world mm) over both as napari shows them."""
    ct = tmp_path / "mouse.tif"
    write_tiff(ct, np.random.default_rng(0).normal(size=(9, 16, 12)), voxel_size=(25.0, 10.0, 8.0), unit="um")
    volume = read_volume(ct)  # (x, y, z) in mm
    labels = np.zeros(volume.shape, dtype=np.int32)
    labels[3:9, 4:12, 2:7] = 22
    write_on_grid(tmp_path / "mouse.labels.tif", labels, volume)
    box = box_in_index_space()
    write_mesh(tmp_path / "mouse.L3.ply", Mesh(apply_affine(volume.affine, box.vertices), box.faces), space="RAS")

    [(image, image_attributes, _)] = read_tiff_file(str(ct))
    [(label_layer, label_attributes, kind)] = read_tiff_file(str(tmp_path / "mouse.labels.tif"))
    assert kind == "labels" and label_layer.shape == image.shape == (9, 16, 12)
    assert label_attributes["scale"] == image_attributes["scale"] == pytest.approx((25.0, 10.0, 8.0))
    assert label_attributes["units"] == image_attributes["units"] == ("micrometer",) * 3
    np.testing.assert_array_equal(label_layer, labels.transpose(2, 1, 0))
    [((vertices, _), mesh_attributes, _)] = read_mesh_file_for(tmp_path / "mouse.L3.ply")
    assert mesh_attributes["units"] == image_attributes["units"]
    index_zyx = vertices / np.asarray(image_attributes["scale"])
    np.testing.assert_allclose(index_zyx, box.vertices[:, ::-1], atol=1e-4)


def test_a_vertebra_mesh_without_its_labels_is_refused_in_one_line(tmp_path):
    box = box_in_index_space()
    write_mesh(tmp_path / "spine.L3.ply", box, space="RAS")
    with pytest.raises(InputError) as caught:
        read_mesh_file_for(tmp_path / "spine.L3.ply")
    message = str(caught.value)
    assert "spine.L3.ply" in message and "spine.labels.nii.gz" in message and "spine.labels.tif" in message
    assert "\n" not in message
