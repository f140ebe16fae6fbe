"""The scheduled producer: generate a tick of events and send them to the landing function and Pub/Sub."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.contracts import Contract
from ingest.generator import plan, route
from ingest.landing import BATCH_TIME_HEADER

log = logging.getLogger(__name__)

MAX_EVENTS_PER_TICK = 100_000
POST_RETRY_DELAYS_SECONDS = (0.5, 1.0, 2.0, 4.0)

PostBatch = Callable[[str, list[bytes], datetime], tuple[int, dict]]
# (source, lines, batch time, one record key per line) -> how many were published
Publish = Callable[[str, list[bytes], datetime, list[str]], int]


@dataclass
class TickResult:
    """What one producer tick sent."""

    events: int = 0
    lines: int = 0
    batches_posted: int = 0
    accepted: int = 0
    rejected: int = 0
    published: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def parse_request(body: Any, now: datetime) -> tuple[dict[str, Any] | None, str | None]:
    """Return (tick parameters, None) from a scheduler request body, or (None, message) when invalid.

    Accepted keys: events (1..100000, default 10), seed (default: the minute of `now`), pubsub_share
    (0..1, default 0.2), batch_size (default 10).
    """
    body = body if isinstance(body, dict) else {}
    params = {
        "events": body.get("events", 10),
        "seed": body.get("seed", int(now.timestamp() // 60)),
        "pubsub_share": body.get("pubsub_share", 0.2),
        "batch_size": body.get("batch_size", 10),
    }
    for name in ("events", "seed", "batch_size"):
        if not isinstance(params[name], int) or isinstance(params[name], bool):
            return None, f"{name} must be an integer"
    if not 1 <= params["events"] <= MAX_EVENTS_PER_TICK:
        return None, f"events must be between 1 and {MAX_EVENTS_PER_TICK}"
    if params["batch_size"] < 1:
        return None, "batch_size must be at least 1"
    share = params["pubsub_share"]
    if not isinstance(share, int | float) or isinstance(share, bool) or not 0 <= share <= 1:
        return None, "pubsub_share must be a number between 0 and 1"
    return params, None


def run_tick(
    contracts: Mapping[str, Contract],
    *,
    events: int,
    seed: int,
    as_of: datetime,
    span: timedelta,
    batch_size: int,
    pubsub_share: float,
    post_batch: PostBatch,
    publish: Publish,
) -> TickResult:
    """Generate `events` events and send them: the last `pubsub_share` of each source's lines are
    published (each with its record key), the rest POSTed to the landing function. Returns the counts.

    Raises RuntimeError when the landing function keeps answering 5xx (the scheduler retries the tick;
    the landing function's idempotent names keep the retry from duplicating objects).
    """
    result = TickResult()
    for source, source_plan in plan(contracts, events, seed, as_of=as_of, span=span).items():
        result.events += source_plan.events
        result.lines += source_plan.lines
        for piece in route(source_plan, batch_size, pubsub_share):
            if piece.kind == "publish":
                keys = [source_plan.record_key(piece.start + offset) for offset in range(len(piece.lines))]
                result.published += publish(source, piece.lines, as_of, keys)
                continue
            status, answer = post_batch(source, piece.lines, as_of)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status >= 500:
                raise RuntimeError(f"landing function answered {status} for a {source} batch: {answer}")
            result.batches_posted += 1
            result.accepted += int(answer.get("accepted", 0))
            result.rejected += int(answer.get("rejected", 0))
    return result


class HttpPoster:
    """POSTs batches to the landing function with a Google ID token, retrying 5xx and network errors."""

    def __init__(self, url: str, delays: tuple[float, ...] = POST_RETRY_DELAYS_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.delays = delays
        self._session = None

    def _token(self) -> str:
        import google.auth.transport.requests
        import google.oauth2.id_token

        return google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), self.url)

    def __call__(self, source: str, lines: list[bytes], batch_time: datetime) -> tuple[int, dict]:
        """POST one batch; returns (status, JSON answer). Raises RuntimeError after the retries."""
        import requests

        self._session = self._session or requests.Session()
        headers = {
            "Authorization": f"Bearer {self._token()}",
            BATCH_TIME_HEADER: batch_time.astimezone(UTC).isoformat(),
            "Content-Type": "application/x-ndjson",
        }
        body = b"\n".join(lines)
        for attempt in range(len(self.delays) + 1):
            try:
                response = self._session.post(f"{self.url}/?source={source}", data=body, headers=headers, timeout=60)
                if response.status_code < 500:
                    return response.status_code, response.json()
                problem = f"HTTP {response.status_code}"
            except (requests.ConnectionError, requests.Timeout, ValueError) as error:
                problem = str(error)
            if attempt < len(self.delays):
                log.warning("landing POST failed (%s); retrying", problem)
                time.sleep(self.delays[attempt])
        raise RuntimeError(f"landing function unreachable after {len(self.delays) + 1} attempts: {problem}")


class TopicPublisher:
    """Publishes event lines to `<topic prefix><source>` topics with google-cloud-pubsub."""

    def __init__(self, topic_prefix: str) -> None:
        self.topic_prefix = topic_prefix
        self._client = None

    def __call__(self, source: str, lines: list[bytes], batch_time: datetime, record_keys: list[str]) -> int:
        """Publish one message per line with the source, batch time and the line's record key as
        attributes; returns how many were published."""
        from google.cloud import pubsub_v1

        self._client = self._client or pubsub_v1.PublisherClient()
        stamp = batch_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
        futures = [
            self._client.publish(
                f"{self.topic_prefix}{source}", line, source=source, batch_time=stamp, record_key=record_key
            )
            for line, record_key in zip(lines, record_keys, strict=True)
        ]
        for future in futures:
            future.result(timeout=60)
        return len(futures)


def from_env(env: Mapping[str, str] | None = None) -> tuple[HttpPoster, TopicPublisher]:
    """Return the poster and publisher configured by LAKEHOUSE_LANDING_URL and LAKEHOUSE_TOPIC_PREFIX.

    Raises ValueError naming a missing variable.
    """
    env = os.environ if env is None else env
    missing = [name for name in ("LAKEHOUSE_LANDING_URL", "LAKEHOUSE_TOPIC_PREFIX") if not env.get(name)]
    if missing:
        raise ValueError(f"environment variable(s) {', '.join(missing)} must be set")
    return HttpPoster(env["LAKEHOUSE_LANDING_URL"]), TopicPublisher(env["LAKEHOUSE_TOPIC_PREFIX"])
