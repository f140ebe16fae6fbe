"""plan / apply / destroy against fake clients that store the libraries' own message types."""

from __future__ import annotations

import collections
import json

import pytest
from deploy_fakes import CONNECTION_SA, FakeCloud
from google.api_core import exceptions as gexc
from google.cloud import bigquery, dataform_v1, pubsub_v1, scheduler_v1, storage

from deploy.apply import apply, destroy, explain
from deploy.config import load_env
from deploy.handlers import handlers
from deploy.plan import make_plan, render, to_json
from deploy.resources import desired_state, discover_sources


@pytest.fixture
def setup(write_env, project_dir, monkeypatch):
    monkeypatch.setenv("TEST_PII_SALT", "pepper")

    def make(**overrides):
        env = load_env(write_env(**overrides), project_dir)
        return env, desired_state(env, discover_sources(project_dir))

    return make


REPO_NAME = "projects/lakehouse-test-1/locations/us-central1/repositories/lakehouse"


@pytest.fixture
def cloud():
    return FakeCloud()


def run_apply(env, resources, cloud, project_dir):
    return apply(env, resources, cloud.clients(), handlers(project_dir), project_dir, sleep=lambda s: None)


def plan_actions(env, resources, cloud, project_dir):
    plan = make_plan(env, [], resources, project_dir, cloud.clients(), handlers(project_dir))
    return plan, collections.Counter(c.action for c in plan.changes)


def test_plan_without_clients_lists_everything_as_create(setup, project_dir):
    env, resources = setup()
    plan = make_plan(env, ["orders", "page_views"], resources, project_dir, why_not_read="no credentials")
    assert plan.state_read is False
    assert plan.count("create") == len(resources) == 81
    text = render(plan)
    assert "Current state NOT read: no credentials. Showing the full desired state" in text
    assert (
        text.splitlines()[-1] == f"Plan: {len(resources)} to create, 0 to update, 0 unchanged, 0 blocked "
        f"({len(resources)} resources). Nothing was changed."
    )
    assert '"api_token": "***"' in text and "pepper" not in text


def test_apply_creates_everything_then_a_second_apply_changes_nothing(setup, cloud, project_dir):
    env, resources = setup()
    report = run_apply(env, resources, cloud, project_dir)
    assert report.error is None
    assert report.count("created") == len(resources)
    plan, actions = plan_actions(env, resources, cloud, project_dir)
    assert actions == {"unchanged": len(resources)}
    cloud.calls.clear()
    again = run_apply(env, resources, cloud, project_dir)
    assert again.error is None and again.count("unchanged") == len(resources)
    assert cloud.writes() == []


def test_apply_wires_outputs_and_iam(setup, cloud, project_dir):
    env, resources = setup()
    assert run_apply(env, resources, cloud, project_dir).error is None
    lake = cloud.policies["lh-test-lake"]
    assert [(b.role, list(b.members)) for b in lake.bindings] == [
        ("roles/storage.objectUser", [f"serviceAccount:{CONNECTION_SA}"]),
        ("roles/storage.legacyBucketReader", [f"serviceAccount:{CONNECTION_SA}"]),
    ]
    bronze = bigquery.Dataset.from_api_repr(cloud.datasets["lakehouse-test-1.bronze"])
    assert sorted((e.role, e.entity_id) for e in bronze.access_entries) == [
        (
            "roles/bigquery.dataEditor",
            "serviceAccount:lh-dev-dataform@lakehouse-test-1.iam.gserviceaccount.com",
        ),
        (
            "roles/bigquery.dataEditor",
            "serviceAccount:lh-dev-pubsub-writer@lakehouse-test-1.iam.gserviceaccount.com",
        ),
        (
            "roles/bigquery.dataViewer",
            "serviceAccount:lh-dev-trigger@lakehouse-test-1.iam.gserviceaccount.com",
        ),
    ]
    job = cloud.store["projects/lakehouse-test-1/locations/us-central1/jobs/lh-test-trigger-hourly"]
    assert job.http_target.uri == "https://lh-test-trigger-abc123-uc.a.run.app"
    generator = cloud.store["projects/lakehouse-test-1/locations/us-central1/functions/lh-test-generator"]
    assert generator.service_config.environment_variables["LAKEHOUSE_LANDING_URL"] == (
        "https://lh-test-landing-abc123-uc.a.run.app"
    )
    release = cloud.store["projects/lakehouse-test-1/locations/us-central1/repositories/lakehouse/releaseConfigs/dev"]
    assert release.code_compilation_config.vars["api_token"] == "pepper"
    archive = [name for bucket, name in cloud.objects if bucket == "lh-test-functions"]
    assert len(archive) == 1 and archive[0].startswith("lakehouse-")
    agent = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    dead = cloud.policies["projects/lakehouse-test-1/topics/lh-test-dead-letter"]
    assert [(b.role, list(b.members)) for b in dead.bindings] == [("roles/pubsub.publisher", [agent])]


