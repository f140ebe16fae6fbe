"""The desired state: names, ordering, labels, and least-privilege IAM checked over all of it."""

from __future__ import annotations

import collections
import json

import pytest

from deploy.config import ConfigError, load_env
from deploy.resources import (
    MANAGED_BY,
    MARKER,
    PRIMITIVE_ROLES,
    PUBLIC_MEMBERS,
    desired_state,
    discover_sources,
    iam_bindings,
    resolve,
)

# What each component may be granted, and where: the whole least-privilege policy in one table.
ALLOWED = {
    "landing": {("bucket", "roles/storage.objectCreator"), ("bucket", "roles/storage.objectViewer")},
    "generator": {("topic", "roles/pubsub.publisher"), ("run_service", "roles/run.invoker")},
    "trigger": {
        ("project", "roles/bigquery.jobUser"),
        ("dataset", "roles/bigquery.dataViewer"),
        ("dataset", "roles/bigquery.dataEditor"),
        ("bucket", "roles/storage.objectViewer"),
        ("dataform_repository", "roles/dataform.editor"),
        ("service_account", "roles/iam.serviceAccountUser"),
    },
    "dataform": {
        ("project", "roles/bigquery.jobUser"),
        ("dataset", "roles/bigquery.dataEditor"),
        ("bucket", "roles/storage.objectViewer"),
        ("connection", "roles/bigquery.connectionAdmin"),
        ("dataset", "roles/bigquery.dataViewer"),  # the key dataset only (test_the_key_dataset_is_...)
    },
    "scheduler": {("run_service", "roles/run.invoker")},
    "audit": {
        ("project", "roles/eventarc.eventReceiver"),
        ("dataset", "roles/bigquery.dataEditor"),
        ("run_service", "roles/run.invoker"),
    },
    "pubsub-writer": {("dataset", "roles/bigquery.dataEditor")},
}


@pytest.fixture
def env(write_env, project_dir):
    return load_env(write_env(), project_dir)


@pytest.fixture
def resources(env, project_dir):
    return desired_state(env, discover_sources(project_dir))


def test_counts_per_kind(resources):
    counts = collections.Counter(r.kind for r in resources)
    assert counts == {
        "service_account": 7,
        "bucket": 4,
        "dataset": 7,
        "table": 5,
        "connection": 1,
        "topic": 3,
        "subscription": 3,
        "dataform_repository": 1,
        "release_config": 1,
        "source_archive": 1,
        "function": 4,
        "scheduler_job": 3,
        "iam_binding": 39,
        "authorized_dataset": 1,
        "pii_salt": 1,
    }
    assert len({r.key for r in resources}) == len(resources)


def test_per_source_pubsub_and_raw_tables(resources):
    by_name = {r.name: r for r in resources}
    sub = by_name["projects/lakehouse-test-1/subscriptions/lh-test-orders-bq"].spec
    assert sub["topic"] == "projects/lakehouse-test-1/topics/lh-test-orders"
    assert sub["bigquery_table"] == "lakehouse-test-1.bronze.orders_raw"
    assert sub["write_metadata"] is True
    assert sub["dead_letter_topic"] == "projects/lakehouse-test-1/topics/lh-test-dead-letter"
    assert sub["service_account_email"] == "lh-dev-pubsub-writer@lakehouse-test-1.iam.gserviceaccount.com"
    raw = by_name["lakehouse-test-1.bronze.page_views_raw"]
    assert [c[0] for c in raw.spec["schema"]] == [
        "subscription_name",
        "message_id",
        "publish_time",
        "data",
        "attributes",
    ]
    assert raw.data is True


def test_bronze_lifecycle_tiering(resources):
    landing = next(r for r in resources if r.name == "lh-test-landing")
    assert landing.spec["lifecycle_rules"] == [
        {"action": "SetStorageClass", "storage_class": "NEARLINE", "age_days": 90},
        {"action": "SetStorageClass", "storage_class": "COLDLINE", "age_days": 365},
    ]
    assert landing.spec["public_access_prevention"] == "enforced"


