"""The BigQuery backend's queries: named parameters carry every value, the SQL carries none."""

from __future__ import annotations

import datetime as dt

from google.cloud import bigquery

from lakehouse.serve.backends import PageQuery, bigquery_job
from lakehouse.serve.catalog import GoldTable

TABLE = GoldTable(
    project="acme-prod",
    dataset="gold",
    name="daily_product_summary",
    description="One row per sales date, product and currency.",
    columns={"sales_date": "", "product_id": "", "currency": "", "units": ""},
    partition_by="sales_date",
    cluster_by=("product_id", "currency"),
    key=("sales_date", "product_id", "currency"),
    types={"sales_date": "DATE", "product_id": "STRING", "currency": "STRING", "units": "INT64"},
)


def parameters(config: bigquery.QueryJobConfig) -> list[tuple[str, str, object]]:
    return [(p.name, p.type_, p.value) for p in config.query_parameters]


def test_a_filtered_page_after_a_cursor_is_parameterised():
    hostile = "USD' or '1'='1"
    query = PageQuery(
        TABLE, ("units", "sales_date", "product_id", "currency"),
        (("sales_date", dt.date(2026, 1, 2)), ("currency", hostile)), ("PROD-0007",), 1001,
    )  # fmt: skip
    sql, config = bigquery_job(query)
    assert sql == (
        "select `units`, `sales_date`, `product_id`, `currency` from `acme-prod.gold.daily_product_summary` "
        "where `sales_date` = @p0 and `currency` = @p1 and `product_id` >= @p2 and ((`product_id` > @p3)) "
        "order by `product_id` nulls first limit @p4"
    )
    assert parameters(config) == [
        ("p0", "DATE", dt.date(2026, 1, 2)),
        ("p1", "STRING", hostile),
        ("p2", "STRING", "PROD-0007"),
        ("p3", "STRING", "PROD-0007"),
        ("p4", "INT64", 1001),
    ]
    assert config.use_legacy_sql is False
    assert "'" not in sql


def test_an_unfiltered_page_after_a_cursor_follows_the_storage_order():
    query = PageQuery(TABLE, ("units",), (), (dt.date(2026, 1, 2), "PROD-0007", "EUR"), 11)
    sql, config = bigquery_job(query)
    assert sql == (
        "select `units` from `acme-prod.gold.daily_product_summary` where `sales_date` >= @p0 and "
        "((`sales_date` > @p1) or (`sales_date` = @p2 and `product_id` > @p3) or "
        "(`sales_date` = @p4 and `product_id` = @p5 and `currency` > @p6)) "
        "order by `sales_date` nulls first, `product_id` nulls first, `currency` nulls first limit @p7"
    )
    day = dt.date(2026, 1, 2)
    assert parameters(config) == [
        ("p0", "DATE", day), ("p1", "DATE", day), ("p2", "DATE", day), ("p3", "STRING", "PROD-0007"),
        ("p4", "DATE", day), ("p5", "STRING", "PROD-0007"), ("p6", "STRING", "EUR"), ("p7", "INT64", 11),
    ]  # fmt: skip


def test_a_page_after_a_null_compares_with_is_null_not_a_parameter():
    query = PageQuery(TABLE, ("units",), (("sales_date", dt.date(2026, 1, 2)),), (None, "EUR"), 5)
    sql, config = bigquery_job(query)
    assert sql == (
        "select `units` from `acme-prod.gold.daily_product_summary` where `sales_date` = @p0 and "
        "((`product_id` is not null) or (`product_id` is null and `currency` > @p1)) "
        "order by `product_id` nulls first, `currency` nulls first limit @p2"
    )
    assert parameters(config) == [("p0", "DATE", dt.date(2026, 1, 2)), ("p1", "STRING", "EUR"), ("p2", "INT64", 5)]


def test_a_first_page_has_only_the_limit_parameter():
    sql, config = bigquery_job(PageQuery(TABLE, ("units",), (), None, 10))
    assert sql == (
        "select `units` from `acme-prod.gold.daily_product_summary` "
        "order by `sales_date` nulls first, `product_id` nulls first, `currency` nulls first limit @p0"
    )
    assert parameters(config) == [("p0", "INT64", 10)]


def test_a_lookup_by_the_whole_key_is_not_sorted():
    pinned = (("sales_date", dt.date(2026, 1, 2)), ("product_id", "PROD-0001"), ("currency", "USD"))
    sql, config = bigquery_job(PageQuery(TABLE, ("units",), pinned, None, 2))
    assert sql == (
        "select `units` from `acme-prod.gold.daily_product_summary` "
        "where `sales_date` = @p0 and `product_id` = @p1 and `currency` = @p2 limit @p3"
    )
    assert [p.value for p in config.query_parameters] == [dt.date(2026, 1, 2), "PROD-0001", "USD", 2]
