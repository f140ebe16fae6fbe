"""`lakehouse export`: a table to gs://bucket/prefix as Parquet, CSV or JSONL, one folder per date."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson
import pyarrow as pa

from lakehouse import paths, warehouse
from lakehouse.commands import console, fail, project_dir_option

FORMATS = {"parquet": ("PARQUET", "parquet"), "csv": ("CSV", "csv"), "jsonl": ("JSON", "jsonl")}
BUCKET = re.compile(r"^[a-z0-9][a-z0-9_.\-]{1,61}[a-z0-9]$")
PREFIX = re.compile(r"^[A-Za-z0-9_.=\-/]{0,512}$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
PROJECT = re.compile(r"^[a-z][a-z0-9\-]{0,62}[a-z0-9]$")
NULL_PARTITION = "__NULL__"  # Hive's name for the partition of rows without a value
MANIFEST = "_SUCCESS"


class ExportError(ValueError):
    """An export that cannot run as asked; the message names the argument and why."""


@dataclass(frozen=True)
class Target:
    """Where an export goes: gs://bucket/prefix."""

    bucket: str
    prefix: str

    def name(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)


def parse_table(text: str) -> tuple[str, str, str]:
    """Return (project, dataset, table) of `project.dataset.table`; raises ExportError otherwise."""
    parts = text.replace("`", "").split(".")
    if len(parts) != 3 or not PROJECT.match(parts[0]) or not all(IDENTIFIER.match(p) for p in parts[1:]):
        raise ExportError(f"{text!r} is not project.dataset.table")
    return parts[0], parts[1], parts[2]


def parse_target(text: str) -> Target:
    """Return the bucket and prefix of gs://bucket/prefix; raises ExportError otherwise."""
    if not text.startswith("gs://"):
        raise ExportError(f"--to {text!r} must start with gs://")
    bucket, _, prefix = text[5:].partition("/")
    prefix = prefix.strip("/")
    if not BUCKET.match(bucket):
        raise ExportError(f"--to: {bucket!r} is not a bucket name")
    if not PREFIX.match(prefix) or ".." in prefix.split("/"):
        raise ExportError(f"--to: prefix {prefix!r} may hold only letters, digits and _ . = - /")
    return Target(bucket, prefix)


def partition_folder(column: str, day: dt.date | None) -> str:
    """Return the Hive-style folder of one date: `sales_date=2026-01-02`."""
    return f"{column}={day.isoformat() if day else NULL_PARTITION}"


def export_statements(
    table: tuple[str, str, str], column: str, days: list[dt.date | None], fmt: str, target: Target
) -> list[tuple[str, list[Any]]]:
    """Return one BigQuery EXPORT DATA statement per date, with its query parameters.

    Each writes gs://bucket/prefix/<column>=<date>/part-*.<ext> with overwrite = true, so a rerun
    replaces what the run before wrote. The date travels as a parameter; the URI is built from a
    date object and the checked target, never from request text.
    """
    from google.cloud import bigquery

    kind, ext = FORMATS[fmt]
    options = f"format = '{kind}', overwrite = true" + (", header = true" if fmt == "csv" else "")
    source = f"`{'.'.join(table)}`"
    statements = []
    for day in days:
        uri = f"gs://{target.bucket}/{target.name(partition_folder(column, day), 'part-*.' + ext)}"
        if day is None:
            where, params = f"date(`{column}`) is null", []
        else:
            where, params = f"date(`{column}`) = @day", [bigquery.ScalarQueryParameter("day", "DATE", day)]
        statements.append(
            (f"export data options (uri = '{uri}', {options}) as select * from {source} where {where}", params)
        )
    return statements


def _encode(rows: pa.Table, fmt: str) -> bytes:
    if fmt == "jsonl":
        def default(value: Any) -> Any:
            return str(value)

        return b"".join(orjson.dumps(r, default=default) + b"\n" for r in rows.to_pylist())
    sink = pa.BufferOutputStream()
    if fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(rows, sink)
    else:
        import pyarrow.parquet as pq

        pq.write_table(rows, sink)
    return sink.getvalue().to_pybytes()


class LocalBuckets:
    """Buckets as directories under LAKEHOUSE_HOME/gcs: what fake-gcs-server serves locally."""

    def __init__(self, home_dir: Path) -> None:
        self.home_dir = home_dir

    def put(self, bucket: str, name: str, data: bytes) -> None:
        path = paths.gcs_object_path(self.home_dir, bucket, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)

    def list(self, bucket: str, prefix: str) -> Iterator[str]:
        root = paths.gcs_object_path(self.home_dir, bucket, "")
        folder = root / prefix
        if folder.is_dir():
            for path in folder.rglob("*"):
                if path.is_file():
                    yield path.relative_to(root).as_posix()

    def delete(self, bucket: str, name: str) -> None:
        paths.gcs_object_path(self.home_dir, bucket, name).unlink(missing_ok=True)


class EmulatorBuckets:
    """Buckets on the storage emulator (STORAGE_EMULATOR_HOST) or GCS, through google-cloud-storage."""

    def __init__(self) -> None:
        from ingest.storage import GcsStore

        self.client = GcsStore().client

    def put(self, bucket: str, name: str, data: bytes) -> None:
        self.client.bucket(bucket).blob(name).upload_from_string(data)

    def list(self, bucket: str, prefix: str) -> Iterator[str]:
        for blob in self.client.list_blobs(bucket, prefix=prefix + "/" if prefix else None):
            yield blob.name

    def delete(self, bucket: str, name: str) -> None:
        self.client.bucket(bucket).blob(name).delete()