def test_a_changed_config_updates_only_what_changed(setup, cloud, project_dir):
    env, resources = setup()
    run_apply(env, resources, cloud, project_dir)
    dataform = {**load_env(project_dir.parent / "env.yaml").dataform.__dict__}
    env2, resources2 = setup(
        dataform={
            "git_remote": dataform["git_remote"],
            "token_secret_version": dataform["token_secret_version"],
            "git_commitish": "v1.2.0",
            "vars": {"api_token": "${env:TEST_PII_SALT}", "lookback_days": "7"},
        },
        labels={"team": "data"},
    )
    plan, actions = plan_actions(env2, resources2, cloud, project_dir)
    release = next(c for c in plan.changes if c.resource.kind == "release_config")
    assert release.action == "update" and release.changed == ["git_commitish", "vars"]
    labelled = sum(1 for r in resources2 if "labels" in r.spec)
    assert actions["update"] == labelled + 1
    cloud.calls.clear()
    report = run_apply(env2, resources2, cloud, project_dir)
    assert report.error is None
    update = next(req for name, req in cloud.calls if name == "update_release_config")
    assert list(update.update_mask.paths) == ["code_compilation_config", "git_commitish"]
    stored = cloud.store[release.resource.name]
    assert stored.git_commitish == "v1.2.0" and stored.code_compilation_config.vars["lookback_days"] == "7"
    assert plan_actions(env2, resources2, cloud, project_dir)[1] == {"unchanged": len(resources2)}


def test_partial_apply_reports_the_resource_and_resumes(setup, cloud, project_dir):
    env, resources = setup()
    cloud.fail["create_subscription"] = gexc.PermissionDenied("caller lacks pubsub.subscriptions.create")
    report = run_apply(env, resources, cloud, project_dir)
    error = report.error
    assert error is not None and error.resource.kind == "subscription"
    assert str(error).startswith(
        "create subscription projects/lakehouse-test-1/subscriptions/lh-test-orders-bq failed: "
        "PermissionDenied: caller lacks pubsub.subscriptions.create"
    )
    assert "grant the deploying identity roles/pubsub.admin on project lakehouse-test-1" in error.hint
    done = report.count("created")
    assert 0 < done < len(resources)
    resumed = run_apply(env, resources, cloud, project_dir)
    assert resumed.error is None
    assert resumed.count("unchanged") == done
    assert resumed.count("created") == len(resources) - done


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            gexc.Forbidden("Cloud Pub/Sub API has not been used in project 1 before or it is disabled"),
            "enable the API: gcloud services enable pubsub.googleapis.com --project lakehouse-test-1",
        ),
        (gexc.ResourceExhausted("quota"), "a quota or rate limit was hit"),
        (gexc.AlreadyExists("taken"), "the name is taken"),
        (gexc.ServiceUnavailable("try later"), "a transient Google Cloud error"),
    ],
)
def test_api_errors_say_what_to_do(setup, error, expected):
    env, resources = setup()
    topic = next(r for r in resources if r.kind == "topic")
    explained = explain(error, topic, "create", env)
    assert explained.hint.startswith(expected)
    assert explained.hint.endswith("then re-run `lakehouse deploy apply` (finished steps show as unchanged)")


def test_a_taken_bucket_name_points_at_the_config_field(setup, cloud, project_dir):
    env, resources = setup()
    cloud.fail["create_bucket"] = gexc.Forbidden("does not have storage.buckets.create access")
    report = run_apply(env, resources, cloud, project_dir)
    assert report.error.resource.name == "lh-test-landing"
    assert report.error.hint.startswith(
        f"the bucket name may belong to another project: choose another name in {env.path}"
    )


