"""Keyset pages in storage order: every row once, in (partition, cluster, key) order, across ties and NULLs."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json

import duckdb
import pytest
from fastapi.testclient import TestClient

from lakehouse.serve.backends import PageQuery, _duck_quote, page_sql
from lakehouse.serve.catalog import GoldTable
from lakehouse.serve.values import decode_cursor, encode_cursor, query_fingerprint
from serve.conftest import rows

TABLE = GoldTable(
    project="lakehouse-dev",
    dataset="gold",
    name="visits",
    description="One row per visit.",
    columns={"day": "", "site": "", "lane": "", "visit_id": ""},
    partition_by="day",
    cluster_by=("site", "lane"),
    key=("visit_id",),
    types={"day": "DATE", "site": "STRING", "lane": "INT64", "visit_id": "STRING"},
)
DAYS = (None, dt.date(2026, 1, 1), dt.date(2026, 1, 2))
SITES = (None, "a", "b")
LANES = (None, 1, 2)


@pytest.fixture(scope="module")
def visits():
    """An in-memory `visits` table: every (day, site, lane), NULLs included, holds 1-3 visits (ties on
    the cluster columns), inserted in a shuffled order so storage order does not help."""
    con = duckdb.connect()
    con.execute("create table visits (day date, site varchar, lane bigint, visit_id varchar)")
    data = []
    for n, (day, site, lane) in enumerate(itertools.product(DAYS, SITES, LANES)):
        data += [(day, site, lane, f"V{(n * 7 + i * 13) % 97:02d}-{n}-{i}") for i in range(1 + n % 3)]
    data = data[::2] + data[1::2]
    con.executemany("insert into visits values (?, ?, ?, ?)", data)
    yield con, data
    con.close()


def nulls_first(values: tuple) -> tuple:
    return tuple((value is not None, value) for value in values)


def walk(con, filters: dict, limit: int) -> tuple[list[tuple], int]:
    """Return the rows of every page, following cursors through their text form, and the page count."""
    order = TABLE.page_order(filters)
    fingerprint = query_fingerprint(TABLE.qualified, filters, order)
    seen, after, pages = [], None, 0
    while True:
        query = PageQuery(TABLE, ("day", "site", "lane", "visit_id"), tuple(filters.items()), after, limit + 1)
        sql, params = page_sql(query, "visits", _duck_quote)
        page = con.execute(sql, [value for _, value in params]).fetchall()
        pages += 1
        seen += page[:limit]
        if len(page) <= limit:
            return seen, pages
        last = dict(zip(("day", "site", "lane", "visit_id"), page[limit - 1], strict=True))
        cursor = encode_cursor(fingerprint, [last[c] for c in order])
        after = tuple(decode_cursor(cursor, fingerprint, {c: TABLE.types[c] for c in order}))


@pytest.mark.parametrize("limit", [1, 2, 5])
@pytest.mark.parametrize(
    ("filters", "order"),
    [
        ({}, ("day", "site", "lane", "visit_id")),
        ({"day": dt.date(2026, 1, 1)}, ("site", "lane", "visit_id")),
        ({"site": "a"}, ("day", "lane", "visit_id")),
        ({"day": dt.date(2026, 1, 2), "lane": 2}, ("site", "visit_id")),
    ],
)
def test_pages_walk_every_row_once_in_storage_then_key_order(visits, filters, order, limit):
    con, data = visits
    assert TABLE.page_order(filters) == order
    columns = ("day", "site", "lane", "visit_id")
    wanted = [r for r in data if all(r[columns.index(c)] == v for c, v in filters.items())]
    expected = sorted(wanted, key=lambda r: nulls_first(tuple(r[columns.index(c)] for c in order)))
    seen, pages = walk(con, filters, limit)
    assert seen == expected
    assert len(set(seen)) == len(seen) == len(wanted)
    assert pages == -(-len(wanted) // limit)


def test_a_filter_on_the_whole_key_is_not_sorted_and_has_no_cursor():
    assert TABLE.page_order({"visit_id": "V01-0-0"}) == ()
    assert TABLE.page_order({"visit_id": "V01-0-0", "day": dt.date(2026, 1, 1)}) == ()


def test_cluster_columns_a_cursor_cannot_carry_are_left_out_of_the_order():
    from dataclasses import replace

    shaped = replace(TABLE, types={**TABLE.types, "lane": "GEOGRAPHY"})
    assert shaped.page_order({}) == ("day", "site", "visit_id")


def test_a_cursor_after_nulls_selects_the_rows_after_them():
    query = PageQuery(TABLE, ("visit_id",), (), (None, "a", None, "V07"), 10)
    sql, params = page_sql(query, "visits", _duck_quote)
    assert sql == (
        'select "visit_id" from visits where (("day" is not null) or ("day" is null and "site" > ?) or '
        '("day" is null and "site" = ? and "lane" is not null) or '
        '("day" is null and "site" = ? and "lane" is null and "visit_id" > ?)) '
        'order by "day" nulls first, "site" nulls first, "lane" nulls first, "visit_id" nulls first limit ?'
    )
    assert params == [("site", "a"), ("site", "a"), ("site", "a"), ("visit_id", "V07"), ("limit", 10)]


def api_walk(client: TestClient, path: str, params: dict) -> list[dict]:
    """Return the rows of every page of `path`, following next_cursor."""
    seen, cursor = [], None
    while True:
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        seen += response.json()["rows"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return seen


def test_api_pages_of_one_day_follow_the_cluster_columns(open_app, served_home):
    day = rows(served_home, "select sales_date from gold.daily_product_summary group by 1 order by count(*) desc")
    day = day[0]["sales_date"]
    expected = rows(
        served_home,
        "select product_id, currency from gold.daily_product_summary where sales_date = ? "
        "order by product_id, currency",
        [day],
    )
    assert len(expected) > 10
    params = {"sales_date": day.isoformat(), "limit": 4, "fields": "product_id,currency"}
    assert api_walk(TestClient(open_app), "/v1/daily_product_summary", params) == expected


def test_api_pages_follow_the_cluster_order_not_the_key_order(open_app, served_home):
    # inventory_levels is clustered by (product_id, warehouse_id); its uniqueKey is (warehouse_id, product_id)
    expected = rows(
        served_home, "select product_id, warehouse_id from gold.inventory_levels order by product_id, warehouse_id"
    )
    assert expected != sorted(expected, key=lambda r: (r["warehouse_id"], r["product_id"]))
    params = {"limit": 3, "fields": "product_id,warehouse_id"}
    assert api_walk(TestClient(open_app), "/v1/inventory_levels", params) == expected


@pytest.mark.parametrize(
    ("order", "values", "message"),
    [
        ((), ["PROD-0001", "WH-1"], "cursor belongs to another table, other filters or another page order"),
        (("warehouse_id", "product_id"), ["WH-1", "PROD-0001"], "cursor belongs to another table"),
        (("product_id", "warehouse_id"), ["PROD-0001"], "cursor is malformed"),
    ],
)
def test_cursors_of_another_order_are_refused(open_app, order, values, message):
    fingerprint = query_fingerprint("lakehouse-dev.gold.inventory_levels", {}, order)
    cursor = encode_cursor(fingerprint, values)
    response = TestClient(open_app).get("/v1/inventory_levels", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_cursor"
    assert message in response.json()["error"]["message"]


def test_a_cursor_with_values_that_are_not_text_is_refused(open_app):
    fingerprint = query_fingerprint("lakehouse-dev.gold.inventory_levels", {}, ("product_id", "warehouse_id"))
    data = json.dumps({"q": fingerprint, "after": [1, {"or": "1=1"}]}).encode()
    cursor = base64.urlsafe_b64encode(data).decode().rstrip("=")
    response = TestClient(open_app).get("/v1/inventory_levels", params={"cursor": cursor})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "bad_cursor")
    assert "cursor is malformed" in response.json()["error"]["message"]


def test_a_cursor_after_nulls_round_trips_through_its_text():
    order = ("day", "site", "lane", "visit_id")
    fingerprint = query_fingerprint(TABLE.qualified, {}, order)
    cursor = encode_cursor(fingerprint, [None, "a", None, "V07"])
    assert decode_cursor(cursor, fingerprint, {c: TABLE.types[c] for c in order}) == [None, "a", None, "V07"]
