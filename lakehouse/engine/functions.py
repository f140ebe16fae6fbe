"""DuckDB functions and macros that give translated BigQuery SQL BigQuery's results."""

from __future__ import annotations

import inspect
import json
import os
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb
import farmhash
from duckdb.sqltypes import BIGINT, BLOB, VARCHAR

if TYPE_CHECKING:
    from sqlglot import exp

# Real time spent in script loops so far in the action (an INTERVAL), added to an injected clock.
CLOCK_OFFSET_VARIABLE = "__lakehouse_clock_offset"

_INT_PATTERN = r"^\s*[+-]?[0-9]+\s*$"
_HEX_PATTERN = r"^\s*[+-]?0[xX][0-9a-fA-F]+\s*$"

# A number as LAX_INT64 and LAX_FLOAT64 read it from a JSON string: optional sign, digits with an
# optional fraction, optional exponent, surrounding spaces.
_LAX_NUMBER_PATTERN = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"

# BigQuery's canonical DATE and DATETIME strings (no time zone, no time in a DATE).
DATE_PATTERN = r"^\s*[0-9]{1,4}-[0-9]{1,2}-[0-9]{1,2}\s*$"
DATETIME_PATTERN = r"^\s*[0-9]{1,4}-[0-9]{1,2}-[0-9]{1,2}([ T][0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\.[0-9]{1,6})?)?)?\s*$"

