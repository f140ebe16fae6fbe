"""The compiled-graph model: actions, dependency order, run selection checked against the CLI's prune()."""

from __future__ import annotations

import copy
import itertools

import pytest

from lakehouse.engine.graph import AmbiguousActionError, CycleError, Graph, match_patterns

P = "showcase-local.showcase."
A = "showcase-local.showcase_assertions."
SEED = "showcase-local.showcase_raw.orders_seed"

ACTION_PATTERNS = [
    [],
    ["orders"],
    ["customers", "daily_revenue"],
    [P + "orders"],
    ["showcase.orders"],  # dataset.table: the CLI matches dotted names exactly, so this selects nothing
    ["nope"],
    ["showcase_orders_assertions_uniqueKey_0"],
    ["orders_seed", "legacy_report"],
    ["shakespeare"],  # a declaration is not an action
    ["revenue_matches_orders", P + "word_counts"],
]
TAGS = [[], ["daily"], ["gold"], ["seed", "maintenance"], ["nope"]]
FLAGS = [(False, False), (True, False), (False, True), (True, True)]
SELECTIONS = list(itertools.product(range(len(ACTION_PATTERNS)), range(len(TAGS)), FLAGS))


@pytest.fixture(scope="module")
def graph(showcase_graph) -> Graph:
    return Graph.from_compiled(showcase_graph)


@pytest.fixture(scope="module")
def cli_selections(showcase_graph, cli_golden) -> dict:
    """Return, per selection, the action names the pinned CLI's build() keeps."""
    cases = []
    for index, (actions, tags, (deps, dependents)) in enumerate(SELECTIONS):
        run_config = {
            "actions": ACTION_PATTERNS[actions],
            "tags": TAGS[tags],
            "includeDependencies": deps,
            "includeDependents": dependents,
        }
        cases.append({"id": str(index), "graph": showcase_graph, "runConfig": run_config, "tables": []})
    results = cli_golden(cases)["results"]
    return {int(r["id"]): [a["name"] for a in r["actions"]] for r in results}


def test_actions_are_loaded_with_their_kind_and_links(graph):
    kinds = {name: action.kind for name, action in graph.actions.items()}
    assert kinds == {
        P + "customer_summary": "table",
        P + "daily_revenue": "incremental",
        P + "legacy_report": "table",
        P + "order_events": "incremental",
        P + "order_facts": "incremental",
        P + "order_status": "incremental",
        P + "customers": "view",
        P + "orders": "table",
        P + "word_counts": "table",
        P + "retention": "operation",
        SEED: "operation",
        A + "revenue_matches_orders": "assertion",
        A + "showcase_customer_summary_assertions_uniqueKey_0": "assertion",
        A + "showcase_daily_revenue_assertions_rowConditions": "assertion",
        A + "showcase_orders_assertions_uniqueKey_0": "assertion",
        A + "showcase_orders_assertions_rowConditions": "assertion",
    }
    assert list(graph.declarations) == ["bigquery-public-data.samples.shakespeare"]
    assert graph.declarations["bigquery-public-data.samples.shakespeare"].kind == "declaration"
    orders = graph.actions[P + "orders"]
    assert orders.dependencies == (SEED,)
    assert orders.tags == ("daily",)
    assert orders.file_name == "definitions/silver/orders.sqlx"
    assert orders.target == {"schema": "showcase", "name": "orders", "database": "showcase-local"}
    assert graph.actions[P + "word_counts"].dependencies == ("bigquery-public-data.samples.shakespeare",)
    assert graph.actions[P + "legacy_report"].disabled is True
    assert orders.disabled is False
    assert graph.actions[SEED].has_output is True
    assert graph.actions[P + "retention"].has_output is False
    assert graph.actions[A + "showcase_orders_assertions_rowConditions"].parent_action == P + "orders"
    assert graph.actions[A + "revenue_matches_orders"].parent_action is None
    assert graph.core_version == "3.0.62"
    assert graph.project_config["defaultDatabase"] == "showcase-local"


def test_topological_order_puts_dependencies_first(graph):
    order = graph.topological_order()
    assert sorted(order) == sorted(graph.actions)
    for name, action in graph.actions.items():
        for dep in action.dependencies:
            if dep in graph.actions:
                assert order.index(dep) < order.index(name), (dep, name)
    assert order[:3] == [SEED, P + "orders", P + "customers"]


def test_a_cycle_is_reported_by_dataform_and_by_the_guard(make_project, tmp_path, dataform_compile):
    project = make_project(
        {
            "definitions/a.sqlx": 'config { type: "table" }\nselect * from ${ref("b")}\n',
            "definitions/b.sqlx": 'config { type: "view" }\nselect * from ${ref("c")}\n',
            "definitions/c.sqlx": 'config { type: "view" }\nselect * from ${ref("a")}\n',
        }
    )
    compiled = dataform_compile(project, tmp_path / "compiled")
    messages = [error["message"] for error in compiled["graphErrors"]["compilationErrors"]]
    assert any(message.startswith("Circular dependency detected in chain") for message in messages)
    with pytest.raises(CycleError) as error:
        Graph.from_compiled(compiled).topological_order()
    assert error.value.cycle == [
        "test-local.silver.a", "test-local.silver.b", "test-local.silver.c", "test-local.silver.a",
    ]
    assert str(error.value) == (
        "dependency cycle: test-local.silver.a -> test-local.silver.b -> test-local.silver.c"
        " -> test-local.silver.a"
    )


def test_dependents_are_transitive(graph):
    assert graph.dependents(P + "customers") == {
        P + "customer_summary",
        P + "legacy_report",
        A + "showcase_customer_summary_assertions_uniqueKey_0",
    }
    assert graph.dependents(A + "revenue_matches_orders") == set()
    assert graph.dependents(SEED) == set(graph.actions) - {SEED, P + "word_counts"}


@pytest.mark.parametrize("index", range(len(SELECTIONS)))
def test_select_equals_the_cli_prune(graph, cli_selections, index):
    actions, tags, (deps, dependents) = SELECTIONS[index]
    selected = graph.select(
        actions=ACTION_PATTERNS[actions], tags=TAGS[tags], include_deps=deps, include_dependents=dependents
    )
    assert selected == set(cli_selections[index])


def test_selection_examples(graph):
    assert graph.select(actions=["showcase.orders"]) == set()
    assert graph.select(actions=["orders"]) == {P + "orders"}
    assert graph.select(actions=["orders"], include_deps=True) == {P + "orders", SEED}
    assert graph.select(tags=["seed"], include_dependents=True) == set(graph.actions) - {P + "word_counts"}
    assert graph.select() == set(graph.actions)


def test_ambiguous_short_name(showcase_graph):
    compiled = copy.deepcopy(showcase_graph)
    twin = copy.deepcopy(compiled["tables"][0])
    twin["target"]["schema"] = "archive"
    compiled["tables"].append(twin)
    expected = "Ambiguous Action name: customer_summary. Did you mean one of"
    with pytest.raises(AmbiguousActionError, match=expected):
        Graph.from_compiled(compiled).select(actions=["customer_summary"])


def test_match_patterns():
    values = ["p.d.a", "p.e.b", "p.d.b2"]
    assert match_patterns(["a", "p.e.b", "d.b2", "zz"], values) == ["p.d.a", "p.e.b"]
    assert match_patterns([], values) == []
