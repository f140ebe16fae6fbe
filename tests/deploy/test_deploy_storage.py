"""StorageAdapter with the real google-cloud-storage client against fake-gcs-server.

fake-gcs-server keeps buckets and objects but not labels, lifecycle rules or IAM: those are covered
by the fakes in test_deploy_apply.py; here the adapter's calls into the library are exercised.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.api_core import exceptions as gexc

from deploy.clients import Clients, StorageAdapter
from deploy.handlers import BucketHandler, SourceArchiveHandler, build_bucket
from deploy.resources import Resource


@pytest.fixture(scope="module")
def storage_client(tmp_path_factory) -> Iterator[StorageAdapter]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from ingest.services import FakeGcs, ServiceError, environment

    root = tmp_path_factory.mktemp("deploy-gcs")
    try:
        server = FakeGcs(root / "data", root / "logs")
        server.start()
    except ServiceError as error:
        pytest.skip(f"fake-gcs-server is not available: {error}")
    try:
        with environment(STORAGE_EMULATOR_HOST=server.url):
            yield StorageAdapter(storage.Client(project="test-local", credentials=AnonymousCredentials()))
    finally:
        server.stop()


SPEC = {
    "project": "test-local",
    "location": "US",
    "storage_class": "STANDARD",
    "uniform_bucket_level_access": True,
    "public_access_prevention": "enforced",
    "lifecycle_rules": [],
    "labels": {"managed-by": "lakehouse-kit"},
}


def test_bucket_lifecycle_and_source_archive_upload(storage_client, project_dir):
    clients = Clients(storage=storage_client)
    bucket = Resource("bucket", "lh-deploy-functions", SPEC)
    handler = BucketHandler()
    assert handler.read(clients, bucket, SPEC) is None
    handler.create(clients, bucket, SPEC)
    assert storage_client.lookup_bucket("lh-deploy-functions").name == "lh-deploy-functions"

    archive = Resource(
        "source_archive",
        "lakehouse",
        {"bucket": "lh-deploy-functions", "entry_points": {"trigger": "deploy.function:workflow_trigger"}},
    )
    uploader = SourceArchiveHandler(project_dir)
    spec = dict(archive.spec)
    assert uploader.read(clients, archive, spec) is None
    uploader.create(clients, archive, spec)
    assert uploader.read(clients, archive, spec).outputs == {"sha": uploader.archive(archive)[0]}
    name = uploader.object_name(archive)
    assert storage_client.object_exists("lh-deploy-functions", name)
    with pytest.raises(gexc.PreconditionFailed):  # never overwritten: the name is the hash
        storage_client.upload_object("lh-deploy-functions", name, b"other bytes")

    handler.delete(clients, bucket, SPEC)
    assert storage_client.lookup_bucket("lh-deploy-functions") is None


def test_a_taken_bucket_name_conflicts(storage_client):
    storage_client.create_bucket(build_bucket(Resource("bucket", "lh-deploy-taken", SPEC), SPEC), "test-local", "US")
    with pytest.raises(gexc.Conflict):
        storage_client.create_bucket(
            build_bucket(Resource("bucket", "lh-deploy-taken", SPEC), SPEC), "test-local", "US"
        )
    storage_client.delete_bucket("lh-deploy-taken", force=True)


def test_destroy_empties_a_bucket_of_more_than_256_objects_first(storage_client):
    """The client refuses delete(force=True) above 256 objects: the adapter deletes them itself."""
    storage_client.create_bucket(build_bucket(Resource("bucket", "lh-deploy-full", SPEC), SPEC), "test-local", "US")
    bucket = storage_client.client.bucket("lh-deploy-full")
    for index in range(300):
        bucket.blob(f"orders/ingest_date=2026-11-22/{index:04d}.jsonl").upload_from_string(b"{}\n")
    with pytest.raises(ValueError, match="more than 256 objects"):  # what force=True alone does
        bucket.delete(force=True)
    handler = BucketHandler()
    detail = handler.delete(Clients(storage=storage_client), Resource("bucket", "lh-deploy-full", SPEC), SPEC)
    assert detail == "300 objects deleted"
    assert storage_client.lookup_bucket("lh-deploy-full") is None


def test_the_apply_lock_is_taken_once_and_released(storage_client):
    storage_client.create_bucket(build_bucket(Resource("bucket", "lh-deploy-lock", SPEC), SPEC), "test-local", "US")
    generation = storage_client.create_lock("lh-deploy-lock", "deploy.lock", b'{"holder": "a"}')
    assert generation is not None
    assert storage_client.create_lock("lh-deploy-lock", "deploy.lock", b'{"holder": "b"}') is None
    assert storage_client.read_lock("lh-deploy-lock", "deploy.lock") == b'{"holder": "a"}'
    storage_client.delete_lock("lh-deploy-lock", "deploy.lock", generation)
    assert storage_client.read_lock("lh-deploy-lock", "deploy.lock") is None
    assert storage_client.create_lock("lh-deploy-lock", "deploy.lock", b'{"holder": "b"}') is not None
    storage_client.delete_bucket("lh-deploy-lock", force=True)
