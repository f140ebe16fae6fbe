"""The release config deploy writes compiles this repository, and its vars reach the models."""

from __future__ import annotations

import pytest
from deploy_fakes import REPO

from deploy.config import load_env
from deploy.resources import desired_state, discover_sources, resolve

pytestmark = pytest.mark.slow  # one compile of the repository with the pinned Dataform CLI


def test_release_config_vars_compile_the_repository(tmp_path):
    from lakehouse.engine.compile import compile_project

    env = load_env(REPO / "config" / "environments" / "dev.yaml", REPO)
    release = next(r for r in desired_state(env, discover_sources(REPO)) if r.kind == "release_config")
    variables, unknown = resolve(release.spec["vars"], {}, {"LAKEHOUSE_PII_SALT": "salt-for-the-test"})
    assert unknown == []
    graph = compile_project(REPO, vars=variables, home_dir=tmp_path, use_cache=False).graph
    assert not graph.get("graphErrors", {}).get("compilationErrors")
    orders = next(t for t in graph["tables"] if (t["target"]["schema"], t["target"]["name"]) == ("silver", "orders"))
    assert orders["bigquery"]["connection"] == "projects/lakehouse-kit-dev/locations/us/connections/lakehouse-dev-lake"
    assert orders["bigquery"]["storageUri"].startswith("gs://lakehouse-kit-dev-iceberg-lake/")
    landing = [
        q
        for op in graph.get("operations", [])
        for q in op.get("queries", [])
        if "create or replace external table" in q and "_landing`" in q
    ]
    assert landing and all("gs://lakehouse-kit-dev-bronze-landing/source=" in q for q in landing)
    dead_letters = next(op for op in graph["operations"] if op["target"]["name"] == "dead_letters")
    assert "uris = ['gs://lakehouse-kit-dev-dead-letter/*']" in dead_letters["queries"][0]
