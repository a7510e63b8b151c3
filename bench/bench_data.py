"""What the benchmarks share: the version of the code they measure, and data sets made by that code.

A synthetic set is written by invrender's own generators, so a set left in `bench/out` by other code
(an older generator, another renderer) or with other settings is not the set a table claims to
measure: `dataset` makes it again unless its stamp says it was made by this code with these settings.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

STAMP = "bench_stamp.json"


def code_version() -> str:
    """A hash of the sources and configs of the invrender package that is imported (a worktree's,
    with its PYTHONPATH): results cached by another version of the code are not reused."""
    import invrender

    root = Path(invrender.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def dataset(folder: Path, make: Callable[..., object], **settings) -> Path:
    """`folder` holding the set that `make(folder, **settings)` writes (settings: JSON values), made
    again (the folder emptied first) unless its stamp `bench_stamp.json` records this code's
    `code_version` and these settings. The stamp is written last, so a set whose making was
    interrupted is made again."""
    want = json.loads(json.dumps({"code": code_version(), **settings}))  # as read back: tuples are lists
    stamp = folder / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    make(folder, **settings)
    stamp.write_text(json.dumps(want, indent=1) + "\n")
    return folder


def synth_cli(folder: Path, arguments: list[str]) -> None:
    """Write a set with the command line, `invrender synth ARGUMENTS --out FOLDER`, as a user would."""
    subprocess.run([sys.executable, "-m", "invrender.cli", "synth", *arguments, "--out", str(folder)], check=True)