def export_local(
    con, table: tuple[str, str, str], column: str, fmt: str, target: Target, buckets
) -> dict[str, int]:
    """Write one object per date of `column` and a manifest last; return rows written per object.

    Objects of earlier runs under the prefix that this run did not write are deleted, so the
    prefix holds exactly the table as it is now; a run killed midway leaves no manifest and the
    next run rewrites every object. A prefix holding any object that is not an export's (its
    manifest or `<column>=<value>/part-NNNNN.<ext>`) is refused before anything is written: the
    export would replace what is there, and it deletes only what an export writes.
    """
    extensions = "|".join(extension for _, extension in FORMATS.values())
    own = re.compile(
        "^" + re.escape(target.prefix + "/" if target.prefix else "")
        + rf"[A-Za-z_][A-Za-z0-9_]*=[^/]+/part-[0-9]{{5}}\.(?:{extensions})(?:\.partial)?$"
    )  # fmt: skip
    existing = [name for name in buckets.list(target.bucket, target.prefix) if name != target.name(MANIFEST)]
    foreign = [name for name in existing if not own.match(name)]
    if foreign:
        raise ExportError(
            f"gs://{target.bucket}/{target.prefix} holds {len(foreign)} object(s) no export wrote (first: "
            f"{foreign[0]}); export to a prefix of its own, since an export replaces what its prefix holds"
        )
    quoted = ".".join(f'"{p}"' for p in table)
    day_sql = f'cast("{column}" as date)'
    days = [row[0] for row in con.execute(f"select distinct {day_sql} from {quoted} order by 1 nulls last").fetchall()]
    ext = FORMATS[fmt][1]
    written: dict[str, int] = {}
    for day in days:
        if day is None:
            rows = con.execute(f"select * from {quoted} where {day_sql} is null").to_arrow_table()
        else:
            rows = con.execute(f"select * from {quoted} where {day_sql} = ?", [day]).to_arrow_table()
        name = target.name(partition_folder(column, day), f"part-00000.{ext}")
        buckets.put(target.bucket, name, _encode(rows, fmt))
        written[name] = rows.num_rows
    for stale in sorted(set(existing) - set(written)):
        buckets.delete(target.bucket, stale)
    manifest = {"table": ".".join(table), "format": fmt, "partition_column": column, "objects": written}
    buckets.put(target.bucket, target.name(MANIFEST), orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return written


def _partition_column(project_dir: Path, table: tuple[str, str, str]) -> str | None:
    from lakehouse.engine.compile import compile_project
    from lakehouse.serve.catalog import partition_column as column_of

    for action in compile_project(project_dir).graph.get("tables") or []:
        target = action["target"]
        if (target["database"], target["schema"], target["name"]) == table:
            return column_of((action.get("bigquery") or {}).get("partitionBy"))
    return None


@click.command("export")
@click.argument("table")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="parquet", show_default=True)
@click.option("--to", "to", required=True, metavar="gs://BUCKET/PREFIX", help="Where the files go.")
@click.option("--partition-column", help="Date or timestamp column to split by (default: the table's partitionBy).")
@click.option("--bigquery", "on_bigquery", is_flag=True, help="Run EXPORT DATA in BigQuery instead of locally.")
@project_dir_option
def export_command(
    table: str, fmt: str, to: str, partition_column: str | None, on_bigquery: bool, project_dir: Path
) -> None:
    """Export TABLE (project.dataset.table) to gs://bucket/prefix/<column>=<date>/, one file per date.

    Locally the files go to the storage emulator (STORAGE_EMULATOR_HOST) or the local buckets it
    serves (LAKEHOUSE_HOME/gcs); with --bigquery, one EXPORT DATA statement per date. A rerun
    replaces the files of the run before: the prefix always holds the table as it was last exported.
    """
    try:
        parts, target = parse_table(table), parse_target(to)
        column = partition_column or _partition_column(project_dir, parts)
    except ExportError as error:
        fail(str(error), 2)
    if not column or not IDENTIFIER.match(column):
        fail(f"{table} has no partitionBy in the graph: name a date column with --partition-column", 2)
    if on_bigquery:
        _export_bigquery(parts, column, fmt, target)
        return
    try:
        con = warehouse.connect(paths.home(project_dir), [parts[0]], read_only=True, only_existing=True)
    except (warehouse.WarehouseBusy, ValueError) as error:
        fail(str(error))
    try:
        emulated = os.environ.get("STORAGE_EMULATOR_HOST")
        buckets = EmulatorBuckets() if emulated else LocalBuckets(paths.home(project_dir))
        written = export_local(con, parts, column, fmt, target, buckets)
    except Exception as error:  # duckdb and storage errors: one line naming the table, no traceback
        fail(f"could not export {table}: {str(error).strip().splitlines()[0]}")
    finally:
        con.close()
    console.print(
        f"{table}: {sum(written.values())} rows in {len(written)} files under gs://{target.bucket}/{target.prefix}",
        highlight=False,
        markup=False,
    )


def _export_bigquery(table: tuple[str, str, str], column: str, fmt: str, target: Target) -> None:
    from google.cloud import bigquery

    client = bigquery.Client(project=table[0])
    source = f"`{'.'.join(table)}`"
    days = [row[0] for row in client.query(f"select distinct date(`{column}`) from {source} order by 1").result()]
    for sql, params in export_statements(table, column, days, fmt, target):
        client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result()
    console.print(f"{'.'.join(table)}: {len(days)} EXPORT DATA statements run", highlight=False, markup=False)