def test_apply_refuses_an_unset_secret(setup, cloud, project_dir, monkeypatch):
    env, resources = setup()
    monkeypatch.delenv("TEST_PII_SALT")
    text = render(make_plan(env, [], resources, project_dir, why_not_read="offline"))
    assert "      ? $TEST_PII_SALT not set here: apply needs it (compared without it)" in text
    report = run_apply(env, resources, cloud, project_dir)
    assert report.error.resource.kind == "release_config"
    assert report.error.message == "not known yet: $TEST_PII_SALT"
    assert report.error.hint == "export the environment variables named above"


def test_resources_not_created_by_the_kit_are_never_changed(setup, cloud, project_dir):
    env, resources = setup()
    foreign = storage.Bucket(client=None, name="lh-test-lake")
    cloud.buckets["lh-test-lake"] = {**foreign._properties, "location": "US", "labels": {"owner": "someone"}}
    plan, _ = plan_actions(env, resources, cloud, project_dir)
    lake = next(c for c in plan.changes if c.resource.name == "lh-test-lake")
    assert lake.action == "blocked"
    assert lake.reason == "exists but was not created by lakehouse-kit; apply will not touch it"
    report = run_apply(env, resources, cloud, project_dir)
    assert report.error.resource.name == "lh-test-lake"
    assert report.error.message.startswith("it exists but was not created by lakehouse-kit (differs in")


def test_immutable_changes_are_blocked(setup, cloud, project_dir):
    env, resources = setup()
    run_apply(env, resources, cloud, project_dir)
    env2, resources2 = setup(bigquery_location="EU")
    plan, _ = plan_actions(env2, resources2, cloud, project_dir)
    landing = next(c for c in plan.changes if c.resource.name == "lh-test-landing")
    assert (landing.action, landing.reason) == ("blocked", "location cannot change in place")
    assert "      location: US -> EU" in render(plan)


def test_destroy_keeps_data_and_foreign_resources(setup, cloud, project_dir):
    env, resources = setup()
    run_apply(env, resources, cloud, project_dir)
    foreign_topic = "projects/lakehouse-test-1/topics/someone-elses"
    cloud.store[foreign_topic] = pubsub_v1.types.Topic(name=foreign_topic)
    report = destroy(env, resources, cloud.clients(), handlers(project_dir), project_dir)
    assert report.error is None
    kept = sorted(o.resource.name for o in report.outcomes if o.result == "kept")
    assert kept == sorted(r.name for r in resources if r.data)
    assert sorted(cloud.buckets) == ["lh-test-dead-letter", "lh-test-lake", "lh-test-landing"]
    assert len(cloud.datasets) == 7 and len(cloud.tables) == 5
    assert sorted(cloud.store) == [foreign_topic]
    assert all(not p.bindings for p in cloud.policies.values())


def test_destroy_with_data_leaves_only_foreign_resources(setup, cloud, project_dir):
    env, resources = setup()
    run_apply(env, resources, cloud, project_dir)
    cloud.buckets["not-ours"] = {"name": "not-ours", "labels": {}}
    report = destroy(env, resources, cloud.clients(), handlers(project_dir), project_dir, include_data=True)
    assert report.error is None
    assert report.count("deleted") == len(resources)
    assert list(cloud.buckets) == ["not-ours"] and cloud.datasets == {} and cloud.store == {}
    again = destroy(env, resources, cloud.clients(), handlers(project_dir), project_dir, include_data=True)
    assert again.count("absent") == len(resources)


def test_destroy_leaves_a_same_named_foreign_resource(setup, cloud, project_dir):
    env, resources = setup()
    cloud.buckets["lh-test-landing"] = {"name": "lh-test-landing", "labels": {"owner": "finance"}}
    report = destroy(env, resources, cloud.clients(), handlers(project_dir), project_dir, include_data=True)
    landing = next(o for o in report.outcomes if o.resource.name == "lh-test-landing")
    assert (landing.result, landing.detail) == ("left-alone", "not created by lakehouse-kit")
    assert "lh-test-landing" in cloud.buckets


