"""Constructs real Dataform projects use, run on real DuckDB with BigQuery's documented results."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from lakehouse.engine.translate import UnsupportedConstruct, register_functions, translate_script

PROJECT = "acme-analytics"
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


@pytest.fixture
def con():
    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    register_functions(connection, NOW)
    connection.execute(f"ATTACH ':memory:' AS \"{PROJECT}\"")
    connection.execute(f'CREATE SCHEMA "{PROJECT}".web')
    yield connection
    connection.close()


def run(con, sql: str):
    """Translate a BigQuery script, execute every statement, return the last statement's rows."""
    rows = None
    for statement in translate_script(sql, default_project=PROJECT):
        rows = con.execute(statement).fetchall()
    return rows


# -- system variables ----------------------------------------------------------------------------------


def test_system_variables_read_as_a_bigquery_job_with_no_default_dataset(con):
    rows = run(
        con,
        """
        select @@project_id, @@dataset_project_id, @@dataset_id, @@time_zone,
               @@script.creation_time, @@script.bytes_billed + @@script.num_child_jobs,
               length(@@script.job_id) > 0, @@session_id is null
        """,
    )

    assert rows == [(PROJECT, PROJECT, None, "UTC", NOW, 0, True, True)]


def test_set_query_label_is_a_no_op_and_the_script_goes_on(con):
    rows = run(con, "SET @@query_label = 'team:growth,job:daily'; select 1 as one")

    assert rows == [(1,)]


def test_set_query_label_inside_if_is_a_no_op_too(con):
    rows = run(con, "declare n int64 default 1; if n = 1 then set @@query_label = 'a:b'; end if; select n")

    assert rows == [(1,)]


@pytest.mark.parametrize(
    ("sql", "construct"),
    [("SET @@dataset_id = 'web'", "SET @@dataset_id"), ("select @@row_count", "@@row_count")],
)
def test_system_variables_without_a_local_meaning_are_named(sql, construct):
    with pytest.raises(UnsupportedConstruct) as caught:
        translate_script(sql, default_project=PROJECT)

    assert caught.value.construct == construct


# -- arrays of structs (GA4 export shape) --------------------------------------------------------------

EVENTS = """
create table web.events as
select 'page_view' as event_name, 1 as user_id,
  [struct('page' as key, struct(cast(null as string) as string_value, 7 as int_value) as value),
   struct('title' as key, struct('Home' as string_value, cast(null as int64) as int_value) as value)] as event_params,
  struct([struct('sku1' as item_id, 2 as quantity), struct('sku2' as item_id, 3 as quantity)] as items) as ecommerce
union all
select 'scroll', 2, [struct('percent' as key, struct(cast(null as string) as string_value, 90 as int_value) as value)],
  struct(cast([] as array<struct<item_id string, quantity int64>>) as items)
"""


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # Unaliased UNNEST: the struct's fields are columns; nested struct `value` stays a struct.
        (
            "select event_name, (select value.int_value from unnest(event_params) where key = 'page') as page "
            "from web.events order by event_name",
            [("page_view", 7), ("scroll", None)],
        ),
        (
            "select e.user_id, (select value.string_value from unnest(e.event_params) where key = 'title') "
            "from web.events as e order by 1",
            [(1, "Home"), (2, None)],
        ),
        # A nested repeated record, flattened with a comma join (lateral) and summed in a subquery.
        ("select item_id from web.events as e, unnest(e.ecommerce.items) order by item_id", [("sku1",), ("sku2",)]),
        (
            "select user_id, (select sum(quantity) from unnest(ecommerce.items)) from web.events order by 1",
            [(1, 5), (2, None)],
        ),
        (
            "select key from web.events cross join unnest(event_params) order by key",
            [("page",), ("percent",), ("title",)],
        ),
        # Aliased UNNEST WITH OFFSET counts from 0.
        (
            "select p.key, n from web.events, unnest(event_params) as p with offset as n where user_id = 1 order by n",
            [("page", 0), ("title", 1)],
        ),
        # ARRAY(SELECT AS STRUCT ...) builds an array of structs; STRUCT equality compares field by field.
        (
            "select array(select as struct key, value.int_value from unnest(event_params) order by key) "
            "from web.events where user_id = 1",
            [([{"key": "page", "int_value": 7}, {"key": "title", "int_value": None}],)],
        ),
        (
            "select struct(1 as a, 'x' as b) = struct(1 as a, 'x' as b), struct(1 as a, 'x' as b) = struct(1, 'y')",
            [(True, False)],
        ),
    ],
)
def test_arrays_of_structs_read_as_in_bigquery(con, sql, expected):
    run(con, EVENTS)

    assert run(con, sql) == expected
