"""Run records: what every action of a run did, kept as JSON and in the warehouse's ops dataset."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from lakehouse import paths

RUNS_TABLE = "action_runs"
# How the note of an action skipped as unchanged begins (engine/unchanged.py).
UNCHANGED_NOTE = "unchanged since run"
OPS_DATASET = "ops"

# One row per action per run; BigQuery types so the same table can live in the ops dataset on GCP.
ACTION_RUNS_COLUMNS = (
    ("run_id", "VARCHAR"),
    ("started_at", "TIMESTAMPTZ"),
    ("action_name", "VARCHAR"),
    ("action_type", "VARCHAR"),
    ("status", "VARCHAR"),
    ("duration_s", "DOUBLE"),
    ("rows_affected", "BIGINT"),
    ("failing_rows", "BIGINT"),
    ("severity", "VARCHAR"),
    ("file_name", "VARCHAR"),
    ("error", "VARCHAR"),
    ("target", "VARCHAR"),
)


@dataclass
class ActionResult:
    """The outcome of one action: status is success | failed | skipped | disabled | planned."""

    name: str
    type: str
    status: str
    file_name: str = ""
    duration_s: float = 0.0
    rows_affected: int | None = None
    failing_rows: int | None = None
    severity: str | None = None
    error: str | None = None
    statements: list[str] = field(default_factory=list)
    note: str | None = None

    @property
    def unchanged(self) -> bool:
        """True when the action was skipped because nothing it depends on changed since it last ran."""
        return (self.note or "").startswith(UNCHANGED_NOTE)


@dataclass
class RunRecord:
    """A whole run: `status` is success when every action succeeded and no error assertion failed."""

    run_id: str
    project_dir: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"
    dry_run: bool = False
    full_refresh: bool = False
    compile_cached: bool = False
    actions: list[ActionResult] = field(default_factory=list)

    @property
    def failed_assertions(self) -> list[ActionResult]:
        return [a for a in self.actions if a.type == "assertion" and a.status == "failed"]

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return data


def write_json(record: RunRecord, home_dir: Path) -> Path:
    """Write the record to runs/<run_id>.json and runs/latest.json; return the run's file."""
    folder = paths.runs_dir(home_dir)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record.to_json(), indent=2)
    target = folder / f"{record.run_id}.json"
    # Written whole or not at all (temporary file + rename): a kill mid-write never leaves a
    # truncated record for `lakehouse report` to stop on.
    for path in (target, folder / "latest.json"):
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(text)
        os.replace(partial, path)
    return target


def write_table(record: RunRecord, con: duckdb.DuckDBPyConnection, project: str) -> None:
    """Append one row per action to "<project>".ops.action_runs, creating it when missing."""
    table = f'"{project}"."{OPS_DATASET}"."{RUNS_TABLE}"'
    columns = ", ".join(f"{name} {kind}" for name, kind in ACTION_RUNS_COLUMNS)
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{project}"."{OPS_DATASET}"')
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    rows = []
    for a in record.actions:
        values = (
            record.run_id,
            record.started_at.isoformat(),
            a.name,
            a.type,
            a.status,
            round(a.duration_s, 6),
            a.rows_affected,
            a.failing_rows,
            a.severity,
            a.file_name,
            a.error,
            a.name,
        )
        rows.append(dict(zip((name for name, _ in ACTION_RUNS_COLUMNS), values, strict=True)))
    if rows:
        # One JSON parameter: DuckDB binds Python parameters slowly (~17 ms a row with executemany),
        # and an Arrow batch costs importing pyarrow's compute functions (~1 s) in a run that needs none.
        structure = json.dumps([dict(ACTION_RUNS_COLUMNS)]).replace("'", "''")
        con.execute(f"INSERT INTO {table} SELECT unnest(from_json(?, '{structure}'), recursive := true)",
                    [json.dumps(rows)])  # fmt: skip


def load_json(path: Path) -> dict:
    """Return a run record previously written by write_json."""
    return json.loads(path.read_text())
