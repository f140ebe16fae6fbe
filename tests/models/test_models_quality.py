"""The contracts' quality block as Dataform reads it: checked by includes/sources.js, asserted by ops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakehouse.engine.compile import CompileError, compile_project
from models.project import copy_project, targets


def _with_quality(tmp_path: Path, quality) -> Path:
    project = copy_project(tmp_path / "project")
    path = project / "includes" / "contracts" / "inventory.json"
    contract = json.loads(path.read_text())
    contract["quality"] = quality
    path.write_text(json.dumps(contract))
    return project


@pytest.mark.parametrize(
    "quality, message",
    [
        ({"max_reject_rate": 1.5}, "includes/contracts/inventory.json: quality.max_reject_rate: 1.5 is not a share"),
        ({"severity": "fatal"}, 'inventory.json: quality.severity: "fatal" must be "warn" or "error"'),
        ({"rules": {"nope": 0.1}}, "includes/contracts/inventory.json: quality.rules.nope: not a rule of inventory"),
        ({"max_rejects": 0.1}, "includes/contracts/inventory.json: quality.max_rejects: is not a known threshold"),
    ],
)
def test_a_bad_quality_block_fails_the_compile_naming_file_and_field(tmp_path, quality, message):
    project = _with_quality(tmp_path, quality)
    with pytest.raises(CompileError) as raised:
        compile_project(project, home_dir=tmp_path / "home", use_cache=False)
    assert any(message in m for _, m in raised.value.errors), raised.value.errors


def test_an_error_threshold_is_an_untagged_assertion_of_each_limit(tmp_path):
    project = _with_quality(tmp_path, {"max_reject_rate": 0.3, "rules": {"product_id_pattern": 0.05}})
    graph = compile_project(project, home_dir=tmp_path / "home", use_cache=False).graph
    assertion = targets(graph, "assertions")["assertions.inventory_quality_thresholds"]
    assert "warn" not in assertion["tags"]
    query = assertion["query"]
    assert "'max_reject_rate' as threshold" in query and "0.3 as max_rate" in query
    assert "'rules.product_id_pattern' as threshold" in query and "0.05 as max_rate" in query
    assert "where rule_name = 'product_id_pattern'" in query


def test_rates_of_the_run_are_hourly_and_the_dead_letter_rate_is_daily(tmp_path):
    project = _with_quality(tmp_path, {"max_reject_rate": 0.3, "max_dead_letter_rate": 0.01, "severity": "warn"})
    graph = compile_project(project, home_dir=tmp_path / "home", use_cache=False).graph
    found = targets(graph, "assertions")
    hourly = found["assertions.inventory_quality_thresholds"]
    assert {"hourly", "warn"} <= set(hourly["tags"]) and "daily" not in hourly["tags"]
    # this run's lines only: the batch view, never the all-time view nor the dead-letter bucket
    assert "`lakehouse-dev.ops.source_quality_run`" in hourly["query"]
    assert "ops.source_quality`" not in hourly["query"] and "max_dead_letter_rate" not in hourly["query"]
    daily = found["assertions.inventory_dead_letter_threshold"]
    assert {"daily", "warn"} <= set(daily["tags"]) and "hourly" not in daily["tags"]
    assert "`lakehouse-dev.ops.source_quality`" in daily["query"] and "0.01 as max_rate" in daily["query"]

    only_dead_letters = _with_quality(tmp_path / "second", {"max_dead_letter_rate": 0.01})
    graph = compile_project(only_dead_letters, home_dir=tmp_path / "home2", use_cache=False).graph
    names = set(targets(graph, "assertions"))
    assert "assertions.inventory_dead_letter_threshold" in names
    assert "assertions.inventory_quality_thresholds" not in names
