"""Every Python example in the README's "Python" section runs, as a user would run it from the
repository's root (here a copy of that layout: `data/` linked into a fresh folder, plus the CT and
centroid file the spine-seg example opens, made from the real VerSe mask)."""

import re
from pathlib import Path

import pytest

from helpers import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]


def python_examples() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


CALLS = ["refine_splines", "fit_mesh", "segment_cells", "segment_spine", "acdr.train", "acdr.load", "acdr.evaluate"]


def example_name(code: str) -> str:
    return next(call for call in CALLS if f"invrender.{call}(" in code)


def test_the_python_section_has_an_example_per_method():
    examples = python_examples()
    assert all(any(f"invrender.{call}(" in example for example in examples) for call in CALLS)


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    from invrender.methods.spine_seg.synth import write_ct_dataset

    folder = tmp_path_factory.mktemp("user")
    (folder / "data").symlink_to(ROOT / "data")
    verse = SHARED_DATA / "verse"
    made = write_ct_dataset(
        verse / "sub-verse004_seg-vert_msk.nii.gz",
        folder / "made",
        verse / "sub-verse004_seg-subreg_ctd.json",
        levels=(22, 23),
        spacing=3.0,
    )
    Path(made["ct"]).rename(folder / "ct.nii.gz")
    Path(made["ctd"]).rename(folder / "ct_ctd.json")
    return folder


@pytest.mark.parametrize("example", python_examples(), ids=example_name)
def test_readme_example_runs(example, user_folder, monkeypatch, capsys):
    monkeypatch.chdir(user_folder)
    exec(compile(example, "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip()  # every example prints what it found
