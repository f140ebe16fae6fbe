"""Partial runs (duplicates without silver, the Iceberg catalog and the warehouse apart) are repaired by
the next plain run, which ends where a full refresh of the same home over the same data does."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse import warehouse
from lakehouse.engine.iceberg import IcebergStore
from models.project import contract_names
from models.test_models_end_to_end import PROJECT, lakehouse, query, silver_and_gold, snapshot
from models.test_models_incremental import assert_conserved, generate

pytestmark = pytest.mark.slow


def tables_of(home: Path) -> set[str]:
    """Return the dataset.table names of the local warehouse."""
    rows = query(home, "select table_schema, table_name from `region-us`.INFORMATION_SCHEMA.TABLES")
    return {f"{row['table_schema']}.{row['table_name']}" for row in rows}


def converges(home: Path) -> None:
    """A plain run succeeds, conserves every record, and equals a full refresh of the same home."""
    lakehouse(home, "run")
    assert_conserved(home)
    tables = silver_and_gold()
    repaired = snapshot(home, tables)
    lakehouse(home, "run", "--full-refresh")
    assert snapshot(home, tables) == repaired


def test_iceberg_table_in_the_catalog_and_not_in_the_warehouse(tmp_path: Path):
    home = tmp_path / "home"
    generate(home, 52)
    # A first run killed between the Iceberg snapshot commit of silver.orders and the warehouse
    # commit: the catalog holds the table, the warehouse rolled back its view.
    lakehouse(home, "run", "--actions", "orders", "--include-deps")
    con = warehouse.connect(home, [PROJECT])
    try:
        con.execute(f'DROP VIEW "{PROJECT}".silver.orders')
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
