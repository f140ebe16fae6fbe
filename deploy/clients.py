"""The Google Cloud clients deploy uses: one small protocol per resource kind, real ones made lazily."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from google.iam.v1 import policy_pb2


class IamPolicyClient(Protocol):
    """get/set IAM policy as every gRPC Google Cloud client spells it."""

    def get_iam_policy(self, request: Any) -> policy_pb2.Policy: ...

    def set_iam_policy(self, request: Any) -> policy_pb2.Policy: ...


class ServiceAccountClient(IamPolicyClient, Protocol):
    """iam_admin_v1.IAMClient."""

    def get_service_account(self, request: Any) -> Any: ...
    def create_service_account(self, request: Any) -> Any: ...
    def patch_service_account(self, request: Any) -> Any: ...
    def delete_service_account(self, request: Any) -> None: ...


class BucketClient(Protocol):
    """Buckets and objects, with storage.Bucket as the message type (see StorageAdapter)."""

    def lookup_bucket(self, name: str) -> Any: ...
    def create_bucket(self, bucket: Any, project: str, location: str) -> Any: ...
    def patch_bucket(self, bucket: Any) -> None: ...
    def delete_bucket(self, name: str, force: bool) -> int: ...
    def object_exists(self, bucket: str, name: str) -> bool: ...
    def upload_object(self, bucket: str, name: str, data: bytes) -> None: ...


class BigQueryClient(Protocol):
    """bigquery.Client: datasets and tables."""

    def get_dataset(self, dataset_ref: Any) -> Any: ...
    def create_dataset(self, dataset: Any) -> Any: ...
    def update_dataset(self, dataset: Any, fields: list[str]) -> Any: ...
    def delete_dataset(self, dataset: Any, delete_contents: bool = ..., not_found_ok: bool = ...) -> None: ...
    def get_table(self, table: Any) -> Any: ...
    def create_table(self, table: Any) -> Any: ...
    def update_table(self, table: Any, fields: list[str]) -> Any: ...
    def delete_table(self, table: Any, not_found_ok: bool = ...) -> None: ...
    def list_tables(self, dataset: Any) -> Any: ...


class ConnectionClient(IamPolicyClient, Protocol):
    """bigquery_connection_v1.ConnectionServiceClient."""

    def get_connection(self, request: Any) -> Any: ...
    def create_connection(self, request: Any) -> Any: ...
    def update_connection(self, request: Any) -> Any: ...
    def delete_connection(self, request: Any) -> None: ...


class TopicClient(IamPolicyClient, Protocol):
    """pubsub_v1.PublisherClient."""

    def get_topic(self, request: Any) -> Any: ...
    def create_topic(self, request: Any) -> Any: ...
    def update_topic(self, request: Any) -> Any: ...
    def delete_topic(self, request: Any) -> None: ...
    def list_topics(self, request: Any) -> Any: ...


class SubscriptionClient(IamPolicyClient, Protocol):
    """pubsub_v1.SubscriberClient."""

    def get_subscription(self, request: Any) -> Any: ...
    def create_subscription(self, request: Any) -> Any: ...
    def update_subscription(self, request: Any) -> Any: ...
    def delete_subscription(self, request: Any) -> None: ...
    def list_subscriptions(self, request: Any) -> Any: ...


class DataformClient(IamPolicyClient, Protocol):
    """dataform_v1.DataformClient: repositories, release and workflow configs, invocations."""

    def get_repository(self, request: Any) -> Any: ...
    def create_repository(self, request: Any) -> Any: ...
    def update_repository(self, request: Any) -> Any: ...
    def delete_repository(self, request: Any) -> None: ...
    def get_release_config(self, request: Any) -> Any: ...
    def create_release_config(self, request: Any) -> Any: ...
    def update_release_config(self, request: Any) -> Any: ...
    def delete_release_config(self, request: Any) -> None: ...
    def list_workflow_configs(self, request: Any) -> Any: ...


class FunctionClient(IamPolicyClient, Protocol):
    """functions_v2.FunctionServiceClient (create/update/delete return long-running operations)."""

    def get_function(self, request: Any) -> Any: ...
    def create_function(self, request: Any) -> Any: ...
    def update_function(self, request: Any) -> Any: ...
    def delete_function(self, request: Any) -> Any: ...
    def list_functions(self, request: Any) -> Any: ...


class SchedulerClient(Protocol):
    """scheduler_v1.CloudSchedulerClient."""

    def get_job(self, request: Any) -> Any: ...
    def create_job(self, request: Any) -> Any: ...
    def update_job(self, request: Any) -> Any: ...
    def delete_job(self, request: Any) -> None: ...
    def list_jobs(self, request: Any) -> Any: ...


class ProjectClient(IamPolicyClient, Protocol):
    """resourcemanager_v3.ProjectsClient."""

    def get_project(self, request: Any) -> Any: ...


LIST_PAGE = 1000
DELETE_THREADS = 16


class StorageAdapter:
    """BucketClient and bucket IamPolicyClient over a google.cloud.storage.Client."""

    def __init__(self, client: Any):
        self.client = client

    def lookup_bucket(self, name: str) -> Any:
        return self.client.lookup_bucket(name)

    def create_bucket(self, bucket: Any, project: str, location: str) -> Any:
        bucket._client = self.client
        return self.client.create_bucket(bucket, project=project, location=location)

    def patch_bucket(self, bucket: Any) -> None:
        bucket._client = self.client
        bucket.patch()

    def delete_bucket(self, name: str, force: bool) -> int:
        """Delete the bucket, with `force` its objects first; return how many objects were deleted.

        The client refuses force=True on more than 256 objects, so objects go in batches of
        LIST_PAGE, deleted DELETE_THREADS at a time, until the bucket is empty.
        """
        from concurrent.futures import ThreadPoolExecutor

        from google.api_core import exceptions as gexc

        def delete(blob: Any) -> None:
            try:
                blob.delete()
            except gexc.NotFound:  # gone already (a lifecycle rule, another destroy): fine
                pass

        bucket = self.client.bucket(name)
        deleted = 0
        with ThreadPoolExecutor(DELETE_THREADS) as pool:
            while force:
                blobs = list(self.client.list_blobs(name, max_results=LIST_PAGE))
                if not blobs:
                    break
                list(pool.map(delete, blobs))
                deleted += len(blobs)
        bucket.delete()
        return deleted

    def create_lock(self, bucket: str, name: str, data: bytes) -> int | None:
        """Create object `name` only if absent; return its generation, or None when it exists."""
        from google.api_core import exceptions as gexc

        blob = self.client.bucket(bucket).blob(name)
        try:
            blob.upload_from_string(data, content_type="application/json", if_generation_match=0)
        except gexc.PreconditionFailed:
            return None
        return blob.generation

    def read_lock(self, bucket: str, name: str) -> bytes | None:
        """Return the lock object's content, or None when there is none."""
        from google.api_core import exceptions as gexc

        try:
            return self.client.bucket(bucket).blob(name).download_as_bytes()
        except gexc.NotFound:
            return None

    def delete_lock(self, bucket: str, name: str, generation: int | None) -> None:
        """Delete the lock object (only that generation when given); absent is fine."""
        from google.api_core import exceptions as gexc

        try:
            self.client.bucket(bucket).blob(name).delete(if_generation_match=generation)
        except (gexc.NotFound, gexc.PreconditionFailed):
            pass

    def object_exists(self, bucket: str, name: str) -> bool:
        return self.client.bucket(bucket).blob(name).exists()

    def upload_object(self, bucket: str, name: str, data: bytes) -> None:
        blob = self.client.bucket(bucket).blob(name)
        # if_generation_match=0: never overwrite; the name is the content hash anyway.
        blob.upload_from_string(data, content_type="application/zip", if_generation_match=0)

    def get_iam_policy(self, request: dict) -> policy_pb2.Policy:
        policy = self.client.bucket(request["resource"]).get_iam_policy(requested_policy_version=3)
        out = policy_pb2.Policy(version=3, etag=(policy.etag or "").encode())
        for binding in policy.bindings:
            if not binding.get("condition"):
                out.bindings.add(role=binding["role"], members=sorted(binding["members"]))
        return out

    def set_iam_policy(self, request: dict) -> policy_pb2.Policy:
        bucket = self.client.bucket(request["resource"])
        policy = bucket.get_iam_policy(requested_policy_version=3)
        policy.bindings = [{"role": b.role, "members": set(b.members)} for b in request["policy"].bindings] + [
            b for b in policy.bindings if b.get("condition")
        ]
        bucket.set_iam_policy(policy)
        return request["policy"]


