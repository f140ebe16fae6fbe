"""Tests for the file-arrival audit written by the finalize handler."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

from cloudevents.http import CloudEvent

from ingest import audit, main
from ingest.landing import Routed, land
from lakehouse import paths
from lakehouse.warehouse import open_catalog

PROJECT = "test-local"
NOW = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


def _finalized(resource: dict) -> CloudEvent:
    attributes = {
        "type": "google.cloud.storage.object.v1.finalized",
        "source": f"//storage.googleapis.com/projects/_/buckets/{resource['bucket']}",
        "subject": f"objects/{resource['name']}",
    }
    return CloudEvent(attributes, resource)


def test_finalize_event_records_the_landed_object_once(lakehouse_home, monkeypatch, config, store):
    lines = [b'{"source":"orders","event_id":"a"}', b'{"source":"orders","event_id":"b"}']
    result = land(Routed(accepted={"orders": lines}), store, config, NOW)
    resource = result.objects[0].resource
    monkeypatch.setenv("LAKEHOUSE_PROJECT", PROJECT)
    monkeypatch.delenv("FILE_ARRIVALS_TABLE", raising=False)
    main.on_object_finalized(_finalized(resource))
    main.on_object_finalized(_finalized(resource))  # GCS delivers events at least once
    with open_catalog(lakehouse_home, PROJECT) as con:
        rows = con.execute(
            "SELECT bucket, object_name, source, size_bytes, md5_hash, crc32c, record_count, content_type "
            "FROM ops.file_arrivals"
        ).fetchall()
    size = len(b"\n".join(lines) + b"\n")
    assert rows == [
        (
            config.landing_bucket,
            result.objects[0].name,
            "orders",
            size,
            resource["md5Hash"],
            resource["crc32c"],
            2,
            "application/x-ndjson",
        ),
    ]


def test_arrival_row_from_a_minimal_resource():
    row = audit.arrival_row({"bucket": "b", "name": "misc/file.csv", "size": "12"}, NOW)
    assert row["source"] is None and row["size_bytes"] == 12 and row["record_count"] is None
    assert row["arrived_at"] == NOW
    assert audit.arrival_row({"name": "x"}, NOW) is None


def test_a_local_run_records_what_landed_as_finalize_would(lakehouse_home, fake_gcs, store, config):
    """Locally nothing sends finalize notifications: the run records every file of the local landing
    bucket that has no arrival yet, with the emulator's generation and metadata where it wrote the
    object, the file's modification time (µs) as the generation otherwise; never twice, and not a
    hidden file (an upload in progress)."""
    landed = land(Routed(accepted={"orders": [b'{"source":"orders","event_id":"a"}']}), store, config, NOW)
    written = landed.objects[0]
    bucket_dir = paths.gcs_object_path(lakehouse_home, config.landing_bucket, "")
    # the local bucket as fake-gcs-server keeps it: its files, each object's metadata in an xattr
    shutil.copytree(fake_gcs.root / config.landing_bucket, bucket_dir)
    folder = bucket_dir / "source=orders" / "ingest_date=2020-01-02" / "hour=03"
    folder.mkdir(parents=True)
    by_hand = folder / "copied-by-hand.jsonl"
    by_hand.write_text('{"source":"orders","event_id":"b"}\n')
    (folder / ".upload-in-progress").write_text("partial")
    later = datetime(2026, 11, 23, tzinfo=UTC)
    with open_catalog(lakehouse_home, PROJECT) as con:
        assert audit.record_local_landing(con, PROJECT, lakehouse_home, config.landing_bucket, later) == 2
        assert audit.record_local_landing(con, PROJECT, lakehouse_home, config.landing_bucket, later) == 0
        rows = con.execute(
            "SELECT object_name, generation, record_count, arrived_at FROM ops.file_arrivals ORDER BY object_name"
        ).fetchall()
    assert rows == [
        (
            "source=orders/ingest_date=2020-01-02/hour=03/copied-by-hand.jsonl",
            str(by_hand.stat().st_mtime_ns // 1000),
            None,
            later,
        ),
        (written.name, str(written.resource["generation"]), 1, _instant(written.resource["timeCreated"])),
    ]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
