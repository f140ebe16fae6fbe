"""Tests for the Pub/Sub path: buses, and the subscription writer's raw table and at-least-once acks."""

from __future__ import annotations

import base64

import orjson
import pytest

from ingest import pubsub
from ingest.pubsub import DEAD_LETTER_SUBSCRIPTION, EmulatorBus, InProcessBus, drain_to_warehouse
from lakehouse.warehouse import open_catalog

from .conftest import files_under

PROJECT = "test-local"
EXPECTED_SCHEMA = [
    ("subscription_name", "VARCHAR"),
    ("message_id", "VARCHAR"),
    ("publish_time", "TIMESTAMP WITH TIME ZONE"),
    ("data", "VARCHAR"),
    ("attributes", "VARCHAR"),
]
LATIN1 = b'{"source":"orders","note":"caf\xe9"}'


def _lines(n: int) -> list[bytes]:
    return [orjson.dumps({"source": "orders", "event_id": f"e{i}", "order_id": f"ORD-{i}"}) for i in range(n)]


def test_names_refuse_crafted_sources():
    assert pubsub.topic_id("orders") == "ingest-orders"
    assert pubsub.subscription_id("orders") == "ingest-orders-bq"
    assert pubsub.raw_table("orders") == "bronze.orders_raw"
    with pytest.raises(ValueError):
        pubsub.raw_table("orders; drop table x")


def test_in_process_bus_redelivers_what_is_not_acked():
    bus = InProcessBus(PROJECT, ack_deadline_seconds=0.0)
    pubsub.ensure_topology(bus, ["orders"])
    ids = pubsub.publish_events(bus, "orders", _lines(3))
    assert ids == ["1", "2", "3"]
    first = bus.pull("ingest-orders-bq", 2)
    assert [m.message_id for m in first] == ["1", "2"] and first[0].attributes == {"source": "orders"}
    bus.nack("ingest-orders-bq", [first[1].ack_id])
    again = bus.pull("ingest-orders-bq", 10)  # deadline 0: the unacked first message comes back too
    assert sorted((m.message_id, m.delivery_attempt) for m in again) == [("1", 2), ("2", 2), ("3", 1)]
    bus.ack("ingest-orders-bq", [m.ack_id for m in again])
    assert bus.backlog("ingest-orders-bq") == 0


def _drain_and_check(bus, home, count):
    pubsub.ensure_topology(bus, ["orders"])
    lines = _lines(count)
    keys = [f"stream1-{position}" for position in range(count + 1)]
    pubsub.publish_events(bus, "orders", [*lines, LATIN1], record_keys=keys)
    result = drain_to_warehouse(bus, "orders", home, PROJECT, max_messages=100)
    assert (result.written, result.dead_lettered) == (count, 1)
    with open_catalog(home, PROJECT) as con:
        schema = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'bronze' AND table_name = 'orders_raw' ORDER BY ordinal_position"
        ).fetchall()
        rows = con.execute(
            "SELECT subscription_name, message_id, data, attributes, publish_time IS NOT NULL "
            "FROM bronze.orders_raw ORDER BY data"
        ).fetchall()
    assert schema == EXPECTED_SCHEMA
    assert sorted(r[2].encode() for r in rows) == sorted(lines)
    assert {r[0] for r in rows} == {f"projects/{PROJECT}/subscriptions/ingest-orders-bq"}
    assert all(orjson.loads(r[3])["source"] == "orders" and r[4] for r in rows)
    # The record key reaches the raw table's attributes, one per line.
    by_data = {r[2].encode(): orjson.loads(r[3])["record_key"] for r in rows}
    assert by_data == dict(zip(lines, keys, strict=False))
    assert len({r[1] for r in rows}) == count
    dead = bus.pull(DEAD_LETTER_SUBSCRIPTION, 10)
    assert [(m.data, m.attributes["dead_letter_reason"]) for m in dead] == [(LATIN1, "data_not_utf8")]
    assert dead[0].attributes["original_subscription"] == "ingest-orders-bq"


def test_subscription_writer_with_the_in_process_bus(lakehouse_home):
    _drain_and_check(InProcessBus(PROJECT), lakehouse_home, 250)


def test_subscription_writer_with_the_emulator(pubsub_emulator, lakehouse_home, monkeypatch):
    bus = EmulatorBus(PROJECT, pubsub_emulator.host_port)
    try:
        _drain_and_check(bus, lakehouse_home, 250)
    finally:
        bus.close()
        monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)


