"""The Pub/Sub path: per-source topics, a producer, and the local stand-in for BigQuery subscriptions."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from ingest.contracts import IDENTIFIER

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC = "ingest-dead-letter"
DEAD_LETTER_SUBSCRIPTION = "ingest-dead-letter-hold"
MAX_DELIVERY_ATTEMPTS = 5
# The message attribute naming the generated line a message carries; staging keys Pub/Sub rows on it.
RECORD_KEY = "record_key"
RAW_DATASET = "bronze"
# The table a BigQuery subscription writes with write_metadata=true and no topic/table schema.
# `data` is STRING: JSON payloads read with JSON_VALUE in SQL without a bytes conversion. A message
# whose data is not UTF-8 cannot be written to STRING and goes to the dead-letter topic instead.
RAW_COLUMNS = (
    ("subscription_name", "STRING", "VARCHAR"),
    ("message_id", "STRING", "VARCHAR"),
    ("publish_time", "TIMESTAMP", "TIMESTAMPTZ"),
    ("data", "STRING", "VARCHAR"),
    ("attributes", "STRING", "VARCHAR"),
)


def topic_id(source: str) -> str:
    """Return the topic a source's events are published to; raises ValueError for a bad source name."""
    if not IDENTIFIER.match(source):
        raise ValueError(f"{source!r} is not a valid source name")
    return f"ingest-{source}"


def subscription_id(source: str) -> str:
    """Return the BigQuery subscription (locally: pull subscription) of a source's topic."""
    return f"{topic_id(source)}-bq"


def raw_table(source: str) -> str:
    """Return `bronze.<source>_raw`, the table the source's BigQuery subscription writes."""
    if not IDENTIFIER.match(source):
        raise ValueError(f"{source!r} is not a valid source name")
    return f"{RAW_DATASET}.{source}_raw"


@dataclass(frozen=True)
class Received:
    """A pulled message: what BigQuery subscriptions write, plus the ack handle."""

    ack_id: str
    message_id: str
    publish_time: datetime
    data: bytes
    attributes: dict[str, str]
    delivery_attempt: int = 1


class Bus(Protocol):
    """The part of Pub/Sub the producer and the subscription writer use."""

    project: str

    def ensure_topic(self, topic: str) -> None: ...

    def ensure_subscription(self, subscription: str, topic: str) -> None: ...

    def publish(self, topic: str, messages: list[tuple[bytes, dict[str, str]]]) -> list[str]: ...

    def pull(self, subscription: str, max_messages: int) -> list[Received]: ...

    def ack(self, subscription: str, ack_ids: list[str]) -> None: ...

    def nack(self, subscription: str, ack_ids: list[str]) -> None: ...


