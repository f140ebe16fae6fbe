"""State-aware runs: an action whose definition and inputs have not changed since it last ran is skipped
and keeps its result; anything that changes what it reads makes it run again."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lakehouse import paths, warehouse
from lakehouse.cli import main
from lakehouse.engine.iceberg import IcebergStore
from lakehouse.engine.iceberg_committer import COMMITTER_ENV, IcebergCommitter
from lakehouse.engine.runner import RunOptions, run

PROJECT = {
    "definitions/sources/orders_raw.sqlx": """
        config { type: "declaration", database: "test-local", schema: "bronze", name: "orders_raw" }
    """,
    "definitions/silver/orders.sqlx": """
        config { type: "incremental", schema: "silver", uniqueKey: ["order_id"],
                 assertions: { uniqueKey: ["order_id"] } }
        select order_id, customer_id, amount_usd from ${ref("orders_raw")}
        ${when(incremental(), `where order_id > (select coalesce(max(order_id), 0) from ${self()})`)}
    """,
    "definitions/gold/customer_totals.sqlx": """
        config { type: "table", schema: "gold" }
        select customer_id, sum(amount_usd) as amount_usd, count(*) as orders
        from ${ref("orders")} group by customer_id
    """,
    "definitions/gold/big_customers.sqlx": """
        config { type: "view", schema: "gold" }
        select * from ${ref("customer_totals")} where amount_usd > 12
    """,
    "definitions/assertions/few_orders.sqlx": """
        config { type: "assertion", tags: ["warn"] }
        select customer_id from ${ref("customer_totals")} where orders < 2
    """,
    "definitions/assertions/fresh.sqlx": """
        config { type: "assertion", tags: ["warn"] }
        select 1 from ${ref("orders")} having max(order_id) > 0 and current_date() < date '2000-01-01'
    """,
}

# the same project with silver.orders an incremental Iceberg table (merged by order_id)
ICEBERG_PROJECT = {
    **PROJECT,
    "definitions/silver/orders.sqlx": """
        config { type: "incremental", schema: "silver", uniqueKey: ["order_id"],
                 iceberg: { fileFormat: "PARQUET", connection: "DEFAULT", bucketName: "lake",
                            tableFolderRoot: "silver" } }
        select order_id, customer_id, amount_usd from ${ref("orders_raw")}
    """,
}


def execute(home, sql):
    con = warehouse.connect(home, ["test-local"])
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def seed(home, rows):
    con = warehouse.connect(home, ["test-local"])
    try:
        con.execute('CREATE SCHEMA IF NOT EXISTS "test-local".bronze')
        con.execute(
            'CREATE TABLE IF NOT EXISTS "test-local".bronze.orders_raw '
            "(order_id BIGINT, customer_id VARCHAR, amount_usd DOUBLE)"
        )
        for row in rows:
            con.execute('INSERT INTO "test-local".bronze.orders_raw VALUES (?, ?, ?)', list(row))
    finally:
        con.close()


def outcome(record):
    """Return {short name: "skipped" | "ran"} and {short name: result} of a run."""
    ran = {}
    for action in record.actions:
        short = action.name.split(".", 1)[1]
        ran[short] = "skipped" if (action.note or "").startswith("unchanged since run") else "ran"
    return ran, {a.name.split(".", 1)[1]: a for a in record.actions}


def test_a_second_run_with_nothing_new_skips_every_unchanged_action_and_keeps_its_result(make_project, lakehouse_home):
    project = make_project(PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-2", 20.0), (3, "CUST-1", 5.0)])
    first = run(project)
    assert first.status == "success"

    second = run(project)

    ran, results = outcome(second)
    assert second.status == "success"
    # the incremental table's last run inserted rows: it runs once more to reach its fixed point
    assert ran["silver.orders"] == "ran" and results["silver.orders"].rows_affected == 0
    assert ran["gold.customer_totals"] == "skipped"
    assert ran["gold.big_customers"] == "skipped"
    assert ran["assertions.few_orders"] == "skipped"
    # a skipped assertion keeps its verdict: CUST-2 has one order
    assert (results["assertions.few_orders"].status, results["assertions.few_orders"].failing_rows) == ("failed", 1)

    third = run(project)
    ran, _ = outcome(third)
    assert ran["silver.orders"] == "skipped"
    assert execute(lakehouse_home, 'SELECT count(*) FROM "test-local".silver.orders') == [(3,)]


def test_an_action_that_reads_only_the_date_is_skipped_until_the_date_changes_in_its_zone(
    make_project, lakehouse_home
):
    files = dict(PROJECT)
    files["definitions/assertions/tokyo_today.sqlx"] = """
        config { type: "assertion", tags: ["warn"] }
        select 1 from ${ref("orders")} having current_date('Asia/Tokyo') < date '2000-01-01'
    """
    project = make_project(files)
    seed(lakehouse_home, [(1, "CUST-1", 10.0)])
    morning = dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)  # 19:00 in Tokyo
    run(project, options=RunOptions(now=morning))
    run(project, options=RunOptions(now=morning))

    late = run(project, options=RunOptions(now=morning + dt.timedelta(hours=13)))  # 23:00 UTC, 08:00 next day in Tokyo
    ran, results = outcome(late)
    assert ran["assertions.fresh"] == "skipped"  # current_date() in UTC: still 1 March
    assert ran["assertions.tokyo_today"] == "ran" and results["assertions.tokyo_today"].note == "ran: inputs changed"

    next_day = run(project, options=RunOptions(now=morning + dt.timedelta(hours=14)))
    ran, results = outcome(next_day)
    assert ran["assertions.fresh"] == "ran" and results["assertions.fresh"].note == "ran: inputs changed"
    assert ran["assertions.tokyo_today"] == "skipped"


def test_new_source_rows_rerun_what_reads_them_and_the_result_equals_a_full_rerun(make_project, lakehouse_home):
    project = make_project(PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0), (3, "CUST-2", 20.0)])
    run(project)
    assert outcome(run(project))[1]["assertions.few_orders"].status == "failed"

    seed(lakehouse_home, [(4, "CUST-2", 1.0)])
    record = run(project)

    ran, results = outcome(record)
    assert ran["silver.orders"] == "ran" and results["silver.orders"].rows_affected == 1
    assert ran["gold.customer_totals"] == "ran"
    assert results["assertions.few_orders"].status == "success"  # CUST-2 now has two orders
    totals = execute(lakehouse_home, 'SELECT * FROM "test-local".gold.customer_totals ORDER BY 1')
    rerun = run(project, options=RunOptions(skip_unchanged=False))
    assert all((a.note or "").startswith("ran") for a in rerun.actions)
    assert execute(lakehouse_home, 'SELECT * FROM "test-local".gold.customer_totals ORDER BY 1') == totals


def test_a_view_is_made_again_only_when_what_it_reads_changes_shape_not_data(make_project, lakehouse_home):
    project = make_project(PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-2", 20.0)])
    run(project)
    run(project)
    seed(lakehouse_home, [(3, "CUST-3", 30.0)])

    ran, _ = outcome(run(project))

    assert ran["gold.customer_totals"] == "ran"
    assert ran["gold.big_customers"] == "skipped"  # the view it made still reads the new rows
    assert execute(lakehouse_home, 'SELECT customer_id FROM "test-local".gold.big_customers ORDER BY 1') == [
        ("CUST-2",),
        ("CUST-3",),
    ]
    table = project / "definitions/gold/customer_totals.sqlx"
    table.write_text(table.read_text().replace("count(*) as orders", "count(*) as orders, max(order_id) as last_order"))

    ran, _ = outcome(run(project))

    assert ran["gold.customer_totals"] == "ran" and ran["gold.big_customers"] == "ran"
    assert [row[0] for row in execute(lakehouse_home, 'DESCRIBE "test-local".gold.big_customers')][-1] == "last_order"


def test_the_word_now_in_a_comment_a_string_or_a_name_is_no_clock_but_a_call_is(make_project, lakehouse_home):
    files = dict(PROJECT)
    files["definitions/gold/labelled.sqlx"] = """
        config { type: "table", schema: "gold" }
        -- the totals as they stand now
        select customer_id, 'random' as label, amount_usd as `now`, orders as rand
        from ${ref("customer_totals")}
    """
    files["definitions/gold/stamped.sqlx"] = """
        config { type: "table", schema: "gold" }
        select customer_id, current_timestamp as stamped_at from ${ref("customer_totals")}
    """
    project = make_project(files)
    seed(lakehouse_home, [(1, "CUST-1", 10.0)])
    run(project)

    ran, results = outcome(run(project))

    assert ran["gold.labelled"] == "skipped"
    assert ran["gold.stamped"] == "ran" and results["gold.stamped"].note == "ran: reads the clock or a random source"


def test_a_changed_definition_reruns_that_action_and_what_reads_it(make_project, lakehouse_home):
    project = make_project(PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-2", 20.0)])
    run(project)
    run(project)
    view = project / "definitions/gold/big_customers.sqlx"
    view.write_text(view.read_text().replace("amount_usd > 12", "amount_usd > 15"))

    ran, _ = outcome(run(project))

    assert ran["gold.big_customers"] == "ran"
    assert ran["gold.customer_totals"] == "skipped"


def test_an_update_made_by_hand_with_lakehouse_query_makes_the_next_run_run_everything(
    make_project, lakehouse_home, monkeypatch
):
    project = make_project(PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-2", 20.0)])
    run(project)
    run(project)
    monkeypatch.chdir(project)

    # an in-place update changes no row count: only the record of it being made by hand tells
    result = CliRunner().invoke(main, ["query", "update bronze.orders_raw set amount_usd = 99 where order_id = 2"])
    assert result.exit_code == 0, result.output
    ran, _ = outcome(run(project))

    assert ran["gold.customer_totals"] == "ran"
    assert ran["gold.big_customers"] == "ran"


def test_an_incremental_action_that_appends_every_time_runs_every_time(make_project, lakehouse_home):
    files = dict(PROJECT)
    files["definitions/silver/log.sqlx"] = """
        config { type: "incremental", schema: "silver" }
        select order_id from ${ref("orders_raw")}
    """
    project = make_project(files)
    seed(lakehouse_home, [(1, "CUST-1", 10.0)])

    for _ in range(3):
        run(project)

    # as on BigQuery: each run appends the source again, none is skipped
    assert execute(lakehouse_home, 'SELECT count(*) FROM "test-local".silver.log') == [(3,)]


def test_an_incremental_action_that_empties_its_table_first_needs_no_second_run(make_project, lakehouse_home):
    files = dict(PROJECT)
    files["definitions/silver/batch.sqlx"] = """
        config { type: "incremental", schema: "silver" }
        pre_operations { ${when(incremental(), `delete from ${self()} where true`)} }
        select order_id from ${ref("orders_raw")} where order_id > 1
    """
    project = make_project(files)
    seed(lakehouse_home, [(1, "CUST-1", 10.0)])
    run(project)
    seed(lakehouse_home, [(2, "CUST-1", 10.0)])

    ran, results = outcome(run(project))
    assert ran["silver.batch"] == "ran" and results["silver.batch"].rows_affected == 1
    ran, _ = outcome(run(project))

    # its table holds what its other inputs give, whatever it held before: nothing new, nothing to do
    assert ran["silver.batch"] == "skipped"
    assert ran["silver.orders"] == "ran"  # a merge that reads its own rows runs once more after a change
    assert execute(lakehouse_home, 'SELECT order_id FROM "test-local".silver.batch') == [(2,)]


def test_landing_files_are_inputs_by_name_size_and_time(make_project, lakehouse_home):
    files = {
        "definitions/bronze/events.sqlx": """
            config { type: "operations", hasOutput: true, schema: "bronze", name: "events" }
            create or replace external table ${self()} (line string)
            options (format = 'CSV', field_delimiter = '\\\\x01', quote = '', uris = ['gs://landing/events/*'])
        """,
        "definitions/silver/event_count.sqlx": """
            config { type: "table", schema: "silver" }
            select count(*) as lines from ${ref("events")}
        """,
    }
    project = make_project(files)
    folder = paths.gcs_object_path(lakehouse_home, "landing", "events")
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text('{"a": 1}\n')
    run(project)
    ran, _ = outcome(run(project))
    assert ran["silver.event_count"] == "skipped"

    (folder / "b.jsonl").write_text('{"b": 2}\n{"b": 3}\n')
    ran, _ = outcome(run(project))

    assert ran["silver.event_count"] == "ran"
    assert execute(lakehouse_home, 'SELECT lines FROM "test-local".silver.event_count') == [(3,)]


def test_an_incremental_iceberg_table_commits_only_the_files_a_run_changed(make_project, lakehouse_home):
    project = make_project(ICEBERG_PROJECT)
    store_target = {"database": "test-local", "schema": "silver", "name": "orders"}
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0), (3, "CUST-2", 20.0)])
    rerun = RunOptions(skip_unchanged=False)  # every run MERGEs every source row again

    def state():
        table = IcebergStore(lakehouse_home).load(store_target)
        rows = execute(lakehouse_home, 'SELECT * FROM "test-local".silver.orders ORDER BY 1')
        return len(table.snapshots()), set(IcebergStore(lakehouse_home).data_files(store_target)), rows

    run(project)
    snapshots, first_files, _ = state()
    seed(lakehouse_home, [(4, "CUST-2", 5.0)])
    run(project, options=rerun)
    # only a row was added: the file already there is kept, one file is added
    snapshots_after, files, rows = state()
    assert (snapshots_after, len(files), first_files < files) == (snapshots + 1, 2, True)
    assert rows[-1] == (4, "CUST-2", 5.0)

    execute(lakehouse_home, 'UPDATE "test-local".bronze.orders_raw SET amount_usd = 99 WHERE order_id = 2')
    run(project, options=rerun)
    # the file holding order 2 is rewritten, the file of order 4 is kept
    snapshots_updated, updated_files, rows = state()
    assert snapshots_updated == snapshots + 2
    assert updated_files & files == files - first_files
    assert rows == [(1, "CUST-1", 10.0), (2, "CUST-1", 99.0), (3, "CUST-2", 20.0), (4, "CUST-2", 5.0)]

    run(project, options=rerun)
    # a MERGE that rewrote every row with the same values changed nothing: no snapshot
    assert state() == (snapshots_updated, updated_files, rows)
    full = run(project, options=RunOptions(full_refresh=True))
    assert full.status == "success" and state()[2] == rows


# an incremental Iceberg table whose runs only append the new source rows
APPENDING_PROJECT = {
    **ICEBERG_PROJECT,
    "definitions/silver/orders.sqlx": ICEBERG_PROJECT["definitions/silver/orders.sqlx"]
    + "${when(incremental(), `where order_id > (select coalesce(max(order_id), 0) from ${self()})`)}\n",
}
ORDERS = {"database": "test-local", "schema": "silver", "name": "orders"}


def spy_appended(monkeypatch) -> list[bool]:
    """Record whether each Iceberg commit took the rows a write appended as they were (True) or
    compared every row of the table (False)."""
    taken = []
    real = IcebergStore._appended_rows
    monkeypatch.setattr(
        IcebergStore, "_appended_rows", lambda store, *args: taken.append(real(store, *args)) or taken[-1]
    )
    return taken


def in_iceberg(home) -> list[tuple]:
    table = IcebergStore(home).load(ORDERS)
    return sorted(tuple(row.values()) for row in table.scan().to_arrow().to_pylist())


def rows_set_aside(home) -> int:
    return execute(home, "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'iceberg_added_%'")[0][0]


@pytest.mark.parametrize("write", ["appends", "merges every row"])
def test_an_iceberg_commit_reads_only_the_rows_a_write_appended(make_project, lakehouse_home, monkeypatch, write):
    monkeypatch.setenv(COMMITTER_ENV, "process")
    project = make_project(APPENDING_PROJECT if write == "appends" else ICEBERG_PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0)])
    assert run(project).status == "success"
    first_files = set(IcebergStore(lakehouse_home).data_files(ORDERS))
    taken = spy_appended(monkeypatch)

    seed(lakehouse_home, [(3, "CUST-2", 5.0), (4, "CUST-3", 7.5)])
    record = run(project, options=RunOptions(skip_unchanged=False))

    assert record.status == "success", [a.error for a in record.actions if a.error]
    # a MERGE of every row again counts the rows it matched: the table is compared row by row
    assert taken == ([True] if write == "appends" else [False])
    expected = [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0), (3, "CUST-2", 5.0), (4, "CUST-3", 7.5)]
    assert in_iceberg(lakehouse_home) == expected
    assert execute(lakehouse_home, 'SELECT * FROM "test-local".silver.orders ORDER BY 1') == expected
    files = set(IcebergStore(lakehouse_home).data_files(ORDERS))
    assert first_files < files and len(files) == len(first_files) + 1  # the files there are kept
    recorded = 'SELECT count(h), count(DISTINCT file) FROM "test-local"._lakehouse.iceberg_rows'
    assert execute(lakehouse_home, recorded) == [(4, len(files))]
    assert rows_set_aside(lakehouse_home) == 0
    assert execute(lakehouse_home, 'SELECT count(*) FROM "test-local"._lakehouse.iceberg_pending') == [(0,)]


@pytest.mark.parametrize("meanwhile", ["nothing", "a row written outside the run"])
def test_rows_appended_and_not_committed_are_committed_by_the_next_run(
    make_project, lakehouse_home, monkeypatch, meanwhile
):
    project = make_project(APPENDING_PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0)])
    assert run(project).status == "success"
    seed(lakehouse_home, [(2, "CUST-2", 5.0)])
    real = IcebergStore.publish_changes

    def fail(store, con, target, **kwargs):
        raise OSError("the disk went away")

    monkeypatch.setattr(IcebergStore, "publish_changes", fail)
    assert run(project).status == "failed"
    assert rows_set_aside(lakehouse_home) == 1  # kept with the table's mark, for the next run
    expected = [(1, "CUST-1", 10.0), (2, "CUST-2", 5.0)]
    if meanwhile != "nothing":  # the rows set aside no longer account for the table: compared row by row
        execute(lakehouse_home, """INSERT INTO "test-local".silver.orders VALUES (9, 'CUST-9', 1.0)""")
        expected.append((9, "CUST-9", 1.0))
    monkeypatch.setattr(IcebergStore, "publish_changes", real)
    taken = spy_appended(monkeypatch)

    assert run(project).status == "success"

    assert taken[:1] == ([True] if meanwhile == "nothing" else [False])
    assert in_iceberg(lakehouse_home) == expected
    assert rows_set_aside(lakehouse_home) == 0


def test_a_write_onto_changes_not_committed_yet_sets_no_rows_aside(make_project, lakehouse_home):
    project = make_project(APPENDING_PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0)])
    assert run(project).status == "success"
    store = IcebergStore(lakehouse_home)
    con = warehouse.connect(lakehouse_home, ["test-local"])
    try:
        for order_id in (2, 3):  # two appends, the first never committed to its snapshot
            con.execute("BEGIN TRANSACTION")
            mark = store.write_mark(con, ORDERS)
            con.execute(f"""INSERT INTO "test-local".silver.orders VALUES ({order_id}, 'CUST-2', 5.0)""")
            appended_after = store.appended_after(con, ORDERS, mark, 1)
            assert appended_after == mark[1]
            assert store.stage_changes(con, ORDERS, appended_after=appended_after)
            con.execute("COMMIT")
            # the second write's rows are not all the changes since the snapshot: none are set aside
            set_aside = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'iceberg_added_%'")
            assert set_aside.fetchone()[0] == (1 if order_id == 2 else 0)
        for change in (
            """UPDATE "test-local".silver.orders SET amount_usd = 6 WHERE order_id = 2""",  # counts, adds no row
            """DELETE FROM "test-local".silver.orders WHERE order_id = 1""",  # a row there before goes
        ):
            con.execute("BEGIN TRANSACTION")
            mark = store.write_mark(con, ORDERS)
            con.execute(change)
            con.execute("""INSERT INTO "test-local".silver.orders VALUES (4, 'CUST-4', 1.0)""")
            assert store.appended_after(con, ORDERS, mark, 2) is None
            con.execute("ROLLBACK")
    finally:
        con.close()
    assert run(project).status == "success"
    assert in_iceberg(lakehouse_home) == [(1, "CUST-1", 10.0), (2, "CUST-2", 5.0), (3, "CUST-2", 5.0)]


def test_the_engines_own_schema_is_not_a_dataset(make_project, lakehouse_home, monkeypatch):
    project = make_project(PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0)])
    run(project)
    assert execute(lakehouse_home, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = '_lakehouse'") == [(2,)]
    monkeypatch.chdir(project)

    sql = "select schema_name from INFORMATION_SCHEMA.SCHEMATA"
    result = CliRunner().invoke(main, ["query", sql, "--format", "csv"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] and "_lakehouse" not in result.output


def test_a_warehouse_a_snapshot_behind_the_iceberg_catalog_mirrors_it_again(make_project, lakehouse_home, tmp_path):
    project = make_project(ICEBERG_PROJECT)
    target = {"database": "test-local", "schema": "silver", "name": "orders"}
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0), (3, "CUST-2", 20.0)])
    run(project)
    seed(lakehouse_home, [(4, "CUST-2", 5.0)])
    saved = tmp_path / "before"
    saved.mkdir()
    warehouse_files = sorted(paths.warehouse_dir(lakehouse_home).iterdir())
    for file in warehouse_files:
        (saved / file.name).write_bytes(file.read_bytes())
    run(project)
    # a run killed after its Iceberg commit and before its warehouse commit: the warehouse as it was
    for file in paths.warehouse_dir(lakehouse_home).iterdir():
        file.unlink()
    for file in saved.iterdir():
        (paths.warehouse_dir(lakehouse_home) / file.name).write_bytes(file.read_bytes())
    assert execute(lakehouse_home, 'SELECT count(*) FROM "test-local".silver.orders') == [(3,)]

    execute(lakehouse_home, 'UPDATE "test-local".bronze.orders_raw SET amount_usd = 99 WHERE order_id = 2')
    assert run(project).status == "success"

    expected = [(1, "CUST-1", 10.0), (2, "CUST-1", 99.0), (3, "CUST-2", 20.0), (4, "CUST-2", 5.0)]
    table = IcebergStore(lakehouse_home).load(target)
    in_iceberg = sorted(tuple(row.values()) for row in table.scan().to_arrow().to_pylist())
    assert in_iceberg == expected
    assert execute(lakehouse_home, 'SELECT * FROM "test-local".silver.orders ORDER BY 1') == expected
    mirrored = execute(lakehouse_home, 'SELECT metadata_location FROM "test-local"._lakehouse.iceberg_mirror')
    assert mirrored == [(table.metadata_location,)]
    # the row hashes recorded are those of the files the snapshot lists
    recorded = execute(lakehouse_home, 'SELECT DISTINCT file FROM "test-local"._lakehouse.iceberg_rows')
    assert {file for (file,) in recorded} == set(IcebergStore(lakehouse_home).data_files(target))


def test_an_iceberg_table_written_whole_is_written_in_chunks_in_one_snapshot(make_project, lakehouse_home, monkeypatch):
    from lakehouse.engine import iceberg

    monkeypatch.setattr(iceberg, "PUBLISH_BATCH_ROWS", 2)
    project = make_project(ICEBERG_PROJECT)
    target = {"database": "test-local", "schema": "silver", "name": "orders"}
    rows = [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0), (3, "CUST-2", 20.0), (4, "CUST-2", 5.0), (5, "CUST-3", 1.0)]
    seed(lakehouse_home, rows)

    run(project)

    table = IcebergStore(lakehouse_home).load(target)
    data_files = IcebergStore(lakehouse_home).data_files(target)
    assert len(table.snapshots()) == 1 and len(data_files) == 3 == len(set(data_files))
    assert sorted(tuple(r.values()) for r in table.scan().to_arrow().to_pylist()) == rows
    # an update of one row rewrites the one chunk file that holds it
    execute(lakehouse_home, 'UPDATE "test-local".bronze.orders_raw SET amount_usd = 99 WHERE order_id = 5')
    run(project, options=RunOptions(skip_unchanged=False))
    after = set(IcebergStore(lakehouse_home).data_files(target))
    assert len(after & set(data_files)) == 2
    table = IcebergStore(lakehouse_home).load(target)
    assert sorted(tuple(r.values()) for r in table.scan().to_arrow().to_pylist()) == [*rows[:4], (5, "CUST-3", 99.0)]


def test_a_run_that_brings_no_rows_to_an_iceberg_table_never_opens_its_catalog(
    make_project, lakehouse_home, monkeypatch
):
    # a batch table (emptied and refilled by each run) feeds an incremental Iceberg table
    project = make_project(
        {
            **ICEBERG_PROJECT,
            "definitions/silver/orders_batch.sqlx": """
                config { type: "table", schema: "silver" }
                select order_id, customer_id, amount_usd from ${ref("orders_raw")}
            """,
            "definitions/silver/orders.sqlx": """
                config { type: "incremental", schema: "silver", uniqueKey: ["order_id"],
                         iceberg: { fileFormat: "PARQUET", connection: "DEFAULT", bucketName: "lake",
                                    tableFolderRoot: "silver" } }
                select order_id, customer_id, amount_usd from ${ref("orders_batch")}
            """,
        }
    )
    # pyiceberg's reading threads, left by the first run, would keep "auto" inline
    monkeypatch.setenv(COMMITTER_ENV, "process")
    opened = []
    real_open = IcebergStore._open
    monkeypatch.setattr(IcebergStore, "_open", lambda store: opened.append(1) or real_open(store))
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0)])
    assert run(project).status == "success" and opened  # no table in the catalog yet: this process makes it
    opened.clear()
    seed(lakehouse_home, [(3, "CUST-2", 5.0)])
    # new rows: a snapshot, committed by the run's committer process (iceberg_committer), not this one
    assert run(project).status == "success" and opened == []
    assert len(IcebergStore(lakehouse_home).load({"database": "test-local", "schema": "silver", "name": "orders"})
               .snapshots()) == 2  # fmt: skip
    opened.clear()
    execute(lakehouse_home, 'DELETE FROM "test-local".bronze.orders_raw')
    record = run(project)
    ran, _ = outcome(record)
    # the batch emptied and the Iceberg table's MERGE ran on it, writing nothing: no catalog, no import
    assert record.status == "success" and ran["silver.orders_batch"] == ran["silver.orders"] == "ran"
    assert opened == []
    assert execute(lakehouse_home, 'SELECT count(*) FROM "test-local".silver.orders') == [(3,)]


@pytest.mark.parametrize("fault", ["killed", "refuses"])
def test_a_commit_the_committer_process_cannot_make_is_made_by_the_run_itself(
    make_project, lakehouse_home, monkeypatch, fault
):
    monkeypatch.setenv(COMMITTER_ENV, "process")
    project = make_project(ICEBERG_PROJECT)
    target = {"database": "test-local", "schema": "silver", "name": "orders"}
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0)])
    assert run(project).status == "success"
    snapshots = len(IcebergStore(lakehouse_home).load(target).snapshots())
    failures = []
    real = IcebergCommitter.commit

    def commit(committer, identifier, expected, rewritten, rows_file):
        if fault == "killed":  # the process died before the request (its reply never comes)
            os.kill(committer.pid, signal.SIGKILL)
            os.waitpid(committer.pid, 0)
        else:  # the catalog moved on since the warehouse mirrored it: the process refuses
            expected = expected + ".elsewhere"
        reply = real(committer, identifier, expected, rewritten, rows_file)
        failures.extend(committer.failures)
        return reply

    monkeypatch.setattr(IcebergCommitter, "commit", commit)
    seed(lakehouse_home, [(3, "CUST-2", 5.0)])
    record = run(project)
    assert record.status == "success", [a.error for a in record.actions if a.error]
    assert len(failures) == 1
    assert ("the Iceberg committer process" in failures[0]) if fault == "killed" else ("moved on" in failures[0])
    table = IcebergStore(lakehouse_home).load(target)
    assert len(table.snapshots()) == snapshots + 1
    in_iceberg = sorted(tuple(row.values()) for row in table.scan().to_arrow().to_pylist())
    assert in_iceberg == [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0), (3, "CUST-2", 5.0)]
    assert execute(lakehouse_home, 'SELECT count(*) FROM "test-local"._lakehouse.iceberg_pending') == [(0,)]


def test_a_run_in_a_process_of_its_own_commits_its_iceberg_snapshot_without_importing_pyiceberg(
    make_project, lakehouse_home, monkeypatch
):
    # as `lakehouse run` starts: one thread, so "auto" forks the committer (on Linux)
    monkeypatch.delenv(COMMITTER_ENV, raising=False)
    project = make_project(ICEBERG_PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0)])
    assert run(project).status == "success"
    seed(lakehouse_home, [(3, "CUST-2", 5.0)])
    code = (
        "import sys; from lakehouse.engine.runner import run; "
        f"record = run({str(project)!r}); print(record.status, 'pyiceberg' in sys.modules)"
    )
    stale = lakehouse_home / "iceberg" / "staging" / "1234-left-by-a-killed-run.parquet"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"PAR1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == (["success", "False"] if sys.platform == "linux" else ["success", "True"])
    table = IcebergStore(lakehouse_home).load({"database": "test-local", "schema": "silver", "name": "orders"})
    in_iceberg = sorted(tuple(row.values()) for row in table.scan().to_arrow().to_pylist())
    assert in_iceberg == [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0), (3, "CUST-2", 5.0)]
    assert execute(lakehouse_home, 'SELECT count(*) FROM "test-local"._lakehouse.iceberg_pending') == [(0,)]
    # the rows handed over are removed, and what a killed run left there
    assert not list((lakehouse_home / "iceberg" / "staging").glob("*")) or sys.platform != "linux"


def test_a_home_moved_elsewhere_still_gets_its_iceberg_snapshots(make_project, tmp_path, lakehouse_home, monkeypatch):
    monkeypatch.setenv(COMMITTER_ENV, "process")
    project = make_project(ICEBERG_PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0)])
    assert run(project).status == "success"  # the table's files are recorded where they are, their rows unread
    moved = tmp_path / "moved-home"
    lakehouse_home.rename(moved)
    monkeypatch.setenv("LAKEHOUSE_HOME", str(moved))
    execute(moved, 'UPDATE "test-local".bronze.orders_raw SET amount_usd = 25 WHERE order_id = 2')
    seed(moved, [(3, "CUST-2", 5.0)])  # one row changed (its file is rewritten), one new
    record = run(project)
    assert record.status == "success", [a.error for a in record.actions if a.error]
    table = IcebergStore(moved).load({"database": "test-local", "schema": "silver", "name": "orders"})
    in_iceberg = sorted(tuple(row.values()) for row in table.scan().to_arrow().to_pylist())
    assert in_iceberg == [(1, "CUST-1", 10.0), (2, "CUST-1", 25.0), (3, "CUST-2", 5.0)]


def test_the_committer_process_is_forked_only_where_it_can_be(lakehouse_home, monkeypatch):
    monkeypatch.setenv(COMMITTER_ENV, "sometimes")
    with pytest.raises(ValueError, match="LAKEHOUSE_ICEBERG_COMMITTER='sometimes' is not one of: process, inline"):
        IcebergCommitter.start(lakehouse_home)
    monkeypatch.setenv(COMMITTER_ENV, "inline")
    assert IcebergCommitter.start(lakehouse_home) is None
    monkeypatch.delenv(COMMITTER_ENV)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:  # another Python thread may hold a lock the fork would copy held: "auto" keeps commits inline
        assert IcebergCommitter.start(lakehouse_home) is None
    finally:
        stop.set()
        other.join()


@pytest.mark.parametrize("asked", [False, True])
def test_the_committer_process_ends_with_the_run(lakehouse_home, monkeypatch, asked):
    monkeypatch.setenv(COMMITTER_ENV, "process")
    committer = IcebergCommitter.start(lakehouse_home)
    assert committer is not None
    # never asked: stopped at once; asked: its pipe's end is read (as when the run dies), and it ends
    committer._asked = asked
    started = time.monotonic()
    committer.close()
    assert time.monotonic() - started < 30
    with pytest.raises(ChildProcessError):
        os.waitpid(committer.pid, os.WNOHANG)  # reaped: no process left behind


def _maps(pid: int, library: str, timeout: float = 30) -> bool:
    """Return whether process `pid` maps a shared library whose path holds `library`, waiting for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if library in (Path("/proc") / str(pid) / "maps").read_text():
                return True
        except OSError:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads what the committer loaded from /proc")