# Each macro is TEMP: it lives in the connection, never in a warehouse file, and is found from any
# catalog the connection USEs. `typeof(x)` is folded at bind time, so only one branch runs per call.
# DuckDB's own BIGINT cast takes surrounding whitespace, so decimal strings need no trim (a trim
# costs more than the cast).
MACROS: dict[str, str] = {
    # Marks the path of `x IN UNNEST(t.arr.field)` for translate.flatten_array_paths; otherwise the path itself.
    "lakehouse_elements": "(x) AS x",
    # CAST(x AS INT64): strings must be integer literals (decimal or 0x hex, optional sign and
    # surrounding spaces); '1.5', '1e3' and '1_000' are errors, as in BigQuery.
    "bq_cast_int64": f"""(x) AS CASE
        WHEN x IS NULL THEN CAST(NULL AS BIGINT)
        WHEN typeof(x) <> 'VARCHAR' THEN CAST(x AS BIGINT)
        WHEN regexp_full_match(CAST(x AS VARCHAR), '{_INT_PATTERN}') THEN CAST(CAST(x AS VARCHAR) AS BIGINT)
        WHEN regexp_full_match(CAST(x AS VARCHAR), '{_HEX_PATTERN}')
            THEN CAST(ltrim(trim(CAST(x AS VARCHAR)), '+-') AS BIGINT)
                 * CASE WHEN starts_with(trim(CAST(x AS VARCHAR)), '-') THEN -1 ELSE 1 END
        ELSE error('Bad int64 value: ' || CAST(x AS VARCHAR)) END""",
    # SAFE_CAST(x AS INT64): the same rule, NULL instead of an error.
    "bq_safe_cast_int64": f"""(x) AS CASE
        WHEN x IS NULL THEN CAST(NULL AS BIGINT)
        WHEN typeof(x) <> 'VARCHAR' THEN TRY_CAST(x AS BIGINT)
        WHEN regexp_full_match(CAST(x AS VARCHAR), '{_INT_PATTERN}') THEN TRY_CAST(CAST(x AS VARCHAR) AS BIGINT)
        WHEN regexp_full_match(CAST(x AS VARCHAR), '{_HEX_PATTERN}')
            THEN TRY_CAST(ltrim(trim(CAST(x AS VARCHAR)), '+-') AS BIGINT)
                 * CASE WHEN starts_with(trim(CAST(x AS VARCHAR)), '-') THEN -1 ELSE 1 END
        ELSE CAST(NULL AS BIGINT) END""",
    # CAST(x AS BOOL): only 'true' and 'false' (any case) convert; DuckDB also takes 'yes', 't', '1'.
    "bq_cast_bool": """(x) AS CASE
        WHEN x IS NULL THEN CAST(NULL AS BOOLEAN)
        WHEN typeof(x) <> 'VARCHAR' THEN CAST(x AS BOOLEAN)
        WHEN lower(CAST(x AS VARCHAR)) = 'true' THEN true
        WHEN lower(CAST(x AS VARCHAR)) = 'false' THEN false
        ELSE error('Bad bool value: ' || CAST(x AS VARCHAR)) END""",
    "bq_safe_cast_bool": """(x) AS CASE
        WHEN x IS NULL THEN CAST(NULL AS BOOLEAN)
        WHEN typeof(x) <> 'VARCHAR' THEN TRY_CAST(x AS BOOLEAN)
        WHEN lower(CAST(x AS VARCHAR)) = 'true' THEN true
        WHEN lower(CAST(x AS VARCHAR)) = 'false' THEN false
        ELSE CAST(NULL AS BOOLEAN) END""",
    # CAST(x AS DATE) / CAST(x AS DATETIME) of a string: BigQuery's canonical format only; DuckDB
    # would read '2024-01-02 03:04:05' as a DATE and drop the '+02:00' of a DATETIME.
    "bq_cast_date": f"""(x) AS CASE
        WHEN typeof(x) <> 'VARCHAR' THEN CAST(x AS DATE)
        WHEN x IS NULL OR regexp_full_match(CAST(x AS VARCHAR), '{DATE_PATTERN}') THEN CAST(x AS DATE)
        ELSE error('Invalid date: ' || CAST(x AS VARCHAR)) END""",
    "bq_safe_cast_date": f"""(x) AS CASE
        WHEN typeof(x) <> 'VARCHAR' THEN TRY_CAST(x AS DATE)
        WHEN regexp_full_match(CAST(x AS VARCHAR), '{DATE_PATTERN}') THEN TRY_CAST(x AS DATE)
        ELSE CAST(NULL AS DATE) END""",
    "bq_cast_datetime": f"""(x) AS CASE
        WHEN typeof(x) <> 'VARCHAR' THEN CAST(x AS TIMESTAMP)
        WHEN x IS NULL OR regexp_full_match(CAST(x AS VARCHAR), '{DATETIME_PATTERN}') THEN CAST(x AS TIMESTAMP)
        ELSE error('Invalid datetime string: ' || CAST(x AS VARCHAR)) END""",
    "bq_safe_cast_datetime": f"""(x) AS CASE
        WHEN typeof(x) <> 'VARCHAR' THEN TRY_CAST(x AS TIMESTAMP)
        WHEN regexp_full_match(CAST(x AS VARCHAR), '{DATETIME_PATTERN}') THEN TRY_CAST(x AS TIMESTAMP)
        ELSE CAST(NULL AS TIMESTAMP) END""",
    # CAST(x AS STRING) and STRING(json): JSON strings lose their quotes, BYTES decode as UTF-8
    # (DuckDB would print \\xNN escapes; BLOB->VARCHAR->BLOB is lossless, backslash included), whole
    # FLOAT64 values print without '.0', NUMERIC without trailing zeros.
    "bq_to_string": """(x) AS CASE
        WHEN typeof(x) = 'BLOB' THEN decode(CAST(CAST(x AS VARCHAR) AS BLOB))
        WHEN typeof(x) = 'JSON' THEN json_extract_string(CAST(x AS JSON), '$')
        WHEN typeof(x) IN ('DOUBLE', 'FLOAT')
             AND isfinite(TRY_CAST(x AS DOUBLE))
             AND TRY_CAST(x AS DOUBLE) = round(TRY_CAST(x AS DOUBLE))
             AND abs(TRY_CAST(x AS DOUBLE)) < 1e15
            THEN CAST(CAST(TRY_CAST(x AS DOUBLE) AS BIGINT) AS VARCHAR)
        WHEN typeof(x) LIKE 'DECIMAL%' AND contains(CAST(x AS VARCHAR), '.')
            THEN rtrim(rtrim(CAST(x AS VARCHAR), '0'), '.')
        ELSE CAST(x AS VARCHAR) END""",
    # CAST(x AS TIMESTAMP) of a string. A string naming a time zone ('2026-11-30 10:00:00 Asia/Tokyo') is
    # cast apart from the others: DuckDB 1.5.5 reads the zone-less strings after it in the same vector in
    # that zone. BigQuery's range is the years 1 to 9999 (DuckDB takes year 0 and 10000).
    "bq_timestamp_in_range": """(t) AS CASE
        WHEN CAST(t AS DATE) BETWEEN DATE '0001-01-01' AND DATE '9999-12-31' THEN t END""",
    "bq_safe_cast_timestamp": """(x) AS CASE
        WHEN typeof(x) <> 'VARCHAR' THEN TRY_CAST(x AS TIMESTAMPTZ)
        ELSE bq_timestamp_in_range(CASE WHEN regexp_matches(CAST(x AS VARCHAR), '[A-Za-z]{2}')
            THEN TRY_CAST(x AS TIMESTAMPTZ) ELSE TRY_CAST(x AS TIMESTAMPTZ) END) END""",
    "bq_cast_timestamp": """(x) AS CASE
        WHEN typeof(x) <> 'VARCHAR' THEN CAST(x AS TIMESTAMPTZ)
        WHEN x IS NULL THEN CAST(NULL AS TIMESTAMPTZ)
        ELSE coalesce(
            bq_timestamp_in_range(CASE WHEN regexp_matches(CAST(x AS VARCHAR), '[A-Za-z]{2}')
                THEN CAST(x AS TIMESTAMPTZ) ELSE CAST(x AS TIMESTAMPTZ) END),
            error('Invalid timestamp: ' || CAST(x AS VARCHAR))) END""",
    # TIME(ts) / CAST(ts AS TIME): the time of day in UTC; DuckDB has no cast from TIMESTAMPTZ to TIME.
    # (Through TIMETZ, which every input type casts to; the session time zone is UTC.)
    "bq_cast_time": """(x) AS CAST(CAST(x AS TIMETZ) AS TIME)""",
    # The JSON converters INT64, FLOAT64, BOOL, STRING (`safe`: SAFE.<f>, NULL instead of an error, since
    # DuckDB's TRY refuses error()) and the LAX_ ones, by the JSON value's type: DuckDB reads a JSON
    # number as UBIGINT (non-negative integer), BIGINT (negative) or DOUBLE, and JSON null as 'NULL'.
    "bq_json_int64": """(x, safe := false) AS CASE
        WHEN x IS NULL THEN CAST(NULL AS BIGINT)
        WHEN json_type(CAST(x AS JSON)) IN ('UBIGINT', 'BIGINT', 'DOUBLE')
             AND TRY_CAST(CAST(x AS JSON) AS DOUBLE) = trunc(TRY_CAST(CAST(x AS JSON) AS DOUBLE))
             AND TRY_CAST(CAST(x AS JSON) AS HUGEINT) BETWEEN -9223372036854775808 AND 9223372036854775807
            THEN CAST(CAST(CAST(x AS JSON) AS HUGEINT) AS BIGINT)
        WHEN safe THEN CAST(NULL AS BIGINT)
        ELSE error('INT64 takes a JSON number that is an integer in the INT64 range, not '
                   || CAST(x AS VARCHAR)) END""",
    "bq_json_float64": """(x, safe := false) AS CASE
        WHEN x IS NULL THEN CAST(NULL AS DOUBLE)
        WHEN json_type(CAST(x AS JSON)) IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN CAST(CAST(x AS JSON) AS DOUBLE)
        WHEN safe THEN CAST(NULL AS DOUBLE)
        ELSE error('FLOAT64 takes a JSON number, not ' || CAST(x AS VARCHAR)) END""",
    "bq_json_bool": """(x, safe := false) AS CASE
        WHEN x IS NULL THEN CAST(NULL AS BOOLEAN)
        WHEN json_type(CAST(x AS JSON)) = 'BOOLEAN' THEN CAST(CAST(x AS JSON) AS BOOLEAN)
        WHEN safe THEN CAST(NULL AS BOOLEAN)
        ELSE error('BOOL takes a JSON boolean, not ' || CAST(x AS VARCHAR)) END""",
    "bq_json_string": """(x, safe := false) AS CASE
        WHEN x IS NULL THEN CAST(NULL AS VARCHAR)
        WHEN json_type(CAST(x AS JSON)) = 'VARCHAR' THEN json_extract_string(CAST(x AS JSON), '$')
        WHEN safe THEN CAST(NULL AS VARCHAR)
        ELSE error('STRING takes a JSON string, not ' || CAST(x AS VARCHAR)) END""",
    # STRING(x): of JSON, the converter above; of a TIMESTAMP (or anything else), CAST(x AS STRING).
    "bq_string": """(x, safe := false) AS CASE
        WHEN typeof(x) = 'JSON' THEN bq_json_string(x, safe := safe)
        ELSE bq_to_string(x) END""",
    # A JSON string holding a number as LAX_INT64/LAX_FLOAT64 read it ('+1.5', '1.1e2', ' 10 ').
    "bq_lax_number_text": f"""(s) AS regexp_full_match(s, '{_LAX_NUMBER_PATTERN}')""",
    "bq_lax_int64": """(x) AS CASE json_type(CAST(x AS JSON))
        WHEN 'BOOLEAN' THEN CAST(CAST(CAST(x AS JSON) AS BOOLEAN) AS BIGINT)
        WHEN 'UBIGINT' THEN TRY_CAST(CAST(x AS JSON) AS BIGINT)
        WHEN 'BIGINT' THEN CAST(CAST(x AS JSON) AS BIGINT)
        WHEN 'DOUBLE' THEN TRY_CAST(round(CAST(CAST(x AS JSON) AS DOUBLE)) AS BIGINT)
        WHEN 'VARCHAR' THEN CASE
            WHEN NOT bq_lax_number_text(json_extract_string(CAST(x AS JSON), '$')) THEN CAST(NULL AS BIGINT)
            ELSE coalesce(
                TRY_CAST(trim(json_extract_string(CAST(x AS JSON), '$')) AS BIGINT),
                TRY_CAST(round(TRY_CAST(trim(json_extract_string(CAST(x AS JSON), '$')) AS DOUBLE)) AS BIGINT)) END
        ELSE CAST(NULL AS BIGINT) END""",
    "bq_lax_float64": """(x) AS CASE json_type(CAST(x AS JSON))
        WHEN 'UBIGINT' THEN CAST(CAST(x AS JSON) AS DOUBLE)
        WHEN 'BIGINT' THEN CAST(CAST(x AS JSON) AS DOUBLE)
        WHEN 'DOUBLE' THEN CAST(CAST(x AS JSON) AS DOUBLE)
        WHEN 'VARCHAR' THEN CASE
            WHEN bq_lax_number_text(json_extract_string(CAST(x AS JSON), '$'))
                 OR lower(trim(json_extract_string(CAST(x AS JSON), '$')))
                    IN ('nan', '+nan', '-nan', 'inf', '+inf', '-inf', 'infinity', '+infinity', '-infinity')
                THEN TRY_CAST(trim(json_extract_string(CAST(x AS JSON), '$')) AS DOUBLE)
            ELSE CAST(NULL AS DOUBLE) END
        ELSE CAST(NULL AS DOUBLE) END""",
    "bq_lax_bool": """(x) AS CASE json_type(CAST(x AS JSON))
        WHEN 'BOOLEAN' THEN CAST(CAST(x AS JSON) AS BOOLEAN)
        WHEN 'UBIGINT' THEN CAST(CAST(x AS JSON) AS DOUBLE) <> 0
        WHEN 'BIGINT' THEN CAST(CAST(x AS JSON) AS DOUBLE) <> 0
        WHEN 'DOUBLE' THEN CAST(CAST(x AS JSON) AS DOUBLE) <> 0
        WHEN 'VARCHAR' THEN CASE lower(json_extract_string(CAST(x AS JSON), '$'))
            WHEN 'true' THEN true WHEN 'false' THEN false ELSE CAST(NULL AS BOOLEAN) END
        ELSE CAST(NULL AS BOOLEAN) END""",
    "bq_lax_string": """(x) AS CASE json_type(CAST(x AS JSON))
        WHEN 'VARCHAR' THEN json_extract_string(CAST(x AS JSON), '$')
        WHEN 'BOOLEAN' THEN CAST(CAST(CAST(x AS JSON) AS BOOLEAN) AS VARCHAR)
        WHEN 'UBIGINT' THEN CAST(CAST(x AS JSON) AS VARCHAR)
        WHEN 'BIGINT' THEN CAST(CAST(x AS JSON) AS VARCHAR)
        WHEN 'DOUBLE' THEN bq_to_string(CAST(CAST(x AS JSON) AS DOUBLE))
        ELSE CAST(NULL AS VARCHAR) END""",
    # JSON_TYPE: BigQuery's names of the JSON types.
    "bq_json_type": """(x) AS CASE json_type(CAST(x AS JSON))
        WHEN 'UBIGINT' THEN 'number' WHEN 'BIGINT' THEN 'number' WHEN 'DOUBLE' THEN 'number'
        WHEN 'HUGEINT' THEN 'number' WHEN 'VARCHAR' THEN 'string' WHEN 'BOOLEAN' THEN 'boolean'
        WHEN 'NULL' THEN 'null' ELSE lower(json_type(CAST(x AS JSON))) END""",
    # a / b: BigQuery raises "division by zero"; DuckDB returns inf or NULL.
    "bq_divide": """(a, b) AS CASE
        WHEN b = 0 THEN error('division by zero: ' || CAST(a AS VARCHAR) || ' / ' || CAST(b AS VARCHAR))
        ELSE a / b END""",
    # SUBSTR: position 0, or before the start of the string, means 1 in BigQuery.
    "bq_substr": """(s, p, n := NULL) AS CASE
        WHEN n IS NULL THEN substring(s, CASE WHEN p = 0 OR p < -length(s) THEN 1 ELSE p END)
        ELSE substring(s, CASE WHEN p = 0 OR p < -length(s) THEN 1 ELSE p END, n) END""",
    # BYTE_LENGTH of STRING (UTF-8 bytes) or BYTES.
    "bq_byte_length": """(x) AS CASE
        WHEN typeof(x) = 'BLOB' THEN octet_length(CAST(CAST(x AS VARCHAR) AS BLOB))
        ELSE strlen(CAST(x AS VARCHAR)) END""",
    # CURRENT_DATETIME([zone]): the run's clock in UTC or the zone, as a DATETIME.
    "current_datetime": "(zone := 'UTC') AS CAST(timezone(zone, lakehouse_now()) AS TIMESTAMP)",
    # RANGE_BUCKET(point, boundaries): how many boundaries are <= point.
    "range_bucket": "(point, boundaries) AS CASE WHEN point IS NULL THEN NULL "
    "ELSE len(list_filter(boundaries, lambda b: b <= point)) END",
    # ARRAY_INCLUDES(array, value).
    "array_includes": "(arr, value) AS list_contains(arr, value)",
    # IEEE_DIVIDE: floating point division, inf and NaN instead of errors.
    "ieee_divide": "(a, b) AS CAST(a AS DOUBLE) / CAST(b AS DOUBLE)",
}