def test_everything_destroy_may_delete_is_marked(resources):
    for resource in resources:
        spec = resource.spec
        if "labels" in spec:
            assert spec["labels"][MANAGED_BY[0]] == MANAGED_BY[1], resource.key
            assert spec["labels"]["lakehouse-env"] == "dev"
        elif "description" in spec:
            assert MARKER in spec["description"], resource.key
        else:
            # a grant lives in its resource's policy or access list, marked by that resource
            grants = {"iam_binding", "authorized_dataset"}
            assert resource.kind in grants | {"release_config", "source_archive", "pii_salt"}


def test_data_holders_are_buckets_datasets_and_tables(resources):
    assert sorted({r.kind for r in resources if r.data}) == ["bucket", "dataset", "table"]
    assert [r.name for r in resources if r.kind == "bucket" and not r.data] == ["lh-test-functions"]


def test_apply_order_puts_dependencies_first(resources):
    position = {r.key: i for i, r in enumerate(resources)}
    for resource in resources:
        for key, _ in resource.placeholders():
            if key.startswith("project:"):
                continue
            assert position[key] < position[resource.key], (key, resource.key)
    kinds = [r.kind for r in resources]
    assert kinds.index("table") > kinds.index("dataset")
    assert min(i for i, k in enumerate(kinds) if k == "subscription") > max(
        i for i, r in enumerate(resources) if r.kind == "iam_binding" and r.spec["scope"] == "dataset"
    )
    assert kinds.index("scheduler_job") > max(i for i, k in enumerate(kinds) if k == "function")


def test_least_privilege(resources, env):
    """No primitive role, nobody public, one service account per component, each within its table."""
    bindings = iam_bindings(resources)
    emails = {env.service_account_email(c): c.replace("_", "-") for c in env.service_accounts}
    assert len(set(emails)) == 7
    granted = collections.defaultdict(set)
    for binding in bindings:
        spec = binding.spec
        assert spec["role"] not in PRIMITIVE_ROLES, binding.key
        assert spec["member"] not in PUBLIC_MEMBERS, binding.key
        assert spec["role"].startswith("roles/")
        member = spec["member"].removeprefix("serviceAccount:")
        if member in emails:
            granted[emails[member]].add((spec["scope"], spec["role"]))
        else:  # Google's own service agents, and the BigLake connection's account
            assert (
                member.endswith(
                    (
                        "@gcp-sa-pubsub.iam.gserviceaccount.com",
                        "@gs-project-accounts.iam.gserviceaccount.com",
                        "@gcp-sa-dataform.iam.gserviceaccount.com",
                    )
                )
                or "connection:" in member
            ), member
    for component, grants in granted.items():
        assert grants <= ALLOWED[component], (component, grants - ALLOWED[component])
    project_roles = {b.spec["role"] for b in bindings if b.spec["scope"] == "project"}
    assert project_roles == {"roles/bigquery.jobUser", "roles/eventarc.eventReceiver", "roles/pubsub.publisher"}
    # The only project-wide publisher is Cloud Storage's own agent (for the audit function's events).
    assert [
        b.spec["member"]
        for b in bindings
        if b.spec["role"] == "roles/pubsub.publisher" and b.spec["scope"] == "project"
    ] == ["serviceAccount:service-123456789012@gs-project-accounts.iam.gserviceaccount.com"]
    functions = [r for r in resources if r.kind == "function"]
    assert len({f.spec["service_account_email"] for f in functions}) == 4


def test_least_privilege_test_catches_a_primitive_role(resources):
    bad = [r for r in iam_bindings(resources)] + [
        type(resources[0])(
            "iam_binding",
            "x",
            {"scope": "project", "resource": "projects/p", "role": "roles/editor", "member": "allUsers"},
        )
    ]
    assert [b.key for b in bad if b.spec["role"] in PRIMITIVE_ROLES or b.spec["member"] in PUBLIC_MEMBERS] == [
        "iam_binding:x"
    ]


