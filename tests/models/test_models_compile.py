"""The Dataform project compiles, and every source contract yields its bronze, silver and checks."""

from __future__ import annotations

import pytest

from models.project import contract_names, load_contract, targets

GOLD_TABLES = {
    "daily_sales",
    "daily_product_summary",
    "customers",
    "products",
    "conversion_funnel",
    "ad_attribution",
    "inventory_levels",
    "customer_360",
}
OPS_VIEWS = {
    "source_quality",
    "quarantine_rules",
    "source_quality_dimensions",
    "source_quality_daily",
    "dead_letter_reasons",
    "quarantine_failures",
}


def test_compiles_without_graph_errors(graph):
    assert graph.get("graphErrors", {}).get("compilationErrors", []) == []


def test_action_counts(graph):
    sources = len(contract_names())
    accepted = sum(
        1 for name in contract_names() if any("accepted_values" in f for f in load_contract(name)["fields"])
    )
    with_thresholds = sum(1 for name in contract_names() if load_contract(name).get("quality"))
    # per source: its landing table; plus ops.dead_letters
    assert len(graph["operations"]) == sources + 1
    assert len(graph["declarations"]) == sources
    # per source: staging view, quarantine, duplicates, silver table; plus the gold tables and the ops views
    assert len(graph["tables"]) == 4 * sources + len(GOLD_TABLES) + len(OPS_VIEWS)
    manual = [a for a in graph["assertions"] if not a.get("parentAction")]
    # per source: conservation, freshness, volume (+ accepted values, + quality thresholds); plus reconcile
    # and integrity
    assert len(manual) == 3 * sources + accepted + with_thresholds + 2
    # hand-written tests, plus one generated per contract
    assert len(graph["tests"]) == 3 + sources


@pytest.mark.parametrize("source", contract_names())
def test_every_source_has_bronze_silver_and_checks(graph, source):
    operations, declarations = targets(graph, "operations"), targets(graph, "declarations")
    tables, assertions = targets(graph, "tables"), targets(graph, "assertions")
    landing = operations[f"bronze.{source}_landing"]
    assert landing["hasOutput"] is True
    ddl = landing["queries"][0]
    assert ddl.startswith(f"create or replace external table `lakehouse-dev.bronze.{source}_landing`")
    assert f"uris = ['gs://lakehouse-dev-bronze-landing/source={source}/*']" in ddl
    assert "with partition columns" in ddl and "quote = ''" in ddl
    assert f"bronze.{source}_raw" in declarations
    assert tables[f"silver.{source}_staged"]["type"] == "view"
    for name in (f"{source}_quarantine", f"{source}_duplicates", source):
        assert tables[f"silver.{name}"]["type"] == "incremental", name
    contract = load_contract(source)
    assert tables[f"silver.{source}"]["uniqueKey"] == contract["key"]
    assert tables[f"silver.{source}"]["bigquery"]["partitionBy"] == "event_date"
    assert tables[f"silver.{source}_quarantine"]["uniqueKey"] == ["record_id"]
    for check in ("conservation", "freshness", "volume"):
        assert f"assertions.{source}_{check}" in assertions


def test_every_silver_and_gold_table_has_builtin_assertions(graph):
    parents = {}
    for assertion in graph["assertions"]:
        parent = assertion.get("parentAction")
        if parent:
            kind = assertion["target"]["name"].rsplit("_assertions_", 1)[1]
            parents.setdefault(f"{parent['schema']}.{parent['name']}", set()).add(kind.split("_")[0])
    checked = [
        name for name, table in targets(graph, "tables").items() if name.split(".")[0] in ("silver", "gold")
    ]
    assert {name.split(".")[1] for name in checked if name.startswith("gold.")} == GOLD_TABLES
    for name in checked:
        # nonNull is folded into the rowConditions assertion by Dataform
        assert parents.get(name) == {"uniqueKey", "rowConditions"}, name


def test_severity_convention(graph):
    manual = {a["target"]["name"]: a for a in graph["assertions"] if not a.get("parentAction")}
    warn = sorted(name for name, a in manual.items() if "warn" in (a.get("tags") or []))
    thresholds = [
        f"{source}_quality_thresholds"
        for source in contract_names()
        if (load_contract(source).get("quality") or {}).get("severity") == "warn"
    ]
    assert warn == sorted([f"{source}_volume" for source in contract_names()] + thresholds)


def test_orders_silver_is_an_iceberg_table_with_total_price(graph):
    orders = targets(graph, "tables")["silver.orders"]
    assert orders["bigquery"]["tableFormat"] == "ICEBERG"
    assert orders["bigquery"]["fileFormat"] == "PARQUET"
    assert orders["bigquery"]["storageUri"] == "gs://lakehouse-dev-lake/silver/orders"
    assert "quantity * price as total_price" in orders["query"]
    rows = [a for a in graph["assertions"] if a.get("parentAction", {}).get("name") == "orders"]
    assert any("total_price = quantity * price" in a["query"] for a in rows)


def test_pii_is_hashed_with_the_salt_var(graph):
    tables = targets(graph, "tables")
    for source in contract_names():
        pii = [f["name"] for f in load_contract(source)["fields"] if f.get("pii")]
        query = tables[f"silver.{source}"]["query"]
        for field in pii:
            assert f"to_hex(sha256(concat('local-dev-salt-change-me', {field}))) as {field}_hash" in query


def test_tags_select_schedules(graph):
    for kind in ("tables", "operations"):
        for action in graph[kind]:
            assert "hourly" in action["tags"], action["target"]