class EmulatorBus:
    """Bus over google-cloud-pubsub clients talking to PUBSUB_EMULATOR_HOST (or real Pub/Sub)."""

    def __init__(self, project: str, host: str | None = None) -> None:
        self.project = project
        self.host = host
        self._publisher = None
        self._subscriber = None

    def _clients(self) -> tuple[Any, Any]:
        if self._publisher is None:
            from google.cloud import pubsub_v1

            if self.host:
                os.environ["PUBSUB_EMULATOR_HOST"] = self.host
            settings = pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=9_000_000, max_latency=0.05)
            self._publisher = pubsub_v1.PublisherClient(batch_settings=settings)
            self._subscriber = pubsub_v1.SubscriberClient()
        return self._publisher, self._subscriber

    def ensure_topic(self, topic: str) -> None:
        from google.api_core.exceptions import AlreadyExists

        publisher, _ = self._clients()
        try:
            publisher.create_topic(name=publisher.topic_path(self.project, topic))
        except AlreadyExists:
            pass

    def ensure_subscription(self, subscription: str, topic: str) -> None:
        from google.api_core.exceptions import AlreadyExists

        publisher, subscriber = self._clients()
        try:
            subscriber.create_subscription(
                name=subscriber.subscription_path(self.project, subscription),
                topic=publisher.topic_path(self.project, topic),
                ack_deadline_seconds=60,
            )
        except AlreadyExists:
            pass

    def publish(self, topic: str, messages: list[tuple[bytes, dict[str, str]]]) -> list[str]:
        publisher, _ = self._clients()
        path = publisher.topic_path(self.project, topic)
        futures = [publisher.publish(path, data, **attributes) for data, attributes in messages]
        return [future.result(timeout=60) for future in futures]

    def pull(self, subscription: str, max_messages: int) -> list[Received]:
        from google.api_core.exceptions import DeadlineExceeded

        _, subscriber = self._clients()
        try:
            with warnings.catch_warnings():
                # return_immediately is deprecated for production subscribers; the local writer needs to
                # know when a subscription is empty rather than hold a long poll open.
                warnings.simplefilter("ignore", DeprecationWarning)
                response = subscriber.pull(
                    subscription=subscriber.subscription_path(self.project, subscription),
                    max_messages=max_messages,
                    return_immediately=True,
                    timeout=30,
                )
        except DeadlineExceeded:
            return []
        out = []
        for item in response.received_messages:
            message = item.message
            out.append(
                Received(
                    ack_id=item.ack_id,
                    message_id=message.message_id,
                    publish_time=message.publish_time.astimezone(UTC),
                    data=bytes(message.data),
                    attributes=dict(message.attributes),
                    delivery_attempt=item.delivery_attempt or 1,
                )
            )
        return out

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        _, subscriber = self._clients()
        path = subscriber.subscription_path(self.project, subscription)
        for start in range(0, len(ack_ids), 1000):
            subscriber.acknowledge(subscription=path, ack_ids=ack_ids[start : start + 1000])

    def nack(self, subscription: str, ack_ids: list[str]) -> None:
        _, subscriber = self._clients()
        path = subscriber.subscription_path(self.project, subscription)
        for start in range(0, len(ack_ids), 1000):
            subscriber.modify_ack_deadline(
                subscription=path, ack_ids=ack_ids[start : start + 1000], ack_deadline_seconds=0
            )

    def close(self) -> None:
        """Stop the client transports."""
        if self._publisher is not None:
            self._publisher.stop()
            self._subscriber.close()
            self._publisher = self._subscriber = None


@dataclass
class _Subscription:
    topic: str
    ready: deque = field(default_factory=deque)
    outstanding: dict[str, tuple[Received, float]] = field(default_factory=dict)


class InProcessBus:
    """A Pub/Sub stand-in in this process: topics fan out to subscriptions, unacked messages come back
    after the ack deadline or a nack, with delivery attempts counted. Used when no emulator exists."""

    def __init__(self, project: str, ack_deadline_seconds: float = 60.0) -> None:
        self.project = project
        self.ack_deadline = ack_deadline_seconds
        self._topics: dict[str, list[str]] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._lock = threading.Lock()
        self._counter = 0

    def ensure_topic(self, topic: str) -> None:
        with self._lock:
            self._topics.setdefault(topic, [])

    def ensure_subscription(self, subscription: str, topic: str) -> None:
        with self._lock:
            if topic not in self._topics:
                raise KeyError(f"topic {topic} does not exist")
            if subscription not in self._subscriptions:
                self._subscriptions[subscription] = _Subscription(topic)
                self._topics[topic].append(subscription)

    def publish(self, topic: str, messages: list[tuple[bytes, dict[str, str]]]) -> list[str]:
        with self._lock:
            if topic not in self._topics:
                raise KeyError(f"topic {topic} does not exist")
            ids = []
            now = datetime.now(UTC)
            for data, attributes in messages:
                self._counter += 1
                message_id = str(self._counter)
                ids.append(message_id)
                for name in self._topics[topic]:
                    self._subscriptions[name].ready.append(
                        Received("", message_id, now, bytes(data), dict(attributes), 0)
                    )
            return ids

    def pull(self, subscription: str, max_messages: int) -> list[Received]:
        with self._lock:
            sub = self._subscriptions[subscription]
            now = time.monotonic()
            expired = [ack_id for ack_id, (_, deadline) in sub.outstanding.items() if deadline <= now]
            for ack_id in expired:
                sub.ready.appendleft(sub.outstanding.pop(ack_id)[0])
            out = []
            while sub.ready and len(out) < max_messages:
                message = sub.ready.popleft()
                self._counter += 1
                delivered = Received(
                    f"ack-{self._counter}",
                    message.message_id,
                    message.publish_time,
                    message.data,
                    message.attributes,
                    message.delivery_attempt + 1,
                )
                sub.outstanding[delivered.ack_id] = (delivered, now + self.ack_deadline)
                out.append(delivered)
            return out

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        with self._lock:
            sub = self._subscriptions[subscription]
            for ack_id in ack_ids:
                sub.outstanding.pop(ack_id, None)

    def nack(self, subscription: str, ack_ids: list[str]) -> None:
        with self._lock:
            sub = self._subscriptions[subscription]
            for ack_id in reversed(ack_ids):
                if ack_id in sub.outstanding:
                    sub.ready.appendleft(sub.outstanding.pop(ack_id)[0])

    def backlog(self, subscription: str) -> int:
        """Return how many messages wait for delivery or for an ack."""
        with self._lock:
            sub = self._subscriptions[subscription]
            return len(sub.ready) + len(sub.outstanding)

    def close(self) -> None:
        """Nothing to release."""


