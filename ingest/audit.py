"""File-arrival audit: record every landed object in the ops.file_arrivals control table."""

from __future__ import annotations

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

        names = [name for name, _, _ in COLUMNS]
        with open_catalog(self.home, self.project) as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {DATASET}")
            columns = ", ".join(f"{name} {duck}" for name, _, duck in COLUMNS)
            con.execute(f"CREATE TABLE IF NOT EXISTS {DATASET}.{TABLE} ({columns})")
            if not rows:
                return 0
            con.execute("BEGIN TRANSACTION")
            before = con.execute(f"SELECT count(*) FROM {DATASET}.{TABLE}").fetchone()[0]
            con.executemany(
                f"INSERT INTO {DATASET}.{TABLE} SELECT {', '.join('?' for _ in names)} "
                f"WHERE NOT EXISTS (SELECT 1 FROM {DATASET}.{TABLE} "
                "WHERE bucket = ? AND object_name = ? AND generation = ?)",
                [
                    [row[name] for name in names] + [row["bucket"], row["object_name"], row["generation"]]
                    for row in rows
                ],
            )
            after = con.execute(f"SELECT count(*) FROM {DATASET}.{TABLE}").fetchone()[0]
            con.execute("COMMIT")
        return after - before


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
