"""Golden tests: lakehouse.engine.statements renders exactly the tasks of the pinned CLI's build()."""

from __future__ import annotations

import copy
import json
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lakehouse.engine import statements
from lakehouse.engine.graph import AmbiguousActionError, Graph
from lakehouse.engine.statements import TableMetadata, Task

REPO = Path(__file__).resolve().parents[2]

# Column lists the fake warehouse reports for existing targets (any table not listed has DEFAULT_COLUMNS).
COLUMNS = {
    "orders": ["order_id", "customer_id", "amount_usd", "status", "order_date"],
    "daily_revenue": ["order_date", "revenue_usd", "paid_orders"],
    "order_events": ["order_id", "status", "loaded_at"],
    "order_facts": ["order_id", "customer_id", "amount_usd", "order_date"],
    "order_status": ["order_id", "status", "amount_usd"],
}
DEFAULT_COLUMNS = ["customer_id", "value"]
INCREMENTALS = ("daily_revenue", "order_events", "order_facts", "order_status")


def _tables(graph: dict) -> dict[str, dict]:
    return {table["target"]["name"]: table for table in graph["tables"]}


def _state(graph: dict, kind: Callable[[dict], str]) -> list[dict]:
    return [
        {"target": t["target"], "type": kind(t), "fields": COLUMNS.get(t["target"]["name"], DEFAULT_COLUMNS)}
        for t in graph["tables"]
    ]


def _base_type(table: dict) -> str:
    return "view" if table["type"] == "view" else "table"


def _opposite_type(table: dict) -> str:
    return "table" if table["type"] == "view" else "view"


def existing(graph: dict) -> list[dict]:
    return _state(graph, _base_type)


def case(graph: dict, tables: list[dict] | None = None, **run_config) -> dict:
    return {"graph": graph, "runConfig": run_config, "tables": tables or []}


def set_all_incrementals(graph: dict, **fields) -> dict:
    for name in INCREMENTALS:
        _tables(graph)[name].update(fields)
    return graph


def fresh(g):
    return case(g)


def existing_tables(g):
    return case(g, existing(g))


def full_refresh(g):
    return case(g, existing(g), fullRefresh=True)


def opposite_types(g):
    return case(g, _state(g, _opposite_type))


def opposite_types_full_refresh(g):
    return case(g, _state(g, _opposite_type), fullRefresh=True)


def unknown_warehouse_type(g):
    # External tables, snapshots, materialized views: the CLI's state() drops them, as if missing.
    return case(g, _state(g, lambda t: "unknown"))


def no_core_version(g):
    del g["dataformCoreVersion"]
    return case(g, existing(g))


def core_version_1_4_8(g):
    g["dataformCoreVersion"] = "1.4.8"
    return case(g, existing(g))


def core_version_prerelease(g):
    g["dataformCoreVersion"] = "1.4.9-beta.1"
    return case(g, existing(g))


def on_schema_change(mode):
    def scenario(g):
        return case(set_all_incrementals(g, onSchemaChange=mode), existing(g))

    scenario.__name__ = f"on_schema_change_{str(mode).lower()}"
    return scenario


def on_schema_change_without_unique_key(g):
    set_all_incrementals(g, onSchemaChange="SYNCHRONIZE")
    for name in INCREMENTALS:
        _tables(g)[name].pop("uniqueKey", None)
    return case(g, existing(g))


def insert_overwrite_filters(g):
    facts = _tables(g)["order_facts"]
    facts["bigquery"]["updatePartitionFilter"] = "order_date > '2024-01-01'"
    facts["bigquery"]["incrementalPredicates"] = [
        "DATAFORM_DEST.order_id > 0", "   ", "", "order_date is not null",
    ]
    return case(g, existing(g))


def insert_overwrite_expression(g):
    _tables(g)["order_facts"]["bigquery"]["partitionBy"] = "DATE_TRUNC(order_date, MONTH)"
    return case(g, existing(g))


