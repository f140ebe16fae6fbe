"""Model test fixtures: the repository's Dataform project compiled once."""

from __future__ import annotations

import pytest

from lakehouse.engine.compile import compile_project
from models.project import REPO


@pytest.fixture(scope="session")
def graph(tmp_path_factory) -> dict:
    """The repository's compiled graph (compile_project raises on any compilation error)."""
    home = tmp_path_factory.mktemp("models-home")
    return compile_project(REPO, home_dir=home, use_cache=False).graph
