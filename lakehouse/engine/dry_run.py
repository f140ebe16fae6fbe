"""The dry run's stand-in warehouse: every table and view of the warehouse, empty, in memory."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb

from lakehouse import warehouse
from lakehouse.engine import keys


def _quoted(*names: str) -> str:
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


def _null_of(kind: str) -> str:
    # A column of only NULLs has DuckDB's type "NULL", which CAST does not take.
    return "NULL" if kind == '"NULL"' else f"CAST(NULL AS {kind})"


def stand_in(home_dir: Path, projects: Iterable[str]) -> duckdb.DuckDBPyConnection:
    """Return an in-memory connection holding one catalog per project and, in it, an empty table or
    view for every table or view of the local warehouse (same names, columns and types).

    The warehouse is attached read-only, read once and closed: its files are never written. A project
    with no file yet gets an empty catalog, as a first run would create one. Raises what
    warehouse.connect raises (paths.StateError for a damaged file).
    """
    projects = list(dict.fromkeys(projects))
    source = warehouse.connect(home_dir, projects, read_only=True, only_existing=True)
    try:
        schemas = source.execute(
            "SELECT database_name, schema_name FROM duckdb_schemas() "
            "WHERE NOT internal AND database_name NOT IN ('system', 'temp', 'memory')"
        ).fetchall()
        rows = source.execute(
            "SELECT c.database_name, c.schema_name, c.table_name, v.view_name IS NOT NULL, c.column_name, "
            "c.data_type FROM duckdb_columns() c LEFT JOIN duckdb_views() v ON v.database_name = c.database_name "
            "AND v.schema_name = c.schema_name AND v.view_name = c.table_name "
            "WHERE c.database_name NOT IN ('system', 'temp', 'memory') AND NOT c.internal "
            "ORDER BY 1, 2, 3, c.column_index"
        ).fetchall()
    finally:
        source.close()
    con = warehouse.connect(home_dir, ())  # nothing attached: the settings of a warehouse connection
    try:
        for project in dict.fromkeys(projects + [database for database, _ in schemas]):
            con.execute(f"ATTACH ':memory:' AS {_quoted(project)}")
        for database, schema in schemas:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(database, schema)}")
        objects: dict[tuple[str, str, str, bool], list[tuple[str, str]]] = {}
        for database, schema, name, is_view, column, data_type in rows:
            objects.setdefault((database, schema, name, is_view), []).append((column, data_type))
        for (database, schema, name, is_view), columns in objects.items():
            target = _quoted(database, schema, name)
            if is_view:
                # A view stays a view (the statements Dataform picks depend on it): one over no rows.
                select = ", ".join(f"{_null_of(kind)} AS {_quoted(column)}" for column, kind in columns)
                con.execute(f"CREATE VIEW {target} AS SELECT {select} WHERE false")
            else:
                con.execute(f"CREATE TABLE {target} (" + ", ".join(f"{_quoted(c)} {k}" for c, k in columns) + ")")
    except BaseException:
        con.close()
        raise
    return con


def declare_keys(con: duckdb.DuckDBPyConnection, project: str) -> None:
    """Give the stand-in the key table a run makes (keys.ensure) with one placeholder salt: silver
    refuses to hash with no salt, which on the empty copy would fail every action that hashes."""
    table = _quoted(project, keys.SCHEMA, keys.TABLE)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(project, keys.SCHEMA)}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} (salt VARCHAR NOT NULL)")
    con.execute(f"INSERT INTO {table} SELECT 'dry-run' WHERE NOT EXISTS (SELECT 1 FROM {table})")
