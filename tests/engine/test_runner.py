"""The runner on real DuckDB with projects compiled by the pinned Dataform CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import date

import duckdb
import pytest

from lakehouse import paths, warehouse
from lakehouse.engine import functions
from lakehouse.engine.iceberg import MAX_SNAPSHOT_AGE, MAX_SNAPSHOTS, IcebergStore
from lakehouse.engine.runner import Engine, RunError, _SharedThreads, run

SEED = {
    "definitions/sources/orders_seed.sqlx": """
        config { type: "operations", hasOutput: true, schema: "bronze", name: "orders_seed" }
        create or replace table ${self()} as
        select 1 as order_id, 'CUST-1' as customer_id, 10.5 as amount_usd
        union all select 2, 'CUST-2', 20.0
        union all select 3, 'CUST-1', 5.25
    """,
    "definitions/silver/orders.sqlx": """
        config {
          type: "incremental",
          uniqueKey: ["order_id"],
          tags: ["hourly"],
          assertions: { uniqueKey: ["order_id"], nonNull: ["customer_id"] },
        }
        pre_operations {
          declare max_id int64 default (
            ${when(incremental(), `select coalesce(max(order_id), 0) from ${self()}`, `select 0`)}
          );
        }
        select order_id, customer_id, amount_usd
        from ${ref("orders_seed")}
        where order_id > max_id or order_id = 1
    """,
    "definitions/gold/customer_totals.sqlx": """
        config { type: "table", schema: "gold", tags: ["daily"] }
        select customer_id, sum(amount_usd) as amount_usd, count(*) as orders
        from ${ref("orders")}
        group by customer_id
    """,
    "definitions/gold/big_customers.sqlx": """
        config { type: "view", schema: "gold", tags: ["daily"] }
        select * from ${ref("customer_totals")} where amount_usd > 12
    """,
    "definitions/gold/independent.sqlx": """
        config { type: "table", schema: "gold" }
        select 42 as answer
    """,
}


def query(home, sql, project="test-local"):
    con = warehouse.connect(home, [project])
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def by_name(record):
    return {a.name.split(".", 1)[1]: a for a in record.actions}


def test_first_run_builds_every_action_in_dependency_order(make_project, lakehouse_home):
    project = make_project(SEED)

    record = run(project)

    assert record.status == "success"
    order = [a.name for a in record.actions]
    assert order.index("test-local.bronze.orders_seed") < order.index("test-local.silver.orders")
    assert order.index("test-local.silver.orders") < order.index("test-local.gold.customer_totals")
    assert order.index("test-local.gold.customer_totals") < order.index("test-local.gold.big_customers")
    results = by_name(record)
    assert results["silver.orders"].rows_affected == 3
    assert results["gold.customer_totals"].rows_affected == 2
    assert results["assertions.silver_orders_assertions_uniqueKey_0"].failing_rows == 0
    assert query(lakehouse_home, 'select * from "test-local".gold.big_customers order by 1') == [
        ("CUST-1", 15.75, 2),
        ("CUST-2", 20.0, 1),
    ]


def test_incremental_rerun_merges_on_unique_key_and_changes_nothing(make_project, lakehouse_home):
    project = make_project(SEED)
    run(project)

    second = run(project)

    # The incremental query re-reads order 1 (the pre-operation's max_id filter keeps it): MERGE
    # updates it in place, so the table still holds one row per order.
    assert second.status == "success"
    assert by_name(second)["silver.orders"].rows_affected == 1
    assert query(lakehouse_home, 'select order_id from "test-local".silver.orders order by 1') == [(1,), (2,), (3,)]


def test_full_refresh_rebuilds_incremental_tables(make_project, lakehouse_home):
    project = make_project(SEED)
    run(project)
    query(lakehouse_home, 'delete from "test-local".silver.orders where order_id = 2')

    incremental = run(project, actions=["orders"])
    assert query(lakehouse_home, 'select count(*) from "test-local".silver.orders') == [(2,)]
    assert by_name(incremental)["silver.orders"].status == "success"

    run(project, actions=["orders"], full_refresh=True)
    assert query(lakehouse_home, 'select count(*) from "test-local".silver.orders') == [(3,)]


def test_failed_action_keeps_previous_table_skips_dependents_runs_the_rest(make_project, lakehouse_home):
    project = make_project(SEED)
    run(project)
    (project / "definitions/gold/customer_totals.sqlx").write_text(
        'config { type: "table", schema: "gold" }\n'
        "select customer_id, cast('not a number' as int64) as amount_usd from ${ref(\"orders\")}\n"
    )

    record = run(project)

    results = by_name(record)
    assert record.status == "failed"
    assert results["gold.customer_totals"].status == "failed"
    assert "definitions/gold/customer_totals.sqlx" in results["gold.customer_totals"].error
    assert results["gold.big_customers"].status == "skipped"
    assert "gold.customer_totals" in results["gold.big_customers"].error
    assert results["gold.independent"].status == "success"
    # The previous version of the failed table is intact.
    assert query(lakehouse_home, 'select count(*), sum(orders) from "test-local".gold.customer_totals') == [(2, 3)]


def test_failing_assertion_fails_the_run_and_counts_rows(make_project, lakehouse_home):
    files = dict(SEED)
    files["definitions/gold/customer_totals.sqlx"] = """
        config {
          type: "table", schema: "gold",
          assertions: { uniqueKey: ["orders"], rowConditions: ["amount_usd < 100"] },
        }
        select customer_id, sum(amount_usd) as amount_usd, 1 as orders from ${ref("orders")} group by customer_id
    """
    project = make_project(files)

    record = run(project)

    results = by_name(record)
    unique = results["assertions.gold_customer_totals_assertions_uniqueKey_0"]
    assert (unique.status, unique.failing_rows, unique.severity) == ("failed", 1, "error")
    assert results["assertions.gold_customer_totals_assertions_rowConditions"].status == "success"
    assert record.status == "failed"


def test_warn_assertion_is_reported_but_does_not_fail_the_run(make_project, lakehouse_home):
    files = dict(SEED)
    files["definitions/assertions/few_customers.sqlx"] = """
        config { type: "assertion", tags: ["warn"] }
        select customer_id from ${ref("customer_totals")}
    """
    project = make_project(files)

    record = run(project)

    warn = by_name(record)["assertions.few_customers"]
    assert (warn.status, warn.severity, warn.failing_rows) == ("failed", "warn", 2)
    assert record.status == "success"


def test_selection_by_tag_with_dependencies(make_project, lakehouse_home):
    project = make_project(SEED)

    record = run(project, tags=["daily"], include_deps=True)

    names = sorted(by_name(record))
    assert "bronze.orders_seed" in names and "silver.orders" in names
    assert "gold.independent" not in names


def test_source_without_local_data_is_named(make_project, lakehouse_home):
    project = make_project(
        {
            "definitions/sources/shakespeare.sqlx": """
                config { type: "declaration", database: "bigquery-public-data", schema: "samples", name: "shakespeare" }
            """,
            "definitions/silver/words.sqlx": """
                config { type: "table" }
                select word, sum(word_count) as n from ${ref("shakespeare")} group by word
            """,
        }
    )

    record = run(project)

    words = by_name(record)["silver.words"]
    assert words.status == "failed"
    assert "bigquery-public-data.samples.shakespeare" in words.error
    assert "no local data" in words.error


def test_source_in_another_project_gets_its_own_catalog(make_project, lakehouse_home):
    project = make_project(
        {
            "definitions/sources/shakespeare.sqlx": """
                config { type: "declaration", database: "bigquery-public-data", schema: "samples", name: "shakespeare" }
            """,
            "definitions/silver/words.sqlx": """
                config { type: "table" }
                select word, sum(word_count) as n from ${ref("shakespeare")} group by word
            """,
        }
    )
    con = warehouse.connect(lakehouse_home, ["bigquery-public-data"])
    con.execute('create schema "bigquery-public-data".samples')
    con.execute(
        'create table "bigquery-public-data".samples.shakespeare as '
        "select * from (values ('to', 3), ('be', 2), ('to', 1)) t(word, word_count)"
    )
    con.close()

    record = run(project)

    assert record.status == "success"
    assert query(lakehouse_home, 'select * from "test-local".silver.words order by word') == [("be", 2), ("to", 4)]
    assert paths.catalog_file(lakehouse_home, "bigquery-public-data").is_file()


def test_iceberg_table_commits_a_snapshot_per_run_and_stays_queryable(make_project, lakehouse_home):
    files = dict(SEED)
    files["definitions/gold/customer_totals.sqlx"] = """
        config {
          type: "table", schema: "gold",
          iceberg: { fileFormat: "PARQUET", connection: "DEFAULT", bucketName: "lake", tableFolderRoot: "gold" },
        }
        select customer_id, sum(amount_usd) as amount_usd, count(*) as orders from ${ref("orders")} group by customer_id
    """
    project = make_project(files)

    run(project)
    second = run(project)

    assert second.status == "success"
    target = {"database": "test-local", "schema": "gold", "name": "customer_totals"}
    table = IcebergStore(lakehouse_home).load(target)
    assert len(table.snapshots()) == 2
    assert table.scan().to_arrow().num_rows == 2
    assert query(lakehouse_home, 'select count(*) from "test-local".gold.big_customers') == [(2,)]


def test_an_iceberg_incremental_build_of_no_rows_makes_or_empties_the_table(make_project, lakehouse_home):
    files = dict(SEED)
    files["definitions/silver/big_orders.sqlx"] = """
        config {
          type: "incremental", uniqueKey: ["order_id"],
          iceberg: { fileFormat: "PARQUET", connection: "DEFAULT", bucketName: "lake", tableFolderRoot: "silver" },
        }
        select order_id, amount_usd from ${ref("orders")} where amount_usd > ${dataform.projectConfig.vars.floor}
    """
    files["definitions/gold/big_order_count.sqlx"] = """
        config { type: "table", schema: "gold" }
        select count(*) as n from ${ref("big_orders")}
    """
    project = make_project(files)
    rows = 'select count(*) from "test-local".silver.big_orders'

    first = run(project, vars={"floor": "100"})  # no order is over 100: the first build has no rows

    assert first.status == "success", [a.error for a in first.actions if a.error]
    assert query(lakehouse_home, rows) == [(0,)]
    assert query(lakehouse_home, 'select n from "test-local".gold.big_order_count') == [(0,)]
    run(project, vars={"floor": "8"}, full_refresh=True)
    assert query(lakehouse_home, rows) == [(2,)]
    emptied = run(project, vars={"floor": "100"}, full_refresh=True)
    assert emptied.status == "success"
    assert query(lakehouse_home, rows) == [(0,)]
    target = {"database": "test-local", "schema": "silver", "name": "big_orders"}
    assert IcebergStore(lakehouse_home).load(target).scan().to_arrow().num_rows == 0


# An incremental Iceberg table whose every row changes with var `rate`.
PRICED_ORDERS = """
    config {
      type: "incremental", uniqueKey: ["order_id"],
      iceberg: { fileFormat: "PARQUET", connection: "DEFAULT", bucketName: "lake", tableFolderRoot: "silver" },
    }
    select order_id, amount_usd * ${dataform.projectConfig.vars.rate} as amount from ${ref("orders")}
