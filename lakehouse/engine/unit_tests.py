"""Run a project's Dataform `type: "test"` files locally, compared as the Dataform CLI compares."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from dataclasses import dataclass, field

import duckdb

from lakehouse.engine import scripts


@dataclass
class TestResult:
    """One Dataform unit test: successful, or the CLI's own failure messages."""

    name: str
    file_name: str
    successful: bool
    messages: list[str] = field(default_factory=list)


def _js_value(value):
    """Return the value as the BigQuery Node client hands it to the Dataform CLI's comparison:
    numbers and strings and booleans as themselves, dates/times/numerics as objects."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, decimal.Decimal):
        return {"value": format(value.normalize(), "f")}
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return {"value": value.isoformat(timespec="microseconds").rstrip("0").rstrip(".") + "Z"}
    if isinstance(value, dt.date | dt.time):
        return {"value": value.isoformat()}
    if isinstance(value, bytes):
        return {"value": value.hex()}
    if isinstance(value, list | tuple):
        return [_js_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _js_value(v) for k, v in value.items()}
    return str(value)


def _js_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def _display(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else str(value)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, default_project: str) -> list[dict]:
    statements = scripts.translate_script(sql, default_project=default_project)
    cursor = None
    for statement in statements:
        cursor = con.execute(statement)
    if cursor is None or cursor.description is None:
        return []
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, (_js_value(v) for v in row), strict=True)) for row in cursor.fetchall()]


def compare(name: str, actual: list[dict], expected: list[dict]) -> list[str]:
    """Return the Dataform CLI's messages for actual vs expected rows (empty when they match).

    Mirrors runTest in the pinned CLI: row count, then column names (case-insensitive), then
    row by row in order, null-ness, JavaScript type, then value.
    """
    if len(actual) != len(expected):
        return [f"Expected {len(expected)} rows, but saw {len(actual)} rows."]
    if not actual:
        return []
    actual_columns, expected_columns = list(actual[0]), list(expected[0])
    if len(actual_columns) != len(expected_columns) or not all(
        any(a.upper() == e.upper() for a in actual_columns) for e in expected_columns
    ):
        return [f'Expected columns "{",".join(expected_columns)}", but saw "{",".join(actual_columns)}".']
    messages = []
    for index, (actual_row, expected_row) in enumerate(zip(actual, expected, strict=True)):
        actual_norm = {k.upper(): v for k, v in actual_row.items()}
        expected_norm = {k.upper(): v for k, v in expected_row.items()}
        for column in actual_columns:
            want, got = expected_norm.get(column.upper()), actual_norm.get(column.upper())
            if want is None and got is not None:
                messages.append(f'For row {index} and column "{column}": expected null, but saw "{_display(got)}".')
                break
            if want is not None and got is None:
                messages.append(f'For row {index} and column "{column}": expected "{_display(want)}", but saw null.')
                break
            if want is None:
                continue
            if _js_type(want) != _js_type(got):
                messages.append(
                    f'For row {index} and column "{column}": expected type "{_js_type(want)}", '
                    f'but saw type "{_js_type(got)}".'
                )
                break
            if want != got:
                messages.append(
                    f'For row {index} and column "{column}": expected "{_display(want)}", but saw "{_display(got)}".'
                )
    return messages


def run_tests(graph: dict, con: duckdb.DuckDBPyConnection) -> list[TestResult]:
    """Run every test of a compiled graph on `con`; return one result per test."""
    default_project = (graph.get("projectConfig") or {}).get("defaultDatabase") or "lakehouse-local"
    results = []
    for test in graph.get("tests") or []:
        name, file_name = test.get("name", "?"), test.get("fileName", "")
        try:
            actual = _rows(con, test["testQuery"], default_project)
            expected = _rows(con, test["expectedOutputQuery"], default_project)
        except (scripts.UnsupportedConstruct, scripts.TranslationError, duckdb.Error) as error:
            results.append(TestResult(name, file_name, False, [f"Error thrown: {str(error).splitlines()[0]}."]))
            continue
        messages = compare(name, actual, expected)
        results.append(TestResult(name, file_name, not messages, messages))
    return results
