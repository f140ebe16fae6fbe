"""The project's Dataform unit tests (type: "test") pass on the local engine, compared as the CLI compares."""

from __future__ import annotations

from pathlib import Path

from lakehouse import warehouse
from lakehouse.engine import translate
from lakehouse.engine.unit_tests import run_tests
from models.project import contract_names


def test_every_unit_test_passes(graph, tmp_path: Path):
    con = warehouse.connect(tmp_path, ["lakehouse-dev"])
    try:
        translate.register_functions(con)
        con.execute('USE "lakehouse-dev"')
        results = run_tests(graph, con)
    finally:
        con.close()
    assert {r.name for r in results} == {
        "orders_staged_valid_line",
        "orders_staged_every_failed_rule",
        "ad_attribution_last_click_wins",
        "ad_attribution_ties",
        "ad_attribution_window_edge",
    } | {f"{source}_staged_not_json_message" for source in contract_names()}
    assert [(r.name, r.messages) for r in results if not r.successful] == []
