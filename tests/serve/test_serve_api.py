"""The gold API on a real local warehouse: routes from the graph, pages, lookups, formats, keys, hostile input."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from lakehouse.serve.app import MAX_LIMIT, create_app, keys_from_env
from lakehouse.serve.backends import DuckDBBackend
from lakehouse.serve.values import encode_cursor, query_fingerprint
from serve.conftest import rows

LOOKUPS = {
    "ad_attribution": "order_id",
    "conversion_funnel": "funnel_date",
    "customer_360": "customer_id",
    "customers": "customer_id",
    "products": "product_id",
}


def as_json(records: list[dict]) -> list[dict]:
    """Return `records` as the API's JSON renders them (dates ISO, decimals as strings)."""
    def default(value):
        if isinstance(value, decimal.Decimal) and value.as_tuple().exponent == 0:
            return int(value)  # a HUGEINT sum: the API serves it as the INT64 BigQuery has
        if isinstance(value, dt.datetime):
            return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    return json.loads(json.dumps(records, default=default))


def test_every_gold_table_has_a_list_route_and_keyed_ones_a_lookup(open_app, tables):
    spec = TestClient(open_app).get("/openapi.json").json()
    assert set(tables) == {
        "ad_attribution", "conversion_funnel", "customer_360", "customers", "daily_product_summary",
        "daily_sales", "inventory_levels", "products",
    }  # fmt: skip
    expected = {f"/v1/{name}" for name in tables} | {f"/v1/{n}/{{{k}}}" for n, k in LOOKUPS.items()}
    assert {p for p in spec["paths"] if p.startswith("/v1/")} == expected


