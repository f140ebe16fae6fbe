"""Tests for the file-arrival audit written by the finalize handler."""

from __future__ import annotations

from datetime import UTC, datetime

from cloudevents.http import CloudEvent

from ingest import audit, main
from ingest.landing import Routed, land
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
