"""Where the API reads gold: the local DuckDB warehouse, or BigQuery; parameterised queries only."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from lakehouse.serve.catalog import GoldTable
from lakehouse.serve.values import LEGACY_TYPES, duckdb_type


class TableMissing(LookupError):
    """A gold table the graph describes does not exist in the warehouse yet."""


@dataclass(frozen=True)
class PageQuery:
    """One page of a table: equality filters, the row to start after (its values of the page order,
    `table.page_order` of the filtered columns), and how many rows."""

    table: GoldTable
    columns: tuple[str, ...]
    filters: tuple[tuple[str, Any], ...]
    after: tuple[Any, ...] | None
    limit: int

    @property
    def order(self) -> tuple[str, ...]:
        """Return the columns the page is sorted by (GoldTable.page_order)."""
        return self.table.page_order(column for column, _ in self.filters)


def _keyset(order: tuple[str, ...], after: tuple[Any, ...], quote) -> tuple[str, list[tuple[str, Any]]]:
    """Return (condition, its parameters) selecting the rows after `after` in `order`, ascending with
    NULLs first: `(c1 > ?) or (c1 = ? and c2 > ?) ...`, as BigQuery can say it (it has no row-value
    comparison). A NULL in `after` is matched by `is null` and passed by `is not null`.

    When the first value is not NULL, `c1 >= ?` leads the condition: every later row has it, and a
    plain range on the leading column is what DuckDB's zone maps and BigQuery's block pruning skip on.
    """
    params: list[tuple[str, Any]] = []

    def equal(column: str, value: Any) -> str:
        if value is None:
            return f"{quote(column)} is null"
        params.append((column, value))
        return f"{quote(column)} = ?"

    terms = []
    for i, column in enumerate(order):
        parts = [equal(k, after[j]) for j, k in enumerate(order[:i])]
        if after[i] is None:
            parts.append(f"{quote(column)} is not null")
        else:
            params.append((column, after[i]))
            parts.append(f"{quote(column)} > ?")
        terms.append("(" + " and ".join(parts) + ")")
    condition = "(" + " or ".join(terms) + ")"
    if after[0] is not None:
        condition = f"{quote(order[0])} >= ? and {condition}"
        params.insert(0, (order[0], after[0]))
    return condition, params


def page_sql(query: PageQuery, table_sql: str, quote) -> tuple[str, list[tuple[str, Any]]]:
    """Return (SQL with `?` placeholders, the (column, value) of each placeholder in order).

    Identifiers come from the catalog (checked plain names); every value is a placeholder. Rows are
    sorted by `query.order`, ascending with NULLs first (BigQuery's default, written out for DuckDB).
    """
    where: list[str] = []
    params: list[tuple[str, Any]] = []
    for column, value in query.filters:
        where.append(f"{quote(column)} = ?")
        params.append((column, value))
    order = query.order
    if query.after is not None and order:
        condition, after = _keyset(order, query.after, quote)
        where.append(condition)
        params += after
    sql = f"select {', '.join(quote(c) for c in query.columns)} from {table_sql}"
    if where:
        sql += " where " + " and ".join(where)
    if order:
        sql += f" order by {', '.join(quote(c) + ' nulls first' for c in order)}"
    sql += " limit ?"
    params.append(("limit", query.limit))
    return sql, params


class Backend(Protocol):
    """What the API needs from a warehouse."""

    name: str

    def types(self, table: GoldTable) -> dict[str, str]:
        """Return column -> BigQuery type of `table`; raises TableMissing when it does not exist."""

    def page(self, query: PageQuery) -> pa.Table:
        """Return the rows of one page as an Arrow table."""

    def check(self) -> None:
        """Raise when the warehouse cannot answer a query."""


def _duck_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBBackend:
    """Reads the local warehouse files read-only; one DuckDB cursor per serving thread."""

    name = "duckdb"

    def __init__(self, home_dir: Path, projects: list[str]) -> None:
        from lakehouse import warehouse

        self._con = warehouse.connect(home_dir, projects, read_only=True, only_existing=True)
        # Requests are small and run side by side on the server's threads; DuckDB's own
        # parallelism per query would only add scheduling cost to each.
        self._con.execute("SET threads = 1")
        self._local = threading.local()

    def _cursor(self):
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._con.cursor()
        return cursor

    def types(self, table: GoldTable) -> dict[str, str]:
        rows = self._cursor().execute(
            "select column_name, data_type from information_schema.columns "
            "where table_catalog = ? and table_schema = ? and table_name = ? order by ordinal_position",
            [table.project, table.dataset, table.name],
        ).fetchall()
        if not rows:
            raise TableMissing(f"{table.qualified} does not exist in the local warehouse (run `lakehouse run`)")
        return {name: duckdb_type(kind) for name, kind in rows}

    def page(self, query: PageQuery) -> pa.Table:
        t = query.table
        table_sql = ".".join(_duck_quote(p) for p in (t.project, t.dataset, t.name))
        sql, params = page_sql(query, table_sql, _duck_quote)
        rows = self._cursor().execute(sql, [value for _, value in params]).to_arrow_table()
        # DuckDB sums BIGINTs into HUGEINT, which Arrow carries as decimal(38, 0); BigQuery says INT64.
        for i, field in enumerate(rows.schema):
            if t.types.get(field.name) == "INT64" and not pa.types.is_integer(field.type):
                rows = rows.set_column(i, field.name, rows.column(i).cast(pa.int64()))
        return rows

    def check(self) -> None:
        self._cursor().execute("select 1").fetchall()

    def close(self) -> None:
        self._con.close()


def _bq_quote(name: str) -> str:
    return f"`{name}`"


def bigquery_job(query: PageQuery) -> tuple[str, Any]:
    """Return (BigQuery SQL with @named parameters, the QueryJobConfig carrying their typed values)."""
    from google.cloud import bigquery

    t = query.table
    sql, params = page_sql(query, f"`{t.project}.{t.dataset}.{t.name}`", _bq_quote)
    pieces = sql.split("?")
    named, parameters = [pieces[0]], []
    for i, ((column, value), rest) in enumerate(zip(params, pieces[1:], strict=True)):
        kind = "INT64" if column == "limit" else t.types[column]
        parameters.append(bigquery.ScalarQueryParameter(f"p{i}", kind, value))
        named.append(f"@p{i}{rest}")
    config = bigquery.QueryJobConfig(query_parameters=parameters, use_legacy_sql=False)
    return "".join(named), config


class BigQueryBackend:
    """Reads gold in BigQuery with google-cloud-bigquery; every value travels as a query parameter."""

    name = "bigquery"

    def __init__(self, project: str, location: str | None = None, client: Any | None = None) -> None:
        self.project = project
        self.location = location
        self._client = client

    @property
    def client(self) -> Any:
        """Return the BigQuery client, created on first use (never at import time)."""
        if self._client is None:
            from google.cloud import bigquery

            self._client = bigquery.Client(project=self.project, location=self.location)
        return self._client

    def types(self, table: GoldTable) -> dict[str, str]:
        from google.api_core.exceptions import NotFound

        try:
            schema = self.client.get_table(table.qualified).schema
        except NotFound as error:
            raise TableMissing(f"{table.qualified} does not exist in BigQuery") from error
        return {
            f.name: "OTHER" if f.mode == "REPEATED" else LEGACY_TYPES.get(f.field_type, f.field_type) for f in schema
        }

    def page(self, query: PageQuery) -> pa.Table:
        sql, config = bigquery_job(query)
        return self.client.query(sql, job_config=config).to_arrow()

    def check(self) -> None:
        self.client.query("select 1").result()