def test_a_missing_function_entry_point_blocks_before_any_upload(setup, cloud, project_dir):
    env, resources = setup(functions={"generator": {"entry_point": "ingest.main:generate_events"}})
    plan = make_plan(env, [], resources, project_dir, why_not_read="offline")
    archive = next(c for c in plan.changes if c.resource.kind == "source_archive")
    assert archive.action == "blocked"
    assert archive.reason == (
        f"functions.generator.entry_point ingest.main:generate_events: no function generate_events in "
        f"{project_dir / 'ingest' / 'main.py'}"
    )
    report = run_apply(env, resources, cloud, project_dir)
    assert report.error.resource.kind == "source_archive" and report.error.action == "build"
    assert cloud.objects == {} and cloud.store.keys().isdisjoint({r.name for r in resources if r.kind == "function"})


def test_a_failed_project_lookup_is_explained(setup, cloud, project_dir, write_env):
    env, resources = setup(project_number=None)
    cloud.fail["get_project"] = gexc.PermissionDenied("resourcemanager.projects.get denied")
    report = run_apply(env, resources, cloud, project_dir)
    assert report.outcomes == []
    assert str(report.error).startswith("read project projects/lakehouse-test-1 failed: PermissionDenied")
    assert "grant the deploying identity roles/browser on project lakehouse-test-1" in report.error.hint


def test_creates_naming_a_new_service_account_are_retried_while_it_propagates(setup, cloud, project_dir):
    env, resources = setup()
    cloud.fail["create_subscription"] = gexc.InvalidArgument(
        "Service account lh-dev-pubsub-writer@lakehouse-test-1.iam.gserviceaccount.com does not exist."
    )
    sleeps = []
    report = apply(env, resources, cloud.clients(), handlers(project_dir), project_dir, sleep=sleeps.append)
    assert report.error is None
    assert sleeps == [2]
    assert [name for name, _ in cloud.calls].count("create_subscription") == 4  # 3 subscriptions + 1 retry


def test_other_errors_are_not_retried(setup, cloud, project_dir):
    env, resources = setup()
    cloud.fail["create_subscription"] = gexc.PermissionDenied("User not authorized to perform this action.")
    sleeps = []
    report = apply(env, resources, cloud.clients(), handlers(project_dir), project_dir, sleep=sleeps.append)
    assert report.error.resource.kind == "subscription" and sleeps == []


def test_an_operation_that_does_not_finish_is_reported(setup, cloud, project_dir):
    env, resources = setup()
    cloud.fail["create_function"] = TimeoutError()
    report = run_apply(env, resources, cloud, project_dir)
    assert report.error.resource.kind == "function"
    assert report.error.message == "no answer within 900 s"
    assert report.error.hint == "it may still finish: wait a few minutes, then re-run the same command"


def test_a_bucket_update_removes_stray_labels(setup, cloud, project_dir):
    env, resources = setup()
    run_apply(env, resources, cloud, project_dir)
    cloud.buckets["lh-test-landing"]["labels"]["added-by-hand"] = "x"
    plan, actions = plan_actions(env, resources, cloud, project_dir)
    assert actions["update"] == 1
    assert run_apply(env, resources, cloud, project_dir).count("updated") == 1
    assert "added-by-hand" not in cloud.buckets["lh-test-landing"]["labels"]
    assert plan_actions(env, resources, cloud, project_dir)[1] == {"unchanged": len(resources)}


