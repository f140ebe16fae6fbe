"""The Pub/Sub part of apply/destroy with the real Pub/Sub clients against the Google Pub/Sub emulator.

The emulator keeps BigQuery-subscription, dead-letter and retry settings (it does not deliver to
BigQuery) and has no IAM, so IAM bindings are left to the fakes (test_deploy_apply.py).
"""

from __future__ import annotations

import pytest

from deploy.apply import apply, destroy
from deploy.clients import Clients
from deploy.config import load_env
from deploy.handlers import handlers
from deploy.plan import make_plan
from deploy.resources import desired_state, discover_sources

pytestmark = pytest.mark.slow  # the emulator (a JVM) takes a few seconds to start


@pytest.fixture
def clients(pubsub_emulator, monkeypatch) -> Clients:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host_port)
    from google.cloud import pubsub_v1

    return Clients(topics=pubsub_v1.PublisherClient(), subscriptions=pubsub_v1.SubscriberClient())


def pubsub_resources(env, project_dir):
    return [r for r in desired_state(env, discover_sources(project_dir)) if r.kind in ("topic", "subscription")]


def test_apply_is_idempotent_and_destroy_removes_only_ours(clients, write_env, project_dir):
    env = load_env(write_env(project="emulator-apply-1"), project_dir)
    resources = pubsub_resources(env, project_dir)
    assert [r.name.rsplit("/", 1)[1] for r in resources] == [
        "lh-test-orders", "lh-test-page_views", "lh-test-dead-letter",
        "lh-test-orders-bq", "lh-test-page_views-bq", "lh-test-dead-letter-hold",
    ]  # fmt: skip
    first = apply(env, resources, clients, handlers(project_dir), project_dir)
    assert first.error is None and first.count("created") == 6

    stored = clients.subscriptions.get_subscription(
        request={"subscription": "projects/emulator-apply-1/subscriptions/lh-test-orders-bq"}
    )
    assert stored.bigquery_config.table == "emulator-apply-1.bronze.orders_raw"
    assert stored.bigquery_config.write_metadata is True
    assert stored.dead_letter_policy.dead_letter_topic == "projects/emulator-apply-1/topics/lh-test-dead-letter"
    assert stored.dead_letter_policy.max_delivery_attempts == 5
    assert stored.labels["managed-by"] == "lakehouse-kit"

    plan = make_plan(env, [], resources, project_dir, clients, handlers(project_dir))
    assert [c.action for c in plan.changes] == ["unchanged"] * 6
    second = apply(env, resources, clients, handlers(project_dir), project_dir)
    assert second.error is None and second.count("unchanged") == 6

    foreign = "projects/emulator-apply-1/topics/someone-elses-topic"
    clients.topics.create_topic(request={"name": foreign})
    gone = destroy(env, resources, clients, handlers(project_dir), project_dir)
    assert gone.error is None and gone.count("deleted") == 6
    topics = [t.name for t in clients.topics.list_topics(request={"project": "projects/emulator-apply-1"})]
    assert topics == [foreign]


def test_a_changed_retry_policy_is_updated_in_place(clients, write_env, project_dir):
    env = load_env(write_env(project="emulator-update-1"), project_dir)
    resources = pubsub_resources(env, project_dir)
    assert apply(env, resources, clients, handlers(project_dir), project_dir).error is None
    changed = load_env(write_env(project="emulator-update-1", pubsub={"min_backoff_s": 30}), project_dir)
    changed_resources = pubsub_resources(changed, project_dir)
    plan = make_plan(changed, [], changed_resources, project_dir, clients, handlers(project_dir))
    assert [(c.resource.name.rsplit("/", 1)[1], c.changed) for c in plan.changes if c.action == "update"] == [
        ("lh-test-orders-bq", ["min_backoff_s"]),
        ("lh-test-page_views-bq", ["min_backoff_s"]),
    ]
    report = apply(changed, changed_resources, clients, handlers(project_dir), project_dir)
    assert report.error is None and report.count("updated") == 2
    stored = clients.subscriptions.get_subscription(
        request={"subscription": "projects/emulator-update-1/subscriptions/lh-test-orders-bq"}
    )
    assert stored.retry_policy.minimum_backoff.total_seconds() == 30
    destroy(changed, changed_resources, clients, handlers(project_dir), project_dir)


def test_dead_letter_replay_moves_messages_back_to_their_topic(clients, write_env, project_dir):
    from deploy.replay import SOURCE_ATTRIBUTE, replay

    env = load_env(write_env(project="emulator-replay-1"), project_dir)
    resources = pubsub_resources(env, project_dir)
    assert apply(env, resources, clients, handlers(project_dir), project_dir).error is None
    watch = "projects/emulator-replay-1/subscriptions/watch-orders"
    clients.subscriptions.create_subscription(
        request={"name": watch, "topic": "projects/emulator-replay-1/topics/lh-test-orders"}
    )
    dead = "projects/emulator-replay-1/topics/lh-test-dead-letter"
    origin = "projects/emulator-replay-1/subscriptions/lh-test-orders-bq"
    for index in range(2):
        attributes = {SOURCE_ATTRIBUTE: origin, "source": "orders", "CloudPubSubDeadLetterSourceDeliveryCount": "5"}
        clients.topics.publish(dead, f'{{"order_id": "O-{index}"}}'.encode(), **attributes).result()
    clients.topics.publish(dead, b"stray", **{SOURCE_ATTRIBUTE: "projects/x/subscriptions/other"}).result()

    dry = replay(env, ["orders", "page_views"], clients.subscriptions, clients.topics, dry_run=True)
    assert sum(dry.replayed.values()) == 0 and sum(dry.left.values()) == 3
    result = replay(env, ["orders", "page_views"], clients.subscriptions, clients.topics)
    assert dict(result.replayed) == {"projects/emulator-replay-1/topics/lh-test-orders": 2}
    assert dict(result.left) == {"unknown source subscription": 1}

    pulled = clients.subscriptions.pull(request={"subscription": watch, "max_messages": 10}).received_messages
    assert sorted(m.message.data for m in pulled) == [b'{"order_id": "O-0"}', b'{"order_id": "O-1"}']
    assert dict(pulled[0].message.attributes) == {"source": "orders", "lakehouse-replayed": "true"}
    destroy(env, resources, clients, handlers(project_dir), project_dir)
    clients.subscriptions.delete_subscription(request={"subscription": watch})


def test_a_removed_source_loses_its_topic_and_subscription(clients, write_env, project_dir):
    env = load_env(write_env(project="emulator-orphan-1"), project_dir)
    resources = pubsub_resources(env, project_dir)
    assert apply(env, resources, clients, handlers(project_dir), project_dir).error is None
    (project_dir / "includes" / "contracts" / "page_views.json").unlink()
    fewer = pubsub_resources(env, project_dir)
    plan = make_plan(env, ["orders"], fewer, project_dir, clients, handlers(project_dir))
    assert [o.name for o in plan.orphans] == [
        "projects/emulator-orphan-1/subscriptions/lh-test-page_views-bq",
        "projects/emulator-orphan-1/topics/lh-test-page_views",
    ]
    report = apply(env, fewer, clients, handlers(project_dir), project_dir)
    assert report.error is None and report.count("deleted") == 2
    topics = sorted(t.name for t in clients.topics.list_topics(request={"project": "projects/emulator-orphan-1"}))
    assert topics == [
        "projects/emulator-orphan-1/topics/lh-test-dead-letter",
        "projects/emulator-orphan-1/topics/lh-test-orders",
    ]
    destroy(env, fewer, clients, handlers(project_dir), project_dir)
