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
    from deploy.resources import KEYS_DATASET, desired_state

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
    # The key dataset's name is fixed (`keys`, which the models read): the project's own, maybe a deployed
    # environment's, so this run neither applies nor destroys it (the salt test uses a dataset of its own).
    keys = [PROJECT, KEYS_DATASET]
    resources = [r for r in desired_state(env, ["orders"]) if r.kind in KINDS and r.name.split(".")[:2] != keys]
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


def test_the_apply_lock_on_real_storage(setup):
    """The lock object is created only if absent (if_generation_match=0) and released by generation."""
    from deploy.handlers import build_bucket
    from deploy.lock import LOCK_OBJECT, LockHeld, apply_lock
    from deploy.resources import Resource

    env, resources, clients, handlers, root = setup
    bucket = env.buckets["functions_source"]
    spec = next(r for r in resources if r.name == bucket).spec
    clients.storage.create_bucket(build_bucket(Resource("bucket", bucket, spec), spec), PROJECT, spec["location"])
    try:
        with apply_lock(env, clients, who="first") as taken:
            assert taken is True
            with pytest.raises(LockHeld, match=r"\(first since "), apply_lock(env, clients, who="second"):
                pass
        assert clients.storage.read_lock(bucket, LOCK_OBJECT) is None
    finally:
        clients.storage.delete_bucket(bucket, force=True)


@pytest.mark.skipif(
    not os.environ.get("LAKEHOUSE_GCP_ENV"), reason="LAKEHOUSE_GCP_ENV (a deployed environment) is not set"
)
def test_started_runs_are_reported_once_by_the_check_with_iceberg_create_and_merge():
    """Start the orders pipeline twice (full refresh: the Iceberg table is created; then incremental: merged)
    the way the Scheduler does, then check until both are reported, once each."""
    import datetime as dt
    import time

    from deploy import trigger
    from deploy.config import load_env
    from deploy.resources import ACTION_RUNS_TABLE

    env = load_env(Path(os.environ["LAKEHOUSE_GCP_ENV"]))
    repo = f"projects/{env.project}/locations/{env.region}/repositories/{env.dataform.repository}"
    ops_table = f"{env.project}.{env.datasets['ops']}.{ACTION_RUNS_TABLE}"
    target, write_rows = trigger.gcp_target_from_environment({
        "LAKEHOUSE_GCP_PROJECT": env.project, "LAKEHOUSE_DATAFORM_REPOSITORY": repo,
        "LAKEHOUSE_RELEASE_CONFIG": f"{repo}/releaseConfigs/{env.dataform.release_config}",
        "LAKEHOUSE_OPS_TABLE": ops_table, "LAKEHOUSE_BIGQUERY_LOCATION": env.bigquery_location,
        "LAKEHOUSE_DATAFORM_SERVICE_ACCOUNT": env.service_account_email("dataform"),
        "LAKEHOUSE_ENVIRONMENT": env.environment, "LAKEHOUSE_TRIGGER_TIMEOUT_S": str(env.trigger_timeout_s),
    })  # fmt: skip
    started = []
    for full_refresh in (True, False):
        report, invocation, _ = target.start(trigger.TriggerRequest(tags=("orders",), full_refresh=full_refresh))
        assert report.status == "running" and report.http_status == 202, report.compilation_errors
        started.append(invocation.name)
        while True:  # the second run merges into what the first created
            reports = trigger.check_and_publish(target, ops_table, write_rows)
            if any(r.invocation == invocation.name for r in reports):
                break
            assert target.now() - report.started_at < dt.timedelta(seconds=env.trigger_timeout_s + 600)
            time.sleep(30)
        done = next(r for r in reports if r.invocation == invocation.name)
        orders = next(a for a in done.actions if a.name.endswith(".silver.orders"))
        assert (done.status, orders.status, done.lookup_errors) == ("success", "success", []), done.summary()
    assert not [r for r in trigger.check_and_publish(target, ops_table, write_rows) if r.invocation in started]


def test_the_salt_is_a_query_parameter_that_the_hash_reads_when_it_runs(setup):
    """Deploy's salt job on BigQuery writes the row with the salt as a query parameter, no job's SQL
    text holds it, and silver's hash (includes/silver.js piiHash), reading the table when it runs,
    matches one made here. tests/deploy/test_deploy_salt.py is the same path on the local engine."""
    import datetime as dt
    import hashlib

    from google.cloud import bigquery

    from deploy.handlers import PiiSaltHandler
    from deploy.resources import SALT_TABLE, SALT_TABLE_SCHEMA

    env, resources, clients, handlers, root = setup
    # A dataset of this run, not the project's `keys`, which a deployed environment may hold.
    dataset = f"{PROJECT}.{env.prefix.replace('-', '_')}_keys"
    table = f"{dataset}.{SALT_TABLE}"
    salt = uuid.uuid4().hex + uuid.uuid4().hex
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    made = bigquery.Dataset(dataset)
    made.location = env.bigquery_location
    clients.bigquery.create_dataset(made)
    try:
        schema = [bigquery.SchemaField(name, kind, mode=mode) for name, kind, mode in SALT_TABLE_SCHEMA]
        clients.bigquery.create_table(bigquery.Table(table, schema=schema))
        spec = {"table": table, "salt": salt}
        PiiSaltHandler().create(clients, None, spec)
        assert PiiSaltHandler().read(clients, None, spec).spec == spec
        hashed = (
            f"to_hex(sha256(concat(coalesce((select salt from `{table}`), error('keys.pii_salt is empty')), "
            "'ann@example.com')))"
        )
        rows = list(clients.bigquery.query(f"select {hashed} as email_hash").result())
        assert [row["email_hash"] for row in rows] == [hashlib.sha256((salt + "ann@example.com").encode()).hexdigest()]
        texts = [j.query for j in clients.bigquery.list_jobs(min_creation_time=since) if j.job_type == "query"]
        assert any(f"insert into `{table}` (salt) values (@salt)" in text for text in texts), texts
        assert [text for text in texts if salt in text] == []
    finally:
        clients.bigquery.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
