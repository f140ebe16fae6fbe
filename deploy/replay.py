"""Replay dead-lettered Pub/Sub messages to the topic they came from, once their cause is fixed."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from deploy.config import EnvConfig

log = logging.getLogger(__name__)

# Set by Pub/Sub on every message it forwards to a dead-letter topic.
SOURCE_ATTRIBUTE = "CloudPubSubDeadLetterSourceSubscription"
REPLAYED_ATTRIBUTE = "lakehouse-replayed"
PULL_BATCH = 100


@dataclass
class ReplayResult:
    """How many messages went back to each topic, and how many stayed (unknown source, dry run)."""

    replayed: Counter = field(default_factory=Counter)
    left: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        """Return one line per topic and what was left, for people."""
        lines = [f"replayed {n} to {topic}" for topic, n in sorted(self.replayed.items())]
        lines += [f"left {n} in the hold subscription: {why}" for why, n in sorted(self.left.items())]
        return "\n".join(lines) or "the dead-letter hold subscription is empty"


def hold_subscription(env: EnvConfig) -> str:
    """Return the pull subscription that keeps what the dead-letter topic receives."""
    return f"projects/{env.project}/subscriptions/{env.prefix}-dead-letter-hold"


def source_topic(env: EnvConfig, attributes: dict[str, str], sources: set[str]) -> str | None:
    """Return the topic a dead-lettered message was first published to, or None if unknown."""
    subscription = attributes.get(SOURCE_ATTRIBUTE, "").rsplit("/", 1)[-1]
    start, end = f"{env.prefix}-", "-bq"
    if not (subscription.startswith(start) and subscription.endswith(end)):
        return None
    source = subscription[len(start) : -len(end)]
    return f"projects/{env.project}/topics/{env.prefix}-{source}" if source in sources else None


def replay(
    env: EnvConfig,
    sources: list[str],
    subscriber: Any,
    publisher: Any,
    max_messages: int = 10_000,
    dry_run: bool = False,
) -> ReplayResult:
    """Move up to `max_messages` from the hold subscription back to their source topics.

    A message is acknowledged only after its republish succeeded; with `dry_run` (or an unknown
    source) it is released for redelivery instead. Raises google.api_core errors from the API.
    """
    result = ReplayResult()
    hold = hold_subscription(env)
    known = set(sources)
    released: set[str] = set()
    seen = 0
    while seen < max_messages:
        response = subscriber.pull(request={"subscription": hold, "max_messages": min(PULL_BATCH, max_messages - seen)})
        if not response.received_messages:
            break
        acks, releases, new = [], [], 0
        for received in response.received_messages:
            message = received.message
            if message.message_id in released:  # redelivered after this run released it
                releases.append(received.ack_id)
                continue
            seen += 1
            new += 1
            attributes = dict(message.attributes)
            topic = source_topic(env, attributes, known)
            if topic is None or dry_run:
                result.left["dry run" if topic and dry_run else "unknown source subscription"] += 1
                releases.append(received.ack_id)
                released.add(message.message_id)
                continue
            clean = {k: v for k, v in attributes.items() if not k.startswith("CloudPubSubDeadLetter")}
            clean[REPLAYED_ATTRIBUTE] = "true"
            publisher.publish(topic, message.data, **clean).result(timeout=60)
            acks.append(received.ack_id)
            result.replayed[topic] += 1
        if acks:
            subscriber.acknowledge(request={"subscription": hold, "ack_ids": acks})
        if releases:
            subscriber.modify_ack_deadline(
                request={"subscription": hold, "ack_ids": releases, "ack_deadline_seconds": 0}
            )
        if new == 0:
            break  # only messages this run already left in place
    log.info("dead-letter replay: %s", result.summary().replace("\n", "; "))
    return result
