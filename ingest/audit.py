"""File-arrival audit: record every landed object in the ops.file_arrivals control table."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

TABLE = "file_arrivals"
DATASET = "ops"
# (name, BigQuery type, DuckDB type): the control table has the same columns on both sides.
COLUMNS = (
    ("bucket", "STRING", "VARCHAR"),
    ("object_name", "STRING", "VARCHAR"),
    ("generation", "STRING", "VARCHAR"),
    ("source", "STRING", "VARCHAR"),
    ("size_bytes", "INT64", "BIGINT"),
    ("md5_hash", "STRING", "VARCHAR"),
    ("crc32c", "STRING", "VARCHAR"),
    ("record_count", "INT64", "BIGINT"),
    ("content_type", "STRING", "VARCHAR"),
    ("arrived_at", "TIMESTAMP", "TIMESTAMPTZ"),
    ("recorded_at", "TIMESTAMP", "TIMESTAMPTZ"),
)


class ArrivalSink(Protocol):
    """Somewhere arrival rows go: BigQuery on GCP, the local DuckDB warehouse locally."""

    def append(self, rows: list[dict[str, Any]]) -> int:
        """Append rows not recorded yet; returns how many were new."""


def _timestamp(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            pass
    return fallback


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def arrival_row(resource: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """Return the control-table row for a GCS object resource (the finalize event's data).

    The source comes from the `source=<name>/` prefix and the record count from the object's
    `records` metadata, which the landing function sets. Returns None when the resource names
    no bucket or object.
    """
    if not isinstance(resource, dict) or not resource.get("bucket") or not resource.get("name"):
        return None
    name = str(resource["name"])
    first = name.split("/", 1)[0]
    metadata = resource.get("metadata") if isinstance(resource.get("metadata"), dict) else {}
    return {
        "bucket": str(resource["bucket"]),
        "object_name": name,
        "generation": str(resource.get("generation", "")),
        "source": first[len("source=") :] if first.startswith("source=") else None,
        "size_bytes": _int(resource.get("size")),
        "md5_hash": resource.get("md5Hash"),
        "crc32c": resource.get("crc32c"),
        "record_count": _int(metadata.get("records")),
        "content_type": resource.get("contentType"),
        "arrived_at": _timestamp(resource.get("timeCreated"), now),
        "recorded_at": now.astimezone(UTC),
    }


def record_finalized(resource: dict[str, Any], sink: ArrivalSink, now: datetime) -> int:
    """Record one finalized object; returns 1 if it was new, 0 if known or not an object."""
    row = arrival_row(resource, now)
    if row is None:
        log.warning("finalize event without bucket/name ignored")
        return 0
    return sink.append([row])


def record_objects(resources: Iterable[dict[str, Any]], sink: ArrivalSink, now: datetime) -> int:
    """Record several objects in one append (the local stand-in for finalize events); returns new rows."""
    rows = [row for row in (arrival_row(resource, now) for resource in resources) if row is not None]
    return sink.append(rows)


class DuckDbArrivalSink:
    """Appends to "<project>".ops.file_arrivals in the local warehouse, skipping known objects."""

    def __init__(self, home: Path, project: str) -> None:
        self.home = home
        self.project = project

    def append(self, rows: list[dict[str, Any]]) -> int:
        """Append the rows whose (bucket, object_name, generation) is new; returns how many."""
        from lakehouse.warehouse import open_catalog

        with open_catalog(self.home, self.project) as con:
            return append_local(con, rows)


def _local_table(con: Any, database: str | None = None) -> str:
    """Create the local arrivals table if absent; return its name (in `database`, else the current one)."""
    prefix = f'"{database}".' if database else ""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {prefix}{DATASET}")
    columns = ", ".join(f"{name} {duck}" for name, _, duck in COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS {prefix}{DATASET}.{TABLE} ({columns})")
    return f"{prefix}{DATASET}.{TABLE}"


def append_local(con: Any, rows: list[dict[str, Any]], database: str | None = None) -> int:
    """Append to the local arrivals table (DuckDB connection `con`) the rows whose (bucket, object_name,
    generation) is new, in one transaction; returns how many."""
    table = _local_table(con, database)
    if not rows:
        return 0
    names = [name for name, _, _ in COLUMNS]
    con.execute("BEGIN TRANSACTION")
    before = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    con.executemany(
        f"INSERT INTO {table} SELECT {', '.join('?' for _ in names)} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE bucket = ? AND object_name = ? AND generation = ?)",
        [[row[name] for name in names] + [row["bucket"], row["object_name"], row["generation"]] for row in rows],
    )
    after = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    con.execute("COMMIT")
    return after - before


# Where fake-gcs-server keeps an object's metadata (JSON) beside its bytes: an extended attribute.
_EMULATOR_XATTR = "user.metadata"


def _local_resource(bucket: str, name: str, path: Path, now: datetime) -> dict[str, Any]:
    """Return the GCS object resource of a file in a local bucket: the emulator's metadata where it
    wrote the object; else a generation from the file's modification time in microseconds (a GCS
    generation is the object's creation time in microseconds) and an arrival now."""
    stat = path.stat()
    resource: dict[str, Any] = {"bucket": bucket, "name": name, "size": stat.st_size}
    try:
        written = json.loads(os.getxattr(path, _EMULATOR_XATTR)) if hasattr(os, "getxattr") else None
    except (OSError, ValueError):
        written = None
    if isinstance(written, dict) and written.get("Generation"):
        resource.update({
            "generation": str(written["Generation"]),
            "md5Hash": written.get("Md5Hash"),
            "crc32c": written.get("Crc32c"),
            "contentType": written.get("ContentType"),
            "metadata": written.get("Metadata"),
            "timeCreated": written.get("Created"),
        })  # fmt: skip
    else:
        resource.update({"generation": str(stat.st_mtime_ns // 1000), "timeCreated": now.isoformat()})
    return resource


def record_local_landing(con: Any, database: str, home: Path, bucket: str, now: datetime | None = None) -> int:
    """Record in "<database>".ops.file_arrivals every object of the local bucket `bucket` (a directory
    under LAKEHOUSE_HOME/gcs) whose name has no arrival yet; returns how many were recorded.

    On GCP the finalize notification of any object, however it was written, calls the audit function;
    locally nothing notifies (fake-gcs-server has no notifications, and a file copied into the bucket's
    directory bypasses the emulator), so each local run records what landed since the last, before it
    reads the arrivals. Hidden files (an upload in progress) wait for the next run.
    """
    from lakehouse import paths

    root = paths.gcs_object_path(home, bucket, "")
    if not root.is_dir():
        return 0
    table = _local_table(con, database)
    known = {name for (name,) in con.execute(f"SELECT object_name FROM {table} WHERE bucket = ?", [bucket]).fetchall()}
    now = now or datetime.now(UTC)
    resources = []
    for folder, folders, files in os.walk(root):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for file in sorted(files):
            path = Path(folder) / file
            name = path.relative_to(root).as_posix()
            if file.startswith(".") or name in known:
                continue
            try:
                resources.append(_local_resource(bucket, name, path, now))
            except FileNotFoundError:  # removed since it was listed
                continue
    rows = [row for row in (arrival_row(resource, now) for resource in resources) if row is not None]
    return append_local(con, rows, database)


class BigQueryArrivalSink:
    """Streams rows into a BigQuery table `project.ops.file_arrivals` (insertId dedups retries)."""

    def __init__(self, table_id: str) -> None:
        self.table_id = table_id
        self._client = None

    def append(self, rows: list[dict[str, Any]]) -> int:
        """Insert the rows; returns how many were sent. Raises RuntimeError on insert errors."""
        from google.cloud import bigquery

        if self._client is None:
            self._client = bigquery.Client()
        payload = [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()} for row in rows]
        ids = [f"{r['bucket']}/{r['object_name']}#{r['generation']}" for r in rows]
        errors = self._client.insert_rows_json(self.table_id, payload, row_ids=ids)
        if errors:
            raise RuntimeError(f"insert into {self.table_id} failed: {errors}")
        return len(rows)


def default_sink() -> ArrivalSink:
    """Return the sink the finalize function writes to: FILE_ARRIVALS_TABLE (BigQuery) if set, else the
    local warehouse of LAKEHOUSE_PROJECT (LAKEHOUSE_HOME). Raises ValueError when neither is configured.
    """
    table = os.environ.get("FILE_ARRIVALS_TABLE")
    if table:
        return BigQueryArrivalSink(table)
    project = os.environ.get("LAKEHOUSE_PROJECT")
    if project and os.environ.get("LAKEHOUSE_HOME"):
        return DuckDbArrivalSink(Path(os.environ["LAKEHOUSE_HOME"]), project)
    raise ValueError("set FILE_ARRIVALS_TABLE (project.ops.file_arrivals) or LAKEHOUSE_HOME and LAKEHOUSE_PROJECT")


def local_finalize(con: Any, project_config: dict, home: Path) -> int:
    """The local stand-in for the landing bucket's finalize notifications, run by the local engine at the
    start of a run (RunOptions.prepare): records the objects of the project's vars.landing_bucket that
    have no arrival yet. A project without that var has nothing to record."""
    bucket = (project_config.get("vars") or {}).get("landing_bucket")
    database = project_config.get("defaultDatabase")
    if not bucket or not database:
        return 0
    return record_local_landing(con, database, home, bucket)
