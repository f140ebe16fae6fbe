"""Ad-hoc BigQuery SQL on the local warehouse, formatted as `bq query` would print it."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import functools
import io
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lakehouse import paths
from lakehouse.engine import functions, scripts


@dataclass
class QueryResult:
    """The result of a script's last statement: column names and rows (empty for DDL/DML)."""

    columns: list[str]
    rows: list[tuple]


def execute(con: duckdb.DuckDBPyConnection, sql: str, *, default_project: str, gcs_resolver=None) -> QueryResult:
    """Run a BigQuery statement or script; return the last statement's result.

    Raises UnsupportedConstruct / TranslationError (lakehouse.engine.scripts) / duckdb.Error.
    """
    last = QueryResult([], [])
    for item in scripts.translate_script(sql, default_project=default_project, gcs_resolver=gcs_resolver):
        try:
            cursor = run_item(con, item)
        except ScriptReturn:
            break  # RETURN outside a procedure ends the script
        # A loop's last statement may be its own test; a handler's or procedure's last one is a result.
        if isinstance(item, str) or (item.kind in ("try", "call") and cursor is not None):
            description = cursor.description
            last = QueryResult([d[0] for d in description], cursor.fetchall()) if description else QueryResult([], [])
    return last


# A loop that runs this often is taken for one that never ends (BigQuery stops a script after 6 hours).
MAX_ITERATIONS = 1_000_000


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class ScriptReturn(Exception):
    """RETURN: leaves the procedure, or (outside one) ends the script; run_item's caller stops there."""


# The errors being handled, innermost last, per thread (each runner thread has its own cursor): a bare
# RAISE re-raises the last one.
_handling = threading.local()
# Errors an EXCEPTION WHEN ERROR handler catches: what BigQuery reports as a statement error.
_CATCHABLE = (duckdb.Error, scripts.TranslationError, RuntimeError)
_ERROR_KIND = re.compile(r"^[A-Za-z ]*Error: ")
_frames = itertools.count()
# Where a wildcard table can be: a quoted name part ending in * after a dot ("dataset"."prefix*").
_WILDCARD_NAME = re.compile(r'"\s*\.\s*"[^"]*\*"')


def _true(con: duckdb.DuckDBPyConnection, select: str) -> bool:
    return bool(con.execute(expand_wildcard_tables(con, select)).fetchone()[0])


@functools.cache
def _duckdb_dialect():
    """sqlglot's DuckDB dialect, made once, when a statement first names a wildcard table."""
    from sqlglot.dialects.duckdb import DuckDB

    return DuckDB()


