"""The release config deploy writes compiles this repository, and its vars reach the models."""

from __future__ import annotations

import json

import pytest
import yaml
from deploy_fakes import REPO

from deploy.config import load_env
from deploy.resources import desired_state, discover_sources, resolve

# The file's defaults, which a Dataform UI workspace compiles with (its overrides cannot set vars).
FILE_VARS = yaml.safe_load((REPO / "workflow_settings.yaml").read_text())["vars"]
BUCKET_VARS = sorted(name for name in FILE_VARS if name.endswith("_bucket"))


def _release(path: str = "config/environments/dev.yaml"):
    env = load_env(REPO / path, REPO)
    return next(r for r in desired_state(env, discover_sources(REPO)) if r.kind == "release_config")


def test_the_file_names_only_buckets_no_one_can_own():
    # GCS makes a dotted bucket only for a verified domain, and no one can verify `localhost`
    # (RFC 6761): a workspace compiled with these fails naming the bucket, never reaches a stranger's.
    assert BUCKET_VARS == ["dead_letter_bucket", "iceberg_bucket", "landing_bucket"]
    assert [FILE_VARS[name].rsplit(".", 1)[-1] for name in BUCKET_VARS] == ["localhost"] * 3


@pytest.mark.parametrize("path", ["config/environments/dev.yaml", "config/environments/prod.yaml"])
def test_every_release_config_sets_every_bucket_var(path):
    release_vars = _release(path).spec["vars"]
    env = load_env(REPO / path, REPO)
    assert {name: release_vars[name] for name in BUCKET_VARS} == {
        "dead_letter_bucket": env.buckets["dead_letter"],
        "iceberg_bucket": env.buckets["lake"],
        "landing_bucket": env.buckets["landing"],
    }


@pytest.mark.slow  # one compile of the repository with the pinned Dataform CLI
def test_release_config_vars_compile_the_repository(tmp_path):
    from lakehouse.engine.compile import compile_project

    release = _release()
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
    assert ".localhost" not in json.dumps(graph)  # no file default survives the release's vars
