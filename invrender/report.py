"""`invrender report RUN_DIR`: the manifests of a run folder as one table, and as CSV.

A run folder holds `manifest.json` (a run, a sweep whose jobs each list their inputs, or a training
run) and/or `manifest.part-K-of-N.json` (shards run by separate processes); while a sweep runs, only
its jobs' manifests `jobs/<num>/manifest.json` exist; acdr-eval keeps a run record of one job, its
scores the result. Every input becomes one row; a training run is one row, its data set the input
and its last training loss the loss; the scores that `cell-eval --json` wrote (a file, not a
folder) are one row. The quality figures that the results hold (`QUALITY`: Dice, SSIM, PSNR, mIoU,
SEG, DET, TRA) get a column each.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from invrender.core.io import InputError, atomic_path, read_json
from invrender.record import KINDS
from invrender.runner import count_statuses

COLUMNS = ("job", "overrides", "input", "status", "seconds", "loss", "outputs", "log", "error")
#: The quality figures that a job's result may hold (its key -> the report's column), shown after
#: `loss` in this order for the rows that have them: spine-seg's mean Dice against `--gt`, mesh-fit's
#: SSIM and PSNR of its render against the stack, acdr-eval's mean IoU (a training run's: the validation
#: mIoU of its best checkpoint), cell-eval's SEG, DET and TRA.
QUALITY = {
    "mean_dice": "Dice",
    "ssim": "SSIM",
    "psnr": "PSNR",
    "miou": "mIoU",
    "seg": "SEG",
    "det": "DET",
    "tra": "TRA",
}
QUALITY_COLUMNS = tuple(QUALITY.values())


def manifest_paths(run_dir: Path) -> list[Path]:
    """The run's manifests; for a sweep still running (or killed), its jobs' own manifests."""
    if not run_dir.is_dir():
        raise InputError(run_dir, "not a folder")
    paths = sorted(run_dir.glob("manifest.json")) + sorted(run_dir.glob("manifest.part-*-of-*.json"), key=_part_number)
    if not paths:
        paths = sorted(
            run_dir.glob("jobs/*/manifest.json"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1
        )
    if not paths:
        raise InputError(run_dir, "no manifest.json or manifest.part-*.json: not an invrender run folder")
    return paths


def _part_number(path: Path) -> int:
    """K of `manifest.part-K-of-N.json`; -1 (first) for a stray name like `manifest.part-old-of-2.json`."""
    number = path.name.split("-")[1]
    return int(number) if number.isdigit() else -1


def report_rows(run_dir: Path) -> list[dict]:
    """One row per input over every manifest in `run_dir`; InputError naming a manifest of another
    shape (valid JSON written by something else, or edited by hand). A file is read as the scores
    that `cell-eval --json` wrote: one row."""
    if run_dir.is_file():
        return [_scores_row(run_dir, read_json(run_dir))]
    rows = []
    for path in manifest_paths(run_dir):
        manifest = read_json(path)
        if not isinstance(manifest, dict) or manifest.get("kind") not in KINDS:
            raise InputError(path, f"not an invrender manifest (no 'kind': {', '.join(KINDS)})")
        if manifest["kind"] == "train":
            rows.append(_training_row(path, manifest))
            continue
        if manifest["kind"] == "sweep":
            jobs = [_dict(path, job, f"jobs[{i}]") for i, job in enumerate(_get(path, manifest, "jobs", list, []))]
            groups = [
                (
                    str(_get(path, job, "num", (int, str), "")),
                    _strings(path, job, "overrides"),
                    _get(path, job, "inputs", list, []),
                )
                for job in jobs
            ]
        else:
            part = _get(path, manifest, "part", dict, None)
            groups = [
                (
                    "" if part is None else f"part {part.get('id')}/{part.get('of')}",
                    _strings(path, manifest, "overrides"),
                    _get(path, manifest, "inputs", list, []),
                )
            ]
        for job, overrides, records in groups:
            rows += [_input_row(path, job, overrides, _dict(path, r, f"inputs[{i}]")) for i, r in enumerate(records)]
    return rows


def _input_row(path: Path, job: str, overrides: list[str], record: dict) -> dict:
    result = _get(path, record, "result", dict, {})
    loss = _get(path, result, "loss", NUMBER, None)
    return {
        "job": job,
        "overrides": " ".join([*overrides, *_strings(path, record, "overrides")]),
        "input": _get(path, record, "input", str),
        "status": _get(path, record, "status", str),
        "seconds": round(float(_get(path, record, "seconds", NUMBER, 0.0)), 2),
        "loss": "" if loss is None else f"{loss:.6g}",
        "outputs": len(_get(path, record, "outputs", list, [])),
        "log": _get(path, record, "log", str, ""),
        "error": _get(path, record, "error", str, ""),
        "quality": _quality(path, result, QUALITY),
    }


def _quality(path: Path, values: dict, columns: dict[str, str]) -> dict[str, float]:
    """The quality figures among `values` (key -> column name in `columns`), by column name; a
    figure that is null (not finite when it was computed) is left out."""
    figures = {column: _get(path, values, key, NUMBER, None) for key, column in columns.items()}
    return {column: float(value) for column, value in figures.items() if value is not None}


def _training_row(path: Path, manifest: dict) -> dict:
    """A training run as one row: the data it trained on, its status, seconds and last loss."""
    history = _get(path, manifest, "history_tail", list, [])
    loss = _get(path, _dict(path, history[-1], "history_tail[-1]"), "loss", NUMBER, None) if history else None
    outputs = _get(path, manifest, "outputs", dict, {})
    data = _get(path, _get(path, manifest, "config", dict, {}), "data", dict, {})
    return {
        "job": f"{_get(path, manifest, 'method', str, 'train')} ({_get(path, manifest, 'epochs_done', int, 0)} epochs)",
        "overrides": " ".join(_strings(path, manifest, "overrides")),
        "input": str(data.get("root", "")),
        "status": _get(path, manifest, "status", str, ""),
        "seconds": round(float(_get(path, manifest, "seconds", NUMBER, 0.0)), 2),
        "loss": "" if loss is None else f"{loss:.6g}",
        "outputs": sum(isinstance(p, str) and Path(p).is_file() for p in outputs.values()),
        "log": _get(path, outputs, "log", str, ""),
        "error": "",
        "quality": _quality(path, _get(path, manifest, "best", dict, {}), {"val_miou": "mIoU"}),
    }


def _scores_row(path: Path, record: Any) -> dict:
    """The scores of `cell-eval --json` as one row: the result it scored as the input, with its
    SEG (and DET and TRA, when they were computed)."""
    if not isinstance(record, dict) or not {"res", "gt", "seg", "per_frame"} <= record.keys():
        raise InputError(path, "neither a run folder nor the scores of cell-eval --json (res, gt, seg, per_frame)")
    return {
        "job": "cell-eval",
        "overrides": "",
        "input": _get(path, record, "res", str),
        "status": "done",
        "seconds": 0.0,
        "loss": "",
        "outputs": 1,
        "log": "",
        "error": "",
        "quality": _quality(path, record, QUALITY),
    }


# ---------------------------------------------------------------- the shape of a manifest's values

NUMBER = (int, float)
_REQUIRED = object()


def _get(path: Path, obj: dict, key: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
    """`obj[key]` if it is of `kind` (`default` when absent or null); InputError otherwise."""
    value = obj.get(key)
    if value is None and default is not _REQUIRED:
        return default
    if value is None:
        raise InputError(path, f"not an invrender manifest (a record has no {key!r})")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        shown = json.dumps(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise InputError(path, f"not an invrender manifest ({key!r} is {shown}, expected {_kind_name(kind)})")
    return value


def _dict(path: Path, value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(path, f"not an invrender manifest ({where} is a {type(value).__name__}, not an object)")
    return value


def _strings(path: Path, obj: dict, key: str) -> list[str]:
    """A list of strings (overrides), [] when absent."""
    values = _get(path, obj, key, list, [])
    if not all(isinstance(v, str) for v in values):
        raise InputError(path, f"not an invrender manifest ({key!r} is not a list of strings)")
    return values


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {"int": "a number", "float": "a number", "str": "a string", "list": "a list", "dict": "an object"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names[k.__name__] for k in kinds))


def flat_rows(rows: list[dict]) -> tuple[list[str], list[dict]]:
    """The report's columns and its rows as text: the quality figures that any row has get a column
    each after `loss` (empty where a row has none)."""
    present = {name for row in rows for name in row["quality"]}
    figures = [name for name in QUALITY_COLUMNS if name in present]
    at = COLUMNS.index("loss") + 1
    columns = [*COLUMNS[:at], *figures, *COLUMNS[at:]]
    flat = [
        {
            **{c: row[c] for c in COLUMNS},
            **{name: f"{row['quality'][name]:.6g}" if name in row["quality"] else "" for name in figures},
        }
        for row in rows
    ]
    return columns, flat


def write_report(run_dir: Path, rows: list[dict], csv_path: Path | None = None) -> Path:
    """Write the rows as CSV (atomically): `RUN_DIR/report.csv` (`<name>.report.csv` beside a
    cell-eval JSON file) unless another path is given."""
    if csv_path is None:
        csv_path = run_dir / "report.csv" if run_dir.is_dir() else run_dir.with_name(f"{run_dir.stem}.report.csv")
    columns, flat = flat_rows(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(flat)
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return csv_path


def print_report(rows: list[dict], console: Console) -> None:
    """The table keeps to what tells rows apart: overrides that differ between rows, and file names
    when they are unique (the CSV has everything)."""
    common = set.intersection(*(set(r["overrides"].split()) for r in rows)) if rows else set()
    names = [Path(r["input"]).name for r in rows]
    short = len(set(names)) == len({r["input"] for r in rows})
    columns, flat = flat_rows(rows)
    table_rows = [
        {
            **r,
            "overrides": " ".join(o for o in r["overrides"].split() if o not in common),
            "input": name if short else r["input"],
            **{figure: f"{value:.4g}" for figure, value in row["quality"].items()},  # shorter than the CSV's
        }
        for r, row, name in zip(flat, rows, names)
    ]
    table = Table(show_lines=False)
    shown = [
        c
        for c in columns
        if c != "log" and (c not in ("job", "overrides", "loss", "error") or any(r[c] for r in table_rows))
    ]
    numbers = {"seconds", "loss", "outputs", *QUALITY_COLUMNS}
    for column in shown:
        table.add_column(column, justify="right" if column in numbers else "left", overflow="fold")
    for row in table_rows:
        table.add_row(*(str(row[c]) for c in shown))
    console.print(table)
    counts = count_statuses([row["status"] for row in rows])
    busy = sum(r["seconds"] for r in rows if r["status"] == "done")
    console.print(
        f"{len(rows)} input(s): "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; {busy:.1f} s of work done",
        highlight=False,
    )