def test_scheduler_jobs_use_oidc_with_their_own_account(resources):
    jobs = {r.name.rsplit("/", 1)[1]: r.spec for r in resources if r.kind == "scheduler_job"}
    assert sorted(jobs) == ["lh-test-generator", "lh-test-trigger-check", "lh-test-trigger-hourly"]
    assert jobs["lh-test-generator"]["schedule"] == "*/2 * * * *"
    trigger = jobs["lh-test-trigger-hourly"]
    assert json.loads(trigger["body"]) == {
        "full_refresh": False,
        "include_dependencies": True,
        "tags": ["hourly"],
    }
    assert trigger["retry_count"] == 0
    assert trigger["service_account_email"] == "lh-dev-scheduler@lakehouse-test-1.iam.gserviceaccount.com"
    assert (
        trigger["uri"]
        == trigger["audience"]
        == ("@{function:projects/lakehouse-test-1/locations/us-central1/functions/lh-test-trigger#url}")
    )


def test_resolve_fills_outputs_and_env_references():
    spec = {"uri": "@{function:f#url}", "vars": {"salt": "${env:SALT}", "n": "3"}, "list": ["@{a:b#c}"]}
    filled, unknown = resolve(spec, {"function:f": {"url": "https://f"}}, {"SALT": "x"})
    assert filled == {"uri": "https://f", "vars": {"salt": "x", "n": "3"}, "list": ["@{a:b#c}"]}
    assert unknown == ["a:b#c"]
    assert resolve({"s": "${env:NOPE}"}, {}, {})[1] == ["$NOPE"]


def test_bad_contract_names_are_refused(project_dir):
    (project_dir / "includes" / "contracts" / "evil.json").write_text('{"name": "x; drop table y"}')
    with pytest.raises(ConfigError) as caught:
        discover_sources(project_dir)
    assert caught.value.problems == [
        "evil.json: field 'name' 'x; drop table y' must equal the file name and a source name matches "
        "^[a-z][a-z0-9_]{0,62}$"
    ]


def test_derived_names_that_break_rules_are_reported(write_env, project_dir):
    long_name = "nightly-full-refresh-of-every-table-in-the-lake"
    workflows = [{"name": long_name, "cron": "0 3 * * *", "tags": ["daily"]}]
    env = load_env(write_env(prefix="a-very-long-prefix-for-names-x", schedules={"workflows": workflows}), project_dir)
    with pytest.raises(ConfigError) as caught:
        desired_state(env, ["orders"])
    assert caught.value.problems == [
        f"derived scheduler job 'a-very-long-prefix-for-names-x-trigger-{long_name}' is not valid (an id has "
        "1-63 characters: lower-case letters, digits, '-' and '_', starting with a letter); shorten 'prefix' "
        "or the name"
    ]


def test_biglake_iceberg_grants_are_exactly_these_on_the_connection_and_the_lake(resources, env):
    """Iceberg create/merge needs bigquery.connections.delegate on the connection (Connection Admin has
    it, Connection User lacks it) and the connection's account storage.buckets.get on the lake bucket."""
    connection = "projects/lakehouse-test-1/locations/us/connections/lh-test-lake"
    lake_grants = sorted(
        (b.spec["scope"], b.spec["resource"], b.spec["role"], b.spec["member"])
        for b in iam_bindings(resources)
        if b.spec["resource"] in (connection, "lh-test-lake")
    )
    connection_sa = f"serviceAccount:@{{connection:{connection}#service_account}}"
    assert lake_grants == [
        ("bucket", "lh-test-lake", "roles/storage.legacyBucketReader", connection_sa),
        ("bucket", "lh-test-lake", "roles/storage.objectUser", connection_sa),
        ("connection", connection, "roles/bigquery.connectionAdmin",
         f"serviceAccount:{env.service_account_email('dataform')}"),
    ]  # fmt: skip


