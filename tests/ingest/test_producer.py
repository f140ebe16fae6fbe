"""Tests for the scheduled producer (the generator Cloud Function's logic)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from ingest import producer
from ingest.generator import batches, generate, plan, split_share
from ingest.landing import route

NOW = datetime(2026, 11, 22, 10, 4, tzinfo=UTC)


def test_parse_request_defaults_and_refusals():
    params, problem = producer.parse_request({"events": 10}, NOW)
    assert problem is None
    assert params == {"events": 10, "seed": int(NOW.timestamp() // 60), "pubsub_share": 0.2, "batch_size": 10}
    assert producer.parse_request(None, NOW)[0]["events"] == 10
    assert producer.parse_request({"events": 0}, NOW)[1] == "events must be between 1 and 100000"
    assert producer.parse_request({"events": "10"}, NOW)[1] == "events must be an integer"
    assert producer.parse_request({"pubsub_share": 2}, NOW)[1] == "pubsub_share must be a number between 0 and 1"


def test_a_tick_posts_batches_and_publishes_the_share(contracts, config_for_fuzz):
    posted, published, keys = [], [], []

    def post(source, lines, batch_time):
        posted.append((source, len(lines), batch_time))
        routed = route(b"\n".join(lines), source, config_for_fuzz)
        accepted = sum(len(v) for v in routed.accepted.values())
        return 200, {"accepted": accepted, "rejected": len(routed.rejects)}

    def publish(source, lines, batch_time, record_keys):
        published.append((source, len(lines)))
        keys.extend(record_keys)
        return len(lines)

    result = producer.run_tick(
        contracts,
        events=340,
        seed=1,
        as_of=NOW,
        span=timedelta(minutes=2),
        batch_size=10,
        pubsub_share=0.2,
        post_batch=post,
        publish=publish,
    )
    assert result.events == 340
    assert result.accepted + result.rejected + result.published == result.lines
    assert result.batches_posted == len(posted) and {p[2] for p in posted} == {NOW}
    orders_lines = len(generate(contracts, 340, 1, as_of=NOW, span=timedelta(minutes=2))["orders"].lines)
    to_publish = round(0.2 * orders_lines)
    assert sum(n for s, n, _ in posted if s == "orders") == orders_lines - to_publish
    assert sum(1 for p in posted if p[0] == "orders") == math.ceil((orders_lines - to_publish) / 10)
    assert sum(n for s, n in published if s == "orders") == to_publish
    # Every published line carries its own record key: the same tick again names them the same.
    assert len(set(keys)) == len(keys) == result.published
    orders_plan = plan(contracts, 340, 1, as_of=NOW + timedelta(hours=1), span=timedelta(minutes=2))["orders"]
    assert orders_plan.record_key(orders_lines - 1) in keys


def test_split_share_publishes_a_share_of_the_lines():
    lines = [bytes([i]) for i in range(34)]
    posted, published = split_share(lines, 10, 0.2)
    assert [len(b) for b in posted] == [10, 10, 7] and published == lines[27:]
    assert split_share(lines, 10, 0) == (list(batches(lines, 10)), [])
    assert split_share(lines, 10, 1) == ([], lines)


def test_a_tick_fails_loudly_when_landing_is_down(contracts):
    with pytest.raises(RuntimeError, match="answered 503"):
        producer.run_tick(
            contracts,
            events=20,
            seed=1,
            as_of=NOW,
            span=timedelta(minutes=2),
            batch_size=10,
            pubsub_share=0,
            post_batch=lambda s, lines, t: (503, {"error": "storage unavailable"}),
            publish=lambda s, lines, t, keys: 0,
        )


def test_from_env_names_the_missing_variables():
    with pytest.raises(ValueError, match="LAKEHOUSE_LANDING_URL, LAKEHOUSE_TOPIC_PREFIX"):
        producer.from_env({})
