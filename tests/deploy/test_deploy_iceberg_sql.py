"""The BigLake Iceberg table silver.orders as Dataform would create it, with and without the opt-in var."""

from __future__ import annotations

import pytest
from deploy_fakes import REPO

from lakehouse.engine.compile import CompileError, compile_project
from lakehouse.engine.statements import table_tasks


def create_sql(tmp_path, vars: dict[str, str] | None) -> tuple[dict, str]:
    """Return (bigquery config, the create statement of silver.orders on a first run, to its end)."""
    compiled = compile_project(REPO, vars=vars, home_dir=tmp_path / "home", use_cache=False)
    graph = compiled.graph
    table = next(t for t in graph["tables"] if (t["target"]["schema"], t["target"]["name"]) == ("silver", "orders"))
    tasks = table_tasks(table, graph["projectConfig"], core_version=graph.get("dataformCoreVersion", "1.0.0"),
                        full_refresh=True, metadata=None)  # fmt: skip
    statement = tasks[0].statement
    return table["bigquery"], statement[statement.index("create or replace table") :]


def test_iceberg_orders_are_not_partitioned_by_default_partitioning_is_preview(tmp_path):
    bigquery, sql = create_sql(tmp_path, None)
    assert bigquery["tableFormat"] == "ICEBERG" and "partitionBy" not in bigquery
    assert (
        sql[: sql.index(" as ")]
        == "create or replace table `lakehouse-dev.silver.orders` cluster by customer_id, product_id"
    )


def test_the_opt_in_var_partitions_by_event_date(tmp_path):
    bigquery, sql = create_sql(tmp_path, {"iceberg_partitioning": "true"})
    assert bigquery["partitionBy"] == "event_date"
    assert sql[: sql.index(" as ")] == (
        "create or replace table `lakehouse-dev.silver.orders` partition by event_date "
        "cluster by customer_id, product_id"
    )


def test_a_bad_value_of_the_var_fails_the_compile_naming_it(tmp_path):
    with pytest.raises(CompileError) as caught:
        compile_project(REPO, vars={"iceberg_partitioning": "yes"}, home_dir=tmp_path / "home", use_cache=False)
    assert 'var iceberg_partitioning="yes" must be true or false' in str(caught.value)