def ensure_topology(bus: Bus, sources: Iterable[str]) -> None:
    """Create each source's topic and subscription, and the dead-letter topic with a holding subscription."""
    bus.ensure_topic(DEAD_LETTER_TOPIC)
    bus.ensure_subscription(DEAD_LETTER_SUBSCRIPTION, DEAD_LETTER_TOPIC)
    for source in sources:
        bus.ensure_topic(topic_id(source))
        bus.ensure_subscription(subscription_id(source), topic_id(source))


def publish_events(
    bus: Bus,
    source: str,
    lines: list[bytes],
    batch_time: datetime | None = None,
    record_keys: list[str] | None = None,
) -> list[str]:
    """Publish one message per event line to the source's topic; returns the message ids.

    Attributes carry the source, the producer's batch time and, when given, the line's `record_key`
    (a stable id of the generated line, so a re-publish of the same line is recognised downstream),
    never the payload: the line is published as it is, faults and all, as an upstream producer would.
    Raises ValueError when record_keys is not one key per line.
    """
    attributes = {"source": source}
    if batch_time is not None:
        attributes["batch_time"] = batch_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if record_keys is None:
        return bus.publish(topic_id(source), [(line, attributes) for line in lines])
    if len(record_keys) != len(lines):
        raise ValueError(f"{len(record_keys)} record keys for {len(lines)} lines")
    messages = [(line, {**attributes, RECORD_KEY: key}) for line, key in zip(lines, record_keys, strict=True)]
    return bus.publish(topic_id(source), messages)


@dataclass
class DrainResult:
    """What one drain of a subscription did."""

    written: int = 0
    dead_lettered: int = 0
    nacked: int = 0
    pulls: int = 0
    already_written: int = 0
    # Dead letters moved from the holding subscription to the dead-letter bucket, by reason.
    dead_letters_kept: dict[str, int] = field(default_factory=dict)


def raw_rows(bus_project: str, subscription: str, messages: list[Received]) -> tuple[list[dict], list[Received]]:
    """Return (rows for the raw table, messages that cannot be written) for pulled messages.

    A row holds exactly what a BigQuery subscription with write_metadata writes (the attributes,
    record_key included, as a JSON object in `attributes`), plus the record key on its own for the
    writer; a message whose data is not UTF-8 cannot go into the STRING `data` column and is returned
    for the dead-letter topic.
    """
    name = f"projects/{bus_project}/subscriptions/{subscription}"
    rows, unwritable = [], []
    for message in messages:
        try:
            data = message.data.decode("utf-8")
        except UnicodeDecodeError:
            unwritable.append(message)
            continue
        rows.append(
            {
                "subscription_name": name,
                "message_id": message.message_id,
                "publish_time": message.publish_time,
                "data": data,
                "attributes": orjson.dumps(message.attributes, option=orjson.OPT_SORT_KEYS).decode(),
                RECORD_KEY: message.attributes.get(RECORD_KEY),
            }
        )
    return rows, unwritable


def create_raw_table(con: Any, source: str) -> None:
    """Create bronze.<source>_raw with the BigQuery-subscription schema in the open catalog if missing."""
    columns = ", ".join(f"{name} {duck}" for name, _, duck in RAW_COLUMNS)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_DATASET}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {raw_table(source)} ({columns})")


def ensure_raw_tables(home: Path, project: str, sources: Iterable[str]) -> None:
    """Create every source's raw table in the local warehouse, so bronze declarations always resolve."""
    from lakehouse.warehouse import open_catalog

    with open_catalog(home, project) as con:
        for source in sources:
            create_raw_table(con, source)