def test_a_removed_source_or_schedule_is_cleaned_up_but_its_data_kept(setup, cloud, project_dir):
    env, resources = setup(
        schedules={"workflows": [{"name": "hourly", "cron": "5 * * * *", "tags": ["hourly"]},
                                 {"name": "daily", "cron": "0 3 * * *", "tags": ["daily"]}]}
    )  # fmt: skip
    run_apply(env, resources, cloud, project_dir)
    other_env = "projects/lakehouse-test-1/topics/lh-test-other-env"
    cloud.store[other_env] = pubsub_v1.types.Topic(
        name=other_env, labels={"managed-by": "lakehouse-kit", "lakehouse-env": "prod"}
    )
    # Made by people, without the kit's marker, in the kit's namespace: reported, never deleted.
    hand_made = {
        f"{REPO_NAME}/workflowConfigs/adhoc": dataform_v1.WorkflowConfig(name=f"{REPO_NAME}/workflowConfigs/adhoc"),
        "projects/lakehouse-test-1/topics/lh-test-manual": pubsub_v1.types.Topic(
            name="projects/lakehouse-test-1/topics/lh-test-manual"),
        "projects/lakehouse-test-1/locations/us-central1/jobs/lh-test-by-hand": scheduler_v1.Job(
            name="projects/lakehouse-test-1/locations/us-central1/jobs/lh-test-by-hand", description="mine"),
    }  # fmt: skip
    cloud.store.update(hand_made)
    (project_dir / "includes" / "contracts" / "page_views.json").unlink()
    env2, resources2 = setup()  # one workflow left, one source left
    plan = make_plan(env2, ["orders"], resources2, project_dir, cloud.clients(), handlers(project_dir))
    assert [(o.kind, o.name.rsplit("/", 1)[-1], o.data) for o in plan.orphans] == [
        ("scheduler_job", "lh-test-trigger-daily", False),
        ("subscription", "lh-test-page_views-bq", False),
        ("topic", "lh-test-page_views", False),
        ("table", "lakehouse-test-1.bronze.page_views_raw", True),
    ]
    assert sorted(o.name for o in plan.unmanaged) == sorted([other_env, *hand_made])  # prod's is not ours either
    text = render(plan)
    assert "- delete    topic                projects/lakehouse-test-1/topics/lh-test-page_views" in text
    assert "- orphan    table                lakehouse-test-1.bronze.page_views_raw [holds data]" in text
    assert f"  not managed workflow_config    {REPO_NAME}/workflowConfigs/adhoc" in text
    # The contract left the functions' source archive too: a new archive, four functions redeployed.
    assert text.splitlines()[-1] == (
        "Plan: 1 to create, 4 to update, 71 unchanged, 0 blocked, 3 to delete, 4 not managed (80 resources). "
        "Nothing was changed."
    )

    report = run_apply(env2, resources2, cloud, project_dir)
    assert report.error is None
    assert [(o.result, o.resource.kind) for o in report.outcomes if o.result in ("deleted", "kept")] == [
        ("deleted", "scheduler_job"), ("deleted", "subscription"), ("deleted", "topic"), ("kept", "table"),
    ]  # fmt: skip
    assert "projects/lakehouse-test-1/topics/lh-test-page_views" not in cloud.store
    assert other_env in cloud.store and "lakehouse-test-1.bronze.page_views_raw" in cloud.tables
    assert set(hand_made) <= set(cloud.store)

    destroy(env2, resources2, cloud.clients(), handlers(project_dir), project_dir, include_data=True)
    assert cloud.tables == {} and sorted(cloud.store) == sorted([other_env, *hand_made])


def test_a_saved_plan_made_offline_or_for_another_config_is_refused(setup, cloud, project_dir):
    from deploy.plan import moved, to_json

    env, resources = setup()
    offline = to_json(make_plan(env, [], resources, project_dir, why_not_read="offline"))
    live = make_plan(env, [], resources, project_dir, cloud.clients(), handlers(project_dir))
    assert moved(offline, live) == [
        "the plan was made without reading the current state; make it again with credentials"
    ]
    assert moved(to_json(live), live) == []
    env2, resources2 = setup(dataform={**json_safe(env.dataform), "git_commitish": "v2"})
    live2 = make_plan(env2, [], resources2, project_dir, cloud.clients(), handlers(project_dir))
    release = "projects/lakehouse-test-1/locations/us-central1/repositories/lakehouse/releaseConfigs/dev"
    assert moved(to_json(live), live2) == [f"release_config {release}: the config changed since the plan"]
    assert moved({"format": 0}, live) == [
        "not a plan of this version (expected format 1; make it with plan --format json)"
    ]


def json_safe(dataform) -> dict:
    return {"git_remote": dataform.git_remote, "token_secret_version": dataform.token_secret_version,
            "vars": {"api_token": "${env:TEST_PII_SALT}", "lookback_days": "3"}}  # fmt: skip


