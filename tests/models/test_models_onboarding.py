"""Onboarding a source: a contract file (and its name in includes/sources.js) is all it takes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lakehouse.engine.compile import CompileError, compile_project
from lakehouse.lint import registry_problems
from models.project import copy_project, targets

RETURNS = {
    "name": "returns",
    "description": "One event per product returned by a customer.",
    "key": ["return_id"],
    "event_time": "event_ts",
    "fields": [
        {"name": "return_id", "type": "STRING", "required": True, "pattern": "^RET-[0-9A-F]{12}$"},
        {"name": "order_id", "type": "STRING", "required": True},
        {"name": "customer_email", "type": "STRING", "pii": True},
        {"name": "reason", "type": "STRING", "accepted_values": ["damaged", "wrong_size", "other"]},
        {"name": "refund", "type": "NUMERIC", "required": True, "min": 0},
        {"name": "event_ts", "type": "TIMESTAMP", "required": True},
    ],
    "generator": {
        "share": 0.05,
        "fields": {
            "return_id": {"kind": "id", "prefix": "RET-"},
            "order_id": {"kind": "id", "prefix": "ORD-"},
            "customer_email": {"kind": "customer.email"},
            "reason": {"kind": "choice", "values": ["damaged", "wrong_size", "other"]},
            "refund": {"kind": "money", "min": 1, "max": 90},
            "event_ts": {"kind": "event_time"},
        },
        "faults": [{"name": "refund_null", "kind": "null", "field": "refund", "rate": 0.05}],
    },
}


def register(project: Path, name: str) -> None:
    registry = project / "includes" / "sources.js"
    text = registry.read_text()
    registry.write_text(re.sub(r"const NAMES = \[", f'const NAMES = ["{name}", ', text, count=1))


@pytest.fixture
def onboarded(tmp_path: Path) -> Path:
    project = copy_project(tmp_path / "project")
    (project / "includes" / "contracts" / "returns.json").write_text(json.dumps(RETURNS, indent=2))
    register(project, "returns")
    return project


def test_new_contract_gets_bronze_silver_quarantine_and_assertions(onboarded: Path, tmp_path: Path):
    assert registry_problems(onboarded) == []
    graph = compile_project(onboarded, home_dir=tmp_path / "home", use_cache=False).graph
    operations, tables = targets(graph, "operations"), targets(graph, "tables")
    assertions = targets(graph, "assertions")
    assert "bronze.returns_landing" in operations
    assert "bronze.returns_raw" in targets(graph, "declarations")
    for name in ("silver_restricted.returns_staged", "silver_restricted.returns_quarantine",
                 "silver.returns_duplicates", "silver.returns"):  # fmt: skip
        assert name in tables, name
    for name in ("returns_conservation", "returns_freshness", "returns_volume", "returns_accepted_values"):
        assert f"assertions.{name}" in assertions, name
    for name in ("silver_returns_assertions_uniqueKey_0", "silver_returns_assertions_rowConditions"):
        assert f"assertions.{name}" in assertions, name
    assert "returns_staged_not_json_message" in {test["name"] for test in graph["tests"]}
    staged = tables["silver_restricted.returns_staged"]["query"]
    for rule in ("return_id_pattern", "refund_min", "reason_accepted_values", "order_id_required"):
        assert f"['{rule}']" in staged, rule
    silver = tables["silver.returns"]
    assert silver["uniqueKey"] == ["return_id"]
    assert "customer_email ))) as customer_email_hash" in " ".join(silver["query"].split())


def test_a_bad_contract_fails_the_compile_naming_file_and_field(onboarded: Path, tmp_path: Path):
    broken = dict(RETURNS, key=["nope"])
    (onboarded / "includes" / "contracts" / "returns.json").write_text(json.dumps(broken))
    with pytest.raises(CompileError) as raised:
        compile_project(onboarded, home_dir=tmp_path / "home", use_cache=False)
    assert any('includes/contracts/returns.json: key: "nope" is not a field' in m for _, m in raised.value.errors)
