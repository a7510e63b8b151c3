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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from invrender.config import ConfigError
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
    """Split trailing CLI arguments into inputs and `key=value` config overrides."""
    overrides = [a for a in arguments if "=" in a and not Path(a).exists()]
    return [a for a in arguments if a not in overrides], overrides


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
        path = Path(arg)
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
            InputItem(_relative_to(path, line), source=f"{path} line {n}")
            for n, line in lines
            if line and not line.startswith("#")
        ]

    rows = list(csv.reader(text.splitlines()))
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
                kind = option_types[name]
                options[name] = _relative_to(path, value) if kind is Path else kind(value)
            else:
                overrides.append(f"{name}={value}")
        items.append(InputItem(_relative_to(path, cells["input"]), options, tuple(overrides), f"{path} line {n}"))
    return items


def _relative_to(list_path: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else list_path.parent / path


def select_part(items: list[T], num_parts: int, part_id: int) -> list[T]:
    """Every `num_parts`-th input starting at `part_id`: parts are disjoint and cover all inputs,
    and a part's inputs do not depend on which other parts run."""
    return items[part_id::num_parts]


def parse_voxel_size(text: str | None) -> tuple[float, float, float] | None:
    """`--voxel-size z,y,x` as three positive floats; None when not given."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values) or min(values) <= 0:
        raise ConfigError(f"--voxel-size {text!r}: expected three positive numbers z,y,x")
    return values
