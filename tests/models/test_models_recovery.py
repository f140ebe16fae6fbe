"""Partial runs (duplicates without silver, the Iceberg catalog and the warehouse apart) are repaired by
the next plain run, which ends where a full refresh of the same home over the same data does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakehouse import warehouse
from lakehouse.engine.iceberg import IcebergStore
from models.project import contract_names
from models.test_models_end_to_end import PROJECT, lakehouse, query
from models.test_models_incremental import converges, generate

pytestmark = pytest.mark.slow


def tables_of(home: Path) -> set[str]:
    """Return the dataset.table names of the local warehouse."""
    rows = query(home, "select table_schema, table_name from `region-us`.INFORMATION_SCHEMA.TABLES")
    return {f"{row['table_schema']}.{row['table_name']}" for row in rows}


def test_iceberg_table_in_the_catalog_and_not_in_the_warehouse(tmp_path: Path):
    home = tmp_path / "home"
    generate(home, 52)
    # A first run killed between the Iceberg snapshot commit of silver.orders and the warehouse
    # commit: the catalog holds the table, the warehouse rolled back its mirror table.
    lakehouse(home, "run", "--actions", "orders", "--include-deps")
    con = warehouse.connect(home, [PROJECT])
    try:
        con.execute(f'DROP TABLE "{PROJECT}".silver.orders')
    finally:
        con.close()
    assert IcebergStore(home).columns({"database": PROJECT, "schema": "silver", "name": "orders"})
    converges(home)


def test_iceberg_table_in_the_warehouse_and_not_in_the_catalog(tmp_path: Path):
    home = tmp_path / "home"
    generate(home, 53)
    lakehouse(home, "run")
    generate(home, 54)
    # the catalog lost the table (not a crash: the catalog commits before the warehouse) while the
    # warehouse and the intake ledger say the records were taken
    store = IcebergStore(home)
    store.catalog.drop_table((PROJECT, "silver", "orders"))
    converges(home)
    assert set(contract_names()) <= {t.split(".")[1] for t in tables_of(home) if t.startswith("silver.")}


@pytest.mark.parametrize("source", ["ad_clicks", "orders"])
def test_duplicates_committed_and_silver_not(tmp_path: Path, source: str):
    home = tmp_path / "home"
    generate(home, 55)
    # a first run that stopped after <source>_duplicates (killed, or silver failed): duplicates is
    # incremental from now on and reads silver, which does not exist (orders: an Iceberg table)
    lakehouse(home, "run", "--actions", f"{source}_duplicates", "--include-deps")
    assert f"silver.{source}_duplicates" in tables_of(home)
    assert f"silver.{source}" not in tables_of(home)
    converges(home)


def republish(home: Path, sources: list[str], minutes: int) -> int:
    """Write every raw row of `sources` again as the BigQuery subscription would after a killed `generate`
    was rerun: another message id, a later publish time, the same data and `record_key` attribute.
    Returns the rows written."""
    con = warehouse.connect(home, [PROJECT])
    try:
        con.execute(f'USE "{PROJECT}"')
        written = 0
        for source in sources:
            written += con.execute(
                f"insert into bronze.{source}_raw "
                f"select subscription_name, message_id || '-again-{minutes}', "
                f"publish_time + interval {minutes} minute, data, attributes "
                f"from bronze.{source}_raw where message_id not like '%-again-%'"
            ).fetchone()[0]
        return written
    finally:
        con.close()


def placed(home: Path) -> dict[str, tuple[int, int, int, int]]:
    """Return per source (records: landing lines + distinct raw record keys, silver, quarantine, duplicates)."""
    parts = [
        f"select '{s}' as source, "
        f"(select count(*) from bronze.{s}_landing) "
        f"+ (select count(distinct json_value(attributes, '$.record_key')) from bronze.{s}_raw) as records, "
        f"(select count(*) from silver.{s}) as silver, "
        f"(select count(*) from silver_restricted.{s}_quarantine) as quarantine, "
        f"(select count(*) from silver.{s}_duplicates) as duplicates"
        for s in contract_names()
    ]
    rows = query(home, " union all ".join(parts))
    return {r["source"]: (r["records"], r["silver"], r["quarantine"], r["duplicates"]) for r in rows}


def test_lines_published_again_are_one_record(tmp_path: Path):
    home = tmp_path / "home"
    generate(home, 21, events=600, pubsub_share="0.5")
    lakehouse(home, "run")
    reference = placed(home)
    for records, *rows in reference.values():
        assert records == sum(rows)
    # published again after the first run: the next run's batch holds only the second copies
    assert republish(home, ["orders", "ad_clicks"], minutes=1) > 100
    lakehouse(home, "run")
    assert placed(home) == reference
    # the copies are expected nowhere: not in the intake ledger (all_taken), not in any silver table
    record = json.loads(max((home / "runs").glob("2*.json")).read_text())
    checks = {a["name"].rsplit(".", 1)[1]: a["status"] for a in record["actions"] if a["type"] == "assertion"}
    for source in ("orders", "ad_clicks"):
        for check in ("all_taken", "ledger", "conservation"):
            assert checks[f"{source}_{check}"] == "success", (source, check)
    # the same copies and a third one, all in one batch with the first copies
    republish(home, ["orders"], minutes=2)
    lakehouse(home, "run", "--full-refresh")
    assert placed(home) == reference