_LEGACY_DATASET_ROLES = {
    "OWNER": "roles/bigquery.dataOwner",
    "WRITER": "roles/bigquery.dataEditor",
    "READER": "roles/bigquery.dataViewer",
}


class DatasetIamAdapter:
    """Dataset access entries seen as an IAM policy (iamMember entries with a role)."""

    def __init__(self, client: Any):
        self.client = client

    def get_iam_policy(self, request: dict) -> policy_pb2.Policy:
        dataset = self.client.get_dataset(request["resource"])
        by_role: dict[str, set[str]] = {}
        for entry in dataset.access_entries:
            member = _access_member(entry)
            if member and entry.role:
                by_role.setdefault(_LEGACY_DATASET_ROLES.get(entry.role, entry.role), set()).add(member)
        policy = policy_pb2.Policy(version=1)
        for role in sorted(by_role):
            policy.bindings.add(role=role, members=sorted(by_role[role]))
        return policy

    def set_iam_policy(self, request: dict) -> policy_pb2.Policy:
        """Add and remove only the (role, member) pairs that differ; other entries stay as they are."""
        from google.cloud import bigquery

        dataset = self.client.get_dataset(request["resource"])
        entries = list(dataset.access_entries)
        current = {_entry_pair(e) for e in entries} - {None}
        desired = {(b.role, m) for b in request["policy"].bindings for m in b.members}
        kept = [e for e in entries if _entry_pair(e) not in current - desired]
        kept += [bigquery.AccessEntry(role, "iamMember", member) for role, member in sorted(desired - current)]
        dataset.access_entries = kept
        self.client.update_dataset(dataset, ["access_entries"])
        return request["policy"]