# Macros over the Python functions below (DuckDB binds a macro's body when it is made).

def _domain_macro(params: str, outside: str, message: str, result: str) -> str:
    """The body of a macro computing `result`, which fails with `message` (SQL) where `outside` holds,
    or is NULL then when called with safe := true (SAFE.<f>)."""
    return (
        f"({params}, safe := false) AS CASE WHEN {outside} THEN CASE WHEN safe THEN CAST(NULL AS DOUBLE) "
        f"ELSE error({message}) END ELSE {result} END"
    )


# Math functions outside their domain fail in BigQuery (`safe`: SAFE.<f>, NULL); DuckDB 1.5 fails with
# its own words and DuckDB 2.0 returns NaN or -inf. POW: a negative base with a fraction exponent, or 0
# to a negative power.
MACROS.update(
    {
        f"bq_{name}": _domain_macro("x", outside, f"'Argument to {name.upper()} {reason}: ' || CAST(x AS VARCHAR)",
                                    f"{name}(x)")  # fmt: skip
        for name, outside, reason in (
            ("sqrt", "x < 0", "cannot be negative"),
            ("ln", "x <= 0", "cannot be zero or negative"),
            ("acos", "x < -1 OR x > 1", "is out of range [-1, 1]"),
            ("asin", "x < -1 OR x > 1", "is out of range [-1, 1]"),
            ("atanh", "x <= -1 OR x >= 1", "is out of range (-1, 1)"),
            ("acosh", "x < 1", "cannot be less than 1"),
        )
    }
    | {
        "bq_log": _domain_macro(
            "base, x",
            "x <= 0 OR base <= 0 OR base = 1",
            "'Arguments to LOG must be positive and the base not 1: LOG(' || CAST(x AS VARCHAR) || ', ' "
            "|| CAST(base AS VARCHAR) || ')'",
            "log(base, x)",
        ),
        "bq_pow": _domain_macro(
            "x, y",
            "(x < 0 AND y <> trunc(y) AND isfinite(x) AND isfinite(y)) OR (x = 0 AND y < 0 AND isfinite(y))",
            "'POW(' || CAST(x AS VARCHAR) || ', ' || CAST(y AS VARCHAR) || ') is not a real number'",
            "pow(x, y)",
        ),
    }
)