def test_a_run_after_new_data_has_a_committer_that_imports_pyiceberg_before_the_run_starts(
    make_project, lakehouse_home, monkeypatch
):
    monkeypatch.setenv(COMMITTER_ENV, "process")
    project = make_project(ICEBERG_PROJECT)
    target = {"database": "test-local", "schema": "silver", "name": "orders"}
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0)])
    assert IcebergCommitter.start_early(lakehouse_home) is None  # no Iceberg table yet: the run makes it
    assert run(project).status == "success"
    assert not warehouse.changed_since_last_run(lakehouse_home)
    assert IcebergCommitter.start_early(lakehouse_home) is None  # nothing new since the run closed the warehouse
    execute(lakehouse_home, 'SELECT count(*) FROM "test-local".silver.orders')
    assert not warehouse.changed_since_last_run(lakehouse_home)  # a read changes nothing

    seed(lakehouse_home, [(3, "CUST-2", 5.0)])
    assert warehouse.changed_since_last_run(lakehouse_home)
    opened = []
    real_open = IcebergStore._open
    monkeypatch.setattr(IcebergStore, "_open", lambda store: opened.append(1) or real_open(store))
    # started in a process that has not imported pyiceberg (as `lakehouse run` starts it), the committer
    # imports it (with Arrow) at once, asked for nothing
    code = (
        "import sys; from pathlib import Path; from lakehouse.engine.iceberg_committer import IcebergCommitter; "
        "committer = IcebergCommitter.start_early(Path(sys.argv[1])); "
        "print(committer and committer.pid, 'pyarrow' in sys.modules, flush=True); sys.stdin.readline()"
    )
    waiting = subprocess.Popen([sys.executable, "-c", code, str(lakehouse_home)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        pid, imported = waiting.stdout.readline().split()
        assert pid != "None" and imported == "False"
        assert _maps(int(pid), "libarrow")
    finally:
        waiting.communicate("\n", timeout=60)
    committer = IcebergCommitter.start_early(lakehouse_home)
    assert committer is not None
    try:
        record = run(project, options=RunOptions(committer=committer))
    finally:
        committer.close()
    assert record.status == "success", [a.error for a in record.actions if a.error]
    assert opened == [] and committer.failures == []  # the snapshot is the early process's
    with pytest.raises(ChildProcessError):
        os.waitpid(committer.pid, os.WNOHANG)
    table = IcebergStore(lakehouse_home).load(target)
    assert sorted(tuple(row.values()) for row in table.scan().to_arrow().to_pylist()) == [
        (1, "CUST-1", 10.0), (2, "CUST-1", 20.0), (3, "CUST-2", 5.0)
    ]
    assert not warehouse.changed_since_last_run(lakehouse_home)
    committer.close()  # closing again does nothing


@pytest.mark.parametrize("how", ["no Iceberg table selected", "dry run", "command"])
def test_an_early_committer_ends_with_the_run_whether_or_not_it_commits(make_project, lakehouse_home, monkeypatch, how):
    monkeypatch.setenv(COMMITTER_ENV, "process")
    project = make_project(ICEBERG_PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0)])
    assert run(project).status == "success"
    seed(lakehouse_home, [(2, "CUST-2", 5.0)])
    started = []
    real = IcebergCommitter.start_early.__func__
    monkeypatch.setattr(IcebergCommitter, "start_early", classmethod(lambda cls, home: started.append(real(cls, home))
                                                                     or started[-1]))  # fmt: skip
    if how == "command":  # `lakehouse run`, which starts it before it imports the engine
        result = CliRunner().invoke(main, ["run", "--project-dir", str(project)])
        assert result.exit_code == 0, result.output
        assert len(IcebergStore(lakehouse_home).load(
            {"database": "test-local", "schema": "silver", "name": "orders"}).scan().to_arrow()) == 2  # fmt: skip
    else:
        committer = IcebergCommitter.start_early(lakehouse_home)
        options = RunOptions(committer=committer, actions=("customer_totals",) if how.startswith("no") else (),
                             dry_run=how == "dry run")  # fmt: skip
        assert run(project, options=options).status in ("success", "failed")
    assert len(started) == 1 and started[0] is not None
    with pytest.raises(ChildProcessError):  # ended and reaped by the time the run returned
        os.waitpid(started[0].pid, os.WNOHANG)


