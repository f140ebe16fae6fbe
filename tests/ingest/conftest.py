"""Ingest fixtures: fake-gcs-server and the Pub/Sub emulator, started once per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.contracts import load_contracts
from ingest.landing import LandingConfig
from ingest.services import FakeGcs, environment
from ingest.storage import GcsStore

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"


@pytest.fixture(scope="session")
def contracts():
    """The repository's contracts."""
    return load_contracts(REPO)


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory) -> Iterator[FakeGcs]:
    """A fake-gcs-server for the whole session, objects as files under a temporary root."""
    root = tmp_path_factory.mktemp("gcs")
    server = FakeGcs(root, root.parent / "gcs-logs")
    server.start()
    try:
        with environment(STORAGE_EMULATOR_HOST=server.url, GOOGLE_CLOUD_PROJECT="test-local"):
            yield server
    finally:
        server.stop()


@pytest.fixture
def store(fake_gcs) -> GcsStore:
    """A storage client on the session's fake-gcs-server, with short retry delays."""
    return GcsStore(delays=(0.01, 0.02))


@pytest.fixture
def config(store, contracts) -> LandingConfig:
    """A landing config with fresh buckets of this test."""
    suffix = uuid.uuid4().hex[:10]
    landing, dead = f"landing-{suffix}", f"dead-{suffix}"
    store.ensure_buckets(landing, dead)
    return LandingConfig(landing, dead, frozenset(contracts), auth_mode="token", token=TOKEN)


def files_under(fake_gcs: FakeGcs, bucket: str) -> dict[str, bytes]:
    """Return {object name: content} of a bucket, read straight from fake-gcs-server's files."""
    root = fake_gcs.root / bucket
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def config_for_fuzz(contracts) -> LandingConfig:
    """A landing config for the pure routing functions (no storage needed)."""
    return LandingConfig("landing", "dead", frozenset(contracts), auth_mode="token", token=TOKEN)
