"""Cloud Functions entry points: land an HTTP batch, land a Pub/Sub push message, audit a new object."""

from __future__ import annotations

import functools
import logging
import os
from datetime import UTC, datetime

import functions_framework
import orjson

from ingest import audit, landing
from ingest.storage import GcsStore, StorageUnavailable

log = logging.getLogger(__name__)


_CONFIG_ENV = (
    "LANDING_BUCKET",
    "DEAD_LETTER_BUCKET",
    "LANDING_SOURCES",
    "LANDING_AUTH_MODE",
    "LANDING_AUTH_TOKEN",
    "LANDING_MAX_EVENT_BYTES",
    "LAKEHOUSE_PROJECT_DIR",
)


@functools.cache
def _config_for(_env: tuple) -> landing.LandingConfig:
    return landing.LandingConfig.from_env()


@functools.cache
def _store_for(_emulator: str | None) -> GcsStore:
    return GcsStore()


def _config() -> landing.LandingConfig:
    # Built once per distinct environment, lazily: never at import time.
    return _config_for(tuple(os.environ.get(name) for name in _CONFIG_ENV))


def _store() -> GcsStore:
    return _store_for(os.environ.get("STORAGE_EMULATOR_HOST"))


def _json(status: int, body: dict) -> tuple[bytes, int, dict[str, str]]:
    return orjson.dumps(body), status, {"Content-Type": "application/json"}


@functions_framework.http
def land_http(request):
    """Land a batch of JSON events (one per line); answers 200 with counts or 4xx naming the fault."""
    try:
        config = _config()
    except ValueError as error:
        log.error("landing function misconfigured: %s", error)
        return _json(500, {"error": f"landing function misconfigured: {error}"})
    try:
        status, body = landing.handle_http(
            request.method,
            request.headers,
            request.args,
            lambda limit: request.stream.read(limit) if limit else request.get_data(cache=False),
            request.content_length,
            config,
            _store(),
            datetime.now(UTC),
        )
    except StorageUnavailable as error:
        log.error("storage unavailable: %s", error)
        return _json(503, {"error": "storage unavailable, nothing acknowledged: retry the batch"})
    return _json(status, body)


@functions_framework.cloud_event
def land_pubsub(cloud_event) -> None:
    """Land the message of a Pub/Sub push (messagePublished CloudEvent); raises only to get a redelivery."""
    landing.handle_pubsub_push(cloud_event.data, _config(), _store(), datetime.now(UTC))


@functions_framework.cloud_event
def on_object_finalized(cloud_event) -> None:
    """Record a finalized landing object in the file-arrival control table."""
    audit.record_finalized(cloud_event.data, audit.default_sink(), datetime.now(UTC))


@functools.cache
def _producer() -> tuple:
    from ingest import producer
    from ingest.contracts import load_contracts

    poster, publisher = producer.from_env()
    project_dir = os.environ.get("LAKEHOUSE_PROJECT_DIR") or os.path.dirname(os.path.dirname(__file__))
    return load_contracts(project_dir), poster, publisher


@functions_framework.http
def generate_http(request):
    """Generate one scheduled tick of events (body {"events": N}) and send it to landing and Pub/Sub."""
    from datetime import timedelta

    from ingest import producer

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    params, problem = producer.parse_request(request.get_json(silent=True), now)
    if problem:
        return _json(400, {"error": problem})
    contracts, poster, publisher = _producer()
    result = producer.run_tick(
        contracts, as_of=now, span=timedelta(minutes=2), post_batch=poster, publish=publisher, **params
    )
    log.info(orjson.dumps({"message": "tick sent", **result.__dict__}, default=str).decode())
    return _json(
        200,
        {"events": result.events, "posted": result.accepted + result.rejected, "published": result.published},
    )