def append_raw(con: Any, source: str, rows: list[dict]) -> None:
    """Append rows to bronze.<source>_raw in the open DuckDB catalog (creating it), in one transaction."""
    import pyarrow as pa

    table = raw_table(source)
    create_raw_table(con, source)
    batch = pa.table(
        {
            "subscription_name": pa.array([r["subscription_name"] for r in rows], pa.string()),
            "message_id": pa.array([r["message_id"] for r in rows], pa.string()),
            "publish_time": pa.array([r["publish_time"] for r in rows], pa.timestamp("us", tz="UTC")),
            "data": pa.array([r["data"] for r in rows], pa.string()),
            "attributes": pa.array([r["attributes"] for r in rows], pa.string()),
        }
    )
    con.register("incoming_raw_batch", batch)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"INSERT INTO {table} SELECT * FROM incoming_raw_batch")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("incoming_raw_batch")


class WrittenKeys:
    """The record keys already in one raw table, loaded per key prefix when a message first names it.

    A key is `<prefix>-<position>`; one prefix names one generated line stream, so a drain loads only
    the keys of the streams its messages belong to (none, for a fresh stream).
    """

    def __init__(self, con: Any, source: str, subscription_name: str) -> None:
        self.con = con
        self.table = raw_table(source)
        self.subscription_name = subscription_name
        self._by_prefix: dict[str, set[str]] = {}

    def _prefix_keys(self, prefix: str) -> set[str]:
        keys = self._by_prefix.get(prefix)
        if keys is None:
            found = self.con.execute(
                f"select key from (select json_extract_string(attributes, '$.{RECORD_KEY}') as key "
                f"from {self.table} where subscription_name = ?) where starts_with(key, ?)",
                [self.subscription_name, prefix],
            ).fetchall()
            keys = self._by_prefix[prefix] = {key for (key,) in found if key.rpartition("-")[0] == prefix}
        return keys

    def take_new(self, rows: list[dict]) -> list[dict]:
        """Return the rows whose record key is not written yet (rows without one are all new), and
        count their keys as written."""
        new = []
        for row in rows:
            key = row.get(RECORD_KEY)
            if key is not None:
                keys = self._prefix_keys(key.rpartition("-")[0])
                if key in keys:
                    continue
                keys.add(key)
            new.append(row)
        return new

    def forget(self, rows: list[dict]) -> None:
        """Un-count the keys of rows whose append was rolled back."""
        for row in rows:
            key = row.get(RECORD_KEY)
            if key is not None:
                self._by_prefix.get(key.rpartition("-")[0], set()).discard(key)


