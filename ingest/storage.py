"""Write-once object storage on GCS (or fake-gcs-server) with retries and create-only preconditions."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

RETRY_DELAYS_SECONDS = (0.2, 0.5, 1.0, 2.0)


class StorageUnavailable(RuntimeError):
    """Storage could not be reached after every retry; the caller should retry the whole request."""


@dataclass(frozen=True)
class StoredObject:
    """One object a write produced or found: GCS resource fields, and whether this call created it."""

    bucket: str
    name: str
    created: bool
    resource: dict[str, Any]


class ObjectStore(Protocol):
    """What the landing function needs from storage."""

    def put_new(
        self, bucket: str, name: str, data: bytes, *, content_type: str, metadata: dict[str, str]
    ) -> StoredObject:
        """Create `name` unless it exists; returns the object and whether this call created it."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    return (
        ConnectionError,
        TimeoutError,
        requests.ConnectionError,
        requests.Timeout,
        exceptions.ServiceUnavailable,
        exceptions.InternalServerError,
        exceptions.TooManyRequests,
        exceptions.GatewayTimeout,
        exceptions.BadGateway,
        auth_exceptions.TransportError,
    )


def with_retries(
    action: Callable[[], Any],
    what: str,
    delays: tuple[float, ...] = RETRY_DELAYS_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Return action(), retried with backoff on transient storage errors.

    Raises StorageUnavailable naming `what` once every retry failed; other errors pass through.
    """
    transient = _transient_errors()
    for attempt in range(len(delays) + 1):
        try:
            return action()
        except transient as error:
            if attempt == len(delays):
                raise StorageUnavailable(
                    f"{what}: storage unavailable after {attempt + 1} attempts: {error}"
                ) from error
            log.warning("retrying %s after %s (attempt %d)", what, type(error).__name__, attempt + 1)
            sleep(delays[attempt])
    raise AssertionError("unreachable")


class GcsStore:
    """ObjectStore over google-cloud-storage; honours STORAGE_EMULATOR_HOST (fake-gcs-server)."""

    def __init__(self, client: Any | None = None, delays: tuple[float, ...] | None = None) -> None:
        self._client = client
        self._buckets: dict[str, Any] = {}
        self.delays = RETRY_DELAYS_SECONDS if delays is None else delays

    @property
    def client(self) -> Any:
        """Return the storage client, created on first use (never at import time)."""
        if self._client is None:
            from google.cloud import storage

            if os.environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                project = os.environ.get("GOOGLE_CLOUD_PROJECT", "local")
                self._client = storage.Client(project=project, credentials=AnonymousCredentials())
                # A loopback emulator never needs a proxy; requests would otherwise rescan the
                # environment for proxy settings on every upload (about 2 ms of CPU each).
                self._client._http.trust_env = False
            else:
                self._client = storage.Client()
        return self._client

    def _bucket(self, name: str) -> Any:
        if name not in self._buckets:
            self._buckets[name] = self.client.bucket(name)
        return self._buckets[name]

    def put_new(
        self, bucket: str, name: str, data: bytes, *, content_type: str, metadata: dict[str, str]
    ) -> StoredObject:
        """Create gs://bucket/name with `data` unless it exists (ifGenerationMatch=0).

        Returns the stored object; `created` is False when an earlier attempt already wrote it.
        Raises StorageUnavailable after the retries.
        """
        from google.api_core.exceptions import PreconditionFailed

        blob = self._bucket(bucket).blob(name)
        blob.metadata = metadata

        def upload() -> StoredObject:
            try:
                blob.upload_from_string(data, content_type=content_type, if_generation_match=0, retry=None)
            except PreconditionFailed:
                return StoredObject(bucket, name, False, {"bucket": bucket, "name": name})
            return StoredObject(bucket, name, True, dict(blob._properties))

        return with_retries(upload, f"write gs://{bucket}/{name}", self.delays)

    def ensure_buckets(self, *names: str) -> None:
        """Create the buckets that do not exist yet (local emulator use)."""
        from google.api_core.exceptions import Conflict

        for name in names:
            try:
                with_retries(lambda name=name: self.client.create_bucket(name), f"create bucket {name}", self.delays)
            except Conflict:
                pass
