"""Request values as typed query parameters, and the opaque keyset cursor."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import hashlib
import re
from typing import Any

import orjson

# Filter values are matched by equality against ids, codes and dates. Anything else (quotes,
# semicolons, comparison operators, comments) is refused before it reaches a query, though values
# only ever travel as query parameters.
SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.:@+\- ]{1,200}$")
CURSOR_MAX_CHARS = 2000

# DuckDB's names for the types the warehouse holds, as BigQuery names them.
DUCKDB_TYPES = {
    "VARCHAR": "STRING",
    "BIGINT": "INT64",
    "INTEGER": "INT64",
    "HUGEINT": "INT64",
    "SMALLINT": "INT64",
    "TINYINT": "INT64",
    "DOUBLE": "FLOAT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "DATE": "DATE",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "TIMESTAMP": "DATETIME",
    "BLOB": "BYTES",
    "JSON": "JSON",
}
# The BigQuery API's legacy names, as the client's SchemaField.field_type reports them.
LEGACY_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "BIGNUMERIC": "BIGNUMERIC"}
FILTERABLE = ("STRING", "INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC", "BOOL", "DATE", "DATETIME", "TIMESTAMP")


class BadValue(ValueError):
    """A request value that does not fit its column; the message says which and why."""


def duckdb_type(name: str) -> str:
    """Return the BigQuery type of DuckDB type `name` (DECIMAL(p,s) is NUMERIC; anything else is OTHER)."""
    if name.startswith("DECIMAL"):
        return "NUMERIC"
    return DUCKDB_TYPES.get(name, "OTHER")


def parse(column: str, kind: str, text: str, *, any_text: bool = False) -> Any:
    """Return `text` as the Python value of a `kind` (BigQuery type) column.

    Only SAFE_TEXT is accepted unless `any_text` (cursor values, which this API wrote itself).
    Raises BadValue naming the column when the text is not such a value.
    """
    if kind not in FILTERABLE:
        raise BadValue(f"column {column!r} ({kind}) cannot be filtered on")
    if not any_text and not SAFE_TEXT.match(text):
        raise BadValue(
            f"value for {column!r} must be 1-200 characters of letters, digits, space and _ . : @ + -"
        )
    try:
        if kind == "STRING":
            return text
        if kind == "INT64":
            value = int(text)
            if not -(2**63) <= value < 2**63:
                raise ValueError("out of the INT64 range")
            return value
        if kind == "FLOAT64":
            return float(text)
        if kind in ("NUMERIC", "BIGNUMERIC"):
            return decimal.Decimal(text)
        if kind == "BOOL":
            if text.lower() not in ("true", "false"):
                raise ValueError("not true or false")
            return text.lower() == "true"
        if kind == "DATE":
            return dt.date.fromisoformat(text)
        if kind == "DATETIME":
            return dt.datetime.fromisoformat(text).replace(tzinfo=None)
        value = dt.datetime.fromisoformat(text)
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    except (ValueError, decimal.InvalidOperation) as error:
        raise BadValue(f"value {text!r} for {column!r} is not a {kind}: {error}") from error


def text_of(value: Any) -> str:
    """Return `value` as the text `parse` reads back to the same value."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def query_fingerprint(table: str, filters: dict[str, Any], order: tuple[str, ...] = ()) -> str:
    """Return a short digest of the table, filters and page order a cursor belongs to."""
    data = orjson.dumps([table, sorted((k, text_of(v)) for k, v in filters.items()), list(order)])
    return hashlib.sha256(data).hexdigest()[:16]


def encode_cursor(fingerprint: str, values: list[Any]) -> str:
    """Return the opaque cursor after the row whose values of the page order are `values` (NULL as null)."""
    data = orjson.dumps({"q": fingerprint, "after": [None if v is None else text_of(v) for v in values]})
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str, key: dict[str, str]) -> list[Any]:
    """Return the typed values a cursor points after; `key` maps the page order's columns to types, in order.

    Raises BadValue when the cursor is not one this API issued for the same table and filters.
    """
    if len(cursor) > CURSOR_MAX_CHARS:
        raise BadValue("cursor is too long to be one this API issued")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as error:
        raise BadValue("cursor is malformed: pass next_cursor from a previous page unchanged") from error
    if not isinstance(data, dict) or not isinstance(data.get("after"), list) or len(data["after"]) != len(key):
        raise BadValue("cursor is malformed: pass next_cursor from a previous page unchanged")
    if data.get("q") != fingerprint:
        raise BadValue(
            "cursor belongs to another table, other filters or another page order: start again without a cursor"
        )
    values = []
    for (column, kind), text in zip(key.items(), data["after"], strict=True):
        if text is None:
            values.append(None)
            continue
        if not isinstance(text, str):
            raise BadValue("cursor is malformed: pass next_cursor from a previous page unchanged")
        values.append(parse(column, kind, text, any_text=True))
    return values
