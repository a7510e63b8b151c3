"""Settings checked against the keys they may have and the values each key may take.

An unknown key is refused in one line that names it and the nearest valid key, so that a misspelt
setting cannot be silently ignored (`check_keys`). A value is checked against its `Rule` (its type,
int vs float vs bool vs str vs list, and its range), so that a value that cannot work is refused
before any work starts, in one line naming the key, the value and what is allowed (`check_values`).
A method declares one rule per leaf key of its default config (dotted keys, e.g. "model.knots");
`uncovered_keys` lists the keys a declaration misses, for a test that keeps it complete.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any


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


class BadValue(ValueError):
    """A value its rule refuses; the message is "<key> <value>: must be <what is allowed>"."""

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(f"{key} {shown(value)}: must be {allowed}")


def shown(value: Any) -> str:
    """A config value as the user would write it: null, true, 'text', 3, 0.5, [1, 2], {}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    return str(value)


class Rule:
    """What one config value may be: `allowed` says it in words (for the message), `test` decides.
    Rules of containers (`list_of`, `mapping_of`, ...) override `check` to name the item at fault."""

    def __init__(self, allowed: str, test: Callable[[Any], bool] = lambda value: True):
        self.allowed, self.test = allowed, test

    def check(self, value: Any, key: str) -> None:
        """BadValue naming `key` (dotted) unless `value` is allowed."""
        if not self.test(value):
            raise BadValue(key, value, self.allowed)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int | None = None, high: int | None = None) -> Rule:
    """An int (not a float, not a bool) in [low, high] (either end may be open: None)."""
    if low is not None and high is not None:
        allowed = f"an integer from {low} to {high}"
    elif low is not None:
        allowed = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")
    else:
        allowed = "an integer" if high is None else f"an integer <= {high}"
    return Rule(
        allowed,
        lambda v: _is_int(v) and (low is None or v >= low) and (high is None or v <= high),
    )


def number(
    low: float | None = None, high: float | None = None, *, open_low: bool = False, open_high: bool = False
) -> Rule:
    """A finite int or float (not a bool) between low and high, each end included unless open."""
    ends = ([f"{'>' if open_low else '>='} {low:g}"] if low is not None else []) + (
        [f"{'<' if open_high else '<='} {high:g}"] if high is not None else []
    )
    allowed = "a number " + " and ".join(ends) if ends else "a number"
    if low is not None and high is not None and not (open_low or open_high):
        allowed = f"a number from {low:g} to {high:g}"

    def test(v: Any) -> bool:
        if not _is_number(v):
            return False
        above = low is None or (v > low if open_low else v >= low)
        return above and (high is None or (v < high if open_high else v <= high))

    return Rule(allowed, test)


def one_of(*choices: Any) -> Rule:
    """One of `choices` (compared with their type: "1" is not 1)."""
    return Rule(
        f"one of {', '.join(shown(c) for c in choices)}" if len(choices) > 1 else shown(choices[0]),
        lambda v: any(type(v) is type(c) and v == c for c in choices),
    )


def either(*rules: Rule) -> Rule:
    """What any one of `rules` (simple rules: their `test`) allows."""
    return Rule(" or ".join(r.allowed for r in rules), lambda v: any(r.test(v) for r in rules))


class _Optional(Rule):
    def __init__(self, rule: Rule):
        super().__init__(f"null or {rule.allowed}", lambda v: v is None or rule.test(v))
        self.rule = rule

    def check(self, value: Any, key: str) -> None:
        if value is None:
            return
        if type(self.rule) is Rule:  # a simple rule: the message says null is allowed too
            super().check(value, key)
        else:
            self.rule.check(value, key)


def optional(rule: Rule) -> Rule:
    """null (unset), or what `rule` allows."""
    return _Optional(rule)


class _ListOf(Rule):
    def __init__(self, item: Rule, length: int | None):
        size = "a non-empty list" if length is None else f"a list of {length}"
        super().__init__(f"{size}, each {item.allowed}")
        self.item, self.length = item, length

    def check(self, value: Any, key: str) -> None:
        is_list = isinstance(value, Sequence) and not isinstance(value, str)  # a list, or OmegaConf's ListConfig
        if not is_list or not value or (self.length is not None and len(value) != self.length):
            raise BadValue(key, value, self.allowed)
        for i, item in enumerate(value):
            self.item.check(item, f"{key}.{i}")


def list_of(item: Rule, length: int | None = None) -> Rule:
    """A non-empty list (of exactly `length` items if given), each item checked by `item` (and named
    by its index, e.g. "psf.sigma.2")."""
    return _ListOf(item, length)


class _MappingOf(Rule):
    def __init__(self, item: Rule, what: str):
        super().__init__(f"a non-empty mapping of {what}, each {item.allowed}")
        self.item = item

    def check(self, value: Any, key: str) -> None:
        if not isinstance(value, Mapping) or not value:
            raise BadValue(key, value, self.allowed)
        for name, item in value.items():
            self.item.check(item, f"{key}.{name}")


def mapping_of(item: Rule, what: str = "values") -> Rule:
    """A non-empty mapping from names to values that `item` allows (each named "<key>.<name>")."""
    return _MappingOf(item, what)


ANY = Rule("anything")  # a free-form value: its reader checks it, or every value works
BOOLEAN = Rule("true or false", lambda v: isinstance(v, bool))
STRING = Rule("a non-empty string", lambda v: isinstance(v, str) and v != "")
NUMBER = number()
POSITIVE_INT = integer(1)
NON_NEGATIVE_INT = integer(0)
POSITIVE = number(0, open_low=True)
NON_NEGATIVE = number(0)
PROBABILITY = number(0, 1)  # a fraction, both ends included
SEED = integer(0, 2**32 - 1)  # numpy's (legacy) seeds, which torch takes too
#: Loss weights (`loss:`), their names checked against the loss registry elsewhere; 0 turns a term off.
WEIGHTS = mapping_of(NON_NEGATIVE, "loss weights")


def check_values(values: Mapping, rules: Mapping[str, Rule], where: str = "", required: bool = True) -> None:
    """BadValue for the first value of `values` (a config as plain containers) that its rule in
    `rules` (dotted key -> Rule) refuses. where: the dotted path of `values` (named in the message).
    A key that is missing (deleted with `~key`) is refused too, unless not `required`."""
    prefix = f"{where}." if where else ""
    missing = object()
    for key, rule in rules.items():
        value = _select(values, key, missing)
        if value is missing and required:
            raise ValueError(f"{prefix}{key} is not set: it must be {rule.allowed}")
        if value is not missing:
            rule.check(value, prefix + key)


def _select(values: Any, key: str, missing: Any) -> Any:
    for part in key.split("."):
        if not isinstance(values, Mapping) or part not in values:
            return missing
        values = values[part]
    return values


def uncovered_keys(default: Mapping, rules: Mapping[str, Rule]) -> tuple[list[str], list[str]]:
    """(leaf keys of `default` without a rule, rules for keys that `default` does not have). A rule
    for a mapping covers everything under it; a list is a leaf."""
    missing: list[str] = []

    def walk(values: Mapping, where: str) -> None:
        for name, value in values.items():
            key = f"{where}.{name}" if where else str(name)
            if key not in rules and isinstance(value, Mapping) and value:
                walk(value, key)
            elif key not in rules:
                missing.append(key)

    walk(default, "")
    absent = object()
    return missing, [key for key in rules if _select(default, key, absent) is absent]