def test_an_iceberg_snapshot_that_fails_after_the_warehouse_commit_is_committed_by_the_next_run(
    make_project, lakehouse_home, monkeypatch
):
    project = make_project(ICEBERG_PROJECT)
    target = {"database": "test-local", "schema": "silver", "name": "orders"}
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0)])
    assert run(project).status == "success"
    snapshots = len(IcebergStore(lakehouse_home).load(target).snapshots())

    seed(lakehouse_home, [(3, "CUST-2", 5.0)])
    real = IcebergStore.publish_changes

    def fail(store, con, target, **kwargs):
        from pyiceberg.exceptions import CommitFailedException  # what a catalog another writer moved raises

        raise CommitFailedException("Requirement failed: branch main has changed")

    monkeypatch.setattr(IcebergStore, "publish_changes", fail)
    record = run(project)
    _, results = outcome(record)
    orders = results["silver.orders"]
    assert record.status == "failed" and orders.status == "failed"
    assert "committing its Iceberg snapshot failed: Requirement failed: branch main has changed" in orders.error
    assert "the next run commits them" in orders.error
    # the warehouse holds the new row and what reads it ran on it; the snapshot does not have it yet
    assert execute(lakehouse_home, 'SELECT count(*) FROM "test-local".silver.orders') == [(3,)]
    assert results["gold.customer_totals"].status == "success"
    assert len(IcebergStore(lakehouse_home).load(target).snapshots()) == snapshots

    monkeypatch.setattr(IcebergStore, "publish_changes", real)
    record = run(project)
    assert record.status == "success"
    table = IcebergStore(lakehouse_home).load(target)
    assert len(table.snapshots()) == snapshots + 1
    in_iceberg = sorted(tuple(row.values()) for row in table.scan().to_arrow().to_pylist())
    assert in_iceberg == [(1, "CUST-1", 10.0), (2, "CUST-1", 20.0), (3, "CUST-2", 5.0)]
    assert execute(lakehouse_home, 'SELECT count(*) FROM "test-local"._lakehouse.iceberg_pending') == [(0,)]
    # and a run after it has nothing left to commit
    assert run(project).status == "success"
    assert len(IcebergStore(lakehouse_home).load(target).snapshots()) == snapshots + 1