def merge_predicates(g):
    revenue = _tables(g)["daily_revenue"]
    del revenue["bigquery"]["updatePartitionFilter"]
    revenue["bigquery"]["incrementalPredicates"] = ["DATAFORM_DEST.order_date > '2024-01-01'", " ", "true"]
    _tables(g)["order_status"]["bigquery"]["updatePartitionFilter"] = "order_id > 0"
    return case(g, existing(g))


def merge_strategy_explicit(g):
    set_all_incrementals(g, incrementalStrategy="MERGE")
    _tables(g)["order_events"]["incrementalStrategy"] = 1
    return case(g, existing(g))


def where_and_no_incremental_query(g):
    _tables(g)["order_events"]["where"] = "order_id > 0"
    del _tables(g)["order_status"]["incrementalQuery"]
    _tables(g)["order_facts"]["where"] = "true"
    return case(g, existing(g))


def incremental_without_bigquery(g):
    for name in INCREMENTALS:
        _tables(g)[name].pop("bigquery", None)
    return case(g, existing(g))


def protected_full_refresh_missing(g):
    return case(set_all_incrementals(g, protected=True), fullRefresh=True)


def protected_full_refresh_existing(g):
    return case(set_all_incrementals(g, protected=True), existing(g), fullRefresh=True)


def protected_over_view(g):
    return case(set_all_incrementals(g, protected=True), _state(g, _opposite_type))


def table_options(g):
    tables = _tables(g)
    tables["orders"]["bigquery"].update(
        requirePartitionFilter=True,
        partitionExpirationDays=30,
        clusterBy=[],
        additionalOptions={"description": '"orders, cleaned"', "max_staleness": "INTERVAL 15 MINUTE"},
    )
    tables["word_counts"]["bigquery"] = {
        "requirePartitionFilter": True,
        "partitionExpirationDays": 7,
        "clusterBy": ["word"],
        "additionalOptions": {"labels": "[('team', 'data')]"},
    }
    tables["customers"]["materialized"] = True
    tables["customers"]["bigquery"] = {"partitionBy": "customer_id", "clusterBy": ["customer_id"]}
    tables["customer_summary"]["bigquery"]["partitionBy"] = ""
    tables["customer_summary"]["bigquery"]["requirePartitionFilter"] = False
    return case(g)


def targets_without_database(g):
    for table in g["tables"]:
        table["target"].pop("database")
    for assertion in g["assertions"]:
        assertion["target"].pop("database")
    return case(g, existing(g))


def no_default_database(g):
    del g["projectConfig"]["defaultDatabase"]
    for action in g["tables"] + g["assertions"] + g["operations"]:
        action["target"].pop("database")
    return case(set_all_incrementals(g, onSchemaChange="FAIL"), existing(g))


def empty_schema_uses_default(g):
    _tables(g)["orders"]["target"]["schema"] = ""
    _tables(g)["daily_revenue"]["target"]["schema"] = ""
    g["assertions"][0]["target"]["schema"] = ""
    return case(g, existing(g))


OPS_WITH_COMMENTS = [
    "-- only a comment",
    "select 1; -- ends with a semicolon",
    "select '--' as dashes",
    "\n  select 2\n  -- a comment on its own last line\n",
    "",
    "   \n\t  ",
    "select 3 --",
    "select 4\n-- two\n-- comment lines",
    "select 5; ",
    "/* block */ select 6",
]


def ops_with_comments(g):
    tables = _tables(g)
    tables["orders"]["preOps"] = OPS_WITH_COMMENTS
    tables["orders"]["postOps"] = list(reversed(OPS_WITH_COMMENTS))
    tables["orders"]["query"] = "select 1 as order_id -- the query ends in a comment"
    tables["customers"]["query"] = "select 1 as customer_id\n-- trailing comment line"
    revenue = tables["daily_revenue"]
    revenue["incrementalPreOps"] = OPS_WITH_COMMENTS[:4]
    revenue["incrementalPostOps"] = ["select 'done' -- comment", "-- final"]
    return case(g, existing(g))