"""


def _priced_orders(make_project, home, set_after_first_run: dict | None = None):
    """A project with PRICED_ORDERS, the Iceberg store of `home` and the table's target; with
    `set_after_first_run`, the project has run once (rate 1) and the table has those properties."""
    project = make_project({**SEED, "definitions/silver/priced_orders.sqlx": PRICED_ORDERS})
    store = IcebergStore(home)
    target = {"database": "test-local", "schema": "silver", "name": "priced_orders"}
    if set_after_first_run:
        run(project, vars={"rate": "1"})
        with store.load(target).transaction() as tx:
            tx.set_properties(set_after_first_run)
    return project, store, target


def test_iceberg_snapshots_past_their_retention_go_with_the_files_only_they_named(make_project, lakehouse_home):
    project, store, target = _priced_orders(make_project, lakehouse_home)
    folder = store.data_dir / "test-local.silver" / "priced_orders"
    run(project, vars={"rate": "1"})
    run(project, vars={"rate": "2"})  # every row changes: its file is rewritten, the old one kept for the old snapshot
    table = store.load(target)
    assert len(table.snapshots()) == 2  # inside the default retention every snapshot stays
    with table.transaction() as tx:
        tx.set_properties({MAX_SNAPSHOT_AGE: "1"})
    # what a commit killed after writing its data file leaves
    kept_file = next((folder / "data").glob("*.parquet"))
    orphan = kept_file.with_name("00000-0-killed-commit.parquet")
    orphan.write_bytes(kept_file.read_bytes())

    record = run(project, vars={"rate": "3"})

    assert record.status == "success", [a.error for a in record.actions if a.error]
    table = store.load(target)
    assert len(table.snapshots()) == 1
    assert sorted(str(p) for p in (folder / "data").glob("*.parquet")) == sorted(store.data_files(target))
    current = table.current_snapshot()
    named = {current.manifest_list} | {m.manifest_path for m in current.manifests(table.io)}
    assert {p.name for p in (folder / "metadata").glob("*.avro")} == {n.rsplit("/", 1)[-1] for n in named}
    assert sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["order_id"]) == [
        {"order_id": 1, "amount": 31.5}, {"order_id": 2, "amount": 60.0}, {"order_id": 3, "amount": 15.75},
    ]  # fmt: skip
    assert query(lakehouse_home, 'select sum(amount) from "test-local".silver.priced_orders') == [(107.25,)]


def test_an_iceberg_table_keeps_at_most_its_count_of_snapshots(make_project, lakehouse_home):
    project, store, target = _priced_orders(make_project, lakehouse_home, set_after_first_run={MAX_SNAPSHOTS: "2"})

    for rate in ("2", "3", "4"):
        assert run(project, vars={"rate": rate}).status == "success"

    table = store.load(target)
    assert len(table.snapshots()) == 2  # the newest two, well inside the age
    scans = [table.scan(snapshot_id=snapshot.snapshot_id) for snapshot in table.snapshots()]
    held = {task.file.file_path for scan in scans for task in scan.plan_files()}
    folder = store.data_dir / "test-local.silver" / "priced_orders" / "data"
    assert {p.name for p in folder.glob("*.parquet")} == {h.rsplit("/", 1)[-1] for h in held}
    assert sorted(table.scan().to_arrow().column("amount").to_pylist()) == [21.0, 42.0, 80.0]


def test_an_iceberg_retention_that_is_not_a_number_is_reported_by_name(make_project, lakehouse_home):
    bad = {MAX_SNAPSHOT_AGE: "five days"}
    project, store, target = _priced_orders(make_project, lakehouse_home, set_after_first_run=bad)

    record = run(project, vars={"rate": "2"})

    errors = [a.error for a in record.actions if a.error]
    assert record.status == "failed"
    named = "history.expire.max-snapshot-age-ms='five days', which is not a whole number"
    assert any(named in error for error in errors), errors
    assert len(store.load(target).snapshots()) == 1  # stopped before it committed anything


def test_return_in_a_script_ends_it_and_the_action_succeeds(make_project, lakehouse_home):
    project = make_project(
        {
            "definitions/ops/stamp.sqlx": """
                config { type: "operations", hasOutput: true }
                create or replace table ${self()} as select 1 as step;
                if (select count(*) from ${self()}) = 1 then
                  return;
                end if;
                insert into ${self()} values (2);
            """,
        }
    )

    record = run(project)

    assert record.status == "success", [a.error for a in record.actions]
    assert query(lakehouse_home, 'select step from "test-local".silver.stamp') == [(1,)]


def test_row_count_is_null_before_a_scripts_first_dml_whatever_ran_before_it(make_project, lakehouse_home):
    # @@row_count belongs to one script (one action): an action that changed rows before it, on the same
    # connection, leaves nothing for the next one to read
    project = make_project(
        {
            "definitions/ops/filled.sqlx": """
                config { type: "operations", hasOutput: true }
                create or replace table ${self()} (id int64);
                insert into ${self()} values (1), (2);
            """,
            "definitions/ops/counted.sqlx": """
                config { type: "operations", hasOutput: true, dependencies: ["filled"] }
                create or replace table ${self()} as select @@row_count as before_any, 0 as inserted;
                insert into ${self()} select null, id from ${ref("filled")};
                update ${self()} set inserted = @@row_count where before_any is null;
            """,
        }
    )

    record = run(project, concurrency=1)

    assert record.status == "success", [a.error for a in record.actions]
    rows = query(lakehouse_home, 'select before_any, inserted from "test-local".silver.counted order by 2')
    assert rows == [(None, 2), (None, 2), (None, 2)]


def test_dry_run_translates_everything_and_executes_nothing(make_project, lakehouse_home):
    files = dict(SEED)
    files["definitions/operations/dynamic.sqlx"] = """
        config { type: "operations" }
        export data options (uri = 'gs://b/x/*.csv', format = 'CSV') as select 1 as x
    """
    project = make_project(files)

    record = run(project, dry_run=True)

    results = by_name(record)
    assert results["silver.orders"].status == "planned"
    assert any("merge" in s.lower() or "create" in s.lower() for s in results["silver.orders"].statements)
    assert results["silver.dynamic"].status == "failed"
    assert "EXPORT DATA" in results["silver.dynamic"].error
    assert not paths.catalog_file(lakehouse_home, "test-local").exists()


def test_run_record_is_written_as_json_and_to_the_ops_table(make_project, lakehouse_home):
    project = make_project(SEED)

    record = run(project)

    saved = json.loads((paths.runs_dir(lakehouse_home) / f"{record.run_id}.json").read_text())
    assert saved["status"] == "success"
    assert len(saved["actions"]) == len(record.actions)
    rows = query(
        lakehouse_home,
        f"select action_name, status from \"test-local\".ops.action_runs where run_id = '{record.run_id}' order by 1",
    )
    assert ("test-local.silver.orders", "success") in rows
    assert len(rows) == len(record.actions)


def test_second_concurrent_run_refuses_clearly(make_project, lakehouse_home, monkeypatch):
    project = make_project(SEED)
    run(project)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(30)",
            str(paths.catalog_file(lakehouse_home, "test-local")),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv(warehouse.LOCK_WAIT_ENV, "0.5")
        with pytest.raises(RunError, match="in use by another lakehouse process"):
            run(project)
    finally:
        holder.kill()
        holder.wait()
    assert query(lakehouse_home, 'select count(*) from "test-local".silver.orders') == [(3,)]


def test_compile_error_stops_the_run(make_project, lakehouse_home):
    files = dict(SEED)
    files["definitions/gold/broken.sqlx"] = 'config { type: "table" }\nselect * from ${ref("nope")}\n'
    project = make_project(files)

    with pytest.raises(RunError, match="definitions/gold/broken.sqlx"):
        run(project)


def test_insert_overwrite_replaces_the_partitions_the_batch_holds(make_project, lakehouse_home):
    project = make_project(
        {
            "definitions/src.sqlx": """
                config { type: "table" }
                select date "2026-01-01" as day, 1 as v union all select date "2026-01-02", 2
            """,
            "definitions/daily.sqlx": """
                config {
                  type: "incremental",
                  incrementalStrategy: "insert_overwrite",
                  bigquery: { partitionBy: "day" },
                }
                select day, v * ${when(incremental(), 10, 1)} as v from ${ref("src")}
                ${when(incremental(), `where day = date "2026-01-02"`)}
            """,
        }
    )
    run(project)

    second = run(project)

    assert second.status == "success"
    # Only the partition in the incremental batch (2026-01-02) is replaced; 2026-01-01 keeps its row.
    assert query(lakehouse_home, 'select * from "test-local".silver.daily order by day') == [
        (date(2026, 1, 1), 1),
        (date(2026, 1, 2), 20),
    ]


def test_protected_incremental_table_is_not_rebuilt_by_full_refresh(make_project, lakehouse_home):
    files = dict(SEED)
    files["definitions/silver/orders.sqlx"] = files["definitions/silver/orders.sqlx"].replace(
        'uniqueKey: ["order_id"],', 'uniqueKey: ["order_id"], protected: true,', 1
    )
    project = make_project(files)
    run(project)
    query(lakehouse_home, "insert into \"test-local\".silver.orders values (99, 'CUST-9', 1.0)")

    record = run(project, actions=["orders"], full_refresh=True)

    assert record.status == "success"
    # A full refresh rebuilds unprotected incremental tables; a protected one is merged into as usual.
    assert query(lakehouse_home, 'select count(*) from "test-local".silver.orders where order_id = 99') == [(1,)]


def test_injected_clock_is_what_current_timestamp_reads(make_project, lakehouse_home):
    from datetime import UTC, datetime

    project = make_project(
        {
            "definitions/clock.sqlx": """
                config { type: "table", schema: "gold" }
                select current_timestamp() as now_at, current_date() as today,
                  timestamp_diff(current_timestamp(), timestamp '2026-01-01 00:00:00+00', hour) as hours
            """,
        }
    )
    record = run(project, home_dir=lakehouse_home, now=datetime(2026, 1, 2, 6, 30, tzinfo=UTC))
    assert record.status == "success", [a.error for a in record.actions]
    assert query(lakehouse_home, 'select now_at, today, hours from "test-local".gold.clock') == [
        (datetime(2026, 1, 2, 6, 30, tzinfo=UTC), date(2026, 1, 2), 30)
    ]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_independent_actions_run_at_once_with_the_same_results(make_project, lakehouse_home, concurrency):
    files = dict(SEED)
    for index in range(6):
        files[f"definitions/gold/parallel_{index}.sqlx"] = f"""
            config {{ type: "table", schema: "gold" }}
            select customer_id, count(*) + {index} as n from ${{ref("orders")}} group by customer_id
        """
    files["definitions/gold/broken.sqlx"] = """
        config { type: "table", schema: "gold" }
        select cast('x' as int64) as n from ${ref("parallel_0")}
    """
    files["definitions/gold/after_broken.sqlx"] = """
        config { type: "view", schema: "gold" }
        select * from ${ref("broken")}
    """
    project = make_project(files)

    record = run(project, concurrency=concurrency)

    results = by_name(record)
    assert record.status == "failed"
    assert [r.status for name, r in results.items() if name.startswith("gold.parallel_")] == ["success"] * 6
    assert results["gold.broken"].status == "failed" and results["gold.after_broken"].status == "skipped"
    # the record lists actions in dependency order whatever finished first
    order = [a.name.split(".", 1)[1] for a in record.actions]
    assert order.index("silver.orders") < order.index("gold.parallel_3")
    assert order.index("gold.parallel_0") < order.index("gold.broken") < order.index("gold.after_broken")
    assert query(lakehouse_home, 'select sum(n) from "test-local".gold.parallel_5') == [(3 + 2 * 5,)]


@pytest.mark.parametrize(
    ("extra_roots", "concurrency", "env", "first", "every"),
    [(4, 8, "", 1, None), (4, 2, "", 2, None), (4, 1, "", 4, 4), (4, 2, "3", 3, 3), (None, 2, "", 4, None)],
)
def test_duckdb_threads_are_the_cpus_shared_among_the_actions_running_at_once(
    make_project, lakehouse_home, monkeypatch, extra_roots, concurrency, env, first, every
):
    files = dict(SEED)
    if extra_roots is None:  # one chain from orders_seed: its first action runs alone, with every CPU
        del files["definitions/gold/independent.sqlx"]
    for index in range(extra_roots or 0):
        files[f"definitions/gold/root_{index}.sqlx"] = f'config {{ type: "table" }}\nselect {index} as n'
    monkeypatch.setenv(warehouse.THREADS_ENV, env)
    monkeypatch.setattr(warehouse, "_machine_threads", lambda: 4)
    seen = []
    execute = Engine.execute

    def spy(engine, action, options):
        seen.append(engine.con.execute("select current_setting('threads')").fetchone()[0])
        return execute(engine, action, options)

    monkeypatch.setattr(Engine, "execute", spy)
    record = run(make_project(files), home_dir=lakehouse_home, concurrency=concurrency)
    assert record.status == "success", [a.error for a in record.actions]
    assert seen[0] == first
    assert every is None or set(seen) == {every}


def test_an_action_out_of_memory_beside_others_runs_again_alone(make_project, lakehouse_home, monkeypatch):
    """DuckDB's memory limit is shared by the actions running at once: one that runs out of it beside
    others is rolled back and run again once nothing else runs; one that runs out alone fails."""
    files = dict(SEED)
    for index in range(4):
        files[f"definitions/gold/root_{index}.sqlx"] = f'config {{ type: "table" }}\nselect {index} as n'
    files["definitions/gold/hungry.sqlx"] = 'config { type: "table" }\nselect 1 as n'
    files["definitions/gold/starved.sqlx"] = 'config { type: "table" }\nselect 2 as n'
    running: set[str] = set()
    attempts: dict[str, list[set[str]]] = {}  # each attempt of an action: what else ran (name#attempt) as it started
    lock = threading.Lock()
    execute = Engine._execute

    def crowded_out(engine, action, options, result):
        name = action.name.split(".")[-1]
        with lock:
            attempts.setdefault(name, []).append(set(running))
            running.add(attempt := f"{name}#{len(attempts[name])}")
        try:
            if name == "hungry" and len(attempts[name]) == 1:
                time.sleep(0.2)  # the others start beside it
                raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block of size 256.0 KiB")
            if name == "starved":  # out of memory even alone
                raise duckdb.OutOfMemoryException("Out of Memory Error: failed to pin block of size 256.0 KiB")
            return execute(engine, action, options, result)
        finally:
            with lock:
                running.discard(attempt)

    monkeypatch.setattr(Engine, "_execute", crowded_out)
    record = run(make_project(files), home_dir=lakehouse_home, concurrency=2)

    results = {a.name.split(".")[-1]: a for a in record.actions}
    hungry = results["hungry"]
    assert hungry.status == "success" and hungry.note.startswith("ran again alone after running out of memory")
    assert len(attempts["hungry"]) == 2 and attempts["hungry"][1] == set()
    assert not any("hungry#2" in others for tries in attempts.values() for others in tries)  # nothing beside it
    table = ".".join(f'"{part}"' for part in hungry.name.split("."))
    assert query(lakehouse_home, f"select n from {table}") == [(1,)]
    starved = results["starved"]
    assert starved.status == "failed" and "Out of Memory Error" in starved.error
    assert "DuckDB's memory limit is " in starved.error and "set LAKEHOUSE_MEMORY_LIMIT higher" in starved.error
    assert len(attempts["starved"]) == (2 if attempts["starved"][0] else 1)
    assert record.status == "failed"
    assert all(r.status == "success" for name, r in results.items() if name != "starved")


def test_threads_go_up_at_once_and_down_only_when_no_statement_runs():
    con = duckdb.connect(":memory:", config={"threads": "4"})
    threads = _SharedThreads(con, 4)
    busy = False

    def setting():
        return con.execute("select current_setting('threads')").fetchone()[0]

    threads.share(0, 3, lambda: busy)  # three actions start together
    assert setting() == threads.current == 1
    threads.share(1, 0, lambda: busy)  # one left running: its next statements may use every CPU
    assert setting() == 4
    threads.share(1, 1, lambda: busy)  # one more beside it: DuckDB would wait for the running one
    assert setting() == 4
    busy = True  # an Iceberg commit or the checkpoint runs a statement
    threads.share(0, 2, lambda: busy)
    assert setting() == 4
    busy = False
    threads.share(0, 2, lambda: busy)
    assert setting() == 2


@pytest.mark.parametrize(
    ("statement", "eager"),
    [
        # named in the SQL: registered with the connection
        ("create or replace table gold.fp as select farm_fingerprint('1footrue') as f", True),
        # built at run time, so no text names it: registered when the statement misses it
        ("execute immediate concat(\"create or replace table gold.fp as select farm_\", "
         "\"fingerprint('1footrue') as f\")", False),
    ],
)  # fmt: skip
def test_python_udfs_are_registered_before_or_when_a_statement_needs_them(
    make_project, lakehouse_home, statement, eager
):
    project = make_project({"definitions/fp.sqlx": f'config {{ type: "operations", schema: "gold" }}\n{statement}'})
    record = run(project, home_dir=lakehouse_home, concurrency=2)
    assert record.status == "success", [a.error for a in record.actions]
    # BigQuery's documented FARM_FINGERPRINT('1footrue')
    assert query(lakehouse_home, 'select f from "test-local".gold.fp') == [(-1541654101129638711,)]
    assert functions.calls_python_udfs([statement]) is eager


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_runs_writes_are_checkpointed_while_its_assertions_run(
    make_project, lakehouse_home, monkeypatch, concurrency
):
    from lakehouse.engine import runner

    project = make_project(
        {
            "definitions/gold/wide.sqlx": """
                config { type: "table", schema: "gold", assertions: { nonNull: ["n"], uniqueKey: ["n"] } }
                select n, concat(repeat('x', 50), cast(n as string)) as s from unnest(generate_array(1, 20000)) as n
            """,
        }
    )
    wal = paths.catalog_file(lakehouse_home, "test-local").with_name("test-local.duckdb.wal")
    before_close = []
    close = runner._close_reporting

    def measured(con, record, on_finished):
        before_close.append(wal.stat().st_size if wal.exists() else 0)
        return close(con, record, on_finished)

    monkeypatch.setattr(runner, "_close_reporting", measured)
    start = runner._Checkpoint.start
    monkeypatch.setattr(runner._Checkpoint, "start", lambda checkpoint: None)
    assert run(project, concurrency=concurrency).status == "success"
    monkeypatch.setattr(runner._Checkpoint, "start", start)
    assert run(project, concurrency=concurrency, full_refresh=True).status == "success"

    # the same writes: left for the close without it, written beside the assertions with it
    without, with_it = before_close
    assert without > 1_000_000 and with_it < without / 4
    assert query(lakehouse_home, 'select count(*), max(n) from "test-local".gold.wide') == [(20000, 20000)]
