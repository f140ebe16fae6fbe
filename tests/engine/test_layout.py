"""Partitioned and clustered tables are stored locally in (partition, cluster) order, as BigQuery stores them."""

from __future__ import annotations

import re
from datetime import date

import duckdb
import pytest

from lakehouse import warehouse
from lakehouse.engine import layout, translate
from lakehouse.engine.runner import run

# Three days of rows in no order; a day (130,000 rows) is more than one DuckDB row group (122,880).
SHUFFLED = (
    "select date_add(date '2026-01-01', interval mod(i * 7919, 3) day) as day, mod(i * 104729, 1000) as k, i as id "
    "from unnest(generate_array(0, 389999)) as i"
)


def create(con: duckdb.DuckDBPyConnection, bigquery_sql: str) -> None:
    for sql in translate.translate_script(bigquery_sql, default_project="p"):
        con.execute(sql)


def stored(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    return con.execute(f"select day, k from {table} order by rowid").fetchall()


def row_groups_holding(con: duckdb.DuckDBPyConnection, table: str, day: date) -> tuple[int, int]:
    """Return (row groups whose zone map of `day` can hold `day`, all row groups) of `table`."""
    stats = con.execute(
        "select row_group_id, stats from pragma_storage_info(?) where column_name = 'day' and segment_type = 'DATE'",
        [table],
    ).fetchall()
    holding = set()
    for row_group, text in stats:
        low, high = (date.fromisoformat(d) for d in re.search(r"Min: ([\d-]+), Max: ([\d-]+)", text).groups())
        if low <= day <= high:
            holding.add(row_group)
    return len(holding), len({row_group for row_group, _ in stats})


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "p.duckdb"))
    con.execute("create schema d")
    return con


def test_order_columns_are_the_partition_column_then_the_cluster_columns():
    assert layout.order_columns("day", ["k", "day", "id"]) == ["day", "k", "id"]
    assert layout.order_columns("date(ordered_at)", []) == ["ordered_at"]
    assert layout.order_columns("timestamp_trunc(ordered_at, hour)", ["k"]) == ["ordered_at", "k"]
    assert layout.order_columns("range_bucket(n, generate_array(0, 100, 10))", []) == ["n"]
    assert layout.order_columns("_PARTITIONDATE", ["k"]) == ["k"]
    assert layout.order_columns(None, []) == []


def test_a_partitioned_clustered_table_is_written_in_that_order(con):
    create(con, f"create or replace table `p.d.t` partition by day cluster by k as {SHUFFLED}")
    create(con, f"create or replace table `p.d.plain` as {SHUFFLED}")

    rows = stored(con, "d.t")
    assert rows == sorted(rows)
    assert len(rows) == 390_000
    # the same rows, written in the query's order when the table has no layout
    plain = stored(con, "d.plain")
    assert plain != sorted(plain) and sorted(plain) == rows


def test_a_one_day_filter_reads_only_the_row_groups_of_that_day(con):
    create(con, f"create or replace table `p.d.t` partition by day cluster by k as {SHUFFLED}")
    create(con, f"create or replace table `p.d.plain` as {SHUFFLED}")
    con.execute("checkpoint")

    # every row group of the unordered table may hold any day; the ordered one keeps a day in 2 of 4
    assert row_groups_holding(con, "d.plain", date(2026, 1, 2)) == (4, 4)
    assert row_groups_holding(con, "d.t", date(2026, 1, 2)) == (2, 4)
    plan = con.execute("explain analyze select count(*) from d.t where day = date '2026-01-02'").fetchall()[0][1]
    # DuckDB's scan turns the filter into zone-map pruning of the day column
    assert "day='2026-01-02'" in plan.replace(" ", "")


def test_a_table_without_layout_with_a_column_list_only_or_if_not_exists_is_not_reordered():
    assert translate.translate_script("create table `p.d.t` (a int64) cluster by a", default_project="p") == [
        'CREATE TABLE "p"."d"."t" (a BIGINT)'
    ]
    (sql,) = translate.translate_script("create or replace table `p.d.t` as select 1 as a", default_project="p")
    assert "ORDER BY" not in sql
    # Dataform's create of an Iceberg table: empty, written by the statements after it
    (sql,) = translate.translate_script(
        "create table if not exists `p.d.t` cluster by a as select 1 as a where false", default_project="p"
    )
    assert "ORDER BY" not in sql


def test_the_first_run_writes_in_order_and_an_incremental_run_appends_after_it(make_project, lakehouse_home):
    project = make_project(
        {
            "definitions/daily.sqlx": """
                config {
                  type: "incremental",
                  uniqueKey: ["day", "k"],
                  bigquery: { partitionBy: "day", clusterBy: ["k"] },
                }
                select day, k from unnest([
                  struct(date "2026-01-02" as day, 5 as k), (date "2026-01-01", 9), (date "2026-01-02", 1)
                ])
                ${when(incremental(), `union all select date "2026-01-01", 2 union all select date "2026-01-03", 0`)}
            """,
        }
    )
    run(project)
    second = run(project)

    assert second.status == "success"
    con = warehouse.connect(lakehouse_home, ["test-local"])
    try:
        rows = con.execute('select day, k from "test-local".silver.daily order by rowid').fetchall()
    finally:
        con.close()
    # the first run's rows in (partition, cluster) order, then the rows the MERGE added, not re-sorted
    assert rows[:3] == [(date(2026, 1, 1), 9), (date(2026, 1, 2), 1), (date(2026, 1, 2), 5)]
    assert set(rows[3:]) == {(date(2026, 1, 1), 2), (date(2026, 1, 3), 0)}
