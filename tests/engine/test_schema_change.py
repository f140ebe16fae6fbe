"""The local engine's onSchemaChange (FAIL, EXTEND, SYNCHRONIZE) on a real DuckDB table."""

from __future__ import annotations

import duckdb
import pytest

from lakehouse.engine.runner import apply_schema_change

TARGET = {"database": "memory", "schema": "main", "name": "t"}
QUERY = "select 1 as id, 'a' as name, 2.5 as score"


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("create table t (id integer, name varchar, old varchar)")
    return con


def columns(con) -> list[str]:
    return [row[0] for row in con.execute("describe t").fetchall()]


def test_extend_adds_new_columns_and_refuses_removed_ones(con):
    con.execute("alter table t drop column old")
    assert apply_schema_change(con, {"onSchemaChange": "EXTEND"}, TARGET, QUERY) is True
    assert columns(con) == ["id", "name", "score"]
    assert apply_schema_change(con, {"onSchemaChange": "EXTEND"}, TARGET, QUERY) is False
    with pytest.raises(ValueError) as caught:
        apply_schema_change(con, {"onSchemaChange": "EXTEND"}, TARGET, "select 1 as id")
    assert str(caught.value) == (
        """Column removals are not allowed when on_schema_change = 'EXTEND'. Removed columns: ["name", "score"]"""
    )


def test_synchronize_adds_and_drops_but_never_a_unique_key_column(con):
    table = {"onSchemaChange": "SYNCHRONIZE", "uniqueKey": ["id"]}
    assert apply_schema_change(con, table, TARGET, QUERY) is True
    assert columns(con) == ["id", "name", "score"]
    with pytest.raises(ValueError, match=r'Cannot drop columns \["id"\] as they are part of the unique key'):
        apply_schema_change(con, table, TARGET, "select 'a' as name, 2.5 as score")


def test_fail_names_the_added_and_removed_columns(con):
    with pytest.raises(ValueError) as caught:
        apply_schema_change(con, {"onSchemaChange": "FAIL"}, TARGET, QUERY)
    assert str(caught.value) == (
        """Schema mismatch defined by on_schema_change = 'FAIL'. Added columns: ["score"], removed columns: ["old"]"""
    )
    assert columns(con) == ["id", "name", "old"]


def test_extend_commits_after_the_table_was_written_in_the_same_transaction(con):
    # a batch table's pre-operation empties it before its incremental insert; DuckDB would refuse
    # to commit an ALTER TABLE after that
    con.execute("insert into t values (1, 'a', 'x')")
    con.execute("begin transaction")
    con.execute("delete from t where true")
    assert apply_schema_change(
        con, {"onSchemaChange": "EXTEND"}, TARGET, "select 1 as id, 'a' as name, 'x' as old, 2.5 as score"
    )
    con.execute("insert into t (id, name, old, score) values (2, 'b', 'y', 1.5)")
    con.execute("commit")
    assert columns(con) == ["id", "name", "old", "score"]
    assert con.execute("select * from t").fetchall() == [(2, "b", "y", 1.5)]
