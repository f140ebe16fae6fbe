"""Ad-hoc BigQuery SQL on the local warehouse, formatted as `bq query` would print it."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lakehouse import paths
from lakehouse.engine import translate


@dataclass
class QueryResult:
    """The result of a script's last statement: column names and rows (empty for DDL/DML)."""

    columns: list[str]
    rows: list[tuple]


def execute(con: duckdb.DuckDBPyConnection, sql: str, *, default_project: str, gcs_resolver=None) -> QueryResult:
    """Run a BigQuery statement or script; return the last statement's result.

    Raises translate.UnsupportedConstruct / translate.TranslationError / duckdb.Error.
    """
    cursor = None
    for statement in translate.translate_script(sql, default_project=default_project, gcs_resolver=gcs_resolver):
        cursor = con.execute(statement)
        if cursor.description is not None:
            last = QueryResult([d[0] for d in cursor.description], cursor.fetchall())
        else:
            last = QueryResult([], [])
    return last if cursor is not None else QueryResult([], [])


def local_projects(home_dir: Path) -> list[str]:
    """Return every project that has a warehouse file: attached so views over them resolve."""
    folder = paths.warehouse_dir(home_dir)
    return sorted(f.stem for f in folder.glob("*.duckdb")) if folder.is_dir() else []


def projects_to_attach(
    home_dir: Path, sqls: Iterable[str], default_project: str, known: Iterable[str] = ()
) -> list[str]:
    """Return the projects a connection needs: the default, `known`, every local warehouse file and every
    project the SQL names (declared or not); names that are not project ids are left out."""
    known = [default_project, *known, *local_projects(home_dir)]
    named = translate.referenced_projects(sqls, default_project=default_project, known=known)
    projects = []
    for project in [*known, *sorted(named)]:
        try:
            paths.catalog_file(home_dir, project)
        except ValueError:
            continue
        projects.append(project)
    return list(dict.fromkeys(projects))


def missing_tables(con: duckdb.DuckDBPyConnection, sqls: Iterable[str], default_project: str) -> list[str]:
    """Return `project.dataset.table` of each table the scripts name that the connection does not have."""
    named: set[tuple[str, str, str]] = set()
    for sql in sqls:
        try:
            named |= translate.referenced_tables(sql, default_project=default_project)
        except translate.TranslationError:
            continue
    if not named:
        return []
    present = set(
        con.execute(
            "SELECT database_name, schema_name, table_name FROM duckdb_tables() "
            "UNION ALL SELECT database_name, schema_name, view_name FROM duckdb_views()"
        ).fetchall()
    )
    return sorted(".".join(t) for t in named - present)


def missing_table_message(names: list[str]) -> str:
    """Return one line naming tables without local data and how to load them."""
    listed = ", ".join(f"`{name}`" for name in names)
    return (
        f"{listed} {'has' if len(names) == 1 else 'have'} no local data: load a sample with "
        f"`lakehouse load {names[0]} <file.csv|.jsonl|.parquet>`, or run the action that creates it first"
    )


def _jsonable(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        # bq prints NUMERIC as a string to keep its precision.
        return format(value, "f")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.isoformat()  # DATETIME: civil time, no offset (as BigQuery)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def to_json(result: QueryResult) -> str:
    """Return the rows as a JSON array of objects (DATE as YYYY-MM-DD, TIMESTAMP ISO 8601 with offset)."""
    return json.dumps([dict(zip(result.columns, map(_jsonable, row), strict=True)) for row in result.rows])


def to_csv(result: QueryResult) -> str:
    """Return the rows as CSV with a header line; NULL is an empty field."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(
            [
                "" if v is None else (json.dumps(_jsonable(v)) if isinstance(v, list | dict) else _jsonable(v))
                for v in row
            ]
        )
    return buffer.getvalue()