def ops_with_comments_fresh(g):
    return case(ops_with_comments(g)["graph"])


def query_is_only_a_comment(g):
    tables = _tables(g)
    tables["orders"]["query"] = "-- nothing to do"
    tables["orders"]["preOps"] = []
    tables["orders"]["postOps"] = []
    tables["customers"]["query"] = ""
    return case(g)


def unicode_whitespace(g):
    # JavaScript's trim() strips NBSP and BOM but not the \x1c-\x1f separators Python's strip() removes.
    tables = _tables(g)
    tables["orders"]["preOps"] = ["\u00a0select 1\u00a0", "\ufeffselect 2\u2028", "select 3\x1c", "\x1f"]
    tables["orders"]["postOps"] = ["select 4 -- note\u3000", "\u205f"]
    return case(g)


def disabled_actions(g):
    tables = _tables(g)
    tables["orders"]["disabled"] = True
    tables["daily_revenue"]["disabled"] = True
    g["operations"][0]["disabled"] = True
    g["assertions"][0]["disabled"] = True
    return case(g, existing(g))


def operations_edge_queries(g):
    g["operations"][0]["queries"] = ["", "  select 1  ", "-- comment only", "select 2;"]
    g["operations"][1]["queries"] = []
    g["operations"][1].pop("hasOutput", None)
    return case(g)


def assertion_edge_queries(g):
    g["assertions"][0]["query"] = "select 1 as failing -- comment"
    g["assertions"][1]["query"] = ""
    return case(g)


SCENARIOS = [
    fresh,
    existing_tables,
    full_refresh,
    opposite_types,
    opposite_types_full_refresh,
    unknown_warehouse_type,
    no_core_version,
    core_version_1_4_8,
    core_version_prerelease,
    on_schema_change("IGNORE"),
    on_schema_change("FAIL"),
    on_schema_change("EXTEND"),
    on_schema_change("SYNCHRONIZE"),
    on_schema_change(2),
    on_schema_change_without_unique_key,
    insert_overwrite_filters,
    insert_overwrite_expression,
    merge_predicates,
    merge_strategy_explicit,
    where_and_no_incremental_query,
    incremental_without_bigquery,
    protected_full_refresh_missing,
    protected_full_refresh_existing,
    protected_over_view,
    table_options,
    targets_without_database,
    no_default_database,
    empty_schema_uses_default,
    ops_with_comments,
    ops_with_comments_fresh,
    query_is_only_a_comment,
    unicode_whitespace,
    disabled_actions,
    operations_edge_queries,
    assertion_edge_queries,
]


@pytest.fixture(scope="module")
def golden(showcase_graph, cli_golden) -> dict:
    """Return, per scenario, the case and the tasks the pinned CLI's build() renders for it."""
    cases = []
    for scenario in SCENARIOS:
        built = scenario(copy.deepcopy(showcase_graph))
        built["id"] = scenario.__name__
        cases.append(built)
    output = cli_golden(cases)
    results = {result["id"]: result for result in output["results"]}
    return {c["id"]: (c, results[c["id"]], output["uniqueId"]) for c in cases}


def _metadata(tables: list[dict], target: dict) -> TableMetadata | None:
    def key(t: dict) -> tuple:
        return (t.get("database") or "", t.get("schema") or "", t.get("name"))

    for state in tables:
        if key(state["target"]) == key(target):
            if state["type"] == "unknown":
                return None
            return TableMetadata(state["type"], tuple(state["fields"]))
    return None


