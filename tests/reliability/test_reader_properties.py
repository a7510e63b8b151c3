"""Property: every input reader either reads a file or refuses it with InputError (ConfigError for
input lists), whatever the bytes: random bytes and text, and JSON of the right shape with wrong
values (wrong types, NaN, huge numbers, deep nesting, missing keys). Never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from invrender.config import ConfigError
from invrender.core.geometry.meshes import read_mesh
from invrender.core.geometry.spline_io import FORMAT, read_splines, validate_splines
from invrender.core.io import InputError, read_json
from invrender.core.volumes import Volume, read_centroids
from invrender.inputs import expand_inputs

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folder():
    """One folder for the module: hypothesis runs many examples per test, a function-scoped tmp_path
    would be shared between them anyway."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def write(folder: Path, name: str, content: bytes | str) -> Path:
    path = folder / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(content)
    return path


# ---------------------------------------------------------------- strategies

#: Numbers where they are expected, including what breaks numbers: NaN, inf, beyond float64, booleans.
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.sampled_from([0, -1, 1e30, -1e30, 1e308, 2**63, 10**400, -(10**400), True, None, "1", [], {}]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=6))
#: Any JSON value, shallow or nested.
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def json_text(values: st.SearchStrategy) -> st.SearchStrategy[str]:
    """JSON text of `values` (NaN and Infinity written as JSON's non-standard constants), a deeply
    nested document, or the text cut short."""
    dumped = values.map(json.dumps)
    return st.one_of(
        dumped,
        dumped.flatmap(lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut])),
        st.sampled_from([nested(65), nested(1_000), nested(100_000), "1e400", "-1e400", "[1" + "0" * 5000 + "]"]),
    )


def any_bytes_or_text() -> st.SearchStrategy[bytes | str]:
    return st.one_of(st.binary(max_size=300), st.text(max_size=300))


# ---------------------------------------------------------------- JSON


@SETTINGS
@given(content=st.one_of(any_bytes_or_text(), json_text(VALUES)))
def test_read_json_reads_or_refuses(folder, content):
    try:
        read_json(write(folder, "any.json", content))
    except InputError:
        pass


# ---------------------------------------------------------------- spline JSON and its validator

POINTS = st.one_of(
    st.lists(st.lists(NUMBERS, min_size=2, max_size=2), max_size=4), st.lists(NUMBERS, max_size=3), VALUES
)
RECORDS = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"id": VALUES, "points": POINTS, "widths": st.one_of(st.lists(NUMBERS, max_size=4), VALUES)}
    ),
    POINTS,
    VALUES,
)
SPLINE_LISTS = st.one_of(st.lists(RECORDS, max_size=3), VALUES)
SPLINE_DOCUMENTS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "format": st.one_of(st.just(FORMAT), VALUES),
            "splines": SPLINE_LISTS,
            "frames": st.one_of(st.lists(st.one_of(st.fixed_dictionaries({"splines": SPLINE_LISTS}), VALUES)), VALUES),
        },
    ),
    st.lists(POINTS, max_size=3),  # a bare list of point lists
    st.lists(st.lists(POINTS, max_size=2), max_size=2),  # frames of them
    VALUES,
)


@SETTINGS
@given(content=st.one_of(any_bytes_or_text(), json_text(SPLINE_DOCUMENTS)), stack=st.booleans())
def test_spline_json_reads_and_validates_or_refuses(folder, content, stack):
    path = write(folder, "init.json", content)
    try:
        frames = read_splines(path)
        validate_splines(path, frames, (2, 32, 32) if stack else (32, 32))
    except InputError:
        pass


@SETTINGS
@given(content=st.binary(max_size=300).map(lambda b: b"\x93NUMPY" + b))
def test_spline_npy_reads_or_refuses(folder, content):
    try:
        read_splines(write(folder, "init.npy", content))
    except InputError:
        pass


# ---------------------------------------------------------------- meshes

