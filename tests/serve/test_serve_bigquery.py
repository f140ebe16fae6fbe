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
        (("sales_date", dt.date(2026, 1, 2)), ("currency", hostile)),
        (dt.date(2026, 1, 2), "PROD-0007", "EUR"), 1001,
    )  # fmt: skip
    sql, config = bigquery_job(query)
    assert sql == (
        "select `units`, `sales_date`, `product_id`, `currency` from `acme-prod.gold.daily_product_summary` "
        "where `sales_date` = @p0 and `currency` = @p1 and ((`sales_date` > @p2) or (`sales_date` = @p3 and "
        "`product_id` > @p4) or (`sales_date` = @p5 and `product_id` = @p6 and `currency` > @p7)) "
        "order by `sales_date`, `product_id`, `currency` limit @p8"
    )
    assert parameters(config) == [
        ("p0", "DATE", dt.date(2026, 1, 2)),
        ("p1", "STRING", hostile),
        ("p2", "DATE", dt.date(2026, 1, 2)),
        ("p3", "DATE", dt.date(2026, 1, 2)),
        ("p4", "STRING", "PROD-0007"),
        ("p5", "DATE", dt.date(2026, 1, 2)),
        ("p6", "STRING", "PROD-0007"),
        ("p7", "STRING", "EUR"),
        ("p8", "INT64", 1001),
    ]
    assert config.use_legacy_sql is False
    assert "'" not in sql


def test_a_first_page_has_only_the_limit_parameter():
    sql, config = bigquery_job(PageQuery(TABLE, ("units",), (), None, 10))
    assert sql == (
        "select `units` from `acme-prod.gold.daily_product_summary` "
        "order by `sales_date`, `product_id`, `currency` limit @p0"
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
