"""The landing function's logic: structural validation, routing, idempotent JSONL writes, dead letters."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from ingest.contracts import IDENTIFIER
from ingest.storage import ObjectStore, StoredObject

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_DEAD_LETTER_PAYLOAD_BYTES = 1024 * 1024
UNKNOWN_SOURCE = "_unknown"
BATCH_TIME_HEADER = "X-Batch-Time"
SOURCE_HEADER = "X-Source"
TOKEN_HEADER = "X-Lakehouse-Token"
# A batch time further than this from the arrival time is ignored: it only places objects in partitions.
BATCH_TIME_TOLERANCE = timedelta(days=7)

# Reasons a payload is dead-lettered (the `reason=` partition of the dead-letter bucket).
REASONS = (
    "oversized",
    "not_utf8",
    "not_json",
    "not_object",
    "unknown_source",
    "source_mismatch",
    "request_too_large",
    "bad_envelope",
)


@dataclass(frozen=True)
class LandingConfig:
    """Where and how the landing function writes; built from the environment at the edge."""

    landing_bucket: str
    dead_letter_bucket: str
    sources: frozenset[str]
    auth_mode: str = "token"
    token: str | None = None
    max_event_bytes: int = MAX_EVENT_BYTES
    max_request_bytes: int = MAX_REQUEST_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LandingConfig:
        """Return the config from LANDING_BUCKET, DEAD_LETTER_BUCKET, LANDING_SOURCES (or the contracts),
        LANDING_AUTH_MODE (token | iam | none), LANDING_AUTH_TOKEN and LANDING_MAX_EVENT_BYTES.

        Raises ValueError naming the variable that is missing or invalid.
        """
        env = os.environ if env is None else env
        missing = [name for name in ("LANDING_BUCKET", "DEAD_LETTER_BUCKET") if not env.get(name)]
        if missing:
            raise ValueError(f"environment variable(s) {', '.join(missing)} must be set")
        if env.get("LANDING_SOURCES"):
            sources = frozenset(s.strip() for s in env["LANDING_SOURCES"].split(",") if s.strip())
        else:
            from ingest.contracts import load_contracts

            project_dir = env.get("LAKEHOUSE_PROJECT_DIR") or str(Path(__file__).resolve().parents[1])
            sources = frozenset(load_contracts(project_dir))
        bad = sorted(s for s in sources if not IDENTIFIER.match(s))
        if bad:
            raise ValueError(f"LANDING_SOURCES holds invalid source name(s): {', '.join(bad)}")
        mode = env.get("LANDING_AUTH_MODE", "token")
        if mode not in ("token", "iam", "none"):
            raise ValueError(f"LANDING_AUTH_MODE={mode!r} is not one of token, iam, none")
        token = env.get("LANDING_AUTH_TOKEN")
        if mode == "token" and not token:
            raise ValueError("LANDING_AUTH_MODE=token needs LANDING_AUTH_TOKEN")
        try:
            max_event = int(env.get("LANDING_MAX_EVENT_BYTES", MAX_EVENT_BYTES))
        except ValueError:
            raise ValueError("LANDING_MAX_EVENT_BYTES must be an integer") from None
        return cls(
            landing_bucket=env["LANDING_BUCKET"],
            dead_letter_bucket=env["DEAD_LETTER_BUCKET"],
            sources=sources,
            auth_mode=mode,
            token=token,
            max_event_bytes=max_event,
        )


@dataclass(frozen=True)
class Reject:
    """One payload the landing function refused, with the reason and what exactly was wrong."""

    source: str
    reason: str
    detail: str
    payload: bytes


@dataclass
class Routed:
    """A batch split into accepted lines per source and rejected payloads."""

    accepted: dict[str, list[bytes]] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    blank_lines: int = 0


@dataclass
class LandingResult:
    """What a landed batch produced: counts and the objects written (or already there)."""

    accepted: dict[str, int]
    rejected: dict[str, int]
    objects: list[StoredObject]

    def summary(self) -> dict[str, Any]:
        """Return the JSON body the HTTP entry point answers with."""
        return {
            "accepted": sum(self.accepted.values()),
            "rejected": sum(self.rejected.values()),
            "accepted_by_source": self.accepted,
            "rejected_by_reason": self.rejected,
            "objects": [f"gs://{o.bucket}/{o.name}" for o in self.objects],
            "objects_created": sum(o.created for o in self.objects),
        }


def _error_text(error: Exception) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__


_SOURCE_IN_TEXT = re.compile(rb'"source"\s*:\s*"([a-z][a-z0-9_]{0,62})"')
# JSON whitespace other than the space, as raw bytes. In an accepted line they can only stand between
# tokens (inside a string JSON requires them escaped, and lines split on \n), so a space in their place
# keeps the parsed value; a raw CR would end the line for the bronze CSV reader.
_RAW_WHITESPACE = bytes.maketrans(b"\r\t", b"  ")


def stored_line(line: bytes) -> bytes:
    """Return the text an accepted line is stored as: CR and TAB between JSON tokens become spaces.

    The parsed value is unchanged; every stored line holds no control character, so bronze's raw-line
    reader reads it back as one line, byte for byte.
    """
    if b"\r" in line or b"\t" in line:
        return line.translate(_RAW_WHITESPACE)
    return line


def check_line(line: bytes, declared_source: str | None, config: LandingConfig) -> tuple[str, str | None, str]:
    """Return (source, reason, detail) for one line: reason None means accepted into `source`.

    Structural checks only: size, UTF-8, JSON object, known `source` (matching the declared one).
    Never raises.
    """
    if declared_source is not None:
        fallback = declared_source if declared_source in config.sources else UNKNOWN_SOURCE
    else:
        # An unreadable line still often names its source; use it to file the dead letter.
        guess = _SOURCE_IN_TEXT.search(line[:4096])
        named = guess.group(1).decode() if guess else None
        fallback = named if named in config.sources else UNKNOWN_SOURCE
    if len(line) > config.max_event_bytes:
        return fallback, "oversized", f"{len(line)} bytes > limit {config.max_event_bytes}"
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as decode_error:
            return fallback, "not_utf8", _error_text(decode_error)
        return fallback, "not_json", _error_text(error)
    if not isinstance(event, dict):
        return fallback, "not_object", f"a JSON {type(event).__name__}, not an object"
    source = event.get("source")
    if not isinstance(source, str) or source not in config.sources:
        return UNKNOWN_SOURCE, "unknown_source", f"source {source!r} is not one of {sorted(config.sources)}"
    if declared_source is not None and source != declared_source:
        return fallback, "source_mismatch", f"event source {source!r} in a batch declared {declared_source!r}"
    return source, None, ""


def route(body: bytes, declared_source: str | None, config: LandingConfig) -> Routed:
    """Return the body's lines split into accepted lines per source (as `stored_line` stores them) and
    rejects (the payload as received). Never raises."""
    routed = Routed()
    accepted = routed.accepted
    sources = config.sources
    limit = config.max_event_bytes
    loads = orjson.loads
    for line in body.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            routed.blank_lines += 1
            continue
        # Fast path for the common case; anything unusual goes through check_line for its reason.
        if len(line) <= limit:
            try:
                event = loads(line)
            except orjson.JSONDecodeError:
                event = None
            if type(event) is dict:
                source = event.get("source")
                if type(source) is str and source in sources and (declared_source is None or source == declared_source):
                    accepted.setdefault(source, []).append(stored_line(line))
                    continue
        source, reason, detail = check_line(line, declared_source, config)
        if reason is None:
            accepted.setdefault(source, []).append(stored_line(line))
        else:
            routed.rejects.append(Reject(source, reason, detail, line))
    return routed


def partition(moment: datetime) -> str:
    """Return the `ingest_date=YYYY-MM-DD/hour=HH` partition path of `moment` (UTC)."""
    moment = moment.astimezone(UTC)
    return f"ingest_date={moment:%Y-%m-%d}/hour={moment:%H}"


def landing_object_name(source: str, lines: list[bytes], moment: datetime, identity: bytes = b"") -> str:
    """Return the idempotent object name of a batch's lines: the same lines (and `identity`, e.g. a
    Pub/Sub message id) at the same moment give the same name."""
    digest = hashlib.sha256(identity + b"\n".join(lines)).hexdigest()[:40]
    return f"source={source}/{partition(moment)}/{digest}.jsonl"


def dead_letter_record(reject: Reject, received_at: datetime) -> dict[str, Any]:
    """Return the dead-letter record of a reject: reason, error detail and the raw payload."""
    payload = reject.payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES]
    record: dict[str, Any] = {
        "source": reject.source,
        "reason": reject.reason,
        "error": reject.detail,
        "received_at": received_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "payload_bytes": len(reject.payload),
        "payload_truncated": len(payload) < len(reject.payload),
    }
    try:
        record["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        record["payload_base64"] = base64.b64encode(payload).decode()
    return record


def dead_letter_objects(rejects: list[Reject], moment: datetime) -> list[tuple[str, bytes, int]]:
    """Return (object name, JSONL content, record count) per (source, reason) of `rejects`.

    The name hashes only the payloads and the reason, so a retried batch maps to the same object.
    """
    groups: dict[tuple[str, str], list[Reject]] = {}
    for reject in rejects:
        groups.setdefault((reject.source, reject.reason), []).append(reject)
    objects = []
    for (source, reason), items in sorted(groups.items()):
        digest = hashlib.sha256(reason.encode())
        for item in items:
            digest.update(len(item.payload).to_bytes(8, "big"))
            digest.update(item.payload)
        content = b"".join(orjson.dumps(dead_letter_record(item, moment)) + b"\n" for item in items)
        name = f"source={source}/reason={reason}/{partition(moment)}/{digest.hexdigest()[:40]}.jsonl"
        objects.append((name, content, len(items)))
    return objects


def land(
    routed: Routed, store: ObjectStore, config: LandingConfig, moment: datetime, identity: bytes = b""
) -> LandingResult:
    """Write a routed batch: one JSONL object per source, one dead-letter object per (source, reason).

    `identity` goes into the landing object names (the Pub/Sub message id: two messages with the same
    text are two objects, one message delivered twice is one). Returns the counts and objects. Raises
    StorageUnavailable when storage stays down; every object written before that is complete, and a
    retry of the batch recreates none of them.
    """
    objects = []
    for name, content, count in dead_letter_objects(routed.rejects, moment):
        objects.append(
            store.put_new(
                config.dead_letter_bucket,
                name,
                content,
                content_type="application/x-ndjson",
                metadata={"records": str(count)},
            )
        )
    for source in sorted(routed.accepted):
        lines = routed.accepted[source]
        objects.append(
            store.put_new(
                config.landing_bucket,
                landing_object_name(source, lines, moment, identity),
                b"\n".join(lines) + b"\n",
                content_type="application/x-ndjson",
                metadata={"records": str(len(lines)), "source": source},
            )
        )
    rejected: dict[str, int] = {}
    for reject in routed.rejects:
        rejected[reject.reason] = rejected.get(reject.reason, 0) + 1
    return LandingResult({s: len(v) for s, v in sorted(routed.accepted.items())}, rejected, objects)


def parse_batch_time(value: str | None, received_at: datetime) -> datetime:
    """Return the batch time a client stamped (ISO 8601) if plausible, else `received_at`.

    A retried batch that repeats its batch time lands in the same partition under the same name.
    """
    if value:
        try:
            stamped = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return received_at
        if stamped.tzinfo is None:
            stamped = stamped.replace(tzinfo=UTC)
        if abs(stamped - received_at) <= BATCH_TIME_TOLERANCE:
            return stamped
    return received_at


def authorized(headers: Mapping[str, str], config: LandingConfig) -> bool:
    """Return True when the caller is allowed in.

    `token`: `Authorization: Bearer <LANDING_AUTH_TOKEN>` or `X-Lakehouse-Token`, compared in constant
    time. `iam`: the platform (Cloud Run IAM) verified the caller's identity token before the request
    reached the function, so a bearer token must merely be present. `none`: local use only.
    """
    if config.auth_mode == "none":
        return True
    header = headers.get("Authorization", "") or ""
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if config.auth_mode == "iam":
        return bool(bearer)
    offered = bearer or (headers.get(TOKEN_HEADER) or "")
    return bool(config.token) and hmac.compare_digest(offered.encode(), config.token.encode())


def handle_http(
    method: str,
    headers: Mapping[str, str],
    args: Mapping[str, str],
    read_body: Any,
    content_length: int | None,
    config: LandingConfig,
    store: ObjectStore,
    now: datetime,
) -> tuple[int, dict[str, Any]]:
    """Return (HTTP status, JSON body) for a batch POSTed to the landing function.

    200 with counts when at least one event landed; 4xx with a message naming what was wrong
    (every refused payload is dead-lettered first, except for unauthenticated callers). Raises
    StorageUnavailable when storage stays down (the entry point answers 503 and the caller retries).
    """
    if method != "POST":
        return 405, {"error": f"method {method} not allowed: POST a batch of JSON events, one per line"}
    if not authorized(headers, config):
        return 401, {"error": "unauthenticated: send Authorization: Bearer <token>"}
    declared = args.get("source") or headers.get(SOURCE_HEADER) or None
    moment = parse_batch_time(headers.get(BATCH_TIME_HEADER), now)
    limit = config.max_request_bytes
    if content_length is not None and content_length > limit:
        body = read_body(MAX_DEAD_LETTER_PAYLOAD_BYTES)
        source = declared if declared in config.sources else UNKNOWN_SOURCE
        detail = f"request body of {content_length} bytes > limit {limit}"
        land(Routed(rejects=[Reject(source, "request_too_large", detail, body)]), store, config, moment)
        return 413, {"error": detail + "; split the batch"}
    body = read_body(None)
    if len(body) > limit:
        source = declared if declared in config.sources else UNKNOWN_SOURCE
        detail = f"request body of {len(body)} bytes > limit {limit}"
        land(Routed(rejects=[Reject(source, "request_too_large", detail, body)]), store, config, moment)
        return 413, {"error": detail + "; split the batch"}
    routed = route(body, declared, config)
    if not routed.accepted and not routed.rejects:
        return 400, {"error": "empty batch: send one JSON event per line"}
    result = land(routed, store, config, moment)
    summary = result.summary()
    log.info(orjson.dumps({"message": "batch landed", **summary, "objects": len(result.objects)}).decode())
    if not routed.accepted:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(result.rejected.items()))
        return 422, {**summary, "error": f"no event accepted ({reasons}); all were dead-lettered"}
    return 200, summary


def handle_pubsub_push(envelope: Any, config: LandingConfig, store: ObjectStore, now: datetime) -> LandingResult:
    """Land the message of a Pub/Sub push CloudEvent (`{"message": {...}, "subscription": ...}`).

    The object's partition and name come from the message alone (its publish time and id), however
    late it is delivered: a redelivery, or a replay from the dead-letter topic days later, lands under
    the same name. `now` is used only when the message has no readable publish time. A malformed
    envelope is dead-lettered as `bad_envelope`. Raises StorageUnavailable only.
    """
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raw = orjson.dumps(envelope, default=str)
        routed = Routed(rejects=[Reject(UNKNOWN_SOURCE, "bad_envelope", "no message in the event", raw)])
        return land(routed, store, config, now)
    attributes = message.get("attributes") if isinstance(message.get("attributes"), dict) else {}
    declared = attributes.get("source")
    moment = publish_time(message.get("publishTime") or message.get("publish_time")) or now
    message_id = message.get("messageId") or message.get("message_id")
    identity = f"pubsub:{message_id}\n".encode() if isinstance(message_id, (str, int)) else b""
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError) as error:
        raw = orjson.dumps(message, default=str)
        routed = Routed(rejects=[Reject(UNKNOWN_SOURCE, "bad_envelope", f"data is not base64: {error}", raw)])
        return land(routed, store, config, moment)
    routed = route(data, declared if isinstance(declared, str) else None, config)
    if not routed.accepted and not routed.rejects:
        routed.rejects.append(Reject(UNKNOWN_SOURCE, "bad_envelope", "message without data", data))
    return land(routed, store, config, moment, identity)


def publish_time(value: Any) -> datetime | None:
    """Return a Pub/Sub publish time (RFC 3339, set by the service, so trusted at any age), or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        stamped = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamped if stamped.tzinfo is not None else stamped.replace(tzinfo=UTC)
