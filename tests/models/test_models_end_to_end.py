"""Generated events with every fault kind, through bronze, silver and gold on the local engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse import warehouse
from lakehouse.engine import query as engine_query
from lakehouse.engine import translate
from models.project import REPO, contract_names, copy_project, load_contract

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
PROJECT = "lakehouse-dev"
GOLD = (
    "daily_sales",
    "daily_product_summary",
    "customers",
    "products",
    "conversion_funnel",
    "ad_attribution",
    "inventory_levels",
    "customer_360",
)
# Rules the generator's order faults must trip (contract faults -> rule names).
ORDER_FAULT_RULES = {
    "customer_id_required",  # customer_id null, and customerId renamed
    "product_id_pattern",  # sku_NNNN
    "quantity_type",  # quantity as a string
    "quantity_min",  # negative quantity
    "price_required",  # price null
    "price_min_exclusive",  # price zero
}

pytestmark = pytest.mark.slow


def lakehouse(home: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the lakehouse CLI on the repository with LAKEHOUSE_HOME=home; fail the test on a non-zero exit."""
    done = subprocess.run(
        [LAKEHOUSE, *args],
        cwd=REPO,
        env={**os.environ, "LAKEHOUSE_HOME": str(home), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"lakehouse {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def query(home: Path, sql: str) -> list[dict]:
    """Return the rows of BigQuery `sql` on the local warehouse, as `lakehouse query --format json` prints them."""
    con = warehouse.connect(home, [PROJECT], read_only=True)
    try:
        translate.register_functions(con)
        con.execute(f'USE "{PROJECT}"')
        return json.loads(engine_query.to_json(engine_query.execute(con, sql, default_project=PROJECT)))
    finally:
        con.close()


def generate(home: Path, seed: int) -> None:
    lakehouse(
        home, "generate", "--events", "2000", "--seed", str(seed), "--pubsub-share", "0.3",
        "--batch-size", "100", "--in-process-bus",
    )  # fmt: skip


def conservation(home: Path) -> dict[str, tuple[int, int, int, int]]:
    parts = [
        f"select '{s}' as source, "
        f"(select count(*) from bronze.{s}_landing) + (select count(*) from bronze.{s}_raw) as bronze, "
        f"(select count(*) from silver.{s}) as silver, "
        f"(select count(*) from silver_restricted.{s}_quarantine) as quarantine, "
        f"(select count(*) from silver.{s}_duplicates) as duplicates"
        for s in contract_names()
    ]
    rows = query(home, " union all ".join(parts))
    return {r["source"]: (r["bronze"], r["silver"], r["quarantine"], r["duplicates"]) for r in rows}


def snapshot(home: Path, tables: list[str]) -> dict[str, list]:
    """Return every row of each table, sorted, as JSON-comparable values."""
    return {
        table: sorted(json.dumps(row, sort_keys=True) for row in query(home, f"select * from {table}"))
        for table in tables
    }


def silver_and_gold() -> list[str]:
    silver = [f"silver.{s}{suffix}" for s in contract_names() for suffix in ("", "_duplicates")]
    quarantine = [f"silver_restricted.{s}_quarantine" for s in contract_names()]
    return silver + quarantine + [f"gold.{name}" for name in GOLD]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Path:
    """A warehouse after one generation (seed 3) and one run."""
    home = tmp_path_factory.mktemp("e2e-home")
    generate(home, 3)
    lakehouse(home, "run")
    return home


def test_conservation_is_exact(loaded: Path):
    counts = conservation(loaded)
    assert set(counts) == set(contract_names())
    for source, (bronze, silver, quarantine, duplicates) in counts.items():
        assert bronze > 0, source
        assert bronze == silver + quarantine + duplicates, (source, counts[source])


def test_every_order_fault_kind_is_quarantined_by_its_rule(loaded: Path):
    rows = query(
        loaded,
        "select rule, count(*) as n from silver_restricted.orders_quarantine, unnest(failed_rules) as rule"
        " group by rule",
    )
    seen = {row["rule"] for row in rows if row["n"] > 0}
    assert ORDER_FAULT_RULES <= seen, ORDER_FAULT_RULES - seen
    kinds = query(loaded, "select distinct duplicate_kind from silver.orders_duplicates")
    assert {row["duplicate_kind"] for row in kinds} == {"redelivery", "older_version"}
    overlap = query(
        loaded,
        "select count(*) as n from silver.orders inner join silver_restricted.orders_quarantine using (record_id)",
    )
    assert overlap == [{"n": 0}]


def test_raw_records_and_clear_pii_are_only_in_the_restricted_dataset(loaded: Path):
    """Analysts get silver, gold and ops: no table or view there has a raw record or a PII field in clear."""
    pii = {field["name"] for s in contract_names() for field in load_contract(s)["fields"] if field.get("pii")}
    assert {"customer_email", "customer_name", "shipping_address"} <= pii
    con = warehouse.connect(loaded, [PROJECT], read_only=True)
    try:
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns where table_catalog = ?",
            [PROJECT],
        ).fetchall()
    finally:
        con.close()
    clear = {"raw_record"} | pii
    exposed = sorted(
        f"{schema}.{table}.{column}" for schema, table, column in columns
        if schema in ("silver", "gold", "ops") and column in clear
    )  # fmt: skip
    assert exposed == []
    raw = {f"{schema}.{table}" for schema, table, column in columns if column == "raw_record"}
    kinds = ("staged", "batch", "quarantine")
    restricted = {f"silver_restricted.{s}_{kind}" for s in contract_names() for kind in kinds}
    # the rowConditions assertions of batch and quarantine (hourly and daily) return failing rows whole;
    # analysts get no role on the assertions dataset either (deploy/resources.py)
    checks = {
        f"assertions.silver_restricted_{s}_{kind}_assertions_rowConditions{suffix}"
        for s in contract_names()
        for kind, suffix in (("batch", ""), ("quarantine", ""), ("quarantine", "_whole_table"))
    }
    assert raw == restricted | checks
    assert {column for schema, table, column in columns if f"{schema}.{table}" == "silver.orders"} >= {
        f"{name}_hash" for name in ("customer_email", "customer_name", "shipping_address")
    }
    # analysts read why records were quarantined without the record: one row per record and rule
    reasons = query(loaded, "select count(*) as n from ops.quarantine_failures where source_name = 'orders'")
    rules = query(loaded, "select count(*) as n from silver_restricted.orders_quarantine, unnest(failed_rules)")
    assert reasons == rules and rules[0]["n"] > 0


def test_each_sources_quality_thresholds_read_that_sources_tables_alone(loaded: Path):
    # The thresholds read ops views over every source's batch, duplicates and intake ledger, filtered
    # to one source: a filter the engine pushes into each view's branches, so the hourly check of a
    # source reads none of the other sources' tables (on BigQuery: bytes billed five times over).
    con = warehouse.connect(loaded, [PROJECT], read_only=True)
    try:
        translate.register_functions(con)
        views = [name for (name,) in con.execute(
            "select view_name from duckdb_views() where schema_name = 'assertions' "
            "and view_name like '%_quality_thresholds'"
        ).fetchall()]  # fmt: skip
        assert views, "no <source>_quality_thresholds assertion in the warehouse"
        for view in views:
            source = view.removesuffix("_quality_thresholds")
            explained = con.execute(f'explain (format json) select * from "{PROJECT}".assertions."{view}"').fetchall()
            read = {table.rsplit(".", 1)[-1] for table in _scanned_tables(json.loads(explained[0][1]))}
            assert f"{source}_batch" in read, read
            others = {t for t in read for other in contract_names() if other != source and t.startswith(other)}
            assert not others, f"{view} reads {sorted(others)}"
    finally:
        con.close()


def _scanned_tables(plan) -> set[str]:
    """The tables a DuckDB JSON plan scans."""
    if isinstance(plan, list):
        return set().union(*(_scanned_tables(node) for node in plan))
    info = plan.get("extra_info") or {}
    found = {info["Table"]} if isinstance(info, dict) and "Table" in info else set()
    return found.union(*(_scanned_tables(child) for child in plan.get("children", [])))


def test_rerun_without_new_data_changes_nothing(loaded: Path):
    tables = silver_and_gold()
    before = snapshot(loaded, tables)
    lakehouse(loaded, "run")
    assert snapshot(loaded, tables) == before


def test_incremental_batch_matches_a_full_rebuild(loaded: Path):
    generate(loaded, 4)
    lakehouse(loaded, "run")
    counts = conservation(loaded)
    for source, (bronze, silver, quarantine, duplicates) in counts.items():
        assert bronze == silver + quarantine + duplicates, (source, counts[source])
    tables = silver_and_gold()
    incremental = snapshot(loaded, tables)
    lakehouse(loaded, "run", "--full-refresh")
    assert snapshot(loaded, tables) == incremental


def test_without_cleansing_the_assertions_catch_the_faults(tmp_path: Path):
    """Silver that keeps failing records (the rule filter removed) trips the error assertions, not the models."""
    project = copy_project(tmp_path / "project")
    # includes/silver.js holds the filter for silver and duplicates alike (validBatch)
    for path in (project / "includes" / "silver.js",):
        assert "array_length(failed_rules) = 0" in path.read_text(), path
        path.write_text(path.read_text().replace("array_length(failed_rules) = 0", "true"))
    home = tmp_path / "home"
    generate(home, 3)
    done = subprocess.run(
        [LAKEHOUSE, "run", "--project-dir", str(project)],
        cwd=REPO,
        env={**os.environ, "LAKEHOUSE_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    record = json.loads(max((home / "runs").glob("*.json")).read_text())
    failed = {a["name"].split(".")[-1] for a in record["actions"] if a["status"] == "failed"}
    assert all(a["type"] == "assertion" for a in record["actions"] if a["status"] == "failed")
    expected = {f"{s}_conservation" for s in contract_names()}
    expected |= {f"silver_{s}_assertions_rowConditions" for s in contract_names()}
    expected |= {"orders_reconcile_with_gold", "user_activity_accepted_values", "gold_facts_reference_dimensions"}
    assert expected <= failed, expected - failed