def test_the_trigger_can_read_what_its_report_samples(resources, env):
    trigger = f"serviceAccount:{env.service_account_email('trigger')}"
    reads = sorted((b.spec["resource"], b.spec["role"]) for b in iam_bindings(resources) if b.spec["member"] == trigger
                   and b.spec["role"] in ("roles/bigquery.dataViewer", "roles/storage.objectViewer"))  # fmt: skip
    assert reads == [
        ("lakehouse-test-1.assertions", "roles/bigquery.dataViewer"),
        ("lakehouse-test-1.bronze", "roles/bigquery.dataViewer"),
        ("lakehouse-test-1.gold", "roles/bigquery.dataViewer"),
        ("lakehouse-test-1.silver", "roles/bigquery.dataViewer"),
        ("lakehouse-test-1.silver_restricted", "roles/bigquery.dataViewer"),
        ("lh-test-landing", "roles/storage.objectViewer"),
    ]


def test_the_key_dataset_is_read_by_the_dataform_identity_alone(resources, env):
    keys = f"{env.project}.keys"
    readers = [b.spec for b in iam_bindings(resources) if b.spec["resource"] == keys]
    assert readers == [{"scope": "dataset", "resource": keys, "role": "roles/bigquery.dataViewer",
                        "member": f"serviceAccount:{env.service_account_email('dataform')}"}]  # fmt: skip
    table = next(r for r in resources if r.key == f"table:{keys}.pii_salt")
    assert table.spec["schema"] == [["salt", "STRING", "REQUIRED"]] and table.spec["partition_field"] is None
    salt = next(r for r in resources if r.kind == "pii_salt")
    assert salt.spec == {"table": f"{keys}.pii_salt", "salt": "${env:LAKEHOUSE_PII_SALT}"}


def test_analysts_read_silver_gold_and_ops_and_never_the_raw_records(write_env, project_dir):
    env = load_env(write_env(analysts=["group:analysts@example.com", "user:ana@example.com"]), project_dir)
    resources = desired_state(env, discover_sources(project_dir))
    for member in env.analysts:
        grants = sorted(
            (b.spec["resource"], b.spec["role"]) for b in iam_bindings(resources) if b.spec["member"] == member
        )
        assert grants == [
            ("lakehouse-test-1.gold", "roles/bigquery.dataViewer"),
            ("lakehouse-test-1.ops", "roles/bigquery.dataViewer"),
            ("lakehouse-test-1.silver", "roles/bigquery.dataViewer"),
            ("projects/lakehouse-test-1", "roles/bigquery.jobUser"),
        ], member
    # raw records and the salt: the pipeline's identities only
    restricted = sorted(
        (b.spec["resource"], b.spec["member"].split("@")[0]) for b in iam_bindings(resources)
        if b.spec["resource"].split(".")[-1] in ("bronze", "silver_restricted", "keys")
    )  # fmt: skip
    assert restricted == [
        ("lakehouse-test-1.bronze", "serviceAccount:lh-dev-dataform"),
        ("lakehouse-test-1.bronze", "serviceAccount:lh-dev-pubsub-writer"),
        ("lakehouse-test-1.bronze", "serviceAccount:lh-dev-trigger"),
        ("lakehouse-test-1.keys", "serviceAccount:lh-dev-dataform"),
        ("lakehouse-test-1.silver_restricted", "serviceAccount:lh-dev-dataform"),
        ("lakehouse-test-1.silver_restricted", "serviceAccount:lh-dev-trigger"),
    ]
    dataset = next(r for r in resources if r.key == "dataset:lakehouse-test-1.silver_restricted")
    assert dataset.data is True and dataset.spec["description"].startswith("Restricted: raw records with PII")


def test_no_analysts_no_analyst_bindings(resources, env):
    assert env.analysts == ()
    members = {b.spec["member"].split(":")[0] for b in iam_bindings(resources)}
    assert members == {"serviceAccount"}
