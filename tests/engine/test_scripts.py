"""A run whose scripts are all translated already runs them from the translation cache
(lakehouse.engine.scripts) without loading the translator or sqlglot."""

from __future__ import annotations

import subprocess
import sys

from lakehouse import warehouse
from lakehouse.engine import scripts
from lakehouse.engine.runner import run
from tests.engine.test_unchanged import seed

PROJECT = {
    "definitions/sources/orders_raw.sqlx": """
        config { type: "declaration", database: "test-local", schema: "bronze", name: "orders_raw" }
    """,
    "definitions/silver/orders.sqlx": """
        config { type: "incremental", schema: "silver", uniqueKey: ["order_id"],
                 assertions: { uniqueKey: ["order_id"], rowConditions: ["amount_usd > 0"] } }
        select order_id, customer_id, amount_usd from ${ref("orders_raw")}
        ${when(incremental(), `where order_id > (select coalesce(max(order_id), 0) from ${self()})`)}
    """,
    # `latest.top.amount_usd` is a struct field path that reads like project.dataset.table: the run asks
    # which projects the scripts name, and that answer comes from the cache too
    "definitions/gold/customer_totals.sqlx": """
        config { type: "table", schema: "gold" }
        with latest as (
          select customer_id, array_agg(struct(order_id, amount_usd) order by order_id desc limit 1)[offset(0)] as top
          from ${ref("orders")} group by customer_id
        )
        select customer_id, latest.top.amount_usd as last_amount_usd from latest
    """,
}


def test_a_run_of_translated_scripts_loads_neither_the_translator_nor_sqlglot(make_project, lakehouse_home):
    project = make_project(PROJECT)
    seed(lakehouse_home, [(1, "CUST-1", 10.0), (2, "CUST-2", 20.0)])
    assert run(project).status == "success"  # translates every script, and keeps the translations
    seed(lakehouse_home, [(3, "CUST-2", 1.0)])
    assert run(project).status == "success"  # and the incremental table's incremental form
    seed(lakehouse_home, [(4, "CUST-1", 5.0)])
    code = (
        "import sys; from lakehouse.engine.runner import run; "
        f"record = run({str(project)!r}); "
        "print(record.status, 'sqlglot' in sys.modules, 'lakehouse.engine.translate' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["success", "False", "False"]
    con = warehouse.connect(lakehouse_home, ["test-local"])
    try:
        rows = con.execute('SELECT * FROM "test-local".gold.customer_totals ORDER BY 1').fetchall()
    finally:
        con.close()
    assert rows == [("CUST-1", 5.0), ("CUST-2", 1.0)]


def test_tables_a_script_names_come_from_its_cached_translation(tmp_path, monkeypatch):
    scripts.set_cache_dir(tmp_path / "cache")
    try:
        sql = "select s.a.b from `p1.d.t` as s join `other-project.d2.u` using (id)"
        tables = scripts.referenced_tables(sql, default_project="p1")
        assert tables == {("p1", "d", "t"), ("other-project", "d2", "u")}
        scripts._compile.cache_clear()  # what a new process sees: only the disk

        def no_parsing(*args, **kwargs):
            raise AssertionError("the script was parsed again")

        monkeypatch.setattr(scripts, "_compile_script", no_parsing)
        assert scripts.referenced_tables(sql, default_project="p1") == tables
        assert scripts.referenced_projects([sql], default_project="p1") == {"other-project"}
    finally:
        scripts.set_cache_dir(None)
