"""Helpers of the model tests: the repository's Dataform project, copies of it, its contracts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "node_modules" / "@dataform" / "core"
PROJECT_FILES = ("workflow_settings.yaml", "package.json", ".sqlfluff")
PROJECT_DIRS = ("definitions", "includes")
# The compilation vars workflow_settings.yaml sets: the tests name the local buckets from here.
KIT_VARS = yaml.safe_load((REPO / "workflow_settings.yaml").read_text())["vars"]


def copy_project(destination: Path) -> Path:
    """Return a copy of the repository's Dataform project (with its own @dataform/core) at destination."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, destination / name)
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, destination / name)
    shutil.copytree(CORE, destination / "node_modules" / "@dataform" / "core")
    return destination


def contract_names(project_dir: Path = REPO) -> list[str]:
    """Return the source names that have a contract file, sorted."""
    return sorted(path.stem for path in (project_dir / "includes" / "contracts").glob("*.json"))


def load_contract(name: str, project_dir: Path = REPO) -> dict:
    """Return the parsed contract of source `name`."""
    return json.loads((project_dir / "includes" / "contracts" / f"{name}.json").read_text())


def targets(graph: dict, kind: str) -> dict[str, dict]:
    """Return the graph's actions of `kind` keyed by dataset.name."""
    return {f"{a['target']['schema']}.{a['target']['name']}": a for a in graph.get(kind) or []}
