"""BigQuery's storage layout, locally: a partitioned or clustered table is kept in (partition, cluster) order."""

# BigQuery stores a table by partition and, within one, in cluster-column order, so a filter on the
# partition or cluster columns reads only the blocks that hold them. DuckDB keeps a min/max (zone map)
# per column and row group of 122,880 rows and skips row groups a filter excludes: written in the same
# order, a one-day filter reads that day's row groups instead of the whole table.

from __future__ import annotations

from sqlglot import exp

_ALIAS = "_lakehouse_layout"


def order_columns(partition_by: str | exp.Expression | None, cluster_by: list) -> list[str]:
    """Return the columns a table is stored by: the partition column (the one column of its
    partition expression: `day`, `date(ts)`, `timestamp_trunc(ts, hour)`, `range_bucket(n, ...)` all keep
    its order), then the cluster columns. Ingestion-time partitions (`_PARTITIONDATE`) name no column."""
    names: list[str] = []
    if isinstance(partition_by, str) and partition_by.strip():
        from sqlglot import parse_one

        partition_by = parse_one(partition_by, read="bigquery")
    if isinstance(partition_by, exp.Expression):
        # a bare name in CREATE TABLE … PARTITION BY parses as an Identifier, not a Column
        column = (
            partition_by if isinstance(partition_by, (exp.Column, exp.Identifier)) else partition_by.find(exp.Column)
        )
        if column is not None and not column.name.upper().startswith("_PARTITION"):
            names.append(column.name)
    for item in cluster_by:
        name = item.name if isinstance(item, exp.Expression) else str(item)
        if name and name not in names:
            names.append(name)
    return names


def storage_order(tree: exp.Expression) -> exp.Expression:
    """CREATE TABLE … PARTITION BY p CLUSTER BY c1, c2 AS q writes q's rows in (p, c1, c2) order:
    `AS SELECT * FROM (q) ORDER BY p, c1, c2` (DuckDB keeps insertion order on disk).

    CREATE TABLE IF NOT EXISTS (how Dataform creates an Iceberg table, empty, before writing it) is left
    as it is."""
    if not isinstance(tree, exp.Create) or str(tree.args.get("kind") or "").upper() != "TABLE":
        return tree
    if tree.args.get("exists"):
        return tree
    query, properties = tree.args.get("expression"), tree.args.get("properties")
    if not isinstance(query, exp.Query) or properties is None:
        return tree
    partition, cluster = None, []
    for prop in properties.expressions:
        if isinstance(prop, exp.PartitionedByProperty):
            partition = prop.this
        elif isinstance(prop, exp.ClusterProperty):
            cluster = list(prop.expressions)
    names = order_columns(partition, cluster)
    if not names:
        return tree
    source = exp.Subquery(this=query.copy(), alias=exp.TableAlias(this=exp.to_identifier(_ALIAS)))
    ordered = exp.select("*").from_(source).order_by(*(exp.column(name, quoted=True) for name in names))
    tree.set("expression", ordered)
    return tree
