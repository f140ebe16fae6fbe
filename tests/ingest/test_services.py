"""Tests for the local services: started in their own process group, stopped without orphans."""

from __future__ import annotations

import os
import subprocess
import sys

from ingest.services import ChildProcess, FakeGcs, environment


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_kills_the_whole_process_group(tmp_path):
    # A parent that starts a child ignoring SIGTERM: stop() must still leave nothing behind.
    script = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); time.sleep(60)"
    )
    child = ChildProcess("sleeper", [sys.executable, "-c", script], tmp_path / "sleeper.log")
    child.start()
    pgid = child.process.pid
    assert _group_alive(pgid)
    child.stop(timeout=0.5)
    subprocess.run(["sleep", "0.2"], check=True)
    assert not _group_alive(pgid)
    child.stop()  # idempotent


def test_fake_gcs_keeps_objects_as_plain_files(tmp_path):
    from ingest.storage import GcsStore
    from lakehouse import paths

    home = tmp_path / "home"
    server = FakeGcs(paths.gcs_root(home), tmp_path / "logs")
    server.start()
    try:
        with environment(STORAGE_EMULATOR_HOST=server.url):
            store = GcsStore()
            store.ensure_buckets("landing")
            stored = store.put_new(
                "landing",
                "source=orders/ingest_date=2026-11-22/hour=01/abc.jsonl",
                b"{}\n",
                content_type="application/x-ndjson",
                metadata={"records": "1"},
            )
            assert stored.created and stored.resource["size"] == "3"
            assert not store.put_new("landing", stored.name, b"other", content_type="text/plain", metadata={}).created
    finally:
        server.stop()
    assert paths.gcs_object_path(home, "landing", stored.name).read_bytes() == b"{}\n"
    assert not server.child.alive()


def test_environment_restores_variables(monkeypatch):
    monkeypatch.setenv("LH_TEST_A", "1")
    monkeypatch.delenv("LH_TEST_B", raising=False)
    with environment(LH_TEST_A=None, LH_TEST_B="2"):
        assert "LH_TEST_A" not in os.environ and os.environ["LH_TEST_B"] == "2"
    assert os.environ["LH_TEST_A"] == "1" and "LH_TEST_B" not in os.environ


def test_fake_gcs_binary_is_found():
    from ingest.services import fake_gcs_binary

    assert fake_gcs_binary().is_file() and os.access(fake_gcs_binary(), os.X_OK)
