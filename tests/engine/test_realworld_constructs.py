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
    connection.execute(f'ATTACH \':memory:\' AS "{PROJECT}"')
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
