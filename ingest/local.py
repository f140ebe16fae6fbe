"""Run the ingest path locally: services up, land over the HTTP function, publish, write raw tables."""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from ingest import audit, pubsub
from ingest.generator import SourcePlan, route
from ingest.landing import BATCH_TIME_HEADER
from ingest.services import FakeGcs, PubSubEmulator, ServiceError, environment
from ingest.storage import GcsStore
from lakehouse import paths

log = logging.getLogger(__name__)

MAIN_PY = Path(__file__).resolve().parent / "main.py"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Settings:
    """Where the local ingest writes: project (DuckDB catalog), buckets, and local state directory."""

    project_dir: Path
    home: Path
    project: str
    landing_bucket: str
    dead_letter_bucket: str

    @classmethod
    def load(cls, project_dir: Path | str) -> Settings:
        """Return the settings read from workflow_settings.yaml and LAKEHOUSE_HOME.

        The dead-letter bucket is vars.dead_letter_bucket, else <landing bucket>-dead-letter. Raises
        ValueError naming the file when it is missing, lacks defaultProject / vars.landing_bucket or names
        an invalid bucket.
        """
        project_dir = Path(project_dir).resolve()
        path = project_dir / "workflow_settings.yaml"
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ValueError(f"{path}: cannot be read: {error}") from None
        project = data.get("defaultProject")
        variables = data.get("vars") or {}
        bucket = variables.get("landing_bucket")
        if not isinstance(project, str) or not project:
            raise ValueError(f"{path}: defaultProject is missing")
        if not isinstance(bucket, str) or not bucket:
            raise ValueError(f"{path}: vars.landing_bucket is missing")
        try:
            paths.catalog_file(paths.home(project_dir), project)  # validates the project id
        except ValueError as error:
            raise ValueError(f"{path}: defaultProject: {error}") from None
        # The same default as definitions/ops/quality.js when the project names no dead-letter bucket.
        dead_letter = variables.get("dead_letter_bucket") or f"{bucket}-dead-letter"
        named = "vars.dead_letter_bucket" if variables.get("dead_letter_bucket") else "vars.landing_bucket"
        for var, name in (("vars.landing_bucket", bucket), (named, dead_letter)):
            if not isinstance(name, str) or not _BUCKET_NAME.match(name):
                raise ValueError(
                    f"{path}: {var}: {name!r} is not a valid bucket name "
                    "(3-63 lower-case letters, digits, '-', '_' or '.'; the dead-letter bucket, unless "
                    "vars.dead_letter_bucket names it, adds '-dead-letter')"
                )
        return cls(project_dir, paths.home(project_dir), project, bucket, dead_letter)


@dataclass
class Services:
    """The running local services and the clients that talk to them."""

    gcs: FakeGcs
    store: GcsStore
    bus: Any = None
    pubsub_kind: str = "none"
    emulator: PubSubEmulator | None = None
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))


@contextlib.contextmanager
def local_services(settings: Settings, *, with_pubsub: bool = True, prefer_emulator: bool = True) -> Iterator[Services]:
    """Start fake-gcs-server (and the Pub/Sub emulator, or the in-process bus) and stop them on exit.

    The environment points the real clients at them for the duration. Raises ServiceError when
    fake-gcs-server cannot start; a missing or failing Pub/Sub emulator falls back to the in-process bus.
    """
    logs = settings.home / "logs"
    gcs = FakeGcs(paths.gcs_root(settings.home), logs)
    emulator = None
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM would end Python without running `finally`: turn it into KeyboardInterrupt so the
        # services are stopped on the way out.
        previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        gcs.start()
        bus: Any = None
        kind = "none"
        pubsub_host = None
        if with_pubsub:
            emulator = PubSubEmulator.find(logs) if prefer_emulator else None
            if emulator is not None:
                try:
                    emulator.start()
                    pubsub_host = emulator.host_port
                    kind = "emulator"
                except ServiceError as error:
                    log.warning("Pub/Sub emulator failed (%s); using the in-process bus", error)
                    emulator = None
            if emulator is None:
                kind = "in-process"
        with environment(
            STORAGE_EMULATOR_HOST=gcs.url,
            PUBSUB_EMULATOR_HOST=pubsub_host,
            GOOGLE_CLOUD_PROJECT=settings.project,
        ):
            store = GcsStore()
            store.ensure_buckets(settings.landing_bucket, settings.dead_letter_bucket)
            if kind == "emulator":
                bus = pubsub.EmulatorBus(settings.project, pubsub_host)
            elif kind == "in-process":
                bus = pubsub.InProcessBus(settings.project)
            services = Services(gcs=gcs, store=store, bus=bus, pubsub_kind=kind, emulator=emulator)
            try:
                yield services
            finally:
                # A second Ctrl-C or SIGTERM must not cut the stopping short and leave a service
                # behind: hold them until everything is stopped, then deliver them.
                _hold_signals()
                if bus is not None:
                    bus.close()
    finally:
        held = _hold_signals()
        try:
            if emulator is not None:
                emulator.stop()
            gcs.stop()
        finally:
            _release_signals(held)
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