def test_the_salt_is_written_as_a_parameter_and_in_no_plan_or_sql(setup, cloud, project_dir, monkeypatch):
    from deploy_fakes import TEST_SALT

    env, resources = setup()
    assert run_apply(env, resources, cloud, project_dir).error is None
    table = f"{env.project}.keys.pii_salt"
    assert cloud.rows[table] == [TEST_SALT]
    ((sql, config),) = [request for name, request in cloud.calls if name == "query"]
    assert sql == (
        f"begin transaction;\ndelete from `{table}` where true;\n"
        f"insert into `{table}` (salt) values (@salt);\ncommit transaction;"
    )
    assert [(p.name, p.value) for p in config.query_parameters] == [("salt", TEST_SALT)]
    # The live plan reads the salt back to compare it: unchanged, and shown nowhere.
    plan, counts = plan_actions(env, resources, cloud, project_dir)
    assert next(c for c in plan.changes if c.resource.kind == "pii_salt").action == "unchanged"
    text = render(plan) + json.dumps(to_json(plan)) + "".join(str(r) for name, r in cloud.calls if name != "query")
    assert TEST_SALT not in text
    monkeypatch.setenv("LAKEHOUSE_PII_SALT", "f" * 48)
    plan, counts = plan_actions(env, resources, cloud, project_dir)
    rendered = render(plan) + json.dumps(to_json(plan))
    assert counts["update"] == 1 and "f" * 48 not in rendered and TEST_SALT not in rendered
    assert "      salt: sha256:" in rendered


@pytest.mark.parametrize("salt", ["local-dev-salt-change-me", "demo-0123456789abcdef0123456789abcdef"])
def test_a_public_or_demo_salt_blocks_the_plan_and_apply(setup, cloud, project_dir, monkeypatch, salt):
    monkeypatch.setenv("LAKEHOUSE_PII_SALT", salt)
    env, resources = setup()
    plan = make_plan(env, [], resources, project_dir)
    (blocked,) = [c for c in plan.changes if c.action == "blocked"]
    assert blocked.resource.kind == "pii_salt"
    assert blocked.reason.startswith("${env:LAKEHOUSE_PII_SALT} is ")
    assert blocked.reason.endswith(": a dictionary reverses its hashes")
    assert salt not in render(plan)
    report = run_apply(env, resources, cloud, project_dir)
    assert str(report.error).startswith(
        "check pii_salt lakehouse-test-1.keys.pii_salt failed: ${env:LAKEHOUSE_PII_SALT} is"
    )
    assert cloud.writes() == []


def test_ops_views_are_authorized_on_the_restricted_dataset_and_nothing_else_changes(setup, cloud, project_dir):
    env, resources = setup()
    assert run_apply(env, resources, cloud, project_dir).error is None
    restricted = bigquery.Dataset.from_api_repr(cloud.datasets["lakehouse-test-1.silver_restricted"])
    assert sorted((str(e.role), e.entity_type, str(e.entity_id)) for e in restricted.access_entries) == sorted([
        ("roles/bigquery.dataEditor", "iamMember",
         "serviceAccount:lh-dev-dataform@lakehouse-test-1.iam.gserviceaccount.com"),
        ("roles/bigquery.dataViewer", "iamMember",
         "serviceAccount:lh-dev-trigger@lakehouse-test-1.iam.gserviceaccount.com"),
        ("None", "dataset",
         str({"dataset": {"projectId": "lakehouse-test-1", "datasetId": "ops"}, "targetTypes": ["VIEWS"]})),
    ])  # fmt: skip
    again = run_apply(env, resources, cloud, project_dir)
    assert again.error is None and again.count("unchanged") == len(resources)
    # removing the entry leaves the members' grants as they are
    handler = handlers(project_dir)["authorized_dataset"]
    entry = next(r for r in resources if r.kind == "authorized_dataset")
    handler.delete(cloud.clients(), entry, dict(entry.spec))
    kept = bigquery.Dataset.from_api_repr(cloud.datasets["lakehouse-test-1.silver_restricted"]).access_entries
    assert sorted(e.entity_type for e in kept) == ["iamMember", "iamMember"]
    assert handler.read(cloud.clients(), entry, dict(entry.spec)) is None