def expand_wildcard_tables(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """Return `sql` with each wildcard table "project"."dataset"."prefix*" replaced by the union, by column
    name, of the local tables whose name starts with the prefix, each row with `_TABLE_SUFFIX` (the rest of
    its table's name), as BigQuery reads a wildcard table. A filter on `_TABLE_SUFFIX` prunes the tables
    read: DuckDB folds it to false in the branches of the union it excludes.

    Raises duckdb.CatalogException when no local table matches, or a view does (BigQuery's errors).
    """
    if not _WILDCARD_NAME.search(sql):
        return sql  # a batch's statement has '*"' in its regexes: 11-14 KB, 2 ms each to tokenize
    from sqlglot.tokens import TokenType

    tokens = _duckdb_dialect().tokenize(sql)
    pieces: list[str] = []
    last = 0
    for index, token in enumerate(tokens):
        name = tokens[index - 4 : index + 1] if index >= 4 else []
        if not (
            token.token_type == TokenType.IDENTIFIER
            and token.text.endswith("*")
            and [t.token_type for t in name[:4]] == [TokenType.IDENTIFIER, TokenType.DOT] * 2
        ):
            continue
        pieces += [sql[last : name[0].start], _wildcard_union(con, name[0].text, name[2].text, token.text[:-1])]
        last = token.end + 1
    return "".join(pieces) + sql[last:]


def _wildcard_union(con: duckdb.DuckDBPyConnection, project: str, dataset: str, prefix: str) -> str:
    found = con.execute(
        "SELECT table_name, false FROM duckdb_tables() WHERE database_name = $1 AND schema_name = $2 "
        "AND starts_with(table_name, $3) "
        "UNION ALL SELECT view_name, true FROM duckdb_views() WHERE database_name = $1 AND schema_name = $2 "
        "AND starts_with(view_name, $3) ORDER BY 1",
        [project, dataset, prefix],
    ).fetchall()
    views = [name for name, is_view in found if is_view]
    if views:
        raise duckdb.CatalogException(
            f"Views cannot be queried through prefix. First view {project}:{dataset}.{views[0]}."
        )
    if not found:
        raise duckdb.CatalogException(f"Not found: Table {project}:{dataset}.{prefix}* was not found")
    branches = [
        f"SELECT *, {_string(name[len(prefix) :])} AS {scripts.WILDCARD_SUFFIX_COLUMN} "
        f"FROM {_quoted(project)}.{_quoted(dataset)}.{_quoted(name)}"
        for name, _ in found
    ]
    return "(" + " UNION ALL BY NAME ".join(branches) + ")"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def run_item(con: duckdb.DuckDBPyConnection, item, *, row_count: bool = True) -> duckdb.DuckDBPyConnection | None:
    """Run one item of translate_script: a DuckDB statement, or a Block (IF, loop, FOR, BREAK, CONTINUE).

    Returns the cursor of the last statement run (None when a block ran none). A DML statement's row
    count is kept for `@@row_count` unless `row_count` is false (a script that never reads it).
    Raises duckdb.Error from the statements, and RuntimeError for a loop past MAX_ITERATIONS.
    """
    if isinstance(item, str):
        cursor = scripts.execute_with_array_paths(con, expand_wildcard_tables(con, item))
        return _count_rows(con, cursor) if row_count and item.lstrip()[:6].upper() in _DML_WORDS else cursor
    if item.kind == "break":
        raise _Break
    if item.kind == "continue":
        raise _Continue
    if item.kind == "return":
        raise ScriptReturn
    if item.kind == "try":
        return _try(con, item)
    if item.kind == "reraise":
        errors = getattr(_handling, "errors", [])
        if not errors:
            raise duckdb.InvalidInputException("RAISE without USING MESSAGE is only valid in an EXCEPTION handler")
        raise errors[-1]
    if item.kind == "call":
        return _call(con, item)
    if item.kind == "execute":
        return _execute_immediate(con, item)
    if item.kind == "js_function":
        functions.register_js_function(con, item)
        return None
    if item.kind == "if":
        for condition, body in item.branches:
            if not condition or _true(con, condition):
                return _run_body(con, body)
        return None
    last = None
    if item.kind == "for":
        holder = f"__lakehouse_rows_{item.variable}"
        con.execute(f"SET VARIABLE {holder} = ({expand_wildcard_tables(con, item.rows)})")
        count = con.execute(f"SELECT coalesce(len(getvariable('{holder}')), 0)").fetchone()[0]
        for index in range(1, count + 1):
            con.execute(f"SET VARIABLE {item.variable} = getvariable('{holder}')[{index}]")
            try:
                last = _run_body(con, item.body) or last
            except _Break:
                break
            except _Continue:
                continue
        return last
    clock = _LoopClock(con)
    for _ in range(MAX_ITERATIONS):
        clock.tick()
        if item.condition and not _true(con, item.condition):
            return last
        try:
            last = _run_body(con, item.body) or last
        except _Break:
            return last
        except _Continue:
            pass
        if item.until and _true(con, item.until):
            return last
    raise RuntimeError(f"a loop ran {MAX_ITERATIONS:,} times; is its exit condition ever met?")


_DML_WORDS = ("INSERT", "UPDATE", "DELETE", "MERGE ")


def _count_rows(con: duckdb.DuckDBPyConnection, cursor) -> _Fetched:
    """Keep a DML statement's row count for `@@row_count`; returns its result, read."""
    fetched = _Fetched(cursor)
    count = fetched.rows[0][0] if fetched.rows and fetched.rows[0] else None
    con.execute(f"SET VARIABLE {scripts.ROW_COUNT_VARIABLE} = CAST(? AS BIGINT)", [count])
    return fetched


class _LoopClock:
    """Lets an injected clock (`--now`) advance by the real time a script loop has run, once per iteration."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.start = time.perf_counter()
        variable = functions.CLOCK_OFFSET_VARIABLE
        offset = con.execute(f"SELECT to_microseconds(0) + coalesce(getvariable('{variable}'), to_microseconds(0))")
        self.base = offset.fetchone()[0]

    def tick(self) -> None:
        elapsed = int((time.perf_counter() - self.start) * 1_000_000)
        self.con.execute(
            f"SET VARIABLE {functions.CLOCK_OFFSET_VARIABLE} = ? + to_microseconds(CAST(? AS BIGINT))",
            [self.base, elapsed],
        )


def _execute_immediate(con: duckdb.DuckDBPyConnection, item) -> duckdb.DuckDBPyConnection | None:
    sql, *values = con.execute(expand_wildcard_tables(con, item.condition)).fetchone()
    if sql is None:
        raise duckdb.InvalidInputException("EXECUTE IMMEDIATE: the SQL string is NULL")
    if values:
        from lakehouse.engine import translate  # EXECUTE IMMEDIATE ... USING: its text is parsed

        sql = translate.bind_parameters(sql, values, item.using)
    last = None
    for statement in scripts.translate_script(sql, default_project=item.project):
        last = run_item(con, statement)
    if item.variable and last is not None:
        names = item.variable.split(",")
        row = last.fetchone() if last.description else None
        for index, name in enumerate(names):
            value = None if row is None else row[index]
            con.execute(f"SET VARIABLE {name} = CAST(? AS {_variable_type(con, name)})", [value])
        return None
    return last


class _Fetched:
    """A result read before the statements that follow it (cleanup) replace the connection's result."""

    def __init__(self, cursor) -> None:
        self.description = cursor.description if cursor is not None else None
        self.rows = cursor.fetchall() if self.description else []

    def fetchall(self) -> list[tuple]:
        rows, self.rows = self.rows, []
        return rows

    def fetchone(self) -> tuple | None:
        return self.rows.pop(0) if self.rows else None


def _commit_if_open(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        con.execute("COMMIT")
    except duckdb.TransactionException:
        return False  # autocommit already (lakehouse query, or an enclosing handler's block)
    return True


def _try(con: duckdb.DuckDBPyConnection, item) -> duckdb.DuckDBPyConnection | None:
    """BEGIN ... EXCEPTION WHEN ERROR THEN ... END.

    A DuckDB error aborts the whole transaction, so a handler could not go on inside the action's one.
    BigQuery scripts are not transactional either: each statement commits on its own and a failed one
    leaves no effect. So the action's transaction is committed before the block, the block and its handler
    run statement by statement in autocommit (a failed statement rolls back alone, the ones before it stay,
    as in BigQuery), and a new transaction is opened for the rest of the action.
    """
    committed = _commit_if_open(con)
    try:
        try:
            return _Fetched(_run_body(con, item.body))
        except _CATCHABLE as error:
            message = _ERROR_KIND.sub("", str(error).strip().splitlines()[0] if str(error).strip() else "")
            con.execute(f"SET VARIABLE {scripts.ERROR_MESSAGE_VARIABLE} = ?", [message])
            con.execute(f"SET VARIABLE {scripts.ERROR_STATEMENT_VARIABLE} = CAST(NULL AS VARCHAR)")
            errors = _handling.__dict__.setdefault("errors", [])
            errors.append(error)
            try:
                return _Fetched(_run_body(con, item.branches[0][1]))
            finally:
                errors.pop()
                if not errors:
                    con.execute(f"RESET VARIABLE {scripts.ERROR_MESSAGE_VARIABLE}")
                    con.execute(f"RESET VARIABLE {scripts.ERROR_STATEMENT_VARIABLE}")
    finally:
        if committed:
            con.execute("BEGIN TRANSACTION")


def _call(con: duckdb.DuckDBPyConnection, item) -> duckdb.DuckDBPyConnection | None:
    """CALL: run the procedure's body with its parameters declared and set from the arguments; the caller's
    variables are saved before and restored after (a procedure has its own scope in BigQuery), then each
    OUT/INOUT parameter is copied into the caller's variable passed for it."""
    try:
        definition = json.loads(con.execute(f"SELECT {item.variable}()").fetchone()[0])
    except duckdb.CatalogException:
        name = item.variable.replace(f'"{scripts._PROCEDURE_PREFIX}', '"')
        raise duckdb.InvalidInputException(f"Not found: Procedure {name.replace(chr(34), '')}") from None
    params = definition["params"]
    if len(params) != len(item.body):
        raise duckdb.InvalidInputException(
            f"procedure {item.variable} takes {len(params)} argument(s), {len(item.body)} given"
        )
    for setup in item.body:
        con.execute(setup)
    frame = f"__lakehouse_frame_{next(_frames)}_"
    saved = [name for (name,) in con.execute("SELECT name FROM duckdb_variables()").fetchall()]
    for name in saved:
        con.execute(f'SET VARIABLE "{frame}{name}" = getvariable(?)', [name])
    declares = "".join(f"DECLARE {name} {bq_type};\n" for _, name, bq_type in params)
    items = scripts.translate_script(declares + definition["body"], default_project=definition["project"])
    last = None
    try:
        for index, (_, name, _) in enumerate(params):
            run_item(con, items[index])  # the DECLARE, then the argument's value in the parameter's type
            con.execute(
                f"SET VARIABLE {name} = CAST(getvariable('{scripts._CALL_ARGUMENT.format(index)}') AS "
                f"{_variable_type(con, name)})"
            )
        try:
            last = _Fetched(_run_body(con, items[len(params) :]))
        except ScriptReturn:
            pass
        outs = {}
        for (mode, name, _), caller in zip(params, item.using, strict=True):
            if mode != "IN" and caller:
                outs[caller] = f"__lakehouse_out_{frame}{name}"
                con.execute(f'SET VARIABLE "{outs[caller]}" = getvariable(?)', [name])
    finally:
        for name in saved:
            con.execute(f'SET VARIABLE "{name}" = getvariable(?)', [f"{frame}{name}"])
            con.execute(f'RESET VARIABLE "{frame}{name}"')
    for caller, holder in outs.items():
        con.execute(f'SET VARIABLE "{caller}" = CAST(getvariable(?) AS {_variable_type(con, caller)})', [holder])
        con.execute(f'RESET VARIABLE "{holder}"')
    return last


def _variable_type(con: duckdb.DuckDBPyConnection, name: str) -> str:
    found = con.execute("SELECT type FROM duckdb_variables() WHERE name = ?", [name]).fetchone()
    return found[0] if found and found[0] != "NULL" else "VARCHAR"


def _run_body(con: duckdb.DuckDBPyConnection, body) -> duckdb.DuckDBPyConnection | None:
    last = None
    for item in body:
        cursor = run_item(con, item)
        if cursor is not None:
            last = cursor
    return last


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
    named = scripts.referenced_projects(sqls, default_project=default_project, known=known)
    projects = []
    for project in [*known, *sorted(named)]:
        try:
            paths.catalog_file(home_dir, project)
        except ValueError:
            continue
        projects.append(project)
    return list(dict.fromkeys(projects))


# DuckDB's errors for a relation, or a project's catalog, that is not in the warehouse.
MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist")
MISSING_CATALOG = re.compile(r'Catalog "([^"]+)" does not exist')
# DuckDB names the file a reader failed on in a later line of its message ("  file = /path").
FAILED_FILE = re.compile(r"^\s*file = (.+)$", re.MULTILINE)


def names_a_missing_relation(error: Exception) -> bool:
    """Whether a DuckDB error is about a table or catalog the warehouse does not have."""
    return bool(MISSING_TABLE.search(str(error)) or MISSING_CATALOG.search(str(error)))


def missing_tables(con: duckdb.DuckDBPyConnection, sqls: Iterable[str], default_project: str) -> list[str]:
    """Return `project.dataset.table` of each table the scripts name that the connection does not have."""
    named: set[tuple[str, str, str]] = set()
    for sql in sqls:
        try:
            named |= scripts.referenced_tables(sql, default_project=default_project)
        except scripts.TranslationError:
            continue
    # A wildcard table with no match fails with BigQuery's own message (expand_wildcard_tables).
    named = {name for name in named if not name[2].endswith("*")}
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