def test_openapi_parameters_and_row_schema_come_from_the_column_descriptions(open_app, tables):
    operation = TestClient(open_app).get("/openapi.json").json()["paths"]["/v1/daily_product_summary"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert list(parameters) == ["sales_date", "product_id", "currency", "limit", "cursor", "fields", "format"]
    table = tables["daily_product_summary"]
    description = parameters["sales_date"]["description"]
    assert description == f"{table.columns['sales_date']} Rows equal to this (partition column)."
    assert parameters["sales_date"]["schema"] == {"type": "string", "format": "date"}
    assert parameters["limit"]["schema"]["maximum"] == MAX_LIMIT
    row = operation["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["rows"]["items"]
    assert row["description"] == table.description
    assert {c: p["description"] for c, p in row["properties"].items()} == table.columns
    assert row["properties"]["units"]["type"] == "integer"


def test_pages_walk_the_whole_table_in_key_order(open_app, served_home):
    client = TestClient(open_app)
    expected = rows(served_home, "select * from gold.daily_product_summary order by sales_date, product_id, currency")
    assert len(expected) > 20
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/daily_product_summary", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += body["rows"]
        pages += 1
        cursor = body["next_cursor"]
        assert response.headers.get("X-Next-Cursor") == cursor
        if cursor is None:
            break
    assert seen == as_json(expected)
    assert pages == -(-len(expected) // 7)


def test_filters_on_partition_and_cluster_columns(open_app, served_home):
    day, product = rows(
        served_home, "select sales_date, product_id from gold.daily_product_summary order by units desc limit 1"
    )[0].values()
    expected = rows(
        served_home,
        "select * from gold.daily_product_summary where sales_date = ? and product_id = ? order by currency",
        [day, product],
    )
    response = TestClient(open_app).get(
        "/v1/daily_product_summary", params={"sales_date": day.isoformat(), "product_id": product}
    )
    assert response.status_code == 200
    assert response.json() == {
        "table": "lakehouse-dev.gold.daily_product_summary",
        "next_cursor": None,
        "rows": as_json(expected),
    }


def test_fields_select_columns(open_app, served_home):
    response = TestClient(open_app).get("/v1/daily_sales", params={"fields": "revenue,currency", "limit": 3})
    expected = rows(served_home, "select revenue, currency from gold.daily_sales order by sales_date, currency limit 3")
    assert response.json()["rows"] == as_json(expected)


def test_int64_columns_are_json_integers(open_app, served_home):
    expected = rows(served_home, "select sum(units) as units from gold.daily_sales")[0]["units"]
    body = TestClient(open_app).get("/v1/daily_sales", params={"fields": "units", "limit": MAX_LIMIT}).json()
    assert all(type(r["units"]) is int for r in body["rows"])
    assert sum(r["units"] for r in body["rows"]) == expected


def test_point_lookup_by_customer_and_product_id(open_app, served_home):
    client = TestClient(open_app)
    customer = rows(served_home, "select * from gold.customer_360 order by order_count desc, customer_id limit 1")[0]
    response = client.get(f"/v1/customer_360/{customer['customer_id']}")
    assert response.status_code == 200
    assert response.json() == {"table": "lakehouse-dev.gold.customer_360", "row": as_json([customer])[0]}
    product = rows(served_home, "select * from gold.products order by product_id limit 1")[0]
    assert client.get(f"/v1/products/{product['product_id']}").json()["row"] == as_json([product])[0]
    missing = client.get("/v1/customer_360/CUST-99999")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "not_found", "message": "no row of customer_360 has customer_id = 'CUST-99999'"}
    }


def test_csv_and_parquet_hold_the_same_rows_as_json(open_app):
    client = TestClient(open_app)
    params = {"limit": 5}
    json_rows = client.get("/v1/inventory_levels", params=params).json()["rows"]
    as_csv = client.get("/v1/inventory_levels", params={**params, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["warehouse_id"] + r["product_id"] for r in parsed] == [
        r["warehouse_id"] + r["product_id"] for r in json_rows
    ]
    as_parquet = client.get("/v1/inventory_levels", params=params, headers={"Accept": "application/vnd.apache.parquet"})
    assert as_parquet.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(as_parquet.content))
    assert table.column_names == list(json_rows[0])
    assert table.column("quantity_on_hand").to_pylist() == [r["quantity_on_hand"] for r in json_rows]


def _cursor_of_other_filters() -> str:
    fingerprint = query_fingerprint("lakehouse-dev.gold.daily_sales", {"currency": "EUR"})
    return encode_cursor(fingerprint, ["2026-01-01", "USD"])


HOSTILE = [
    ("/v1/daily_sales?colour=red", 400, "unknown_column", "'colour' is not a column or parameter of daily_sales"),
    ("/v1/daily_sales?revenue=1", 400, "not_filterable", "'revenue' is not a partition or cluster column"),
    ("/v1/daily_sales?fields=revenue,secret", 400, "unknown_column", "'secret' is not a column of daily_sales"),
    ("/v1/daily_sales?cursor=not-a-cursor", 400, "bad_cursor", "cursor is malformed"),
    ("/v1/daily_sales?cursor=eyJxIjoxfQ", 400, "bad_cursor", "cursor is malformed"),
    (f"/v1/daily_sales?cursor={'A' * 3000}", 400, "bad_cursor", "cursor is too long"),
    (f"/v1/daily_sales?cursor={_cursor_of_other_filters()}", 400, "bad_cursor", "cursor belongs to another table"),
    (f"/v1/daily_sales?limit={MAX_LIMIT + 1}", 400, "limit_out_of_range", f"limit must be between 1 and {MAX_LIMIT}"),
    ("/v1/daily_sales?limit=0", 400, "limit_out_of_range", "limit must be between 1 and"),
    ("/v1/daily_sales?limit=1;drop table x", 400, "bad_limit", "is not a whole number"),
    ("/v1/daily_sales?currency=USD' or '1'='1", 400, "bad_value", "value for 'currency' must be"),
    ("/v1/daily_sales?currency=USD; drop table gold.daily_sales --", 400, "bad_value", "value for 'currency' must be"),
    ("/v1/daily_sales?sales_date=2026-01-01 or 1=1", 400, "bad_value", "value for 'sales_date' must be"),
    ("/v1/daily_sales?sales_date=2026-13-45", 400, "bad_value", "is not a DATE"),
    ("/v1/daily_sales?currency=USD&currency=EUR", 400, "repeated_parameter", "'currency' is given 2 times"),
    ("/v1/daily_sales?format=xml", 400, "unknown_format", "format 'xml' is not one of json, csv, parquet"),
    ("/v1/customer_360/CUST-1' or '1'='1", 400, "bad_value", "value for 'customer_id' must be"),
    ("/v1/conversion_funnel/yesterday", 400, "bad_value", "is not a DATE"),
    ("/v1/customer_360/CUST-00001?limit=5", 400, "unknown_column", "'limit' is not a parameter of a lookup"),
    ("/v1/secrets", 404, "no_such_route", "/v1/secrets is not a route"),
]


@pytest.mark.parametrize(("url", "status", "code", "message"), HOSTILE, ids=[h[2] + ":" + h[0][:40] for h in HOSTILE])
def test_hostile_requests_get_a_4xx_json_error(open_app, url, status, code, message):
    response = TestClient(open_app, raise_server_exceptions=True).get(url)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]