TOKENS = st.one_of(
    st.integers(-3, 12).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e30", "1e400", "-0", "1.5", "9" * 30, "x", "", "//"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def lines(prefixes: list[str], width: int) -> st.SearchStrategy[str]:
    line = st.tuples(st.sampled_from(prefixes), st.lists(TOKENS, min_size=0, max_size=width)).map(
        lambda t: " ".join([t[0], *t[1]]).strip()
    )
    return st.lists(line, max_size=12).map("\n".join)


MESH_TEXT = {
    ".obj": lines(["v", "v", "f", "f", "vn", "vt", "o", "#"], 4),
    ".off": st.tuples(st.sampled_from(["OFF", "", "COFF"]), lines(["", "3"], 4)).map("\n".join),
    ".ply": st.tuples(
        st.lists(TOKENS, min_size=2, max_size=2).map(
            lambda n: (
                f"ply\nformat ascii 1.0\nelement vertex {n[0]}\nproperty float x\nproperty float y\n"
                f"property float z\nelement face {n[1]}\nproperty list uchar int vertex_indices\nend_header"
            )
        ),
        lines(["", "3"], 4),
    ).map("\n".join),
    ".rec": lines([""], 5),
    ".stl": lines(["solid", "facet normal", "outer loop", "vertex", "endloop", "endfacet"], 3),
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), suffix=st.sampled_from(sorted(MESH_TEXT)))
def test_meshes_read_or_refuse(folder, data, suffix):
    content = data.draw(st.one_of(any_bytes_or_text(), MESH_TEXT[suffix]))
    try:
        read_mesh(write(folder, f"mesh{suffix}", content))
    except InputError:
        pass


# ---------------------------------------------------------------- spine-seg centroids

VOLUME = Volume(np.zeros((8, 9, 10), np.float32), np.diag([1.5, 1.0, 2.0, 1.0]))
DIRECTIONS = st.one_of(st.lists(st.sampled_from(list("LRAPSIX")), max_size=4), VALUES)
CENTROIDS = st.one_of(
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {}, optional={"label": st.one_of(st.integers(0, 30), NUMBERS), **dict.fromkeys("XYZ", NUMBERS)}
            ),
            VALUES,
        ),
        max_size=4,
    ).flatmap(
        lambda rest: st.fixed_dictionaries({}, optional={"direction": DIRECTIONS}).map(lambda head: [head, *rest])
    ),
    VALUES,
)
CENTROID_LINES = st.lists(
    st.lists(st.one_of(st.integers(0, 30).map(str), TOKENS), max_size=5).map(", ".join), max_size=5
).map(lambda rows: "label,x,y,z\n" + "\n".join(rows))


@SETTINGS
@given(content=st.one_of(any_bytes_or_text(), json_text(CENTROIDS)))
def test_verse_centroid_json_reads_or_refuses(folder, content):
    try:
        read_centroids(write(folder, "ctd.json", content), VOLUME)
    except InputError:
        pass


@SETTINGS
@given(content=st.one_of(any_bytes_or_text(), CENTROID_LINES), space=st.sampled_from(["voxel", "world"]))
def test_centroid_lists_read_or_refuse(folder, content, space):
    try:
        read_centroids(write(folder, "ctd.csv", content), VOLUME, space)
    except InputError:
        pass


# ---------------------------------------------------------------- input lists

CELLS = st.one_of(st.text(max_size=8), st.sampled_from(["x=1", "~", "a" * 300, "a\x00b", "3", "-2", "1.5"]))
CSV_LISTS = st.lists(
    st.lists(CELLS, min_size=1, max_size=4).map(lambda cells: ",".join(cells)), min_size=0, max_size=5
).flatmap(
    lambda rows: st.lists(
        st.sampled_from(["input", "init", "cells", "psf", "phases.0.steps", "", '"']), min_size=1, max_size=4
    ).map(lambda header: "\n".join([",".join(header), *rows]))
)
#: The per-input options of mesh-fit, the command with the most kinds.
OPTION_TYPES = {"init": Path, "cells": int, "psf": Path}


@SETTINGS
@given(
    content=st.one_of(any_bytes_or_text(), CSV_LISTS, st.lists(CELLS, max_size=5).map("\n".join)),
    suffix=st.sampled_from([".csv", ".txt"]),
)
@example(content="~\x00", suffix=".txt")  # found by hypothesis: expanduser looked up a user named NUL
def test_input_lists_read_or_refuse(folder, content, suffix):
    try:
        expand_inputs([str(write(folder, f"list{suffix}", content))], option_types=OPTION_TYPES)
    except (InputError, ConfigError):
        pass
