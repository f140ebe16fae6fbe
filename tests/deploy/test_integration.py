"""Opt-in integration suite against a real Google Cloud project.

Runs when LAKEHOUSE_GCP_PROJECT names a project and Google credentials are configured; skips, saying
why, otherwise. It creates uniquely named resources (prefix lhit-<random>) and deletes them again.
Optional: LAKEHOUSE_GCP_REGION (default us-central1), LAKEHOUSE_GCP_LOCATION (default US), and
LAKEHOUSE_GCP_ENV=<environment config of a deployed environment> to also run the workflow trigger.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import yaml

from deploy.plan import credentials_status

PROJECT = os.environ.get("LAKEHOUSE_GCP_PROJECT", "")
_HAS_CREDENTIALS, _WHY = credentials_status()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not PROJECT, reason="LAKEHOUSE_GCP_PROJECT is not set (opt-in suite against a real project)"),
    pytest.mark.skipif(bool(PROJECT) and not _HAS_CREDENTIALS, reason=f"cannot reach Google Cloud: {_WHY}"),
]
KINDS = ("bucket", "dataset", "table", "topic")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from deploy.clients import Clients
    from deploy.config import load_env
    from deploy.handlers import handlers
    from deploy.resources import desired_state

    suffix = uuid.uuid4().hex[:8]
    prefix = f"lhit-{suffix}"
    root = tmp_path_factory.mktemp("integration")
    from deploy.config import BUCKETS, DATASETS

    data = {
        "environment": "it",
        "project": PROJECT,
        "region": os.environ.get("LAKEHOUSE_GCP_REGION", "us-central1"),
        "bigquery_location": os.environ.get("LAKEHOUSE_GCP_LOCATION", "US"),
        "prefix": prefix,
        "buckets": {name: f"{prefix}-{name.replace('_', '-')}" for name in BUCKETS},
        "datasets": {name: f"lhit_{suffix}_{name}" for name in DATASETS},
        "dataform": {"git_remote": "https://example.com/none.git",
                     "token_secret_version": f"projects/{PROJECT}/secrets/none/versions/1"},
    }  # fmt: skip
    path = root / "it.yaml"
    path.write_text(yaml.safe_dump(data))
    env = load_env(path, root)
    resources = [r for r in desired_state(env, ["orders"]) if r.kind in KINDS]
    return env, resources, Clients(project=PROJECT), handlers(root), root


def test_plan_reads_the_real_state(setup):
    from deploy.plan import make_plan

    env, resources, clients, handlers, root = setup
    plan = make_plan(env, ["orders"], resources, root, clients, handlers)
    assert plan.state_read is True
    assert {c.action for c in plan.changes} == {"create"}


def test_apply_twice_then_destroy_everything(setup):
    from deploy.apply import apply, destroy

    env, resources, clients, handlers, root = setup
    try:
        first = apply(env, resources, clients, handlers, root)
        assert first.error is None, str(first.error)
        second = apply(env, resources, clients, handlers, root)
        assert second.error is None and second.count("unchanged") == len(resources)
    finally:
        gone = destroy(env, resources, clients, handlers, root, include_data=True)
    assert gone.error is None, str(gone.error)
    assert gone.count("deleted") == len(resources)


@pytest.mark.skipif(
    not os.environ.get("LAKEHOUSE_GCP_ENV"), reason="LAKEHOUSE_GCP_ENV (a deployed environment) is not set"
)
def test_trigger_runs_the_deployed_workflow():
    from click.testing import CliRunner

    from lakehouse.cli import main

    env_file = Path(os.environ["LAKEHOUSE_GCP_ENV"])
    result = CliRunner().invoke(main, ["trigger", "--target", "gcp", "--env", str(env_file), "--json"])
    assert result.exit_code in (0, 1), result.output
    assert '"target": "gcp"' in result.output
