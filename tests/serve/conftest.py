"""Serving fixtures: a real local warehouse built by running the repository's graph on generated events."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse import warehouse
from lakehouse.engine.compile import compile_project
from lakehouse.serve.app import ApiKey, create_app
from lakehouse.serve.backends import DuckDBBackend
from lakehouse.serve.catalog import gold_tables

REPO = Path(__file__).resolve().parents[2]
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
PROJECT = "lakehouse-dev"


def lakehouse(home: Path, *args: str) -> None:
    """Run the lakehouse CLI on the repository with LAKEHOUSE_HOME=home; fail the test on a non-zero exit."""
    done = subprocess.run(
        [LAKEHOUSE, *args], cwd=REPO, env={**os.environ, "LAKEHOUSE_HOME": str(home)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"lakehouse {' '.join(args)} exited {done.returncode}:\n{done.stderr}"


@pytest.fixture(scope="session")
def served_home(tmp_path_factory) -> Path:
    """LAKEHOUSE_HOME of a warehouse after 1,000 generated events (seed 5) and one run of the graph."""
    home = tmp_path_factory.mktemp("serve-home")
    lakehouse(home, "generate", "--events", "1000", "--seed", "5", "--pubsub-share", "0", "--in-process-bus")
    lakehouse(home, "run")
    return home


@pytest.fixture(scope="session")
def tables(served_home) -> dict:
    return gold_tables(compile_project(REPO, home_dir=served_home).graph)


@pytest.fixture(scope="session")
def backend(served_home, tables):
    duck = DuckDBBackend(served_home, [PROJECT])
    yield duck
    duck.close()


@pytest.fixture(scope="session")
def open_app(tables, backend):
    """The API with no keys configured."""
    return create_app(tables, backend, [])


@pytest.fixture
def keyed_app(tables, backend):
    """The API with two keys; `reader2` may make 3 requests a minute."""
    keys = [ApiKey("reader", "s3cret-s3cret-s3cret"), ApiKey("reader2", "an0ther-an0ther-key", "3/minute")]
    return create_app(tables, backend, keys)


def rows(home: Path, sql: str, params: list | None = None) -> list[dict]:
    """Return the rows of DuckDB `sql` on the warehouse, read-only, as dicts."""
    con = warehouse.connect(home, [PROJECT], read_only=True)
    try:
        con.execute(f'USE "{PROJECT}"')
        return con.execute(sql, params or []).to_arrow_table().to_pylist()
    finally:
        con.close()
