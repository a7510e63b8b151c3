"""docs/make_pictures.py: `make demo-all`'s pictures copied into docs/ under stable names, all or
none, and every one of them shown in the README."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("make_pictures", ROOT / "docs" / "make_pictures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_demo(folder: Path, sources) -> None:
    for source in sources:
        (folder / source).parent.mkdir(parents=True, exist_ok=True)
        (folder / source).write_bytes(source.encode())  # each file's content names it


def test_every_picture_is_copied_under_its_stable_name(tmp_path, capsys):
    script = load_script()
    fake_demo(tmp_path / "demo", script.PICTURES.values())
    assert script.main([str(tmp_path / "demo"), str(tmp_path / "docs")]) == 0
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == sorted(script.PICTURES)
    for name, source in script.PICTURES.items():
        assert (tmp_path / "docs" / name).read_bytes() == source.encode()
        method, figure, extension = name.split(".")
        assert method and figure and extension == "png"
    assert f"copied {len(script.PICTURES)} pictures" in capsys.readouterr().out


def test_a_missing_picture_is_an_error_and_nothing_is_copied(tmp_path, capsys):
    script = load_script()
    sources = list(script.PICTURES.values())
    fake_demo(tmp_path / "demo", sources[:-1])
    assert script.main([str(tmp_path / "demo"), str(tmp_path / "docs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("make_pictures: error: 1 picture(s) missing") and sources[-1] in err
    assert not (tmp_path / "docs").exists()


def test_the_readme_shows_every_picture():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pictures = readme.split("\n## Pictures\n", 1)[1].split("\n## ", 1)[0]
    for name in load_script().PICTURES:
        assert f"docs/{name}" in pictures, name
