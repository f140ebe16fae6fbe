"""The dry run binds every statement on an empty copy of the warehouse and leaves the warehouse as it was."""

from __future__ import annotations

import hashlib

from click.testing import CliRunner

from lakehouse import paths, warehouse
from lakehouse.cli import main
from lakehouse.engine import dry_run
from lakehouse.engine.iceberg import IcebergStore
from lakehouse.engine.runner import run
from tests.engine.test_runner import SEED, by_name, query

CACHES = ("compile-cache", "translate-cache", "tmp")
ICEBERG_TOTALS = """
    config {
      type: "table", schema: "gold",
      iceberg: { fileFormat: "PARQUET", connection: "DEFAULT", bucketName: "lake", tableFolderRoot: "gold" },
    }
    select customer_id, sum(amount_usd) as amount_usd, count(*) as orders from ${ref("orders")} group by customer_id
"""
UNKNOWN_COLUMN = """
    config { type: "table", schema: "gold", tags: ["daily"] }
    select customer_id, sum(amount_eur) as amount_usd, count(*) as orders
    from ${ref("orders")}
    group by customer_id
"""


def home_files(home) -> dict[str, tuple[str, int]]:
    """Return every file of the home but its caches (warehouse, Iceberg catalog and files, run records)
    with its sha256 and mtime in nanoseconds."""
    return {
        str(file.relative_to(home)): (hashlib.sha256(file.read_bytes()).hexdigest(), file.stat().st_mtime_ns)
        for file in sorted(home.rglob("*"))
        if file.is_file() and file.relative_to(home).parts[0] not in CACHES
    }


def test_an_unknown_column_is_reported_with_the_action_its_file_and_the_column(make_project, lakehouse_home):
    project = make_project({**SEED, "definitions/gold/customer_totals.sqlx": UNKNOWN_COLUMN})

    record = run(project, dry_run=True)

    results = by_name(record)
    assert record.status == "failed"
    assert results["bronze.orders_seed"].status == "planned"
    assert results["silver.orders"].status == "planned"
    assert results["gold.independent"].status == "planned"
    assert results["gold.customer_totals"].status == "failed"
    assert results["gold.customer_totals"].error.startswith(
        "definitions/gold/customer_totals.sqlx: action test-local.gold.customer_totals failed: "
        'Binder Error: Referenced column "amount_eur" not found in FROM clause!'
    )
    assert results["gold.big_customers"].status == "skipped"
    assert results["gold.big_customers"].error == "skipped: upstream test-local.gold.customer_totals did not succeed"
    assert not paths.catalog_file(lakehouse_home, "test-local").exists()


def test_the_cli_dry_run_names_the_unknown_column_and_exits_1(make_project, lakehouse_home):
    project = make_project({**SEED, "definitions/gold/customer_totals.sqlx": UNKNOWN_COLUMN})

    result = CliRunner().invoke(main, ["run", "--dry-run", "--project-dir", str(project)], catch_exceptions=False)

    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "won't run gold.customer_totals: definitions/gold/customer_totals.sqlx:" in text
    assert 'Referenced column "amount_eur" not found' in text
    assert "failed: 1 failed, 5 planned, 1 skipped" in text


def test_a_valid_project_plans_every_action_and_leaves_the_warehouse_as_it_was(make_project, lakehouse_home):
    project = make_project({**SEED, "definitions/gold/customer_totals.sqlx": ICEBERG_TOTALS})
    first = run(project)
    assert first.status == "success"
    before = home_files(lakehouse_home)
    iceberg_target = {"database": "test-local", "schema": "gold", "name": "customer_totals"}
    snapshots = len(IcebergStore(lakehouse_home).load(iceberg_target).snapshots())

    record = run(project, dry_run=True)

    assert record.status == "success"
    assert {a.status for a in record.actions} == {"planned"}
    assert len(record.actions) == len(first.actions)
    # Unchanged since the first run, yet planned and bound: a dry run neither consults nor records that state.
    assert all(a.note is None and a.failing_rows is None and a.rows_affected is None for a in record.actions)
    # The second run of the incremental table merges into the existing one, as a run would.
    assert any(s.lower().startswith("merge") for s in by_name(record)["silver.orders"].statements)
    assert home_files(lakehouse_home) == before
    assert len(IcebergStore(lakehouse_home).load(iceberg_target).snapshots()) == snapshots
    assert query(lakehouse_home, 'select count(*) from "test-local".silver.orders') == [(3,)]


