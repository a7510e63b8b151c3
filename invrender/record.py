"""The run record: one `manifest.json` schema for every kind of run in an output folder.

Every record has `kind` (run: jobs over inputs; sweep: a -m run's jobs; train: a training run),
`record_version`, the command line, host, process id, package versions and the time it was last
updated, besides what its kind records (inputs and their statuses; the sweep's jobs; epochs,
best score and checkpoints). `invrender report` reads all three.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from invrender.core.io import write_json

RECORD_VERSION = 1
KINDS = ("run", "sweep", "train")


def package_versions(
    names: tuple[str, ...] = ("invrender", "torch", "numpy", "scipy", "scikit-image", "tifffile", "hydra-core"),
) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_run_record(path: str | os.PathLike, kind: str, fields: dict[str, Any]) -> None:
    """Write (atomically) the record of a run of `kind` with its own `fields`."""
    if kind not in KINDS:
        raise ValueError(f"unknown run record kind {kind!r}; known: {', '.join(KINDS)}")
    record = {
        "kind": kind,
        "record_version": RECORD_VERSION,
        **fields,
        "command": sys.argv,
        "host": platform.node(),
        "pid": os.getpid(),
        "versions": package_versions(),
        "updated": now(),
    }
    write_json(Path(path), record)


def recorded_outputs(folder: Path) -> set[Path]:
    """Every output (resolved) listed by the run records in `folder`, shards' and sweep jobs'
    included; a record that cannot be read lists nothing."""
    outputs: set[Path] = set()
    for path in [*folder.glob("manifest*.json"), *folder.glob("jobs/*/manifest*.json")]:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            paths = [output for job in record["inputs"] for output in job["outputs"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        outputs |= {Path(str(output)).resolve() for output in paths}
    return outputs