def test_writes_are_refused(open_app):
    response = TestClient(open_app).delete("/v1/daily_sales")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_keys_are_required_when_configured(keyed_app):
    client = TestClient(keyed_app)
    assert client.get("/health").json() == {"status": "ok"}
    missing = client.get("/v1/daily_sales")
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "missing_key")
    wrong = client.get("/v1/daily_sales", headers={"X-API-Key": "s3cret-s3cret-s3creT"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "wrong_key")
    assert client.get("/v1/daily_sales", headers={"X-API-Key": "s3cret-s3cret-s3cret"}).status_code == 200


def test_each_key_has_its_own_rate_limit(keyed_app):
    client = TestClient(keyed_app)
    limited = {"X-API-Key": "an0ther-an0ther-key"}
    assert [client.get("/v1/daily_sales?limit=1", headers=limited).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get("/v1/daily_sales?limit=1", headers=limited)
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith("key 'reader2' is limited to 3/minute; retry in")
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert client.get("/v1/daily_sales?limit=1", headers={"X-API-Key": "s3cret-s3cret-s3cret"}).status_code == 200


def test_ready_names_tables_not_built(open_app, tables, tmp_path):
    assert TestClient(open_app).get("/ready").json() == {
        "status": "ready", "backend": "duckdb", "tables": sorted(tables),
    }  # fmt: skip
    empty = DuckDBBackend(tmp_path, ["lakehouse-dev"])
    client = TestClient(create_app(tables, empty, []))
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert "not built yet: lakehouse-dev.gold.ad_attribution" in ready.json()["error"]["message"]
    page = client.get("/v1/daily_sales")
    assert (page.status_code, page.json()["error"]["code"]) == (503, "table_not_built")
    empty.close()


def test_a_deployed_api_without_keys_is_refused(tables, backend):
    with pytest.raises(ValueError, match="a deployed API must require keys"):
        create_app(tables, backend, [], require_keys=True)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("alice", "entry 1 is not name:secret"),
        ("alice:short", "the secret of 'alice' is shorter than 16 characters"),
        ("alice:0123456789abcdef:often", "rate 'often' of 'alice' is not like 600/minute"),
        ("a:0123456789abcdef,a:fedcba9876543210", "key names must differ"),
    ],
)
def test_malformed_keys_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        keys_from_env({"LAKEHOUSE_API_KEYS": value})


def test_keys_from_env_reads_names_secrets_and_rates():
    keys = keys_from_env({"LAKEHOUSE_API_KEYS": "app:0123456789abcdef:10/second, bi:fedcba9876543210",
                          "LAKEHOUSE_API_RATE": "100/minute"})  # fmt: skip
    assert [(k.name, k.secret, k.rate) for k in keys] == [
        ("app", "0123456789abcdef", "10/second"), ("bi", "fedcba9876543210", "100/minute"),
    ]  # fmt: skip


def test_serve_without_keys_refuses_to_bind_beyond_localhost(served_home):
    from click.testing import CliRunner

    from lakehouse.serve.cli import serve_command
    from serve.conftest import REPO

    done = CliRunner().invoke(
        serve_command, ["--host", "0.0.0.0", "--project-dir", str(REPO)],
        env={"LAKEHOUSE_HOME": str(served_home), "LAKEHOUSE_API_KEYS": ""},
    )  # fmt: skip
    assert done.exit_code == 1
    assert "no API keys configured (LAKEHOUSE_API_KEYS): refusing to bind 0.0.0.0" in " ".join(done.output.split())


def test_serve_refuses_malformed_keys(served_home):
    from click.testing import CliRunner

    from lakehouse.serve.cli import serve_command
    from serve.conftest import REPO

    done = CliRunner().invoke(
        serve_command, ["--project-dir", str(REPO)],
        env={"LAKEHOUSE_HOME": str(served_home), "LAKEHOUSE_API_KEYS": "app:short"},
    )  # fmt: skip
    assert done.exit_code == 1
    assert "the secret of 'app' is shorter than 16 characters" in " ".join(done.output.split())


def test_json_rows_write_timestamps_dates_and_decimals_as_text():
    import pyarrow as pa

    from lakehouse.serve.app import _records

    utc = [dt.datetime(2026, 1, 9, 1, 2, 3, tzinfo=dt.UTC), dt.datetime(2026, 1, 9, 23, 59, 59, 999999, tzinfo=dt.UTC)]
    table = pa.table(
        {
            "at": pa.array([*utc, None], pa.timestamp("us", tz="UTC")),
            "local": pa.array([utc[0].replace(tzinfo=None), None, None], pa.timestamp("us")),
            "day": pa.array([dt.date(2026, 1, 9), None, None], pa.date32()),
            "usd": pa.array([decimal.Decimal("0.25"), decimal.Decimal("12.5"), None], pa.decimal128(38, 9)),
            "n": pa.array([1, None, 3], pa.int64()),
        }
    )
    assert _records(table) == [
        {"at": "2026-01-09T01:02:03.000000Z", "local": "2026-01-09T01:02:03.000000", "day": "2026-01-09",
         "usd": "0.250000000", "n": 1},
        {"at": "2026-01-09T23:59:59.999999Z", "local": None, "day": None, "usd": "12.500000000", "n": None},
        {"at": None, "local": None, "day": None, "usd": None, "n": 3},
    ]  # fmt: skip


def test_serve_with_workers_answers_as_one_process_does(served_home, open_app):
    import os
    import socket
    import subprocess
    import time
    import urllib.request

    from serve.conftest import LAKEHOUSE, REPO

    customer = rows(served_home, "select customer_id from gold.customer_360 order by customer_id limit 1")[0]
    path = f"/v1/customer_360/{customer['customer_id']}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [LAKEHOUSE, "serve", "--project-dir", str(REPO), "--port", str(port), "--workers", "2"],
        env={**os.environ, "LAKEHOUSE_HOME": str(served_home), "LAKEHOUSE_API_KEYS": ""},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "lakehouse serve --workers 2 did not answer in 120 s"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert body == TestClient(open_app).get(path).json()