def python_actions(case: dict, unique_id: str) -> list[dict]:
    """Return what lakehouse.engine renders for a case, in the shape the harness prints."""
    graph = Graph.from_compiled(case["graph"])
    run_config = case["runConfig"]
    selected = graph.select(
        actions=run_config.get("actions") or (),
        tags=run_config.get("tags") or (),
        include_deps=bool(run_config.get("includeDependencies")),
        include_dependents=bool(run_config.get("includeDependents")),
    )
    rendered = []
    for action in graph.actions.values():
        if action.name not in selected:
            continue
        if action.kind == "operation":
            entry = {"type": "operation", "tasks": statements.operation_tasks(action.raw)}
        elif action.kind == "assertion":
            tasks = statements.assertion_tasks(action.raw, graph.project_config)
            entry = {"type": "assertion", "tasks": tasks}
        else:
            tasks = statements.table_tasks(
                action.raw,
                graph.project_config,
                core_version=graph.core_version,
                full_refresh=bool(run_config.get("fullRefresh")),
                metadata=_metadata(case["tables"], action.target),
                unique_id=lambda: unique_id,
            )
            entry = {"type": "table", "tableType": action.kind, "tasks": tasks}
        entry["tasks"] = [{"type": t.type, "statement": t.statement} for t in entry["tasks"]]
        rendered.append({"name": action.name, **entry})
    return rendered


@pytest.mark.parametrize("scenario", [s.__name__ for s in SCENARIOS])
def test_tasks_equal_the_cli_build(golden, scenario):
    case, cli, unique_id = golden[scenario]
    assert "error" not in cli, cli.get("error")
    ours = python_actions(case, unique_id)
    assert [a["name"] for a in ours] == [a["name"] for a in cli["actions"]]
    for mine, theirs in zip(ours, cli["actions"], strict=True):
        assert mine == theirs, mine["name"]


def test_golden_scenarios_cover_every_action_kind_and_path(golden):
    # Guards the golden set itself: if the fixture or scenarios drift, the comparison must not go thin.
    statements_seen = [
        task["statement"]
        for _, cli, _ in golden.values()
        for action in cli["actions"]
        for task in action["tasks"]
    ]
    for marker in (
        "create or replace table",
        "create or replace view",
        "create or replace materialized view",
        "\nmerge ",
        "insert into",
        "CREATE OR REPLACE TEMP TABLE `staging_table_temp_",
        "CREATE OR REPLACE PROCEDURE",
        "drop view if exists",
        "drop table if exists",
        "OPTIONS(",
        "select sum(1) as row_count from",
        "(SYNCHRONIZE)",
        "(FAIL)",
        "(EXTEND)",
    ):
        assert any(marker in s for s in statements_seen), marker
    kinds = {(a["type"], a.get("tableType")) for _, cli, _ in golden.values() for a in cli["actions"]}
    assert kinds == {
        ("table", "table"),
        ("table", "view"),
        ("table", "incremental"),
        ("operation", None),
        ("assertion", None),
    }


def test_ambiguous_action_name_fails_like_the_cli(showcase_graph, cli_golden):
    graph = copy.deepcopy(showcase_graph)
    twin = copy.deepcopy(_tables(graph)["orders"])
    twin["target"]["schema"] = "showcase_archive"
    graph["tables"].append(twin)
    cli = cli_golden([{"id": "ambiguous", **case(graph, actions=["orders"])}])["results"][0]
    with pytest.raises(AmbiguousActionError) as error:
        Graph.from_compiled(graph).select(actions=["orders"])
    assert str(error.value) == cli["error"]
    assert str(error.value) == (
        "Ambiguous Action name: orders. Did you mean one of: showcase-local.showcase.orders, "
        "showcase-local.showcase_archive.orders."
    )


def test_concatenate_queries_keeps_trailing_comments_after_the_semicolon():
    script = statements.concatenate_queries(["select 1 -- one", None, "  ", "select 2;", "select 3 -- three"])
    assert script == "select 1; -- one\nselect 2;\nselect 3 -- three"


def test_should_write_incrementally():
    table = {"protected": False}
    existing_table = TableMetadata("table", ("a",))
    assert statements.should_write_incrementally(table, False, existing_table) is True
    assert statements.should_write_incrementally(table, True, existing_table) is False
    assert statements.should_write_incrementally(table, False, None) is False
    assert statements.should_write_incrementally(table, False, TableMetadata("view", ("a",))) is False
    assert statements.should_write_incrementally({"protected": True}, True, existing_table) is True
    assert statements.should_write_incrementally({"protected": True}, True, None) is False


def test_table_metadata_rejects_other_warehouse_types():
    with pytest.raises(ValueError, match='"table" or "view"'):
        TableMetadata("external", ("a",))


def test_table_type_mismatch_is_reported():
    with pytest.raises(ValueError, match='Table str type "view" and enumType "table" are not equivalent'):
        statements.table_type({"type": "view", "enumType": "TABLE", "target": {"name": "t"}})
    with pytest.raises(ValueError, match="Unexpected table type: snapshot"):
        statements.table_type({"type": "snapshot", "target": {"name": "t"}})


def test_invalid_core_version_is_an_error():
    table = {"type": "incremental", "target": {"schema": "s", "name": "t"}, "query": "select 1"}
    with pytest.raises(ValueError, match="Invalid Version: latest"):
        statements.table_tasks(table, {}, core_version="latest", full_refresh=False, metadata=None)


def test_disabled_actions_have_no_tasks():
    target = {"schema": "s", "name": "t"}
    assert statements.table_tasks(
        {"type": "table", "target": target, "disabled": True}, {}, core_version="3.0.0", full_refresh=False,
        metadata=None,
    ) == []
    assert statements.operation_tasks({"queries": ["select 1"], "disabled": True}) == []
    assert statements.assertion_tasks({"target": target, "query": "select 1", "disabled": True}, {}) == []
    assert statements.operation_tasks({"queries": ["select 1"]}) == [Task("statement", "select 1")]


VERSIONS = [
    "3.0.62", "v3.0.62", " 3.0.62 ", "01.2.3", "1.4.9-beta.1", "1.4.9-1", "1.4.8+build", "=1.4.9", "1.4",
]


def test_core_version_comparison_matches_the_cli_semver():
    # The CLI picks incremental pre/post operations only when semver.gt(dataformCoreVersion, "1.4.8").
    script = (
        "const semver = require(process.argv[1]);"
        "const out = JSON.parse(process.argv[2]).map(v => { try { return semver.gt(v, '1.4.8'); }"
        " catch (e) { return e.message; } });"
        "process.stdout.write(JSON.stringify(out));"
    )
    semver = str(REPO / "node_modules" / "semver")
    result = subprocess.run(
        ["node", "-e", script, semver, json.dumps(VERSIONS)], capture_output=True, text=True, check=True
    )
    expected = json.loads(result.stdout)
    ours = []
    for version in VERSIONS:
        try:
            ours.append(statements._version_gt(version, "1.4.8"))
        except ValueError as error:
            ours.append(str(error))
    assert ours == expected
    assert expected[:3] == [True, True, True]


PIECES = [
    "select 1", "x", ";", "; ", "--", "-- c", "'--'", "/*", "*/",
    "\n", "\n\n", " ", "\t", "\u00a0", "\ufeff", "\x1c",
]


def test_concatenate_queries_matches_the_cli_on_random_scripts(cli_golden):
    rng = random.Random(20261122)
    def statement() -> str:
        return "".join(rng.choices(PIECES, k=rng.randint(0, 8)))

    scripts = [[statement() for _ in range(rng.randint(0, 5))] for _ in range(400)]
    output = cli_golden([{"id": str(i), "concatenate": s} for i, s in enumerate(scripts)])
    cli = [result["script"] for result in output["results"]]
    assert [statements.concatenate_queries(s) for s in scripts] == cli
    assert sum("; --" in script for script in cli) > 20
