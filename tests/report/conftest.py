"""Report fixtures: a small medallion project run five times (clean, bad, clean, bad, bad) for real."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

from lakehouse import warehouse
from lakehouse.engine.runner import run

# tests/conftest.py is not importable by name from here (every test folder has a conftest module).
_spec = importlib.util.spec_from_file_location(
    "tests_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py"
)
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
write_project = _root.write_project

PROJECT = "rpt-local"

FILES = {
    "includes/contracts/orders.json": '{"name": "orders", "description": "orders"}',
    "definitions/sources/orders.sqlx": """
        config { type: "declaration", schema: "bronze", name: "orders" }
    """,
    "definitions/silver/orders.sqlx": """
        config {
          type: "table",
          schema: "silver",
          description: "One row per order as it arrived, quantity checked.",
          assertions: { uniqueKey: ["order_id"], nonNull: ["customer_id"], rowConditions: ["price > 0"] }
        }
        select order_id, customer_id, product_id, quantity, price, order_date
        from ${ref("bronze", "orders")}
        where quantity is null or quantity > 0
    """,
    "definitions/silver/orders_quarantine.sqlx": """
        config { type: "table", schema: "silver" }
        select *, ['quantity_min'] as failed_rules
        from ${ref("bronze", "orders")}
        where quantity <= 0
    """,
    "definitions/gold/daily_product_summary.sqlx": """
        config { type: "table", schema: "gold", assertions: { uniqueKey: ["order_date", "product_id"] } }
        select order_date, product_id, sum(quantity) as units, sum(quantity * price) as revenue_usd
        from ${ref("silver", "orders")}
        group by 1, 2
    """,
    "definitions/gold/conversion_funnel.sqlx": """
        config { type: "table", schema: "gold" }
        select count(*) * 10 as page_views, count(*) * 3 as add_to_cart, count(*) as orders,
               0.1 as conversion_rate
        from ${ref("silver", "orders")}
    """,
    "definitions/assertions/orders_fresh.sqlx": """
        config { type: "assertion", tags: ["warn"] }
        select max(order_date) as latest_order_date
        from ${ref("silver", "orders")}
        having max(order_date) < date '2026-01-04'
    """,
    "definitions/assertions/gold_reconciles_with_silver.sqlx": """
        config { type: "assertion" }
        select *
        from (select sum(revenue_usd) as gold_usd from ${ref("gold", "daily_product_summary")})
        cross join (select sum(quantity * price) as silver_usd from ${ref("silver", "orders")})
        where abs(gold_usd - silver_usd) > 0.001
    """,
}

CLEAN = [
    ("O1", "C1", "P1", 2, 10.0, "2026-01-01"),
    ("O2", "C2", "P2", 1, 25.0, "2026-01-01"),
    ("O3", "C1", "P1", 3, 10.0, "2026-01-02"),
    ("O4", "C3", "P3", 1, 5.0, "2026-01-03"),
    ("O5", "C2", "P2", 0, 25.0, "2026-01-03"),  # quarantined: quantity_min
]
BAD = CLEAN + [
    ("O1", "C9", "P1", 1, 10.0, "2026-01-02"),  # duplicate key
    ("O6", None, "P3", 2, 5.0, "2026-01-02"),  # customer_id is null
    ("O7", "C4", "P1", 1, -1.0, "2026-01-02"),  # price > 0 fails
]
SEQUENCE = ("clean", "bad", "clean", "bad", "bad")


def load_bronze(home: Path, rows: list[tuple]) -> None:
    """Replace "rpt-local".bronze.orders with `rows`."""
    con = warehouse.connect(home, [PROJECT])
    try:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{PROJECT}".bronze')
        con.execute(
            f'CREATE OR REPLACE TABLE "{PROJECT}".bronze.orders (order_id VARCHAR, customer_id VARCHAR, '
            "product_id VARCHAR, quantity BIGINT, price DOUBLE, order_date DATE)"
        )
        con.executemany(f'INSERT INTO "{PROJECT}".bronze.orders VALUES (?, ?, ?, ?, ?, ?)', rows)
    finally:
        con.close()


@dataclass
class History:
    project: Path
    home: Path
    run_ids: list[str]


@pytest.fixture(scope="session")
def report_project(tmp_path_factory) -> Path:
    """Return the report fixture project (compiled on first use by the tests that run it)."""
    return write_project(tmp_path_factory.mktemp("report") / "project", FILES, project=PROJECT)


@pytest.fixture(scope="session")
def history(report_project, tmp_path_factory) -> History:
    """Run the fixture project on data clean, bad, clean, bad, bad; return where, and the run ids."""
    home = tmp_path_factory.mktemp("report-home")
    run_ids = []
    for kind in SEQUENCE:
        load_bronze(home, CLEAN if kind == "clean" else BAD)
        record = run(report_project, home_dir=home)
        run_ids.append(record.run_id)
    return History(report_project, home, run_ids)
