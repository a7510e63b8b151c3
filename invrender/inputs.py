"""What a command runs on: input files from paths, folders, globs and input lists; shards of them.

An input list is a text file with one path per line (`.txt`), or a CSV file (`.csv`) with an
`input` column and optional per-input columns: a column named after one of the method's per-input
options (e.g. `init`) sets that option for its row; any other column is a config override
(`schedule.seeds` = 16 becomes `schedule.seeds=16` for that input). Relative paths in a list are
relative to the list's folder, so a list and its data can move together.
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from invrender.core.io import InputError

IMAGE_SUFFIXES = (".tif", ".tiff")
LIST_SUFFIXES = (".txt", ".csv")
T = TypeVar("T")


@dataclass
class InputItem:
    """One input file and what is particular to it."""

    path: Path
    options: dict[str, Any] = field(default_factory=dict)  # per-input method options, e.g. {"init": Path}
    overrides: tuple[str, ...] = ()  # per-input config overrides, e.g. ("schedule.seeds=16",)
    source: str = ""  # where the item was listed ("runs.csv line 4"), for error messages


def split_arguments(arguments: list[str]) -> tuple[list[str], list[str]]:
    """Split trailing CLI arguments into inputs and `key=value` config overrides.

    An argument that names an existing file or folder, or a glob that matches something, is an input
    even if it holds '=' (`eq=dir/*.tif`); so is one whose key (before the first '=') holds '*', or '/'
    outside Hydra's own groups (`hydra/launcher=joblib`), which a config key never does: a path that
    does not exist, kept for its job to report."""
    overrides = [a for a in arguments if _is_override(a)]
    return [a for a in arguments if a not in overrides], overrides


def _is_override(argument: str) -> bool:
    if "=" not in argument or _exists(Path(argument)):
        return False
    if any(ch in argument for ch in "*?[") and glob.glob(argument):
        return False
    key = argument.split("=", 1)[0].lstrip("+~")  # Hydra's prefixes: +key=value, ~key=value
    return "*" not in key and ("/" not in key or key.startswith("hydra/"))


@dataclass(frozen=True)
class InputOption:
    """An option of a method command that an input list (.csv) may also set per input, in a column of
    its name: `--init F` gives every input F, an `init` column each its own."""

    type: type  # what a value is read as, on the command line and in the list (Path, int, ...)
    help: str


def _exists(path: Path) -> bool:
    """Path.exists, False for names the system cannot even look up (too long, NUL bytes)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def expand_inputs(
    arguments: list[str],
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
    option_types: dict[str, type] | None = None,
    keep_folders: bool = False,
) -> list[InputItem]:
    """Files as given, folders expanded to their inputs (sorted), globs expanded, input lists read.
    With `keep_folders`, a folder is one input (e.g. a time-lapse sequence).

    A path that does not exist is kept, so that its job reports it as a bad input. An input named
    twice runs once (the first mention wins).
    """
    items: list[InputItem] = []
    for arg in arguments:
        path = _usable(Path(arg))
        if path.is_dir() and keep_folders:
            items.append(InputItem(path))
        elif path.is_dir():
            items += [InputItem(p) for p in sorted(path.iterdir()) if p.is_file() and _has_suffix(p, suffixes)]
        elif any(ch in arg for ch in "*?[") and not path.exists():
            items += [InputItem(Path(p)) for p in sorted(glob.glob(arg)) if _has_suffix(Path(p), suffixes)]
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES and not _has_suffix(path, suffixes):
            items += read_input_list(path, option_types or {})
        else:
            items.append(InputItem(path))
    seen: set[Path] = set()
    return [item for item in items if not (item.path.resolve() in seen or seen.add(item.path.resolve()))]


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.name.lower().endswith(suffixes)


def read_input_list(path: Path, option_types: dict[str, type]) -> list[InputItem]:
    """Read a `.txt` list (one path per line; blank lines and `#` comments skipped) or a `.csv` list."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read input list: {err}") from None
    if path.suffix.lower() == ".txt":
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
        return [
            InputItem(_relative_to(path, line, f"line {n}"), source=f"{path} line {n}")
            for n, line in lines
            if line and not line.startswith("#")
        ]

    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as err:  # e.g. a cell beyond the csv module's field size limit
        raise InputError(path, f"not a readable CSV list: {err}") from None
    if not rows:
        raise InputError(path, "empty input list: expected a header row with an 'input' column")
    header = [name.strip() for name in rows[0]]
    if "input" not in header:
        raise InputError(path, f"no 'input' column in the header (columns: {', '.join(header)})")
    items = []
    for n, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InputError(path, f"line {n}: {len(row)} cells, but the header has {len(header)}")
        cells = {name: cell.strip() for name, cell in zip(header, row)}
        if not cells["input"]:
            raise InputError(path, f"line {n}: empty 'input' cell")
        options: dict[str, Any] = {}
        overrides = []
        for name, value in cells.items():
            if name == "input" or not value:
                continue
            if name in option_types:
                options[name] = _option(path, f"line {n}", name, value, option_types[name])
            else:
                overrides.append(f"{name}={value}")
        items.append(
            InputItem(_relative_to(path, cells["input"], f"line {n}"), options, tuple(overrides), f"{path} line {n}")
        )
    return items


def _option(list_path: Path, where: str, name: str, value: str, kind: type) -> Any:
    """A per-input option's cell as its type: a path relative to the list, or e.g. an int."""
    if kind is Path:
        return _relative_to(list_path, value, f"{where}: {name}")
    try:
        return kind(value)
    except ValueError:
        raise InputError(list_path, f"{where}: {name} {value!r} is not of type {kind.__name__}") from None


def _relative_to(list_path: Path, value: str, where: str) -> Path:
    try:
        value = os.path.expanduser(value)  # as the shell: `~nobody` stays as written (Path's raises)
    except ValueError:  # `~` and a NUL byte: the user's name cannot be looked up; _usable refuses it
        pass
    path = Path(value)
    return _usable(path if path.is_absolute() else list_path.parent / path, list_path, where)


def _usable(path: Path, list_path: Path | None = None, where: str = "") -> Path:
    """`path`, unless the system cannot even look it up (a NUL byte, a name too long, a folder it may
    not search): InputError naming the list and line it came from, else the path itself."""
    try:
        path.is_dir()
        path.resolve()
    except (OSError, ValueError) as err:
        problem = f"not a usable path ({getattr(err, 'strerror', None) or err})"
        if list_path is None:
            raise InputError(path, problem) from None
        raise InputError(list_path, f"{where}: {str(path)[-80:]!r} is {problem}") from None
    return path


def select_part(items: list[T], num_parts: int, part_id: int) -> list[T]:
    """Every `num_parts`-th input starting at `part_id`: parts are disjoint and cover all inputs,
    and a part's inputs do not depend on which other parts run."""
    return items[part_id::num_parts]
