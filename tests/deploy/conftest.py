"""Fixtures for deploy tests: a small project (two contracts) and an environment config to edit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from deploy_fakes import BASE_ENV, REPO, TEST_SALT


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch) -> Path:
    """A project with contracts orders and page_views and the repository's pyproject.toml."""
    root = tmp_path / "project"
    contracts = root / "includes" / "contracts"
    contracts.mkdir(parents=True)
    for name in ("orders", "page_views"):
        (contracts / f"{name}.json").write_text(json.dumps({"name": name, "fields": []}))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    for module, functions in (("deploy/function.py", ["workflow_trigger"]),
                              ("ingest/main.py", ["land_http", "generate_http", "on_object_finalized"])):  # fmt: skip
        path = root / module
        path.parent.mkdir(exist_ok=True)
        path.write_text('"""stand-in"""\n' + "".join(f"\n\ndef {f}(request):\n    return ''\n" for f in functions))
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAKEHOUSE_PII_SALT", TEST_SALT)
    return root



@pytest.fixture
def write_env(tmp_path: Path):
    """Return a function writing BASE_ENV with top-level overrides (None deletes) to a YAML file."""

    def write(name: str = "env.yaml", **overrides) -> Path:
        data = json.loads(json.dumps(BASE_ENV))
        for key, value in overrides.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write
