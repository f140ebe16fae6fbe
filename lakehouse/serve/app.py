"""The FastAPI app: a list route per gold table, point lookups by key, API keys and per-key rate limits."""

from __future__ import annotations

import decimal
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakehouse.serve.backends import Backend, PageQuery, TableMissing
from lakehouse.serve.catalog import GoldTable
from lakehouse.serve.values import BadValue, decode_cursor, encode_cursor, parse, query_fingerprint

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
DEFAULT_RATE = "600/minute"
KEY_HEADER = "X-API-Key"
RESERVED = ("limit", "cursor", "format", "fields")
FORMATS = {"json": "application/json", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
JSON_TYPES = {
    "STRING": {"type": "string"},
    "INT64": {"type": "integer"},
    "FLOAT64": {"type": "number"},
    "NUMERIC": {"type": "string", "format": "decimal"},
    "BIGNUMERIC": {"type": "string", "format": "decimal"},
    "BOOL": {"type": "boolean"},
    "DATE": {"type": "string", "format": "date"},
    "DATETIME": {"type": "string", "format": "date-time"},
    "TIMESTAMP": {"type": "string", "format": "date-time"},
}
UTC_ZONES = ("UTC", "Etc/UTC", "+00:00", "Z")
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


class ApiError(Exception):
    """A request the API refuses: HTTP status, a stable code and a message naming what is wrong."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Return the JSON error body every refusal uses: {"error": {"code", "message"}}."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


@dataclass(frozen=True)
class ApiKey:
    """A client of the API: its name (in logs and rate limits), its secret and its rate ("600/minute")."""

    name: str
    secret: str
    rate: str = DEFAULT_RATE


def keys_from_env(environ: Mapping[str, str]) -> list[ApiKey]:
    """Return the keys of LAKEHOUSE_API_KEYS (`name:secret[:rate]`, comma-separated; rate default
    LAKEHOUSE_API_RATE or 600/minute).

    Raises ValueError naming the entry that is malformed, whose secret is shorter than 16 characters
    or whose rate `limits` cannot parse.
    """
    from limits import parse as parse_rate

    default_rate = environ.get("LAKEHOUSE_API_RATE", DEFAULT_RATE)
    keys: list[ApiKey] = []
    for number, entry in enumerate(filter(None, (e.strip() for e in environ.get("LAKEHOUSE_API_KEYS", "").split(",")))):
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ValueError(f"LAKEHOUSE_API_KEYS entry {number + 1} is not name:secret or name:secret:rate")
        name, secret, rate = parts[0], parts[1], parts[2] if len(parts) == 3 else default_rate
        if len(secret) < 16:
            raise ValueError(f"LAKEHOUSE_API_KEYS: the secret of {name!r} is shorter than 16 characters")
        try:
            parse_rate(rate)
        except ValueError as error:
            raise ValueError(f"LAKEHOUSE_API_KEYS: rate {rate!r} of {name!r} is not like 600/minute") from error
        keys.append(ApiKey(name, secret, rate))
    if len({k.name for k in keys}) != len(keys):
        raise ValueError("LAKEHOUSE_API_KEYS: key names must differ")
    return keys


class Guard:
    """Checks the API key of a request and counts it against that key's rate limit."""

    def __init__(self, keys: list[ApiKey]) -> None:
        from limits import parse as parse_rate
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.keys = keys
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.rates = {k.name: parse_rate(k.rate) for k in keys}

    async def __call__(self, request: Request) -> str | None:
        # async: it never blocks, and a sync dependency would cost every request a thread-pool hop.
        """Return the name of the request's key (None when the API is open); raises ApiError 401/403/429."""
        if not self.keys:
            return None
        given = request.headers.get(KEY_HEADER)
        if not given:
            raise ApiError(401, "missing_key", f"this API needs a key: send it in the {KEY_HEADER} header")
        # Compare with every key, in constant time each, so timing does not say which prefix matched.
        matches = [k for k in self.keys if hmac.compare_digest(k.secret.encode(), given.encode())]
        if not matches:
            raise ApiError(403, "wrong_key", f"the {KEY_HEADER} given is not a key of this API")
        key = matches[0]
        rate = self.rates[key.name]
        if not self.limiter.hit(rate, key.name):
            reset = self.limiter.get_window_stats(rate, key.name).reset_time
            wait = max(1, int(reset - time.time()) + 1)
            raise ApiError(
                429, "rate_limited", f"key {key.name!r} is limited to {key.rate}; retry in {wait} s",
                {"Retry-After": str(wait)},
            )  # fmt: skip
        return key.name


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _textual(rows: pa.Table) -> pa.Table:
    """Return `rows` with timestamps (RFC 3339, `Z` for UTC), dates and decimals as Arrow strings.

    Converting them in Arrow is vectorised; Python datetime objects with a zone would cost a 1,000-row
    page about 8 ms of CPU more.
    """
    import pyarrow.compute as pc

    columns = []
    for field, column in zip(rows.schema, rows.columns, strict=True):
        if pa.types.is_timestamp(field.type) and field.type.tz in (None, *UTC_ZONES):
            # Arrow's cast to text of the UTC clock reading is ten times cheaper than its strftime
            # (which looks the zone up per value) and writes the same digits.
            column = pc.replace_substring(column.cast(pa.timestamp(field.type.unit)).cast(pa.string()), " ", "T")
            if field.type.tz:
                column = pc.binary_join_element_wise(column, pa.scalar("Z"), pa.scalar(""))
        elif pa.types.is_timestamp(field.type):
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
        elif pa.types.is_date(field.type) or pa.types.is_decimal(field.type):
            column = column.cast(pa.string())
        columns.append(column)
    return pa.table(columns, names=rows.column_names)


def _records(rows: pa.Table) -> list[dict[str, Any]]:
    """Return the rows as dicts of JSON-ready values; column by column, which costs a 1,000-row page
    about half of what Arrow's row-wise to_pylist does."""
    textual = _textual(rows)
    names = textual.column_names
    columns = [column.to_pylist() for column in textual.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _body(rows: pa.Table, fmt: str, envelope: dict[str, Any]) -> bytes:
    if fmt == "json":
        return orjson.dumps({**envelope, "rows": _records(rows)}, default=_json_default)
    sink = pa.BufferOutputStream()
    if fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(rows, sink)
    else:
        import pyarrow.parquet as pq

        pq.write_table(rows, sink)
    return sink.getvalue().to_pybytes()


def _row_schema(table: GoldTable) -> dict[str, Any]:
    properties = {}
    for column in table.types or dict.fromkeys(table.columns, "OTHER"):
        schema = dict(JSON_TYPES.get(table.types.get(column, "OTHER"), {}))
        schema["description"] = table.columns.get(column, "")
        properties[column] = schema
    return {"type": "object", "description": table.description, "properties": properties}


def _parameter(name: str, description: str, schema: dict[str, Any], where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description, "schema": schema}


def _openapi(table: GoldTable, lookup: bool) -> dict[str, Any]:
    """Return the OpenAPI parameters and responses of a table route, from the column descriptions."""
    parameters = []
    if lookup:
        column = table.lookup_key
        parameters.append(
            _parameter(column, table.columns.get(column, ""), JSON_TYPES.get(table.types.get(column), {}), "path")
        )
    else:
        for column in table.filters:
            role = "partition column" if column == table.partition_by else "cluster column"
            parameters.append(
                _parameter(
                    column, f"{table.columns.get(column, '')} Rows equal to this ({role}).",
                    JSON_TYPES.get(table.types.get(column), {}),
                )
            )  # fmt: skip
        parameters += [
            _parameter("limit", f"Rows per page, 1-{MAX_LIMIT}.",
                       {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
            _parameter("cursor", "next_cursor of the previous page, unchanged.", {"type": "string"}),
            _parameter("fields", "Comma-separated columns to return (default: all).", {"type": "string"}),
        ]  # fmt: skip
    parameters.append(
        _parameter("format", "Response format (or send an Accept header).", {"type": "string", "enum": list(FORMATS)})
    )
    row = _row_schema(table)
    envelope = (
        {"row": row}
        if lookup
        else {"rows": {"type": "array", "items": row}, "next_cursor": {"type": ["string", "null"]}}
    )
    ok = {
        "description": table.description,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"table": {"type": "string"}, **envelope}}
            },
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    errors = {
        str(code): {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for code, text in (
            (400, "Unknown parameter or column, bad value, bad cursor or limit."),
            (401, "No API key."),
            (403, "Wrong API key."),
            (404, "No row with this key."),
            (429, "Rate limit of the key reached."),
            (503, "The table is not built yet, or the warehouse cannot be read."),
        )
        if lookup or code != 404
    }
    return {"parameters": parameters, "responses": {"200": ok, **errors}}


class Server:
    """The tables, backend and rules behind the routes."""

    def __init__(self, tables: dict[str, GoldTable], backend: Backend) -> None:
        self.backend = backend
        self.tables: dict[str, GoldTable] = {}
        for name, table in tables.items():
            self.tables[name] = self._with_types(table)

    def _with_types(self, table: GoldTable) -> GoldTable:
        try:
            types = self.backend.types(table)
        except TableMissing:
            return table
        from dataclasses import replace

        return replace(table, types=types)

    def table(self, name: str) -> GoldTable:
        """Return the table with its column types; raises ApiError 503 when it is not built yet."""
        table = self.tables[name]
        if not table.types:
            table = self.tables[name] = self._with_types(table)
        if not table.types:
            raise ApiError(503, "table_not_built", f"{table.qualified} is not built yet: run the workflow first")
        return table

    def fetch(self, query: PageQuery) -> pa.Table:
        """Return the page; raises ApiError 503 when the backend fails."""
        try:
            return self.backend.page(query)
        except Exception as error:  # the backend's own errors: the warehouse is unreachable or broken
            log.exception("backend %s failed on %s", self.backend.name, query.table.qualified)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ApiError(503, "backend_error", f"{query.table.qualified} could not be read: {first}") from error


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ApiError(400, "repeated_parameter", f"{name!r} is given {len(values)} times; give it once")
    return values[0] if values else None


def _format(request: Request) -> str:
    fmt = _single(request, "format")
    if fmt is None:
        accept = request.headers.get("accept", "")
        fmt = next((name for name, mime in FORMATS.items() if mime in accept), "json")
    if fmt not in FORMATS:
        raise ApiError(400, "unknown_format", f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


def _fields(request: Request, table: GoldTable) -> tuple[str, ...]:
    text = _single(request, "fields")
    if text is None:
        return tuple(table.types)
    fields = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    unknown = [f for f in fields if f not in table.types]
    if unknown or not fields:
        raise ApiError(
            400, "unknown_column",
            f"{', '.join(map(repr, unknown)) or 'no column'} is not a column of {table.name}; "
            f"columns: {', '.join(table.types)}",
        )  # fmt: skip
    return fields


def _limit(request: Request) -> int:
    text = _single(request, "limit")
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise ApiError(400, "bad_limit", f"limit {text[:40]!r} is not a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "limit_out_of_range", f"limit must be between 1 and {MAX_LIMIT}; got {limit}")
    return limit


def _respond(table: GoldTable, rows: pa.Table, fmt: str, envelope: dict, headers: dict) -> Response:
    return Response(_body(rows, fmt, {"table": table.qualified, **envelope}), media_type=FORMATS[fmt], headers=headers)


def _list_route(server: Server, name: str):
    def list_rows(request: Request) -> Response:
        table = server.table(name)
        allowed = set(RESERVED) | set(table.filters)
        for param in request.query_params:
            if param in allowed:
                continue
            if param in table.types:
                raise ApiError(
                    400, "not_filterable",
                    f"{param!r} is not a partition or cluster column of {name}; filter on: {', '.join(table.filters)}",
                )  # fmt: skip
            raise ApiError(
                400, "unknown_column",
                f"{param!r} is not a column or parameter of {name}; filter on: {', '.join(table.filters)}; "
                f"parameters: {', '.join(RESERVED)}",
            )  # fmt: skip
        fmt, limit, fields = _format(request), _limit(request), _fields(request, table)
        filters: dict[str, Any] = {}
        try:
            for column in table.filters:
                text = _single(request, column)
                if text is not None:
                    filters[column] = parse(column, table.types[column], text)
            order = table.page_order(filters)
            fingerprint = query_fingerprint(table.qualified, filters, order)
            cursor = _single(request, "cursor")
            after = None
            if cursor is not None:
                after = tuple(decode_cursor(cursor, fingerprint, {k: table.types[k] for k in order}))
        except BadValue as error:
            code = "bad_cursor" if "cursor" in str(error) else "bad_value"
            raise ApiError(400, code, str(error)) from None
        columns = tuple(dict.fromkeys([*fields, *order]))
        rows = server.fetch(PageQuery(table, columns, tuple(filters.items()), after, limit + 1))
        next_cursor = None
        if rows.num_rows > limit:
            rows = rows.slice(0, limit)
            last = rows.slice(limit - 1, 1).select(list(order)).to_pylist()[0]
            next_cursor = encode_cursor(fingerprint, [last[k] for k in order])
        headers = {"X-Next-Cursor": next_cursor} if next_cursor else {}
        return _respond(table, rows.select(list(fields)), fmt, {"next_cursor": next_cursor}, headers)

    list_rows.__name__ = f"list_{name}"
    return list_rows


def _lookup_route(server: Server, name: str):
    def lookup(request: Request) -> Response:
        table = server.table(name)
        column = table.lookup_key
        for param in request.query_params:
            if param != "format":
                raise ApiError(400, "unknown_column", f"{param!r} is not a parameter of a lookup; only: format")
        fmt = _format(request)
        try:
            value = parse(column, table.types[column], request.path_params[column])
        except BadValue as error:
            raise ApiError(400, "bad_value", str(error)) from None
        rows = server.fetch(PageQuery(table, tuple(table.types), ((column, value),), None, 1))
        if rows.num_rows == 0:
            raise ApiError(404, "not_found", f"no row of {name} has {column} = {request.path_params[column]!r}")
        if fmt == "json":
            row = _records(rows)[0]
            body = orjson.dumps({"table": table.qualified, "row": row}, default=_json_default)
            return Response(body, media_type=FORMATS[fmt])
        return _respond(table, rows, fmt, {}, {})

    lookup.__name__ = f"get_{name}"
    return lookup


def create_app(
    tables: dict[str, GoldTable],
    backend: Backend,
    keys: list[ApiKey],
    *,
    require_keys: bool = False,
    title: str = "Lakehouse gold API",
) -> FastAPI:
    """Return the read-only API over `tables`.

    Raises ValueError when `require_keys` (a deployed API) and no key is configured.
    """
    if require_keys and not keys:
        raise ValueError("no API keys configured (LAKEHOUSE_API_KEYS): a deployed API must require keys")
    server = Server(tables, backend)
    guard = Guard(keys)
    app = FastAPI(
        title=title,
        description="Read-only access to the gold tables. Each table's description and columns come from its "
        "Dataform config. " + (f"Send a key in the {KEY_HEADER} header." if keys else "Open: no API keys configured."),
        version="1",
    )
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            return error_response(404, "no_such_route", f"{request.url.path} is not a route; see /docs")
        if error.status_code == 405:
            return error_response(405, "method_not_allowed", f"{request.method} is not allowed: the API is read-only")
        return error_response(error.status_code, "http_error", str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, "bad_request", "; ".join(str(e.get("msg")) for e in error.errors()))

    @app.get("/health", tags=["operations"], summary="The process is up.")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], summary="The warehouse answers and every gold table exists.")
    def ready() -> Response:
        try:
            backend.check()
        except Exception as error:  # any backend failure means not ready; the reason goes back to the prober
            return error_response(503, "not_ready", f"the {backend.name} warehouse does not answer: {error}")
        missing = []
        for name in server.tables:
            try:
                server.table(name)
            except ApiError:
                missing.append(server.tables[name].qualified)
        if missing:
            return error_response(503, "not_ready", f"not built yet: {', '.join(missing)}")
        return JSONResponse({"status": "ready", "backend": backend.name, "tables": sorted(server.tables)})

    dependencies = [Depends(guard)]
    for name, table in sorted(tables.items()):
        app.add_api_route(
            f"/v1/{name}", _list_route(server, name), methods=["GET"], tags=["gold"], dependencies=dependencies,
            summary=f"List {name}: {table.description}", openapi_extra=_openapi(server.tables[name], False),
        )  # fmt: skip
        if table.lookup_key:
            app.add_api_route(
                f"/v1/{name}/{{{table.lookup_key}}}", _lookup_route(server, name), methods=["GET"], tags=["gold"],
                dependencies=dependencies, summary=f"One row of {name} by {table.lookup_key}",
                openapi_extra=_openapi(server.tables[name], True),
            )  # fmt: skip
    return app