def _entry_pair(entry: Any) -> tuple[str, str] | None:
    member = _access_member(entry)
    if not member or not entry.role:
        return None
    return _LEGACY_DATASET_ROLES.get(entry.role, entry.role), member


def _access_member(entry: Any) -> str | None:
    """Return the IAM member string of a dataset access entry, or None for views, routines, datasets."""
    kind, value = entry.entity_type, entry.entity_id
    if kind == "iamMember":
        return value
    if kind == "userByEmail":
        return ("serviceAccount:" if value.endswith(".gserviceaccount.com") else "user:") + value
    if kind == "groupByEmail":
        return "group:" + value
    if kind == "domain":
        return "domain:" + value
    if kind == "specialGroup":
        return {"allAuthenticatedUsers": "allAuthenticatedUsers"}.get(value, "specialGroup:" + value)
    return None


# attribute -> (module, factory), all created on first use so plan without credentials imports nothing.
_FACTORIES: dict[str, tuple[str, Callable[[Any, str | None], Any]]] = {
    "service_accounts": ("google.cloud.iam_admin_v1", lambda m, p: m.IAMClient()),
    "storage": ("google.cloud.storage", lambda m, p: StorageAdapter(m.Client(project=p))),
    "bigquery": ("google.cloud.bigquery", lambda m, p: m.Client(project=p)),
    "connections": ("google.cloud.bigquery_connection_v1", lambda m, p: m.ConnectionServiceClient()),
    "topics": ("google.cloud.pubsub_v1", lambda m, p: m.PublisherClient()),
    "subscriptions": ("google.cloud.pubsub_v1", lambda m, p: m.SubscriberClient()),
    "dataform": ("google.cloud.dataform_v1", lambda m, p: m.DataformClient()),
    "functions": ("google.cloud.functions_v2", lambda m, p: m.FunctionServiceClient()),
    "scheduler": ("google.cloud.scheduler_v1", lambda m, p: m.CloudSchedulerClient()),
    "projects": ("google.cloud.resourcemanager_v3", lambda m, p: m.ProjectsClient()),
    "run": ("google.cloud.run_v2", lambda m, p: m.ServicesClient()),
    "dataplex": ("google.cloud.dataplex_v1", lambda m, p: m.DataplexServiceClient()),
    "datascans": ("google.cloud.dataplex_v1", lambda m, p: m.DataScanServiceClient()),
    "log_metrics": ("google.cloud.logging_v2.services.metrics_service_v2", lambda m, p: m.MetricsServiceV2Client()),
    "notification_channels": ("google.cloud.monitoring_v3", lambda m, p: m.NotificationChannelServiceClient()),
    "alert_policies": ("google.cloud.monitoring_v3", lambda m, p: m.AlertPolicyServiceClient()),
}


class Clients:
    """Holds one client per attribute of _FACTORIES; given ones (fakes) win, others are made lazily."""

    def __init__(self, project: str | None = None, **given: Any):
        unknown = set(given) - set(_FACTORIES) - {"dataset_iam"}
        if unknown:
            raise TypeError(f"unknown clients: {sorted(unknown)}")
        self.project = project
        self._made: dict[str, Any] = dict(given)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in _FACTORIES and name != "dataset_iam":
            raise AttributeError(name)
        if name not in self._made:
            if name == "dataset_iam":
                self._made[name] = DatasetIamAdapter(self.bigquery)
            else:
                module, factory = _FACTORIES[name]
                self._made[name] = factory(importlib.import_module(module), self.project)
        return self._made[name]
