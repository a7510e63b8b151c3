"""The layering of the package (pyproject.toml's import-linter contracts): kept by the code as it
is, and broken by one wrong import, so that the check in `make test` can fail."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(project / "pyproject.toml")],
        cwd=project,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def copy_project(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "invrender", tmp_path / "invrender", ignore=shutil.ignore_patterns("__pycache__", "*.npz", "*.ply")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_layers(tmp_path):
    result = lint_imports(copy_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, wrong_import, contract",
    [
        ("core/io.py", "import invrender.runner", "methods over the command layer over core"),
        ("core/metrics.py", "import invrender.methods.spine_seg.fit", "methods over the command layer over core"),
        ("methods/acdr/models.py", "import invrender.methods.cell_seg.stage2", "no method imports another"),
        (
            "core/geometry/polygons.py",
            "import invrender.core.render.polygon2d",
            "no import cycles between sibling modules",
        ),
    ],
)
def test_a_wrong_import_breaks_a_contract(tmp_path, module, wrong_import, contract):
    project = copy_project(tmp_path)
    path = project / "invrender" / module
    path.write_text(path.read_text() + f"\n{wrong_import}  # deliberately wrong\n")
    result = lint_imports(project)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout
