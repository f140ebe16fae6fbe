"""The compiled SQL of every action is lint-clean under the project's .sqlfluff (house style)."""

from __future__ import annotations

import pytest

from lakehouse.lint import lint_graph, units
from models.project import REPO, contract_names


def test_units_cover_every_action_but_builtin_assertions(graph):
    linted = units(graph)
    names = {unit.action for unit in linted}
    manual = [a for a in graph["assertions"] if not a.get("parentAction")]
    assert len(names) == len(graph["tables"]) + len(graph["operations"]) + len(manual)
    # Dataform's built-in assertions are not linted; the checks generated in their place are
    generated = {f"assertions.{a['target']['name']}" for a in manual if "_assertions_" in a["target"]["name"]}
    assert len(generated) == 12 * len(contract_names())
    assert {unit.action for unit in linted if "_assertions_" in unit.action} == generated
    parts = {(unit.action, unit.part) for unit in linted}
    assert ("silver.orders", "incrementalQuery") in parts
    # silver has no pre-operations since the batch reads the watermark; the batch's are linted
    assert ("silver_restricted.orders_batch", "incrementalPreOps") in parts
    assert ("bronze.orders_landing", "query 1") in parts


@pytest.mark.slow
def test_compiled_sql_is_lint_clean(graph):
    _, found = lint_graph(graph, REPO)
    assert [str(v) for v in found] == []


def test_lint_finds_a_style_violation(graph):
    table = next(t for t in graph["tables"] if t["target"]["name"] == "daily_sales")
    shouted = dict(table, query=table["query"].replace("select", "SELECT"))
    _, found = lint_graph({"tables": [shouted]}, REPO, workers=1)
    assert {v.code for v in found} == {"CP01"}
    assert all(v.action == "gold.daily_sales" and v.part == "query" for v in found)