PYTHON_MACROS: dict[str, str] = {
    # FARM_FINGERPRINT takes STRING or BYTES.
    "farm_fingerprint": """(x) AS CASE
        WHEN typeof(x) = 'BLOB' THEN bq_farm_fingerprint_bytes(CAST(CAST(x AS VARCHAR) AS BLOB))
        ELSE bq_farm_fingerprint_string(CAST(x AS VARCHAR)) END""",
}


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def farm_fingerprint(value: str | bytes) -> int:
    """Return BigQuery's FARM_FINGERPRINT: FarmHash Fingerprint64 as a signed INT64."""
    return _signed64(farmhash.fingerprint64(value))


def safe_convert_bytes_to_string(value: bytes) -> str:
    """Return BigQuery's SAFE_CONVERT_BYTES_TO_STRING: UTF-8 with invalid bytes as U+FFFD."""
    return bytes(value).decode("utf-8", errors="replace")


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JSON_KEYS_MODES = ("strict", "lax", "lax recursive")


def json_keys(text: str, max_depth: int, mode: str) -> list[str]:
    """Return BigQuery's JSON_KEYS of JSON `text`: every key path down to `max_depth` levels (-1: no
    limit), de-duplicated and sorted, nested keys joined with '.', a key that is not a plain name in
    double quotes. Keys inside arrays are skipped in mode 'strict', taken in 'lax' unless the array is
    directly inside another array, and always taken in 'lax recursive'."""
    mode = mode.strip().lower()
    if mode not in _JSON_KEYS_MODES:
        raise ValueError(f"JSON_KEYS mode must be one of {', '.join(_JSON_KEYS_MODES)}, not {mode!r}")
    if max_depth == 0 or max_depth < -1:
        raise ValueError(f"JSON_KEYS max_depth must be positive, not {max_depth}")
    keys: set[str] = set()

    def visit(node, prefix: str, depth: int, in_array: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                name = key if _PLAIN_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
                path = f"{prefix}.{name}" if prefix else name
                keys.add(path)
                if max_depth == -1 or depth < max_depth:
                    visit(value, path, depth + 1, False)
        elif isinstance(node, list) and mode != "strict" and not (in_array and mode == "lax"):
            for item in node:
                visit(item, prefix, depth, True)

    visit(json.loads(text), "", 1, False)
    return sorted(keys)


def _bigquery_type(duck: exp.DataType) -> str:
    from sqlglot import exp

    def name(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.DECIMAL:
            if [p.name for p in node.expressions] == ["38", "9"]:
                return exp.DataType.build("NUMERIC")
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.INT128:
            return exp.DataType.build("BIGINT")
        if isinstance(node, exp.ColumnDef):  # BigQuery prints field names bare, keywords too
            node.set("this", exp.var(node.name))
        return node

    return duck.transform(name).sql("bigquery")


def field_paths(data_type: str) -> list[dict]:
    """Return BigQuery's COLUMN_FIELD_PATHS rows of a column of DuckDB type `data_type`: the column itself
    (suffix "") and each field of its STRUCTs, also inside ARRAYs (suffix ".a", ".a.b"), with BigQuery type
    names (`STRUCT<a INT64, b ARRAY<STRING>>`). A type sqlglot cannot read is one row with DuckDB's spelling.
    """
    # sqlglot is imported here, not with the module: a run that needs no translation never loads it
    from sqlglot import exp
    from sqlglot.errors import ParseError

    try:
        parsed = exp.DataType.build(data_type, dialect="duckdb")
    except (ValueError, ParseError):
        return [{"suffix": "", "data_type": data_type}]
    rows: list[dict] = []

    def visit(node: exp.DataType, suffix: str) -> None:
        rows.append({"suffix": suffix, "data_type": _bigquery_type(node)})
        struct = node
        while struct.this == exp.DataType.Type.ARRAY and struct.expressions:
            struct = struct.expressions[0]
        if struct.this == exp.DataType.Type.STRUCT:
            for field in struct.expressions:
                if isinstance(field, exp.ColumnDef) and isinstance(field.args.get("kind"), exp.DataType):
                    visit(field.args["kind"], f"{suffix}.{field.name}")

    visit(parsed, "")
    return rows


# The functions the engine runs in Python, by the BigQuery names that translate to them. DuckDB imports
# numpy on the first Python function a process registers (~50–90 ms), so a run whose SQL names none of
# them registers them only if a statement misses one (register_missing_udf).
_UDF_SOURCES = ("FARM_FINGERPRINT", "SAFE_CONVERT_BYTES_TO_STRING", "COLUMN_FIELD_PATHS", "JSON_KEYS")
_MISSING_UDF = re.compile(r"Scalar Function with name (\w+) does not exist")


def _udfs() -> dict[str, tuple]:
    return {
        "bq_farm_fingerprint_string": (farm_fingerprint, [VARCHAR], BIGINT),
        "bq_farm_fingerprint_bytes": (farm_fingerprint, [BLOB], BIGINT),
        "safe_convert_bytes_to_string": (safe_convert_bytes_to_string, [BLOB], VARCHAR),
        "bq_field_paths": (field_paths, [VARCHAR], duckdb.sqltype("STRUCT(suffix VARCHAR, data_type VARCHAR)[]")),
        "bq_json_keys": (json_keys, [VARCHAR, BIGINT, VARCHAR], duckdb.sqltype("VARCHAR[]")),
    }


def calls_python_udfs(texts) -> bool:
    """Return whether any of the BigQuery SQL `texts` names a function the engine runs in Python."""
    return any(name in text.upper() for text in texts for name in _UDF_SOURCES)


def _register_udf(con: duckdb.DuckDBPyConnection, name: str, function, params, returns) -> None:
    try:
        con.create_function(name, function, params, returns, side_effects=False)
    except (duckdb.NotImplementedException, duckdb.CatalogException) as error:
        # already registered on this connection, or on the one a cursor was made from
        if "already created" not in str(error) and "already exists" not in str(error):
            raise


def _register_python(con: duckdb.DuckDBPyConnection) -> None:
    for name, udf in _udfs().items():
        _register_udf(con, name, *udf)
    for name, body in PYTHON_MACROS.items():
        con.execute(f"CREATE OR REPLACE TEMP MACRO {name}{body}")


def register_missing_udf(con: duckdb.DuckDBPyConnection, error: str) -> bool:
    """When `error` says one of the engine's Python functions (or a macro over one) is not registered on
    con, register them; return whether it did (the caller runs the statement again)."""
    match = _MISSING_UDF.search(error)
    if not match or (match.group(1) not in _udfs() and match.group(1) not in PYTHON_MACROS):
        return False
    _register_python(con)
    return True


def register_functions(con: duckdb.DuckDBPyConnection, now: datetime | None = None, *, python: bool = True) -> None:
    """Register on `con` every UDF and macro translated SQL calls; safe to call twice.

    `now` fixes the clock that CURRENT_TIMESTAMP and friends read (default: each statement's start).
    With `python=False` the Python functions are left for register_missing_udf (a run whose SQL names
    none of them: calls_python_udfs). Raises duckdb.Error only if the connection is unusable.
    """
    if now is None:
        clock = "get_current_timestamp()"
    else:
        # Frozen at `now`, except that time passes inside a script loop (query.run_item sets the offset), so
        # a loop waiting for CURRENT_DATETIME to pass a deadline ends, as in BigQuery.
        clock = (
            f"TIMESTAMPTZ '{now.astimezone(UTC).isoformat()}' "
            f"+ coalesce(getvariable('{CLOCK_OFFSET_VARIABLE}'), INTERVAL 0 MICROSECOND)"
        )
    con.execute(f"CREATE OR REPLACE TEMP MACRO lakehouse_now() AS {clock}")
    for name, body in MACROS.items():
        con.execute(f"CREATE OR REPLACE TEMP MACRO {name}{body}")
    if python:
        _register_python(con)


def register_js_function(con: duckdb.DuckDBPyConnection, block) -> None:
    """Register a BigQuery JavaScript UDF (a translate.Block of kind js_function) on the connection.

    The body runs in an embedded V8 (mini-racer), one isolate per function, with its libraries loaded
    first; arguments and the result cross as JSON (NULL is null, ARRAY an array, STRUCT an object;
    INT64 arrives as a number, DATE/TIMESTAMP as ISO strings). Raises FileNotFoundError naming a library
    with no local copy.
    """

    from py_mini_racer import MiniRacer

    defining = bool(block.persistent) and block.persistent != _STORED
    if defining and not _create_persistent(con, block):
        return
    racer = MiniRacer()
    for uri, path in block.libraries:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"JavaScript library {uri} of function {block.variable} has no local copy at {path}; "
                "copy the file there"
            )
        with open(path, encoding="utf-8") as handle:
            racer.eval(handle.read())
    names = ", ".join(name for name, _ in block.params)
    racer.eval(
        f"function __lakehouse_udf(args) {{ const [{names}] = JSON.parse(args); "
        f"const result = (function({names}) {{ {block.code} \n}})({names}); "
        "return JSON.stringify(result === undefined ? null : result); }"
    )
    returns = block.returns.upper()

    def call(*args):
        result = json.loads(racer.call("__lakehouse_udf", json.dumps(args, default=str)))
        if result is not None and returns in ("BIGINT", "INTEGER"):
            return int(result)
        return result

    # DuckDB reads the arity from the signature.
    call.__signature__ = inspect.Signature(
        [inspect.Parameter(f"arg{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(len(block.params))]
    )
    name = js_function_name(block.variable) if block.persistent else block.variable
    try:
        con.remove_function(name)  # CREATE TEMP FUNCTION run again (the next action's script)
    except duckdb.Error:
        pass
    con.create_function(
        name,
        call,
        [duckdb.sqltype(t) for _, t in block.params],
        duckdb.sqltype(block.returns),
        null_handling="special",
        side_effects=True,
    )
    if defining:
        catalog, schema, function = (_quote(part) for part in block.variable.split("."))
        params = ", ".join(_quote(p) for p, _ in block.params)
        con.execute(f"CREATE OR REPLACE MACRO {catalog}.{schema}.{function}({params}) AS {name}({params})")


# Persistent JavaScript functions: the definition lives in the warehouse (this table, one row per function,
# in the function's project), the body runs in V8 under js_function_name(), and "project"."ds"."f" is a DuckDB
# macro calling it, so `ds.f(x)` resolves in any later action or run. A connection that has not registered
# the V8 function yet gets it from the table when DuckDB reports it missing (register_stored_js_function).
JS_FUNCTIONS = ("_lakehouse", "js_functions")
_JS_PREFIX = "bq_js__"
_STORED = "stored"  # Block.persistent of a definition read back from the warehouse


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def js_function_name(qualified: str) -> str:
    """Return the connection-level DuckDB function name that runs persistent function "project.ds.f"
    (a CRC keeps `a-b.c.f` and `a_b.c.f` apart once the name is reduced to letters, digits and `_`)."""
    readable = "".join(c if c.isalnum() else "_" for c in qualified)
    return f"{_JS_PREFIX}{readable}_{zlib.crc32(qualified.encode()):08x}"


def _create_persistent(con: duckdb.DuckDBPyConnection, block) -> bool:
    """Store a persistent function's definition in the warehouse; return False when IF NOT EXISTS finds it.

    Raises duckdb.CatalogException when a plain CREATE FUNCTION meets an existing function, as BigQuery does.
    """

    catalog, schema, function = block.variable.split(".")
    exists = con.execute(
        "SELECT count(*) FROM duckdb_functions() WHERE database_name = ? AND schema_name = ? AND function_name = ?",
        [catalog, schema, function],
    ).fetchone()[0]
    if exists and block.persistent == "CREATE MACRO IF NOT EXISTS":
        return False
    if exists and block.persistent == "CREATE MACRO":
        raise duckdb.CatalogException(f"Already Exists: Function {block.variable}")
    table = f"{_quote(catalog)}.{_quote(JS_FUNCTIONS[0])}.{_quote(JS_FUNCTIONS[1])}"
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(catalog)}.{_quote(JS_FUNCTIONS[0])}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} (name VARCHAR, qualified VARCHAR, definition VARCHAR)")
    con.execute(f"DELETE FROM {table} WHERE qualified = ?", [block.variable])
    definition = {
        "code": block.code,
        "params": [list(p) for p in block.params],
        "returns": block.returns,
        "libraries": [list(lib) for lib in block.libraries],
    }
    con.execute(
        f"INSERT INTO {table} VALUES (?, ?, ?)",
        [js_function_name(block.variable), block.variable, json.dumps(definition)],
    )
    return True


_MISSING_JS = re.compile(r"Scalar Function with name (" + _JS_PREFIX + r"\w+) does not exist")


def register_stored_js_function(con: duckdb.DuckDBPyConnection, error: str) -> bool:
    """When `error` says a persistent JavaScript function's V8 body is not registered on con, register it
    from the warehouse; return whether it did (the caller runs the statement again)."""

    match = _MISSING_JS.search(error)
    if not match:
        return False
    catalogs = con.execute(
        "SELECT database_name FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", list(JS_FUNCTIONS)
    ).fetchall()
    for (catalog,) in catalogs:
        table = f"{_quote(catalog)}.{_quote(JS_FUNCTIONS[0])}.{_quote(JS_FUNCTIONS[1])}"
        # fetched whole: DuckDB 2.0 refuses create_function while a result is still open
        rows = con.execute(f"SELECT qualified, definition FROM {table} WHERE name = ?", [match.group(1)]).fetchall()
        row = rows[0] if rows else None
        if row:
            definition = json.loads(row[1])
            block = _StoredFunction(
                variable=row[0],
                code=definition["code"],
                params=tuple(tuple(p) for p in definition["params"]),
                returns=definition["returns"],
                libraries=tuple(tuple(lib) for lib in definition["libraries"]),
            )
            register_js_function(con, block)
            return True
    return False


@dataclass(frozen=True)
class _StoredFunction:
    """A persistent JavaScript function read back from the warehouse (only its V8 body is registered)."""

    variable: str
    code: str
    params: tuple
    returns: str
    libraries: tuple
    persistent: str = _STORED
