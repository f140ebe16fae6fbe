"""Tests for the landing function: structural validation, routing, idempotent writes, dead letters."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime

import orjson
import pytest
from cloudevents.http import CloudEvent

from ingest import landing
from ingest.generator import generate
from ingest.landing import LandingConfig, Routed, check_line, handle_http, land, route
from ingest.storage import GcsStore, StorageUnavailable

from .conftest import TOKEN, files_under

NOW = datetime(2026, 11, 22, 13, 45, 10, tzinfo=UTC)
PARTITION = "ingest_date=2026-11-22/hour=13"


def _event(source="orders", **fields) -> bytes:
    return orjson.dumps({"source": source, "event_id": "e1", **fields})


def _post(config, store, body: bytes, *, headers=None, args=None, method="POST"):
    headers = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
    stream = io.BytesIO(body)
    return handle_http(
        method,
        headers,
        args or {},
        lambda limit: stream.read(limit) if limit else stream.read(),
        len(body),
        config,
        store,
        NOW,
    )


@pytest.mark.parametrize(
    ("line", "reason", "source"),
    [
        (b"x" * (64 * 1024 + 1), "oversized", "orders"),
        (b'{"source":"orders","note":"caf\xe9"}', "not_utf8", "orders"),
        (b'{"source":"orders","order_id":"ORD-1"', "not_json", "orders"),
        (b"orders;e1;<html>502</html>", "not_json", "orders"),
        (b"[1,2,3]", "not_object", "orders"),
        (b'"just a string"', "not_object", "orders"),
        (b'{"source":"refunds"}', "unknown_source", "_unknown"),
        (b'{"no_source":1}', "unknown_source", "_unknown"),
        (b'{"source":"page_views"}', "source_mismatch", "orders"),
    ],
)
def test_structural_faults_are_rejected_with_a_reason(config, line, reason, source):
    assert check_line(line, "orders", config)[:2] == (source, reason)
    routed = route(line, "orders", config)
    assert routed.accepted == {}
    assert [(r.source, r.reason, r.payload) for r in routed.rejects] == [(source, reason, line)]


def test_semantic_faults_are_not_rejected(config):
    lines = [
        _event(customer_id=None),
        _event(product_id="sku_0042"),
        _event(quantity="three"),
        _event(quantity=-2),
        _event(price=None),
        _event(price=0),
        _event(customerId="CUST-00001"),
        _event(coupon_code="SAVE10"),
        _event(event_ts=1763769600),
        _event(),  # no event timestamp at all
    ]
    routed = route(b"\n".join(lines) + b"\n\n", "orders", config)
    assert routed.accepted == {"orders": lines}
    assert routed.rejects == [] and routed.blank_lines == 2


def test_a_batch_lands_as_one_jsonl_object_per_source(fake_gcs, config, store):
    orders = [_event(order_id=f"ORD-{i}") for i in range(3)]
    views = [_event("page_views", view_id="PV-1")]
    status, answer = _post(config, store, b"\n".join(orders + views), headers={"X-Batch-Time": NOW.isoformat()})
    assert status == 200
    assert answer["accepted"] == 4 and answer["rejected"] == 0
    assert answer["accepted_by_source"] == {"orders": 3, "page_views": 1}
    files = files_under(fake_gcs, config.landing_bucket)
    name = landing.landing_object_name("orders", orders, NOW)
    assert name.startswith(f"source=orders/{PARTITION}/") and name.endswith(".jsonl")
    assert files[name] == b"\n".join(orders) + b"\n"
    assert len(files) == 2


def test_a_retried_batch_writes_no_duplicate_object(fake_gcs, config, store):
    body = b"\n".join([_event(order_id="ORD-1"), b"not json", _event("refunds")])
    first = _post(config, store, body)
    again = _post(config, store, body)
    assert first[0] == again[0] == 200
    assert first[1]["objects_created"] == 3 and again[1]["objects_created"] == 0
    assert first[1]["objects"] == again[1]["objects"]
    assert len(files_under(fake_gcs, config.landing_bucket)) == 1
    assert len(files_under(fake_gcs, config.dead_letter_bucket)) == 2


def test_dead_letters_keep_the_raw_payload_reason_and_error(fake_gcs, config, store):
    latin1 = b'{"source":"orders","note":"caf\xe9"}'
    truncated = b'{"source":"orders","order_id":"ORD'
    body = b"\n".join([latin1, truncated, _event("refunds"), _event(order_id="ORD-9")])
    status, answer = _post(config, store, body)
    assert status == 200 and answer["rejected_by_reason"] == {
        "not_utf8": 1,
        "not_json": 1,
        "unknown_source": 1,
    }
    files = files_under(fake_gcs, config.dead_letter_bucket)
    by_prefix = {name.rsplit("/", 3)[0]: orjson.loads(content) for name, content in files.items()}
    assert set(by_prefix) == {
        "source=orders/reason=not_utf8",
        "source=orders/reason=not_json",
        "source=_unknown/reason=unknown_source",
    }
    bad_bytes = by_prefix["source=orders/reason=not_utf8"]
    assert base64.b64decode(bad_bytes["payload_base64"]) == latin1
    assert bad_bytes["reason"] == "not_utf8" and "utf-8" in bad_bytes["error"]
    assert bad_bytes["received_at"] == "2026-11-22T13:45:10Z"
    broken = by_prefix["source=orders/reason=not_json"]
    assert broken["payload"] == truncated.decode() and broken["payload_bytes"] == 34 and broken["error"]
    unknown = by_prefix["source=_unknown/reason=unknown_source"]
    assert orjson.loads(unknown["payload"])["source"] == "refunds"
    assert "'refunds'" in unknown["error"]


def test_every_generated_fault_lands_or_is_dead_lettered(fake_gcs, config, store, contracts):
    generated = generate(contracts, 4000, 17, as_of=NOW)
    for source, events in generated.items():
        status, answer = _post(config, store, b"\n".join(events.lines), args={"source": source})
        assert status == 200
        assert answer["accepted"] + answer["rejected"] == len(events.lines)
        assert set(answer["rejected_by_reason"]) <= {"not_json", "not_utf8", "oversized"}
    landed = b"".join(files_under(fake_gcs, config.landing_bucket).values()).count(b"\n")
    dead = b"".join(files_under(fake_gcs, config.dead_letter_bucket).values()).count(b"\n")
    assert landed + dead == sum(len(e.lines) for e in generated.values())


def test_http_answers_4xx_with_a_message(fake_gcs, config, store):
    assert _post(config, store, b"", method="GET")[0] == 405
    status, answer = _post(config, store, _event(), headers={"Authorization": "Bearer wrong"})
    assert status == 401 and "unauthenticated" in answer["error"]
    assert files_under(fake_gcs, config.dead_letter_bucket) == {}
    assert _post(config, store, b"\n\n")[0] == 400
    status, answer = _post(config, store, b"nope\n[]")
    assert status == 422 and answer["error"] == "no event accepted (not_json: 1, not_object: 1); all were dead-lettered"
    small = LandingConfig(
        config.landing_bucket,
        config.dead_letter_bucket,
        config.sources,
        "token",
        TOKEN,
        max_request_bytes=100,
    )
    status, answer = _post(small, store, _event(pad="x" * 200), args={"source": "orders"})
    assert status == 413 and "split the batch" in answer["error"]
    names = list(files_under(fake_gcs, config.dead_letter_bucket))
    assert any(n.startswith("source=orders/reason=request_too_large/") for n in names)


def test_token_in_header_and_iam_mode(config):
    assert landing.authorized({"X-Lakehouse-Token": TOKEN}, config)
    assert not landing.authorized({}, config)
    iam = LandingConfig("a", "b", config.sources, auth_mode="iam")
    assert landing.authorized({"Authorization": "Bearer eyJ..."}, iam) and not landing.authorized({}, iam)


def test_batch_time_header_sets_the_partition_only_when_plausible():
    assert landing.parse_batch_time("2026-11-22T09:00:00Z", NOW).hour == 9
    assert landing.parse_batch_time("1999-01-01T00:00:00Z", NOW) == NOW
    assert landing.parse_batch_time("yesterday", NOW) == NOW


def test_storage_down_fails_the_request_and_writes_nothing(tmp_path, config, monkeypatch):
    from ingest.services import free_port

    dead = GcsStore(delays=(0.01, 0.01))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageUnavailable, match="after 3 attempts"):
        land(Routed(accepted={"orders": [_event()]}), dead, config, NOW)


def test_storage_down_answers_503_through_functions_framework(fake_gcs, config, monkeypatch):
    import functions_framework

    from ingest import main
    from ingest.services import free_port

    monkeypatch.setenv("LANDING_BUCKET", config.landing_bucket)
    monkeypatch.setenv("DEAD_LETTER_BUCKET", config.dead_letter_bucket)
    monkeypatch.setenv("LANDING_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr("ingest.storage.RETRY_DELAYS_SECONDS", (0.01,))
    main._store_for.cache_clear()
    client = functions_framework.create_app("land_http", str(main.__file__)).test_client()
    response = client.post("/", data=_event(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 503
    assert orjson.loads(response.data)["error"].startswith("storage unavailable")
    assert files_under(fake_gcs, config.landing_bucket) == {}


def _push_event(message: dict) -> CloudEvent:
    attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/test-local/topics/ingest-orders",
    }
    return CloudEvent(attributes, {"message": message, "subscription": "projects/test-local/subscriptions/push"})


def test_pubsub_push_lands_once_per_message(fake_gcs, config, monkeypatch):
    from ingest import main

    monkeypatch.setenv("LANDING_BUCKET", config.landing_bucket)
    monkeypatch.setenv("DEAD_LETTER_BUCKET", config.dead_letter_bucket)
    monkeypatch.setenv("LANDING_AUTH_TOKEN", TOKEN)
    message = {
        "data": base64.b64encode(_event(order_id="ORD-7")).decode(),
        "attributes": {"source": "orders"},
        "messageId": "101",
        "publishTime": "2026-11-22T13:01:02.000Z",
    }
    main.land_pubsub(_push_event(message))
    main.land_pubsub(_push_event(message))  # a redelivery
    files = files_under(fake_gcs, config.landing_bucket)
    assert list(files.values()) == [_event(order_id="ORD-7") + b"\n"]
    assert next(iter(files)).startswith(f"source=orders/{PARTITION}/")
    main.land_pubsub(_push_event({"data": "%%%", "messageId": "102"}))
    main.land_pubsub(CloudEvent({"type": "t", "source": "s"}, {"unexpected": True}))
    dead = files_under(fake_gcs, config.dead_letter_bucket)
    assert sorted(name.rsplit("/", 3)[0] for name in dead) == [
        "source=_unknown/reason=bad_envelope",
        "source=_unknown/reason=bad_envelope",
    ]


@pytest.mark.parametrize("delay_days", [0, 3, 30, 400])
def test_pubsub_message_name_depends_on_the_message_not_on_when_it_arrives(fake_gcs, config, delay_days):
    from datetime import timedelta

    from ingest.landing import handle_pubsub_push

    store = GcsStore()
    message = {
        "data": base64.b64encode(_event(order_id="ORD-8")).decode(),
        "attributes": {"source": "orders"},
        "messageId": "201",
        "publishTime": "2026-11-22T13:01:02.123456789Z",
    }
    first = handle_pubsub_push({"message": message}, config, store, NOW)
    late = handle_pubsub_push({"message": message}, config, store, NOW + timedelta(days=delay_days))
    assert [o.name for o in late.objects] == [o.name for o in first.objects]
    assert first.objects[0].name.startswith(f"source=orders/{PARTITION}/")
    assert [o.created for o in first.objects + late.objects] == [True, False]
    # Another message with the same text is another object: nothing is merged away at landing.
    other = handle_pubsub_push({"message": {**message, "messageId": "202"}}, config, store, NOW)
    assert other.objects[0].name != first.objects[0].name and other.objects[0].created


def test_config_from_env_names_what_is_missing(monkeypatch):
    with pytest.raises(ValueError, match="LANDING_BUCKET, DEAD_LETTER_BUCKET"):
        LandingConfig.from_env({})
    with pytest.raises(ValueError, match="needs LANDING_AUTH_TOKEN"):
        LandingConfig.from_env({"LANDING_BUCKET": "a", "DEAD_LETTER_BUCKET": "b"})
    with pytest.raises(ValueError, match="invalid source"):
        LandingConfig.from_env(
            {
                "LANDING_BUCKET": "a",
                "DEAD_LETTER_BUCKET": "b",
                "LANDING_SOURCES": "ok,../x",
                "LANDING_AUTH_MODE": "none",
            }
        )
    config = LandingConfig.from_env({"LANDING_BUCKET": "a", "DEAD_LETTER_BUCKET": "b", "LANDING_AUTH_MODE": "none"})
    assert config.sources == {"ad_clicks", "inventory", "orders", "page_views", "user_activity"}


def test_a_misconfigured_function_says_what_is_missing(monkeypatch):
    import functions_framework

    from ingest import main

    monkeypatch.delenv("LANDING_BUCKET", raising=False)
    monkeypatch.delenv("DEAD_LETTER_BUCKET", raising=False)
    client = functions_framework.create_app("land_http", str(main.__file__)).test_client()
    response = client.post("/", data=_event())
    assert response.status_code == 500
    assert orjson.loads(response.data) == {
        "error": "landing function misconfigured: environment variable(s) LANDING_BUCKET, DEAD_LETTER_BUCKET "
        "must be set"
    }