def test_incremental_statements_bind_against_the_warehouse_schema(make_project, lakehouse_home):
    files = dict(SEED)
    # Only the incremental branch reads the existing table: an empty home binds the other one.
    files["definitions/silver/orders.sqlx"] = files["definitions/silver/orders.sqlx"].replace(
        "coalesce(max(order_id), 0)", "coalesce(max(order_number), 0)"
    )
    project = make_project(files)
    assert by_name(run(project, dry_run=True))["silver.orders"].status == "planned"
    run(project, full_refresh=True)

    record = run(project, dry_run=True)

    orders = by_name(record)["silver.orders"]
    assert orders.status == "failed"
    assert orders.error.startswith("definitions/silver/orders.sqlx: action test-local.silver.orders failed: ")
    assert '"order_number" not found' in orders.error
    assert by_name(record)["gold.customer_totals"].status == "skipped"
    # A full refresh rebuilds the table: the incremental branch is not run, so not bound.
    assert by_name(run(project, dry_run=True, full_refresh=True))["silver.orders"].status == "planned"


def test_an_unknown_table_is_reported_with_the_action_and_the_table(make_project, lakehouse_home):
    project = make_project(
        {
            **SEED,
            "definitions/gold/refunds.sqlx": """
                config { type: "view", schema: "gold" }
                select r.order_id from silver.refunds as r join ${ref("orders")} using (order_id)
            """,
        }
    )

    results = by_name(run(project, dry_run=True))

    assert results["gold.refunds"].status == "failed"
    assert results["gold.refunds"].error == (
        "definitions/gold/refunds.sqlx: action test-local.gold.refunds: `test-local.silver.refunds` has no local "
        "data: load a sample with `lakehouse load test-local.silver.refunds <file.csv|.jsonl|.parquet>`, or run "
        "the action that creates it first"
    )
    assert results["gold.customer_totals"].status == "planned"


def test_a_first_dry_run_on_an_empty_home_reports_sources_with_no_local_data(make_project, lakehouse_home):
    project = make_project(
        {
            "definitions/sources/raw_orders.sqlx": """
                config { type: "declaration", schema: "bronze", name: "raw_orders" }
            """,
            "definitions/silver/orders.sqlx": """
                config { type: "table" }
                select order_id from ${ref("raw_orders")}
            """,
            "definitions/gold/answer.sqlx": """
                config { type: "table", schema: "gold" }
                select 42 as answer
            """,
        }
    )

    record = run(project, dry_run=True)

    results = by_name(record)
    assert results["silver.orders"].status == "failed"
    assert results["silver.orders"].error == (
        "definitions/silver/orders.sqlx: action test-local.silver.orders failed: reads test-local.bronze.raw_orders, "
        "declared as a source but with no local data; load a sample with "
        "`lakehouse load test-local.bronze.raw_orders <file.csv|.jsonl|.parquet>`"
    )
    assert results["gold.answer"].status == "planned"
    assert not paths.catalog_file(lakehouse_home, "test-local").exists()


def test_the_key_table_is_stood_in_with_a_placeholder_salt_and_no_salt_is_made(make_project, lakehouse_home):
    project = make_project(
        {
            "definitions/sources/pii_salt.sqlx": """
                config { type: "declaration", schema: "keys", name: "pii_salt" }
            """,
            "definitions/silver/customers.sqlx": """
                config { type: "table" }
                select to_hex(sha256(concat('CUST-1', coalesce(
                  (select max(salt) from ${ref("pii_salt")}), error('keys.pii_salt is empty')
                )))) as customer_key
            """,
        }
    )

    record = run(project, dry_run=True)

    assert [(a.name, a.status) for a in record.actions] == [("test-local.silver.customers", "planned")]
    assert not (lakehouse_home / "pii-salt").exists()
    assert not paths.catalog_file(lakehouse_home, "test-local").exists()


def test_the_stand_in_has_every_table_and_view_empty_with_the_same_columns_and_types(lakehouse_home):
    con = warehouse.connect(lakehouse_home, ["test-local"])
    con.execute('create schema "test-local".silver')
    con.execute(
        'create table "test-local".silver.events as select 1 as id, '
        "[{'key': 'k', 'value': {'int_value': 2}}] as event_params, 1.5::decimal(18, 3) as amount"
    )
    con.execute('create view "test-local".silver.v as select id, null as nothing from "test-local".silver.events')
    wanted = {name: con.execute(f'describe "test-local".silver.{name}').fetchall() for name in ("events", "v")}
    con.close()

    stand_in = dry_run.stand_in(lakehouse_home, ["test-local", "other-project"])

    assert {name: stand_in.execute(f'describe "test-local".silver.{name}').fetchall() for name in wanted} == wanted
    assert stand_in.execute('select count(*) from "test-local".silver.events').fetchall() == [(0,)]
    kinds = stand_in.execute(
        "select table_name, table_type from information_schema.tables where table_catalog = 'test-local' order by 1"
    ).fetchall()
    assert kinds == [("events", "BASE TABLE"), ("v", "VIEW")]
    assert stand_in.execute(
        "select count(*) from duckdb_databases() where database_name = 'other-project'"
    ).fetchall() == [(1,)]
    assert not paths.catalog_file(lakehouse_home, "other-project").exists()
