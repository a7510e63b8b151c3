"""`invrender report RUN_DIR`: the manifests of a run folder as one table, and as CSV.

A run folder holds `manifest.json` (a run, a sweep whose jobs each list their inputs, or a training
run) and/or `manifest.part-K-of-N.json` (shards run by separate processes); while a sweep runs, only
its jobs' manifests `jobs/<num>/manifest.json` exist. Every input becomes one row; a training run is
one row, its data set the input and its last training loss the loss.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich.console import Console
from rich.table import Table

from invrender.core.io import InputError, atomic_path, read_json
from invrender.record import KINDS
from invrender.runner import count_statuses

COLUMNS = ("job", "overrides", "input", "status", "seconds", "loss", "outputs", "log", "error")


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
    return int(path.name.split("-")[1])


def report_rows(run_dir: Path) -> list[dict]:
    """One row per input over every manifest in `run_dir`."""
    rows = []
    for path in manifest_paths(run_dir):
        manifest = read_json(path)
        if not isinstance(manifest, dict) or manifest.get("kind") not in KINDS:
            raise InputError(path, f"not an invrender manifest (no 'kind': {', '.join(KINDS)})")
        if manifest["kind"] == "train":
            rows.append(_training_row(path, manifest))
            continue
        if manifest["kind"] == "sweep":
            groups = [(str(job["num"]), job["overrides"], job["inputs"]) for job in manifest.get("jobs", [])]
        else:
            part = manifest.get("part")
            groups = [
                (
                    "" if part is None else f"part {part['id']}/{part['of']}",
                    manifest.get("overrides", []),
                    manifest.get("inputs", []),
                )
            ]
        for job, overrides, records in groups:
            for record in records:
                loss = record.get("result", {}).get("loss")
                rows.append(
                    {
                        "job": job,
                        "overrides": " ".join([*overrides, *record.get("overrides", [])]),
                        "input": record["input"],
                        "status": record["status"],
                        "seconds": round(float(record.get("seconds", 0.0)), 2),
                        "loss": "" if loss is None else f"{loss:.6g}",
                        "outputs": len(record.get("outputs", [])),
                        "log": record.get("log") or "",
                        "error": record.get("error") or "",
                    }
                )
    return rows


def _training_row(path: Path, manifest: dict) -> dict:
    """A training run as one row: the data it trained on, its status, seconds and last loss."""
    history = manifest.get("history_tail") or []
    loss = history[-1].get("loss") if history else None
    outputs = manifest.get("outputs", {})
    return {
        "job": f"{manifest.get('method', 'train')} ({manifest.get('epochs_done', 0)} epochs)",
        "overrides": " ".join(manifest.get("overrides", [])),
        "input": str(manifest.get("config", {}).get("data", {}).get("root", "")),
        "status": manifest.get("status", ""),
        "seconds": round(float(manifest.get("seconds", 0.0)), 2),
        "loss": "" if loss is None else f"{loss:.6g}",
        "outputs": sum(Path(p).is_file() for p in outputs.values()),
        "log": outputs.get("log", ""),
        "error": "",
    }


def write_report(run_dir: Path, rows: list[dict], csv_path: Path | None = None) -> Path:
    """Write the rows as CSV (atomically): `RUN_DIR/report.csv` unless another path is given."""
    csv_path = csv_path or run_dir / "report.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return csv_path


def print_report(rows: list[dict], console: Console) -> None:
    """The table keeps to what tells rows apart: overrides that differ between rows, and file names
    when they are unique (the CSV has everything)."""
    common = set.intersection(*(set(r["overrides"].split()) for r in rows)) if rows else set()
    names = [Path(r["input"]).name for r in rows]
    short = len(set(names)) == len({r["input"] for r in rows})
    table_rows = [
        {
            **r,
            "overrides": " ".join(o for o in r["overrides"].split() if o not in common),
            "input": name if short else r["input"],
        }
        for r, name in zip(rows, names)
    ]
    table = Table(show_lines=False)
    shown = [
        c
        for c in COLUMNS
        if c != "log" and (c not in ("job", "overrides", "loss", "error") or any(r[c] for r in table_rows))
    ]
    for column in shown:
        table.add_column(
            column, justify="right" if column in ("seconds", "loss", "outputs") else "left", overflow="fold"
        )
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