def drain_to_warehouse(
    bus: Bus,
    source: str,
    home: Path,
    project: str,
    *,
    max_messages: int = 1000,
    batch_messages: int = 5000,
    idle_pulls: int = 3,
    idle_wait_seconds: float = 0.1,
) -> DrainResult:
    """Pull the source's subscription until empty and append to bronze.<source>_raw, one transaction
    per `batch_messages` pulled (a pull returns up to `max_messages`; the emulator gives ~100 at a time,
    and a transaction per pull cost more than the pull).

    At-least-once: messages are acked only after the append committed (a crash in between means a
    redelivery, which silver deduplicates on event_id). A message whose `record_key` attribute is
    already in the table (a line published again after a killed `generate`, or redelivered) is acked
    without a second row. Undecodable messages go to the dead-letter topic with the reason in their
    attributes, then are acked. Returns the counts. Raises WarehouseBusy when another process holds
    the warehouse (nothing is acked then).
    """
    from lakehouse.warehouse import open_catalog

    subscription = subscription_id(source)
    result = DrainResult()
    empty = 0
    with open_catalog(home, project) as con:
        create_raw_table(con, source)
        written_keys = WrittenKeys(con, source, f"projects/{bus.project}/subscriptions/{subscription}")
        while empty < idle_pulls:
            messages: list[Received] = []
            while len(messages) < batch_messages:
                pulled = bus.pull(subscription, min(max_messages, batch_messages - len(messages)))
                result.pulls += 1
                if not pulled:
                    break
                messages.extend(pulled)
            if not messages:
                empty += 1
                if empty < idle_pulls:
                    time.sleep(idle_wait_seconds)
                continue
            empty = 0
            rows, unwritable = raw_rows(bus.project, subscription, messages)
            new_rows = written_keys.take_new(rows)
            try:
                if new_rows:
                    append_raw(con, source, new_rows)
            except Exception:
                written_keys.forget(new_rows)
                bus.nack(subscription, [m.ack_id for m in messages])
                result.nacked += len(messages)
                raise
            if unwritable:
                bus.publish(
                    DEAD_LETTER_TOPIC,
                    [
                        (
                            m.data,
                            {
                                **m.attributes,
                                "dead_letter_reason": "data_not_utf8",
                                "original_subscription": subscription,
                                "original_message_id": m.message_id,
                                "original_publish_time": _rfc3339(m.publish_time),
                            },
                        )
                        for m in unwritable
                    ],
                )
            bus.ack(subscription, [m.ack_id for m in messages])
            result.written += len(new_rows)
            result.already_written += len(rows) - len(new_rows)
            result.dead_lettered += len(unwritable)
    return result


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def dead_letter_object(message: Received) -> tuple[str, bytes, str]:
    """Return (object name, JSONL record, reason) keeping a dead-lettered message in the dead-letter bucket.

    The layout and record are the landing function's (`source=<s>/reason=<r>/ingest_date=…/hour=…/<sha>.jsonl`,
    `ingest.landing.dead_letter_record`) plus `pubsub_message_id`, `pubsub_subscription` and
    `delivery_attempt`. Name and partition come from the original message (its id and publish time),
    so the same dead letter kept twice, or published twice by a writer that crashed before its ack, is
    one object.
    """
    from ingest.landing import UNKNOWN_SOURCE, Reject, dead_letter_record, partition, publish_time

    attributes = message.attributes
    source = attributes.get("source", "")
    source = source if IDENTIFIER.match(source) else UNKNOWN_SOURCE
    reason = attributes.get("dead_letter_reason", "")
    # A message GCP dead-letters after max_delivery_attempts carries no reason of ours.
    reason = reason if IDENTIFIER.match(reason) else "undeliverable"
    original_id = attributes.get("original_message_id") or message.message_id
    moment = publish_time(attributes.get("original_publish_time")) or message.publish_time
    detail = f"dead-lettered from {attributes.get('original_subscription') or 'a subscription'}: {reason}"
    record = dead_letter_record(Reject(source, reason, detail, message.data), moment)
    record["pubsub_message_id"] = original_id
    record["pubsub_subscription"] = attributes.get("original_subscription")
    record["delivery_attempt"] = message.delivery_attempt
    digest = hashlib.sha256(f"pubsub:{original_id}\n".encode() + message.data).hexdigest()[:40]
    name = f"source={source}/reason={reason}/{partition(moment)}/{digest}.jsonl"
    return name, orjson.dumps(record) + b"\n", reason


def drain_dead_letters(
    bus: Bus,
    store: Any,
    bucket: str,
    *,
    max_messages: int = 1000,
    idle_pulls: int = 3,
    idle_wait_seconds: float = 0.1,
) -> dict[str, int]:
    """Pull the dead-letter holding subscription until empty, keeping each message in `bucket`.

    Locally the holding subscription lives in the emulator's (or this process's) memory; on GCP it keeps
    messages 7 days. Each message is written (`dead_letter_object`, create-only) before it is acked, so a
    crash in between redelivers it onto the same object. Returns the count kept per reason. Raises
    StorageUnavailable when storage stays down (nothing unwritten is acked).
    """
    kept: dict[str, int] = {}
    empty = 0
    while empty < idle_pulls:
        messages = bus.pull(DEAD_LETTER_SUBSCRIPTION, max_messages)
        if not messages:
            # The emulator may answer an immediate pull empty while messages are in flight.
            empty += 1
            if empty < idle_pulls:
                time.sleep(idle_wait_seconds)
            continue
        empty = 0
        for message in messages:
            name, content, reason = dead_letter_object(message)
            store.put_new(bucket, name, content, content_type="application/x-ndjson", metadata={"records": "1"})
            kept[reason] = kept.get(reason, 0) + 1
        bus.ack(DEAD_LETTER_SUBSCRIPTION, [m.ack_id for m in messages])
    return kept
