"""Request building is pure: each resource becomes the client library's own message, field by field."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest
from google.cloud import (
    bigquery,
    bigquery_connection_v1,
    dataform_v1,
    functions_v2,
    iam_admin_v1,
    pubsub_v1,
    scheduler_v1,
    storage,
)
from google.iam.v1 import policy_pb2

from deploy import handlers as h
from deploy.archive import build_archive, main_module
from deploy.config import load_env
from deploy.resources import desired_state, discover_sources, resolve

OUTPUTS = {
    "project:lakehouse-test-1": {"number": "123456789012"},
    "source_archive:lakehouse": {"sha": "0123456789abcdef"},
    "connection:projects/lakehouse-test-1/locations/us/connections/lh-test-lake": {"service_account": "bqcx@x"},
    "function:projects/lakehouse-test-1/locations/us-central1/functions/lh-test-landing": {"url": "https://landing"},
    "function:projects/lakehouse-test-1/locations/us-central1/functions/lh-test-generator": {"url": "https://gen"},
    "function:projects/lakehouse-test-1/locations/us-central1/functions/lh-test-trigger": {"url": "https://trig"},
}


@pytest.fixture
def state(write_env, project_dir, monkeypatch):
    monkeypatch.setenv("TEST_PII_SALT", "pepper")
    env = load_env(write_env(), project_dir)
    resources = desired_state(env, discover_sources(project_dir))

    def get(kind: str, name_end: str):
        resource = next(r for r in resources if r.kind == kind and r.name.endswith(name_end))
        spec, unknown = resolve(resource.spec, OUTPUTS)
        assert unknown == []
        return resource, spec

    return get


def test_service_account_request(state):
    request = h.build_service_account(
        *state("service_account", "lh-dev-trigger@lakehouse-test-1.iam.gserviceaccount.com")
    )
    assert isinstance(request, iam_admin_v1.CreateServiceAccountRequest)
    assert request.name == "projects/lakehouse-test-1"
    assert request.account_id == "lh-dev-trigger"
    assert request.service_account.display_name == "lakehouse dev trigger"
    assert request.service_account.description.endswith("managed-by: lakehouse-kit")


def test_bucket_with_lifecycle(state):
    bucket = h.build_bucket(*state("bucket", "lh-test-landing"))
    assert isinstance(bucket, storage.Bucket)
    assert bucket.storage_class == "STANDARD"
    assert bucket.iam_configuration.uniform_bucket_level_access_enabled is True
    assert bucket.iam_configuration.public_access_prevention == "enforced"
    assert list(bucket.lifecycle_rules) == [
        {"action": {"type": "SetStorageClass", "storageClass": "NEARLINE"}, "condition": {"age": 90}},
        {"action": {"type": "SetStorageClass", "storageClass": "COLDLINE"}, "condition": {"age": 365}},
    ]
    assert h.observe_bucket(bucket, "lakehouse-test-1").spec["lifecycle_rules"] == [
        {"action": "SetStorageClass", "storage_class": "NEARLINE", "age_days": 90},
        {"action": "SetStorageClass", "storage_class": "COLDLINE", "age_days": 365},
    ]


def test_dataset_and_table(state):
    dataset = h.build_dataset(*state("dataset", ".gold"))
    assert isinstance(dataset, bigquery.Dataset)
    assert (dataset.project, dataset.dataset_id, dataset.location) == ("lakehouse-test-1", "gold", "US")
    assert dataset.labels["managed-by"] == "lakehouse-kit"
    table = h.build_table(*state("table", "bronze.orders_raw"))
    assert isinstance(table, bigquery.Table)
    assert [(f.name, f.field_type, f.mode) for f in table.schema] == [
        ("subscription_name", "STRING", "NULLABLE"),
        ("message_id", "STRING", "NULLABLE"),
        ("publish_time", "TIMESTAMP", "NULLABLE"),
        ("data", "STRING", "NULLABLE"),
        ("attributes", "STRING", "NULLABLE"),
    ]
    assert table.time_partitioning.field == "publish_time"
    assert table.time_partitioning.type_ == "DAY"


def test_connection_request(state):
    request = h.build_connection(*state("connection", "lh-test-lake"))
    assert isinstance(request, bigquery_connection_v1.CreateConnectionRequest)
    assert request.parent == "projects/lakehouse-test-1/locations/us"
    assert request.connection_id == "lh-test-lake"
    assert "cloud_resource" in request.connection


def test_bigquery_subscription(state):
    subscription = h.build_subscription(*state("subscription", "lh-test-orders-bq"))
    assert isinstance(subscription, pubsub_v1.types.Subscription)
    assert subscription.topic == "projects/lakehouse-test-1/topics/lh-test-orders"
    assert subscription.bigquery_config.table == "lakehouse-test-1.bronze.orders_raw"
    assert subscription.bigquery_config.write_metadata is True
    assert subscription.bigquery_config.use_topic_schema is False
    assert subscription.dead_letter_policy.dead_letter_topic == "projects/lakehouse-test-1/topics/lh-test-dead-letter"
    assert subscription.dead_letter_policy.max_delivery_attempts == 5
    assert subscription.retry_policy.minimum_backoff == dt.timedelta(seconds=10)
    assert subscription.retry_policy.maximum_backoff == dt.timedelta(seconds=600)
    assert "expiration_policy" in subscription and subscription.expiration_policy.ttl == dt.timedelta(0)
    hold = h.build_subscription(*state("subscription", "lh-test-dead-letter-hold"))
    assert "bigquery_config" not in hold
    assert hold.message_retention_duration == dt.timedelta(days=7)


def test_dataform_repository_and_release_config_use_the_ga_api(state):
    repo = h.build_repository(*state("dataform_repository", "repositories/lakehouse"))
    assert isinstance(repo, dataform_v1.CreateRepositoryRequest)
    assert repo.parent == "projects/lakehouse-test-1/locations/us-central1"
    assert repo.repository.git_remote_settings.url == "https://github.com/example/lakehouse.git"
    assert repo.repository.git_remote_settings.authentication_token_secret_version == (
        "projects/lakehouse-test-1/secrets/git-token/versions/1"
    )
    assert repo.repository.service_account == "lh-dev-dataform@lakehouse-test-1.iam.gserviceaccount.com"
    release = h.build_release_config(*state("release_config", "releaseConfigs/dev"))
    assert isinstance(release, dataform_v1.ReleaseConfig)
    assert release.git_commitish == "main"
    assert release.code_compilation_config.default_database == "lakehouse-test-1"
    assert dict(release.code_compilation_config.vars) == {
        "dead_letter_bucket": "lh-test-dead-letter",
        "iceberg_bucket": "lh-test-lake",
        "iceberg_connection": "projects/lakehouse-test-1/locations/us/connections/lh-test-lake",
        "landing_bucket": "lh-test-landing",
        "lookback_days": "3",
        "api_token": "pepper",
    }


def test_ui_workspaces_compile_into_the_environment_with_a_suffix_per_developer(state, write_env, project_dir):
    repo = h.build_repository(*state("dataform_repository", "repositories/lakehouse")).repository
    overrides = repo.workspace_compilation_overrides
    assert (overrides.default_database, overrides.schema_suffix, overrides.table_prefix) == (
        "lakehouse-test-1", "_${workspaceName}", ""
    )  # fmt: skip
    dataform = {"git_remote": "https://github.com/example/lakehouse.git", "workspace_project": "lakehouse-sandbox-1",
                "token_secret_version": "projects/lakehouse-test-1/secrets/git-token/versions/1"}  # fmt: skip
    env = load_env(write_env(dataform=dataform), project_dir)
    repository = next(r for r in desired_state(env, ["orders"]) if r.kind == "dataform_repository")
    assert repository.spec["workspace_project"] == "lakehouse-sandbox-1"


def test_no_workflow_config_is_created_the_scheduler_runs_the_trigger(state, write_env, project_dir):
    env = load_env(write_env(), project_dir)
    assert [r for r in desired_state(env, ["orders"]) if r.kind == "workflow_config"] == []
    assert "workflow_config" not in h.handlers()


def test_function_and_scheduler_job(state):
    function = h.build_function(*state("function", "functions/lh-test-trigger"))
    assert isinstance(function, functions_v2.Function)
    assert function.build_config.runtime == "python311"
    assert function.build_config.entry_point == "workflow_trigger"
    assert function.build_config.source.storage_source.bucket == "lh-test-functions"
    assert function.build_config.source.storage_source.object_ == "lakehouse-0123456789abcdef.zip"
    assert function.service_config.service_account_email == "lh-dev-trigger@lakehouse-test-1.iam.gserviceaccount.com"
    assert function.service_config.environment_variables["LAKEHOUSE_OPS_TABLE"] == (
        "lakehouse-test-1.ops.workflow_action_runs"
    )
    generator = h.build_function(*state("function", "functions/lh-test-generator"))
    assert generator.service_config.environment_variables["LAKEHOUSE_LANDING_URL"] == "https://landing"
    job = h.build_job(*state("scheduler_job", "jobs/lh-test-trigger-hourly"))
    assert isinstance(job, scheduler_v1.Job)
    assert job.schedule == "5 * * * *"
    assert job.http_target.uri == "https://trig"
    assert job.http_target.http_method == scheduler_v1.HttpMethod.POST
    assert job.http_target.oidc_token.service_account_email == (
        "lh-dev-scheduler@lakehouse-test-1.iam.gserviceaccount.com"
    )
    assert job.http_target.oidc_token.audience == "https://trig"
    assert job.retry_config.retry_count == 0
    assert job.attempt_deadline == dt.timedelta(seconds=600)
    assert (
        h.observe_job(job).spec["body"] == '{"full_refresh": false, "include_dependencies": true, "tags": ["hourly"]}'
    )


def test_policy_editing_adds_and_removes_one_member():
    policy = policy_pb2.Policy(bindings=[policy_pb2.Binding(role="roles/x", members=["user:a@b.c"])])
    assert h.with_member(policy, "roles/x", "serviceAccount:s@p.iam.gserviceaccount.com") is True
    assert h.with_member(policy, "roles/x", "serviceAccount:s@p.iam.gserviceaccount.com") is False
    assert h.with_member(policy, "roles/y", "user:a@b.c") is True
    assert [(b.role, list(b.members)) for b in policy.bindings] == [
        ("roles/x", ["user:a@b.c", "serviceAccount:s@p.iam.gserviceaccount.com"]),
        ("roles/y", ["user:a@b.c"]),
    ]
    assert h.without_member(policy, "roles/y", "user:a@b.c") is True
    assert h.without_member(policy, "roles/y", "user:a@b.c") is False
    assert [b.role for b in policy.bindings] == ["roles/x"]


def test_archive_is_reproducible_and_has_entry_points(project_dir):
    entry_points = {"trigger": "deploy.function:workflow_trigger", "landing": "ingest.main:land_http"}
    sha, data = build_archive(project_dir, entry_points)
    assert build_archive(project_dir, entry_points) == (sha, data)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == [
        "deploy/function.py",
        "includes/contracts/orders.json",
        "includes/contracts/page_views.json",
        "ingest/main.py",
        "main.py",
        "requirements.txt",
    ]
    assert main_module(entry_points).splitlines()[2:] == [
        "from ingest.main import land_http  # noqa: F401  (landing)",
        "from deploy.function import workflow_trigger  # noqa: F401  (trigger)",
    ]
    requirements = zipfile.ZipFile(io.BytesIO(data)).read("requirements.txt").decode().splitlines()
    assert "functions-framework==3.10.2" in requirements
    assert not any(line.startswith("duckdb") for line in requirements)
    (project_dir / "deploy" / "function.py").write_text('"""changed"""\n')
    assert build_archive(project_dir, entry_points)[0] != sha


def test_audit_function_is_triggered_by_landing_finalize_events(state):
    function = h.build_function(*state("function", "functions/lh-test-audit"))
    trigger = function.event_trigger
    assert trigger.event_type == "google.cloud.storage.object.v1.finalized"
    assert [(f.attribute, f.value) for f in trigger.event_filters] == [("bucket", "lh-test-landing")]
    assert trigger.trigger_region == "us"
    assert trigger.service_account_email == "lh-dev-audit@lakehouse-test-1.iam.gserviceaccount.com"
    assert trigger.retry_policy == functions_v2.EventTrigger.RetryPolicy.RETRY_POLICY_RETRY
    assert function.build_config.entry_point == "on_object_finalized"
    assert function.service_config.environment_variables["FILE_ARRIVALS_TABLE"] == (
        "lakehouse-test-1.ops.file_arrivals"
    )
    assert (
        h.observe_function(function).spec["event_trigger"]
        == state("function", "functions/lh-test-audit")[1]["event_trigger"]
    )
    landing = h.build_function(*state("function", "functions/lh-test-landing"))
    assert "event_trigger" not in landing


def test_file_arrivals_table_has_the_audit_columns(state):
    from ingest.audit import COLUMNS

    table = h.build_table(*state("table", "ops.file_arrivals"))
    assert [(f.name, f.field_type) for f in table.schema] == [(name, kind) for name, kind, _ in COLUMNS]
    assert table.time_partitioning.field == "arrived_at"


def test_requirements_follow_the_imports_of_the_entry_points(project_dir):
    from deploy.archive import requirements

    (project_dir / "ingest" / "helper.py").write_text("import numpy\nfrom faker import Faker\n")
    (project_dir / "ingest" / "main.py").write_text(
        "import orjson\n\n\ndef land_http(request):\n    from ingest import helper\n    return helper\n\n\n"
        "def generate_http(request):\n    from google.cloud import pubsub_v1\n    return pubsub_v1\n"
    )
    (project_dir / "deploy" / "function.py").write_text(
        "import json\n\n\ndef workflow_trigger(request):\n    from lakehouse import warehouse\n    return warehouse\n"
    )
    (project_dir / "lakehouse").mkdir()
    (project_dir / "lakehouse" / "warehouse.py").write_text("import duckdb\n")
    text = requirements(project_dir, {"landing": "ingest.main:land_http", "trigger": "deploy.function:workflow_trigger",
                                      "generator": "ingest.main:generate_http"})  # fmt: skip
    assert text.splitlines() == [
        "faker==40.54.0",
        "functions-framework==3.10.2",
        "google-cloud-pubsub==2.44.0",
        "numpy==2.4.6",
        "orjson==3.13.0",
    ]


def test_requirements_of_this_repository_cover_the_generator():
    from deploy_fakes import REPO

    from deploy.archive import requirements
    from deploy.config import DEFAULT_ENTRY_POINTS

    names = {line.split("==")[0] for line in requirements(REPO, DEFAULT_ENTRY_POINTS).splitlines()}
    assert {"functions-framework", "numpy", "faker", "google-cloud-dataform", "google-cloud-bigquery"} <= names
    assert not names & {"duckdb", "sqlglot", "sqlfluff", "pyiceberg"}  # the local engine is not deployed


@pytest.mark.parametrize(
    ("function", "ingress"),
    [
        ("lh-test-landing", functions_v2.ServiceConfig.IngressSettings.ALLOW_ALL),
        ("lh-test-generator", functions_v2.ServiceConfig.IngressSettings.ALLOW_INTERNAL_ONLY),
        ("lh-test-audit", functions_v2.ServiceConfig.IngressSettings.ALLOW_INTERNAL_ONLY),
        ("lh-test-trigger", functions_v2.ServiceConfig.IngressSettings.ALLOW_INTERNAL_ONLY),
    ],
)
def test_function_ingress_is_explicit_per_function(state, function, ingress):
    resource, spec = state("function", f"functions/{function}")
    built = h.build_function(resource, spec)
    assert built.service_config.ingress_settings == ingress
    assert h.observe_function(built).spec["ingress"] == ingress.name
    assert h.FunctionHandler.mask["ingress"] == "service_config.ingress_settings"


def test_scheduler_attempts_stay_under_the_30_minute_cap(state, write_env, project_dir):
    env = load_env(write_env(), project_dir)
    jobs = [r for r in desired_state(env, ["orders"]) if r.kind == "scheduler_job"]
    assert sorted(j.name.rsplit("/", 1)[1] for j in jobs) == [
        "lh-test-generator", "lh-test-trigger-check", "lh-test-trigger-hourly"
    ]  # fmt: skip
    assert all(j.spec["attempt_deadline_s"] <= 1800 for j in jobs)
    check = next(j for j in jobs if j.name.endswith("trigger-check"))
    assert (check.spec["schedule"], check.spec["body"], check.spec["retry_count"]) == (
        "*/10 * * * *",
        '{"check": true}',
        0,
    )
