"""Procedures, CALL and exception handlers on real DuckDB, with BigQuery's documented results."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from lakehouse.engine import query
from lakehouse.engine.translate import register_functions, translate_script

PROJECT = "acme-analytics"
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


@pytest.fixture
def con():
    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    register_functions(connection, NOW)
    connection.execute(f"ATTACH ':memory:' AS \"{PROJECT}\"")
    connection.execute(f'CREATE SCHEMA "{PROJECT}".ds')
    yield connection
    connection.close()


def execute(con, sql):
    return query.execute(con, sql, default_project=PROJECT).rows


def test_a_procedure_takes_in_and_out_parameters_and_has_its_own_scope(con):
    execute(
        con,
        """
        create or replace procedure ds.add_tax(amount numeric, rate float64, out total numeric)
        begin
          declare label string default 'inside';
          set total = amount * (1 + rate);
        end
        """,
    )
    rows = execute(
        con,
        """
        declare total numeric;
        declare label string default 'caller';
        call ds.add_tax(100, 0.25, total);
        select total, label
        """,
    )
    # OUT sets the caller's variable; the procedure's own `label` does not touch the caller's.
    assert [(float(t), label) for t, label in rows] == [(125.0, "caller")]


def test_a_procedure_outlives_its_script_and_writes_tables(con):
    execute(
        con,
        """
        create procedure `acme-analytics.ds.log_run`(step string)
        begin
          create table if not exists ds.runs (step string, n int64);
          insert into ds.runs select step, count(*) + 1 from ds.runs;
          if step = 'stop' then return; end if;
          insert into ds.runs values ('after ' || step, 0);
        end
        """
    )
    execute(con, "call ds.log_run('a')")
    execute(con, "call ds.log_run('stop')")
    assert execute(con, "select step, n from ds.runs order by n, step") == [("after a", 0), ("a", 1), ("stop", 3)]


def test_create_procedure_without_or_replace_fails_when_it_exists_and_drop_removes_it(con):
    execute(con, "create procedure ds.p() begin select 1; end")
    with pytest.raises(duckdb.Error, match="already exists"):
        execute(con, "create procedure ds.p() begin select 2; end")
    execute(con, "create procedure if not exists ds.p() begin select 2; end")
    assert execute(con, "call ds.p()") == [(1,)]
    execute(con, "drop procedure ds.p")
    execute(con, "drop procedure if exists ds.p")
    with pytest.raises(duckdb.Error, match="Not found: Procedure acme-analytics.ds.p"):
        execute(con, "call ds.p()")


def test_an_exception_handler_reads_the_error_message_and_goes_on(con):
    rows = execute(
        con,
        """
        declare outcome string;
        begin
          select 1 / 0;
          set outcome = 'not reached';
        exception when error then
          set outcome = concat('caught: ', @@error.message);
        end;
        select outcome
        """,
    )
    assert rows == [("caught: division by zero: 1 / 0",)]
    assert execute(
        con, "begin raise using message = 'custom'; exception when error then select @@error.message; end"
    ) == [("custom",)]


def test_statements_before_the_error_keep_their_effects_as_in_bigquery(con):
    """BigQuery scripts commit statement by statement: a handler does not undo what ran before the error."""
    execute(con, "create table ds.t (k int64)")
    con.execute("BEGIN TRANSACTION")  # the runner's transaction for one action
    execute(
        con,
        """
        insert into ds.t values (1);
        begin
          insert into ds.t values (2);
          insert into ds.t select error('bad row');
        exception when error then
          insert into ds.t values (3);
        end;
        insert into ds.t values (4)
        """,
    )
    con.execute("COMMIT")
    assert execute(con, "select k from ds.t order by k") == [(1,), (2,), (3,), (4,)]


def test_a_bare_raise_rethrows_the_handled_error(con):
    with pytest.raises(duckdb.Error, match="original problem"):
        execute(
            con,
            """
            begin
              select error('original problem');
            exception when error then
              create table ds.cleanup_ran as select 1 as x;
              raise;
            end
            """,
        )
    assert execute(con, "select x from ds.cleanup_ran") == [(1,)]
    with pytest.raises(duckdb.Error, match="only valid in an EXCEPTION handler"):
        execute(con, "raise")


def test_nested_handlers_and_a_handler_inside_a_procedure(con):
    rows = execute(
        con,
        """
        create procedure ds.safe_divide_into(a int64, b int64, inout result string)
        begin
          begin
            set result = cast(a / b as string);
          exception when error then
            set result = 'inner: ' || @@error.message;
            begin
              raise using message = 'second';
            exception when error then
              set result = result || ' / ' || @@error.message;
            end;
          end;
        end;
        declare r string default 'x';
        call ds.safe_divide_into(6, 3, r);
        select r;
        """,
    )
    assert rows == [("2",)]
    rows = execute(
        con,
        """
        declare r string;
        call ds.safe_divide_into(1, 0, r);
        select r
        """,
    )
    assert rows == [("inner: division by zero: 1 / 0 / second",)]


def test_a_bare_raise_outside_a_handler_fails_inside_if_too(con):
    with pytest.raises(duckdb.Error, match="only valid in an EXCEPTION handler"):
        execute(con, "if true then raise; end if")


def test_a_call_with_the_wrong_number_of_arguments_fails(con):
    execute(con, "create procedure ds.one(x int64) begin select x; end")
    assert execute(con, "call ds.one(7)") == [(7,)]
    with pytest.raises(duckdb.Error, match="takes 1 argument"):
        execute(con, "call ds.one(1, 2)")


def test_exception_must_read_when_error_then():
    with pytest.raises(Exception, match="EXCEPTION WHEN ERROR THEN"):
        translate_script("begin select 1; exception when other then select 2; end", default_project=PROJECT)
    # BEGIN TRANSACTION is a statement, not a block: the action's own transaction (test_translate.py)
    assert translate_script("begin transaction; select 1; commit transaction", default_project=PROJECT) == [
        "SELECT CAST(1 AS BIGINT)"
    ]


ON_SCHEMA_CHANGE = {
    "definitions/seed.sqlx": """
        config { type: "operations", hasOutput: true, schema: "raw", name: "seed" }
        create or replace table ${self()} as
        select 1 as id, 'a' as name, 10 as score union all select 2, 'b', 20
    """,
    "definitions/scores.sqlx": """
        config { type: "incremental", schema: "silver", uniqueKey: ["id"], onSchemaChange: "EXTEND" }
        select id, name from ${ref("seed")}
    """,
}


def test_dataforms_own_on_schema_change_procedure_extends_the_table(make_project, lakehouse_home):
    """Dataform sends CREATE PROCEDURE df_osc_…, then BEGIN CALL …; the engine does what that procedure does."""
    from lakehouse import warehouse
    from lakehouse.engine.runner import RunOptions, run

    project = make_project(ON_SCHEMA_CHANGE)
    first = run(project, options=RunOptions())
    assert {r.name: r.status for r in first.actions}["test-local.silver.scores"] == "success"
    (project / "definitions/scores.sqlx").write_text(
        ON_SCHEMA_CHANGE["definitions/scores.sqlx"].replace("select id, name", "select id, name, score")
    )
    second = run(project, options=RunOptions())
    result = {r.name: r for r in second.actions}["test-local.silver.scores"]
    assert result.status == "success", result.error
    # The CLI lists the MERGE's columns from the table as it was before the run, so the new column is
    # filled from the next run on.
    assert "UPDATE SET \"id\" = DATAFORM_SOURCE.id, \"name\" = DATAFORM_SOURCE.name WHEN" in result.statements[-1]
    third = {r.name: r for r in run(project, options=RunOptions()).actions}["test-local.silver.scores"]
    assert third.status == "success", third.error
    con = warehouse.connect(lakehouse_home, ["test-local"])
    try:
        rows = con.execute('select id, name, score from "test-local".silver.scores order by id').fetchall()
        leftovers = con.execute(
            "select function_name from duckdb_functions() where function_name like '__lakehouse_procedure%' "
            "union all select table_name from duckdb_tables() where table_name like '%df_temp%'"
        ).fetchall()
    finally:
        con.close()
    assert rows == [(1, "a", 10), (2, "b", 20)]
    assert leftovers == []  # the procedure and the empty probe table are dropped


def test_on_schema_change_extend_refuses_a_removed_column_with_dataforms_message(make_project, lakehouse_home):
    from lakehouse.engine.runner import RunOptions, run

    project = make_project(ON_SCHEMA_CHANGE)
    run(project, options=RunOptions())
    (project / "definitions/scores.sqlx").write_text(
        ON_SCHEMA_CHANGE["definitions/scores.sqlx"].replace("select id, name", "select id")
    )
    result = {r.name: r for r in run(project, options=RunOptions()).actions}["test-local.silver.scores"]
    assert result.status == "failed"
    expected = "Column removals are not allowed when on_schema_change = 'EXTEND'. Removed columns: [\"name\"]"
    assert expected in result.error


def test_format_t_prints_values_as_literals_or_text(con):
    """BigQuery: %T of ['x'] is ["x"], of 'raw' is "raw", of NULL is NULL; %t of 'raw' is raw."""
    rows = execute(con, "select format('%T|%T|%T|%t|%t|%5d%%', ['x'], 'raw', cast(null as string), 'raw', 7, 42)")
    assert rows == [('["x"]|"raw"|NULL|raw|7|   42%',)]