_HELD = {signal.SIGINT, signal.SIGTERM}


def _hold_signals() -> bool:
    """Block SIGINT and SIGTERM in this thread (main thread only; blocking twice is harmless);
    returns whether they are blocked."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    return True


def _release_signals(held: bool) -> None:
    """Unblock what _hold_signals blocked; a signal that came meanwhile is delivered now."""
    if held:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)


@contextlib.contextmanager
def landing_app(settings: Settings, services: Services) -> Iterator[Any]:
    """Yield a test client of the landing function served by functions-framework (in process)."""
    import functions_framework

    with environment(
        LANDING_BUCKET=settings.landing_bucket,
        DEAD_LETTER_BUCKET=settings.dead_letter_bucket,
        LANDING_AUTH_MODE="token",
        LANDING_AUTH_TOKEN=services.token,
        LAKEHOUSE_PROJECT_DIR=str(settings.project_dir),
        LANDING_SOURCES=None,
    ):
        app = functions_framework.create_app(target="land_http", source=str(MAIN_PY))
        yield app.test_client()


@dataclass
class IngestStats:
    """Counts of one ingest run, for the CLI summary and the benchmark."""

    events: int = 0
    lines: int = 0
    http_batches: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    objects_created: int = 0
    objects: list[str] = field(default_factory=list)
    published: int = 0
    raw_rows: int = 0
    raw_rows_already_written: int = 0
    pubsub_dead_lettered: int = 0
    arrivals_recorded: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def add_rejected(self, counts: dict[str, int]) -> None:
        """Add dead-letter counts by reason."""
        for reason, count in counts.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + count


def post_batch(client: Any, token: str, source: str, lines: list[bytes], batch_time: datetime) -> tuple[int, dict]:
    """POST one batch to the landing function; returns (status, JSON answer)."""
    response = client.post(
        f"/?source={source}",
        data=b"\n".join(lines),
        headers={
            "Authorization": f"Bearer {token}",
            BATCH_TIME_HEADER: batch_time.astimezone(UTC).isoformat(),
            "Content-Type": "application/x-ndjson",
        },
    )
    return response.status_code, orjson.loads(response.data)


def land_generated(
    settings: Settings,
    services: Services,
    plans: Mapping[str, SourcePlan],
    *,
    batch_size: int,
    pubsub_share: float = 0.0,
    batch_time: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestStats:
    """Land planned events as they are drawn, a chunk at a time: HTTP batches through the landing
    function, the last `pubsub_share` of each source's lines published to Pub/Sub with their record keys.

    Returns the counts. Raises RuntimeError when the landing function answers 5xx (storage down).
    """
    stats = IngestStats()
    batch_time = batch_time or datetime.now(UTC)
    started = time.perf_counter()
    posting = publishing = 0.0
    share = pubsub_share if services.bus is not None else 0.0
    if share > 0:
        pubsub.ensure_topology(services.bus, plans)
    with landing_app(settings, services) as client:
        for source, plan in plans.items():
            stats.events += plan.events
            stats.lines += plan.lines
            for piece in route(plan, batch_size, share):
                step_started = time.perf_counter()
                if piece.kind == "publish":
                    keys = [plan.record_key(piece.start + offset) for offset in range(len(piece.lines))]
                    ids = pubsub.publish_events(services.bus, source, piece.lines, batch_time, record_keys=keys)
                    stats.published += len(ids)
                    publishing += time.perf_counter() - step_started
                else:
                    status, answer = post_batch(client, services.token, source, piece.lines, batch_time)
                    if status >= 500 or status in (401, 405):
                        raise RuntimeError(
                            f"landing function answered {status} for the {source} batch of lines "
                            f"{piece.start}-{piece.start + len(piece.lines) - 1}: {answer}"
                        )
                    stats.http_batches += 1
                    stats.accepted += answer.get("accepted", 0)
                    stats.add_rejected(answer.get("rejected_by_reason", {}))
                    stats.objects_created += answer.get("objects_created", 0)
                    stats.objects.extend(answer.get("objects", []))
                    posting += time.perf_counter() - step_started
                if progress:
                    progress(len(piece.lines))
    stats.seconds["generate"] = time.perf_counter() - started - posting - publishing
    stats.seconds["land_http"] = posting
    if publishing:
        stats.seconds["publish"] = publishing
    return stats


def record_arrivals(settings: Settings, services: Services, object_uris: list[str]) -> int:
    """Record the landed objects in ops.file_arrivals as the finalize handler would; returns new rows."""
    wanted: dict[str, set[str]] = {}
    for uri in object_uris:
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        wanted.setdefault(bucket, set()).add(name)
    from google.api_core import exceptions

    resources = []
    for bucket, names in wanted.items():
        folders: dict[str, set[str]] = {}
        for name in names:
            folders.setdefault(name.rpartition("/")[0], set()).add(name)
        for folder, in_folder in sorted(folders.items()):
            try:
                listed = list(services.store.client.list_blobs(bucket, prefix=f"{folder}/" if folder else None))
            except exceptions.NotFound:
                # the emulator cannot list a folder holding a file copied in by hand (no metadata of its
                # own): read each landed object instead
                listed = []
                for name in sorted(in_folder):
                    blob = services.store.client.bucket(bucket).get_blob(name)
                    if blob is None:
                        log.warning("gs://%s/%s landed but cannot be read back: no arrival recorded", bucket, name)
                    else:
                        listed.append(blob)
            resources.extend(dict(blob._properties) for blob in listed if blob.name in in_folder)
    sink = audit.DuckDbArrivalSink(settings.home, settings.project)
    return audit.record_objects(resources, sink, datetime.now(UTC))


def drain_subscriptions(settings: Settings, services: Services, sources: list[str]) -> pubsub.DrainResult:
    """Run the subscription writer for each source until its subscription is empty; returns the totals."""
    total = pubsub.DrainResult()
    if services.bus is None:
        return total
    pubsub.ensure_topology(services.bus, sources)
    for source in sources:
        result = pubsub.drain_to_warehouse(services.bus, source, settings.home, settings.project)
        total.written += result.written
        total.already_written += result.already_written
        total.dead_lettered += result.dead_lettered
        total.pulls += result.pulls
    # The holding subscription lives in the emulator's memory: keep its messages as on GCP, in the bucket.
    total.dead_letters_kept = pubsub.drain_dead_letters(services.bus, services.store, settings.dead_letter_bucket)
    return total


def clean(settings: Settings) -> None:
    """Delete the local landing and dead-letter buckets, the raw tables and the arrival records."""
    from lakehouse.warehouse import open_catalog

    root = paths.gcs_root(settings.home)
    for bucket in (settings.landing_bucket, settings.dead_letter_bucket):
        shutil.rmtree(root / bucket, ignore_errors=True)
        (root / f"{bucket}.bucketMetadata").unlink(missing_ok=True)
    if paths.catalog_file(settings.home, settings.project).exists():
        with open_catalog(settings.home, settings.project) as con:
            tables = con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND "
                "((schema_name = 'bronze' AND table_name LIKE '%\\_raw' ESCAPE '\\') OR "
                "(schema_name = 'ops' AND table_name = 'file_arrivals'))",
                [settings.project],
            ).fetchall()
            for schema, table in tables:
                con.execute(f'DROP TABLE "{schema}"."{table}"')