def test_states_lost_with_a_run_stopped_before_it_saved_them_only_make_actions_run_again(
    make_project, lakehouse_home, monkeypatch
):
    from lakehouse.engine import unchanged

    project = make_project(PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-2", 20.0)])
    run(project)
    run(project)  # the fixed point: a run now skips everything but the clock assertion
    seed(lakehouse_home, [(3, "CUST-2", 5.0)])
    # a run whose actions all committed, stopped before the states were written at its end
    save = unchanged.Tracker.save
    monkeypatch.setattr(unchanged.Tracker, "save", lambda tracker, con: None)
    stopped = run(project)
    assert outcome(stopped)[0]["gold.customer_totals"] == "ran"
    monkeypatch.setattr(unchanged.Tracker, "save", save)
    totals = execute(lakehouse_home, 'SELECT * FROM "test-local".gold.customer_totals ORDER BY 1')
    assert totals == [("CUST-1", 10.0, 1), ("CUST-2", 25.0, 2)]

    after = run(project)
    ran, _ = outcome(after)
    # the states before it say the inputs were otherwise: those actions run again, and change nothing
    assert ran["gold.customer_totals"] == ran["assertions.few_orders"] == "ran"
    assert execute(lakehouse_home, 'SELECT * FROM "test-local".gold.customer_totals ORDER BY 1') == totals
    ran, _ = outcome(run(project))
    assert ran["gold.customer_totals"] == ran["silver.orders"] == "skipped"
