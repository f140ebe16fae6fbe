"""includes/sources.js lists exactly the contracts in includes/contracts/ (Dataform cannot list a folder)."""

from __future__ import annotations

from pathlib import Path

from lakehouse.lint import registry_problems
from models.project import REPO, copy_project


def test_registry_matches_contracts():
    assert registry_problems(REPO) == []


def test_unregistered_and_orphan_sources_are_named(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    contracts = project / "includes" / "contracts"
    (contracts / "returns.json").write_text((contracts / "orders.json").read_text())
    (contracts / "inventory.json").unlink()
    assert registry_problems(project) == [
        "includes/contracts/returns.json: source 'returns' is not listed in includes/sources.js NAMES; add it",
        "includes/sources.js: source 'inventory' has no contract includes/contracts/inventory.json",
    ]
