"""A Dataform-shaped bronze -> silver model, translated and run end to end on DuckDB, with BigQuery's results."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import duckdb
import pytest

from lakehouse.engine.translate import register_functions, translate_script

PROJECT = "lakehouse-dev"
UTC = dt.UTC

BRONZE = r"""CREATE OR REPLACE EXTERNAL TABLE `lakehouse-dev.bronze.orders_raw` (line STRING)
WITH PARTITION COLUMNS (dt DATE)
OPTIONS(format='CSV', uris=['gs://landing/orders/*'], hive_partition_uri_prefix='gs://landing/orders',
        field_delimiter='\x01', quote='')"""

# The CTAS Dataform's ExecutionSql.createOrReplace builds for a partitioned, clustered table.
SILVER = """create or replace table `lakehouse-dev.silver.orders` partition by date(order_ts) cluster by customer_id \
OPTIONS()as
with source as (
  select line, dt, _FILE_NAME as file_name, safe.parse_json(line) is not null as is_json
  from `lakehouse-dev.bronze.orders_raw`
),
parsed as (
  select
    if(is_json, json_value(line, '$.order_id'), null) as order_id,
    safe_cast(if(is_json, json_value(line, '$.customer_id'), null) as int64) as customer_id,
    safe.parse_timestamp('%Y-%m-%dT%H:%M:%E*S%Ez', if(is_json, json_value(line, '$.order_ts'), null)) as order_ts,
    safe_cast(if(is_json, json_value(line, '$.quantity'), null) as int64) as quantity,
    safe_cast(if(is_json, json_value(line, '$.price'), null) as numeric) as price_usd,
    lower(trim(if(is_json, json_value(line, '$.status'), null))) as status,
    farm_fingerprint(line) as line_fingerprint,
    file_name,
    dt
  from source
  where is_json
),
deduplicated as (
  select * from parsed
  qualify row_number() over (partition by order_id order by order_ts desc) = 1
)
select
  order_id,
  customer_id,
  order_ts,
  date_trunc(date(order_ts), month) as order_month,
  quantity,
  price_usd,
  quantity * price_usd as total_price_usd,
  countif(status = 'cancelled') over (partition by customer_id) as customer_cancellations,
  line_fingerprint,
  extract(dayofweek from order_ts) as order_weekday,
  file_name,
  dt
from deduplicated"""

LINES = [
    {
        "order_id": "o1",
        "customer_id": "7",
        "order_ts": "2024-01-02T03:04:05.5+02:00",
        "quantity": "2",
        "price": "1.25",
        "status": " Paid ",
    },
    {
        "order_id": "o1",
        "customer_id": "7",
        "order_ts": "2024-01-06T05:00:00+02:00",
        "quantity": "3",
        "price": "1.25",
        "status": "shipped",
    },
    {
        "order_id": "o2",
        "customer_id": "1.5",
        "order_ts": "not a time",
        "quantity": "x",
        "price": "2",
        "status": "cancelled",
    },
]


@pytest.fixture
def warehouse(tmp_path):
    folder = tmp_path / "gcs" / "landing" / "orders" / "dt=2024-01-06"
    folder.mkdir(parents=True)
    text = "\n".join(json.dumps(line) for line in LINES) + "\nnot json at all\n"
    (folder / "batch-1.jsonl").write_text(text)
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    register_functions(con)
    con.execute(f"ATTACH ':memory:' AS \"{PROJECT}\"")

    def resolve(uri: str) -> str:
        return str(tmp_path / "gcs" / uri[len("gs://") :])

    def run(sql: str):
        rows = None
        for statement in translate_script(sql, default_project=PROJECT, gcs_resolver=resolve):
            rows = con.execute(statement).fetchall()
        return rows

    run("CREATE SCHEMA IF NOT EXISTS `lakehouse-dev.bronze`; CREATE SCHEMA IF NOT EXISTS `lakehouse-dev.silver`")
    yield run
    con.close()


def test_bronze_to_silver_model_matches_bigquery(warehouse):
    warehouse(BRONZE)
    warehouse(SILVER)
    rows = warehouse("select * from `lakehouse-dev.silver.orders` order by order_id")
    line_o1 = json.dumps(LINES[1])
    line_o2 = json.dumps(LINES[2])
    fingerprints = warehouse(f"select farm_fingerprint('{line_o1}'), farm_fingerprint('{line_o2}')")[0]
    uri = "gs://landing/orders/dt=2024-01-06/batch-1.jsonl"
    assert rows == [
        # The later version of o1 wins; 2024-01-06 is a Saturday (DAYOFWEEK 7 in BigQuery).
        (
            "o1",
            7,
            dt.datetime(2024, 1, 6, 3, 0, tzinfo=UTC),
            dt.date(2024, 1, 1),
            3,
            Decimal("1.25"),
            Decimal("3.75"),
            0,
            fingerprints[0],
            7,
            uri,
            dt.date(2024, 1, 6),
        ),
        # '1.5' and 'x' are not INT64, 'not a time' is no timestamp: NULL, as SAFE_ functions give.
        ("o2", None, None, None, None, Decimal("2"), None, 1, fingerprints[1], None, uri, dt.date(2024, 1, 6)),
    ]


def test_incremental_merge_on_the_model(warehouse):
    warehouse(BRONZE)
    warehouse(SILVER)
    merge = """
merge `lakehouse-dev.silver.orders` DATAFORM_DEST
using (select 'o2' as order_id, 5 as quantity union all select 'o3', 1
) DATAFORM_SOURCE
on DATAFORM_DEST.order_id = DATAFORM_SOURCE.order_id
when matched then
  update set `quantity` = DATAFORM_SOURCE.quantity
when not matched then
  insert (`order_id`,`quantity`) values (`order_id`,`quantity`)"""
    warehouse(merge)
    assert warehouse("select order_id, quantity from silver.orders order by order_id") == [
        ("o1", 3),
        ("o2", 5),
        ("o3", 1),
    ]
