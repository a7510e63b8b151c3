"""Settings checked against the keys they may have: an unknown key is refused in one line that
names it and the nearest valid key, so that a misspelt setting cannot be silently ignored."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


def check_keys(values: Mapping, allowed: Iterable[str], where: str = "") -> None:
    """ValueError for the first key of `values` that is not in `allowed`. where: the dotted path of
    `values` in its config, e.g. "phases.1" (empty at the top)."""
    allowed = sorted(allowed)
    prefix = f"{where}." if where else ""
    for key in values:
        if key not in allowed:
            nearest = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f" (did you mean {prefix}{nearest[0]}?)" if nearest else f" (valid here: {', '.join(allowed)})"
            raise ValueError(f"unknown key {prefix}{key}{hint}")
