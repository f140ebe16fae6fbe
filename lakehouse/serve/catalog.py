"""What the API serves: each gold table's target, description, columns, partitioning and key, from the graph."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from lakehouse.serve.values import FILTERABLE

# Table and column names the API puts into SQL: they come from the compiled graph and the warehouse
# schema, and are still checked, so a hostile definition cannot smuggle SQL into an identifier.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
PROJECT = re.compile(r"^[a-z][a-z0-9\-]{0,62}[a-z0-9]$")


class CatalogError(ValueError):
    """The compiled graph does not describe a servable gold table; the message names it."""


@dataclass(frozen=True)
class GoldTable:
    """One gold table as the API serves it."""

    project: str
    dataset: str
    name: str
    description: str
    columns: dict[str, str]  # column -> description, in the config's order
    partition_by: str | None
    cluster_by: tuple[str, ...]
    key: tuple[str, ...]  # the uniqueKey assertion's columns: they end the order of every page
    types: dict[str, str] = field(default_factory=dict)  # column -> BigQuery type, from the backend

    @property
    def qualified(self) -> str:
        return f"{self.project}.{self.dataset}.{self.name}"

    @property
    def filters(self) -> tuple[str, ...]:
        """Return the columns a list request may filter on: partition column, then cluster columns."""
        names = ([self.partition_by] if self.partition_by else []) + list(self.cluster_by)
        return tuple(dict.fromkeys(names))

    def page_order(self, pinned: Iterable[str] = ()) -> tuple[str, ...]:
        """Return the columns a page is sorted by when the columns `pinned` are filtered by equality.

        The storage order (partition column, cluster columns; engine/layout.py, BigQuery's clustering)
        then the uniqueKey columns, which make it a total order; a pinned column is one value on every
        row, so it is left out (DuckDB skips row groups by the leading column of a top-N). Partition and
        cluster columns of a type a cursor cannot carry are left out too. Empty when the filters pin
        the whole key: at most one row matches.
        """
        pinned = set(pinned)
        if set(self.key) <= pinned:
            return ()
        storage = [c for c in self.filters if not self.types or self.types.get(c) in FILTERABLE]
        return tuple(c for c in dict.fromkeys([*storage, *self.key]) if c not in pinned)

    @property
    def lookup_key(self) -> str | None:
        """Return the column of point lookups (a one-column uniqueKey), or None."""
        return self.key[0] if len(self.key) == 1 else None


def _unique_key(query: str) -> tuple[str, ...]:
    """Return the GROUP BY columns of a Dataform uniqueKey assertion query."""
    group = sqlglot.parse_one(query, read="bigquery").find(exp.Group)
    if group is None:
        return ()
    return tuple(column.name for column in group.expressions if isinstance(column, exp.Column))


def partition_column(partition_by: str | None) -> str | None:
    """Return the column of a partitionBy expression (`day`, `date(ordered_at)`, ...), or None."""
    if not partition_by:
        return None
    parsed = sqlglot.parse_one(partition_by, read="bigquery")
    column = parsed if isinstance(parsed, exp.Column) else parsed.find(exp.Column)
    return column.name if column is not None else None


def gold_tables(graph: dict, dataset: str = "gold") -> dict[str, GoldTable]:
    """Return the tables of `dataset` in the compiled graph, keyed by table name.

    Raises CatalogError for a table whose names are not plain identifiers or that has no uniqueKey
    assertion (it ends every page's order, so it cannot be served without one).
    """
    keys: dict[tuple[str, str], tuple[str, ...]] = {}
    for assertion in graph.get("assertions") or []:
        parent = assertion.get("parentAction")
        if parent and "_assertions_uniqueKey_" in assertion["target"]["name"]:
            keys.setdefault((parent["schema"], parent["name"]), _unique_key(assertion["query"]))
    tables: dict[str, GoldTable] = {}
    for action in graph.get("tables") or []:
        target = action["target"]
        if target["schema"] != dataset or action.get("disabled"):
            continue
        name = target["name"]
        descriptor = action.get("actionDescriptor") or {}
        columns = {
            ".".join(column["path"]): column.get("description", "")
            for column in descriptor.get("columns") or []
            if len(column.get("path") or []) == 1
        }
        bigquery = action.get("bigquery") or {}
        key = keys.get((dataset, name), ())
        table = GoldTable(
            project=target["database"],
            dataset=dataset,
            name=name,
            description=descriptor.get("description", ""),
            columns=columns,
            partition_by=partition_column(bigquery.get("partitionBy")),
            cluster_by=tuple(bigquery.get("clusterBy") or ()),
            key=key,
        )
        names = [table.dataset, table.name, *table.columns, *table.filters, *table.key]
        bad = [n for n in names if not IDENTIFIER.match(n)]
        if bad or not PROJECT.match(table.project):
            raise CatalogError(f"{table.qualified}: {', '.join(bad) or table.project} is not a plain identifier")
        if not key:
            raise CatalogError(f"{table.qualified} has no uniqueKey assertion: its pages would have no order")
        tables[name] = table
    return tables