@pytest.mark.parametrize("max_messages", [1000, 2])  # one pull, or three pulls in one append
def test_messages_are_acked_only_after_the_append_committed(lakehouse_home, max_messages):
    bus = InProcessBus(PROJECT)
    pubsub.ensure_topology(bus, ["orders"])
    pubsub.publish_events(bus, "orders", _lines(5))
    with open_catalog(lakehouse_home, PROJECT) as con:  # a table the writer cannot append to
        con.execute("CREATE SCHEMA bronze")
        con.execute("CREATE TABLE bronze.orders_raw (only_column INTEGER)")
    with pytest.raises(Exception, match="(?i)column|insert"):
        drain_to_warehouse(bus, "orders", lakehouse_home, PROJECT, max_messages=max_messages)
    assert bus.backlog("ingest-orders-bq") == 5  # nacked, nothing lost
    with open_catalog(lakehouse_home, PROJECT) as con:
        assert con.execute("SELECT count(*) FROM bronze.orders_raw").fetchone() == (0,)
        con.execute("DROP TABLE bronze.orders_raw")
    result = drain_to_warehouse(bus, "orders", lakehouse_home, PROJECT)
    assert result.written == 5 and bus.backlog("ingest-orders-bq") == 0


def _dead_letters_kept(bus, home, fake_gcs, store, bucket):
    """A message the writer dead-letters ends in the dead-letter bucket, once, with the landing layout."""
    pubsub.ensure_topology(bus, ["orders"])
    pubsub.publish_events(bus, "orders", [*_lines(2), LATIN1])
    assert drain_to_warehouse(bus, "orders", home, PROJECT).dead_lettered == 1
    assert pubsub.drain_dead_letters(bus, store, bucket) == {"data_not_utf8": 1}
    kept = files_under(fake_gcs, bucket)
    [(name, content)] = kept.items()
    assert name.startswith("source=orders/reason=data_not_utf8/ingest_date=") and name.endswith(".jsonl")
    record = orjson.loads(content)
    assert base64.b64decode(record.pop("payload_base64")) == LATIN1
    received_at = record.pop("received_at")
    assert f"ingest_date={received_at[:10]}/hour={received_at[11:13]}/" in name
    message_id = record.pop("pubsub_message_id")
    assert message_id and record.pop("delivery_attempt") >= 1
    assert record == {
        "source": "orders",
        "reason": "data_not_utf8",
        "error": "dead-lettered from ingest-orders-bq: data_not_utf8",
        "payload_bytes": len(LATIN1),
        "payload_truncated": False,
        "pubsub_subscription": "ingest-orders-bq",
    }
    assert pubsub.drain_dead_letters(bus, store, bucket) == {}
    # A writer that crashed after publishing the dead letter and before its ack publishes it again:
    # the copy maps to the same object.
    attributes = {
        "source": "orders",
        "dead_letter_reason": "data_not_utf8",
        "original_subscription": "ingest-orders-bq",
        "original_message_id": message_id,
        "original_publish_time": received_at,
    }
    bus.publish(pubsub.DEAD_LETTER_TOPIC, [(LATIN1, attributes)])
    assert pubsub.drain_dead_letters(bus, store, bucket) == {"data_not_utf8": 1}
    assert files_under(fake_gcs, bucket) == kept


def test_dead_letters_are_kept_in_the_bucket_with_the_in_process_bus(lakehouse_home, fake_gcs, store, config):
    bus = InProcessBus(PROJECT)
    _dead_letters_kept(bus, lakehouse_home, fake_gcs, store, config.dead_letter_bucket)
    assert bus.backlog(DEAD_LETTER_SUBSCRIPTION) == 0


def test_dead_letters_are_kept_in_the_bucket_with_the_emulator(
    pubsub_emulator, lakehouse_home, fake_gcs, store, config, monkeypatch
):
    bus = EmulatorBus(f"{PROJECT}-dl", pubsub_emulator.host_port)
    try:
        _dead_letters_kept(bus, lakehouse_home, fake_gcs, store, config.dead_letter_bucket)
    finally:
        bus.close()
        monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)


def test_a_republished_line_is_not_written_twice(lakehouse_home):
    bus = InProcessBus(PROJECT)
    pubsub.ensure_topology(bus, ["orders"])
    lines = _lines(30)
    keys = [f"stream1-{position}" for position in range(30)]
    pubsub.publish_events(bus, "orders", lines[:20], record_keys=keys[:20])
    first = drain_to_warehouse(bus, "orders", lakehouse_home, PROJECT, max_messages=7)
    # A killed `generate` run again: it publishes every line again; a line without a key is always new.
    pubsub.publish_events(bus, "orders", lines, record_keys=keys)
    pubsub.publish_events(bus, "orders", lines[:2])
    other_stream = [f"stream2-{position}" for position in range(3)]
    pubsub.publish_events(bus, "orders", lines[:3], record_keys=other_stream)
    again = drain_to_warehouse(bus, "orders", lakehouse_home, PROJECT, max_messages=7)
    assert (first.written, first.already_written) == (20, 0)
    assert (again.written, again.already_written) == (10 + 2 + 3, 20)
    assert bus.backlog("ingest-orders-bq") == 0
    with open_catalog(lakehouse_home, PROJECT) as con:
        written = con.execute(
            "select json_extract_string(attributes, '$.record_key') as key, count(*) from bronze.orders_raw "
            "group by key order by key nulls first"
        ).fetchall()
    assert written == [(None, 2), *sorted((key, 1) for key in keys + other_stream)]
