"""The plugin's npe2 manifest: valid, registered through the `napari.manifest` entry point, every
command importable, and napari offering the plugin's readers and writers for invrender's files."""

import subprocess
import sys
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")


def manifest():
    return npe2.PluginManifest.from_distribution("invrender")


def test_the_installed_manifest_is_valid_and_its_commands_import():
    plugin = manifest()
    assert plugin.name == "invrender"
    plugin.validate_imports()  # raises if a command's python_name does not import


def test_npe2_validate_passes():
    npe2_command = Path(sys.executable).parent / "npe2"
    if not npe2_command.exists():
        pytest.skip("the npe2 command is not installed beside this Python")
    done = subprocess.run([str(npe2_command), "validate", "invrender"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout.lower()


@pytest.fixture(scope="module")
def plugins():
    manager = npe2.PluginManager()
    manager.register(manifest())
    return manager


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("worms.splines.json", "invrender.get_json_reader"),
        ("worms.json", "invrender.get_json_reader"),
        ("x.polygon.json", "invrender.get_json_reader"),
        ("stack.mesh.ply", "invrender.get_mesh_reader"),
        ("embryo.mesh.rec", "invrender.get_mesh_reader"),
        ("spine_ct.L3.ply", "invrender.get_mesh_reader"),
        ("spine_ct.T12.ply", "invrender.get_mesh_reader"),
        ("stack.tif", "invrender.get_tiff_reader"),
        ("nuclei.labels.tif", "invrender.get_tiff_reader"),
        ("ct.labels.nii.gz", "invrender.get_nifti_reader"),
    ],
)
def test_napari_offers_the_readers_for_invrenders_files(plugins, name, command):
    assert command in [reader.command for reader in plugins.iter_compatible_readers([name])]


def test_napari_offers_the_folder_readers_for_a_folder_only(plugins, tmp_path):
    """The CTC and DICOM folder readers, for a folder only: a pattern matching every file would put
    invrender beside napari's own reader for every other file, and napari would ask which to use."""
    folder_readers = {"invrender.get_ctc_reader", "invrender.get_dicom_reader"}
    assert folder_readers <= {reader.command for reader in plugins.iter_compatible_readers([str(tmp_path)])}
    for name in ("movie.png", "t000.tif", "scan.czi"):
        assert not folder_readers & {reader.command for reader in plugins.iter_compatible_readers([name])}


@pytest.mark.parametrize(
    ("layer_type", "command"), [("shapes", "invrender.write_splines"), ("labels", "invrender.write_labels")]
)
def test_napari_offers_the_writers_for_shapes_and_labels(plugins, layer_type, command):
    assert command in [writer.command for writer in plugins.iter_compatible_writers([layer_type])]
