"""Per-kind request building (pure, with the client libraries' own types) and the calls that apply it."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import (
    bigquery,
    bigquery_connection_v1,
    dataform_v1,
    functions_v2,
    iam_admin_v1,
    pubsub_v1,
    scheduler_v1,
    storage,
)
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import field_mask_pb2

from deploy.resources import MANAGED_BY, MARKER, Resource

OPERATION_TIMEOUT_S = 900
# Set by Cloud Functions itself on every 2nd-gen function; not part of the desired state.
PLATFORM_ENV_VARS = frozenset({"LOG_EXECUTION_ID"})


@dataclass
class Observed:
    """A resource as it is: its spec in the desired spec's shape, its outputs, and who owns it."""

    spec: dict[str, Any]
    outputs: dict[str, str] = field(default_factory=dict)
    managed: bool = True


def _mask(paths: list[str]) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=sorted(set(paths)))


def _last(name: str) -> str:
    return name.rsplit("/", 1)[1]


def _parent(name: str) -> str:
    return name.rsplit("/", 2)[0]


def _labelled(labels: Any) -> bool:
    return dict(labels or {}).get(MANAGED_BY[0]) == MANAGED_BY[1]


def _get(call, request) -> Any:
    try:
        return call(request=request)
    except gexc.NotFound:
        return None


class Handler:
    """How to read, create, update and delete one kind of resource."""

    kind = ""
    immutable: frozenset[str] = frozenset()
    #: spec key -> API update-mask path
    mask: dict[str, str] = {}

    def local_outputs(self, resource: Resource) -> dict[str, str]:
        """Return outputs known without any API call (none for most kinds)."""
        return {}

    def read(self, clients: Any, resource: Resource, spec: dict) -> Observed | None:
        """Return the resource as it is, or None when it does not exist; raises API errors."""
        raise NotImplementedError

    def create(self, clients: Any, resource: Resource, spec: dict) -> None:
        """Create the resource as `spec` describes it; raises API errors."""
        raise NotImplementedError

    def update(self, clients: Any, resource: Resource, spec: dict, changed: list[str]) -> None:
        """Change the `changed` spec keys of an existing resource in place; raises API errors."""
        raise NotImplementedError

    def delete(self, clients: Any, resource: Resource, spec: dict) -> None:
        """Delete the resource; raises API errors (NotFound included)."""
        raise NotImplementedError


# --- service accounts -------------------------------------------------------------------------


def build_service_account(resource: Resource, spec: dict) -> iam_admin_v1.CreateServiceAccountRequest:
    """Return the request creating the service account of `resource`."""
    return iam_admin_v1.CreateServiceAccountRequest(
        name=f"projects/{spec['project']}",
        account_id=spec["account_id"],
        service_account=iam_admin_v1.ServiceAccount(display_name=spec["display_name"], description=spec["description"]),
    )


def observe_service_account(account: iam_admin_v1.ServiceAccount) -> Observed:
    """Return the desired-spec view of a service account."""
    return Observed(
        {
            "project": account.project_id,
            "account_id": account.email.split("@")[0],
            "display_name": account.display_name,
            "description": account.description,
        },
        {"email": account.email},
        managed=MARKER in account.description,
    )


class ServiceAccountHandler(Handler):
    """One service account per component (iam_admin_v1)."""

    kind = "service_account"
    immutable = frozenset({"project", "account_id"})
    mask = {"display_name": "display_name", "description": "description"}

    def read(self, clients, resource, spec):
        found = _get(clients.service_accounts.get_service_account,
                     iam_admin_v1.GetServiceAccountRequest(name=resource.name))  # fmt: skip
        return observe_service_account(found) if found else None

    def create(self, clients, resource, spec):
        clients.service_accounts.create_service_account(request=build_service_account(resource, spec))

    def update(self, clients, resource, spec, changed):
        account = iam_admin_v1.ServiceAccount(
            name=resource.name, display_name=spec["display_name"], description=spec["description"]
        )
        clients.service_accounts.patch_service_account(
            request=iam_admin_v1.PatchServiceAccountRequest(
                service_account=account, update_mask=_mask([self.mask[c] for c in changed])
            )
        )

    def delete(self, clients, resource, spec):
        clients.service_accounts.delete_service_account(
            request=iam_admin_v1.DeleteServiceAccountRequest(name=resource.name)
        )


# --- buckets and the functions source archive --------------------------------------------------


def build_bucket(resource: Resource, spec: dict, bucket: storage.Bucket | None = None) -> storage.Bucket:
    """Return the storage.Bucket that `resource` describes: a new one (no client attached), or
    `bucket` as read, with the desired properties set so a patch also removes stray labels."""
    bucket = bucket if bucket is not None else storage.Bucket(client=None, name=resource.name)
    bucket.storage_class = spec["storage_class"]
    bucket.iam_configuration.uniform_bucket_level_access_enabled = spec["uniform_bucket_level_access"]
    bucket.iam_configuration.public_access_prevention = spec["public_access_prevention"]
    bucket.labels = dict(spec["labels"])
    rules = []
    for rule in spec["lifecycle_rules"]:
        if rule["action"] == "SetStorageClass":
            rules.append({"action": {"type": "SetStorageClass", "storageClass": rule["storage_class"]},
                          "condition": {"age": rule["age_days"]}})  # fmt: skip
        else:
            rules.append({"action": {"type": "Delete"}, "condition": {"age": rule["age_days"]}})
    bucket.lifecycle_rules = rules
    return bucket


def observe_bucket(bucket: storage.Bucket, project: str) -> Observed:
    """Return the desired-spec view of a bucket."""
    rules = []
    for rule in bucket.lifecycle_rules:
        entry = {"action": rule["action"]["type"]}
        if "storageClass" in rule["action"]:
            entry["storage_class"] = rule["action"]["storageClass"]
        entry["age_days"] = rule["condition"].get("age")
        rules.append(entry)
    config = bucket.iam_configuration
    return Observed(
        {
            "project": project,
            "location": (bucket.location or "").upper(),
            "storage_class": bucket.storage_class,
            "uniform_bucket_level_access": bool(config.uniform_bucket_level_access_enabled),
            "public_access_prevention": config.public_access_prevention,
            "lifecycle_rules": rules,
            "labels": dict(bucket.labels or {}),
        },
        managed=_labelled(bucket.labels),
    )


class BucketHandler(Handler):
    """Cloud Storage buckets with lifecycle rules, uniform access and labels."""

    kind = "bucket"
    immutable = frozenset({"project", "location"})

    def read(self, clients, resource, spec):
        bucket = clients.storage.lookup_bucket(resource.name)
        return observe_bucket(bucket, spec["project"]) if bucket is not None else None

    def create(self, clients, resource, spec):
        clients.storage.create_bucket(build_bucket(resource, spec), project=spec["project"],
                                      location=spec["location"])  # fmt: skip

    def update(self, clients, resource, spec, changed):
        current = clients.storage.lookup_bucket(resource.name)
        clients.storage.patch_bucket(build_bucket(resource, spec, current))

    def delete(self, clients, resource, spec):
        """Delete the bucket and its objects; return "N objects deleted"."""
        count = clients.storage.delete_bucket(resource.name, force=True)
        return f"{count} objects deleted"


class SourceArchiveHandler(Handler):
    """The zipped function source: uploaded once per content hash, removed with its bucket."""

    kind = "source_archive"

    def __init__(self, project_dir: Any = "."):
        self.project_dir = project_dir
        self._built: dict[str, tuple[str, bytes]] = {}

    def archive(self, resource: Resource) -> tuple[str, bytes]:
        from deploy.archive import build_archive

        key = json.dumps(resource.spec, sort_keys=True)
        if key not in self._built:
            self._built[key] = build_archive(self.project_dir, resource.spec["entry_points"])
        return self._built[key]

    def object_name(self, resource: Resource) -> str:
        return f"lakehouse-{self.archive(resource)[0]}.zip"

    def local_outputs(self, resource):
        return {"sha": self.archive(resource)[0]}

    def read(self, clients, resource, spec):
        if clients.storage.object_exists(spec["bucket"], self.object_name(resource)):
            return Observed(dict(spec), {"sha": self.archive(resource)[0]})
        return None

    def create(self, clients, resource, spec):
        clients.storage.upload_object(spec["bucket"], self.object_name(resource), self.archive(resource)[1])

    def delete(self, clients, resource, spec):
        """Nothing: the archive goes with the functions source bucket."""


# --- BigQuery datasets, tables, connection ----------------------------------------------------


def build_dataset(resource: Resource, spec: dict) -> bigquery.Dataset:
    """Return the bigquery.Dataset that `resource` describes."""
    dataset = bigquery.Dataset(resource.name)
    dataset.location = spec["location"]
    dataset.description = spec["description"]
    dataset.labels = dict(spec["labels"])
    return dataset


def observe_dataset(dataset: bigquery.Dataset) -> Observed:
    """Return the desired-spec view of a dataset."""
    return Observed(
        {
            "project": dataset.project,
            "location": dataset.location,
            "description": dataset.description,
            "labels": dict(dataset.labels or {}),
        },
        managed=_labelled(dataset.labels),
    )


class DatasetHandler(Handler):
    """BigQuery datasets (location, description, labels)."""

    kind = "dataset"
    immutable = frozenset({"project", "location"})
    mask = {"description": "description", "labels": "labels"}

    def read(self, clients, resource, spec):
        try:
            return observe_dataset(clients.bigquery.get_dataset(resource.name))
        except gexc.NotFound:
            return None

    def create(self, clients, resource, spec):
        clients.bigquery.create_dataset(build_dataset(resource, spec))

    def update(self, clients, resource, spec, changed):
        current = clients.bigquery.get_dataset(resource.name)
        current.description = spec["description"]
        current.labels = _labels_patch(current.labels, spec["labels"])
        clients.bigquery.update_dataset(current, [self.mask[c] for c in changed])

    def delete(self, clients, resource, spec):
        clients.bigquery.delete_dataset(resource.name, delete_contents=True, not_found_ok=True)


def _dataset_ref(dataset_id: str) -> dict[str, str]:
    project, dataset = dataset_id.split(".", 1)
    return {"projectId": project, "datasetId": dataset}


def _authorizes(entry: Any, authorized: str) -> bool:
    return entry.entity_type == "dataset" and (entry.entity_id or {}).get("dataset") == _dataset_ref(authorized)


class AuthorizedDatasetHandler(Handler):
    """An authorized-dataset access entry: the views of one dataset may read another's tables.

    Only that entry is added or removed; every other access entry of the dataset stays as it is.
    """

    kind = "authorized_dataset"

    def read(self, clients, resource, spec):
        try:
            dataset = clients.bigquery.get_dataset(spec["dataset"])
        except gexc.NotFound:
            return None
        if any(_authorizes(e, spec["authorized"]) for e in dataset.access_entries):
            return Observed(dict(spec))
        return None

    def create(self, clients, resource, spec):
        dataset = clients.bigquery.get_dataset(spec["dataset"])
        entry = bigquery.AccessEntry(
            None, "dataset", {"dataset": _dataset_ref(spec["authorized"]), "targetTypes": ["VIEWS"]}
        )
        dataset.access_entries = [*dataset.access_entries, entry]
        clients.bigquery.update_dataset(dataset, ["access_entries"])

    def delete(self, clients, resource, spec):
        try:
            dataset = clients.bigquery.get_dataset(spec["dataset"])
        except gexc.NotFound:
            return
        kept = [e for e in dataset.access_entries if not _authorizes(e, spec["authorized"])]
        if len(kept) != len(dataset.access_entries):
            dataset.access_entries = kept
            clients.bigquery.update_dataset(dataset, ["access_entries"])


def _labels_patch(current: dict | None, desired: dict) -> dict:
    """Return labels for a BigQuery patch: removed keys are set to None, as the API requires."""
    patch: dict[str, Any] = {key: None for key in (current or {}) if key not in desired}
    patch.update(desired)
    return patch


_LEGACY_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}


def build_table(resource: Resource, spec: dict) -> bigquery.Table:
    """Return the bigquery.Table (schema, day partitioning, labels) that `resource` describes."""
    table = bigquery.Table(
        resource.name,
        schema=[bigquery.SchemaField(name, kind, mode=mode) for name, kind, mode in spec["schema"]],
    )
    if spec["partition_field"]:
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=spec["partition_field"]
        )
    table.description = spec["description"]
    table.labels = dict(spec["labels"])
    return table


def observe_table(table: bigquery.Table) -> Observed:
    """Return the desired-spec view of a table."""
    partitioning = table.time_partitioning
    return Observed(
        {
            "schema": [[f.name, _LEGACY_TYPES.get(f.field_type, f.field_type), f.mode] for f in table.schema],
            "partition_field": partitioning.field if partitioning else None,
            "description": table.description,
            "labels": dict(table.labels or {}),
        },
        managed=_labelled(table.labels),
    )


class TableHandler(Handler):
    """BigQuery tables deploy owns: raw subscription tables and the ops tables."""

    kind = "table"
    immutable = frozenset({"partition_field"})
    mask = {"schema": "schema", "description": "description", "labels": "labels"}

    def read(self, clients, resource, spec):
        try:
            return observe_table(clients.bigquery.get_table(resource.name))
        except gexc.NotFound:
            return None

    def create(self, clients, resource, spec):
        clients.bigquery.create_table(build_table(resource, spec))

    def update(self, clients, resource, spec, changed):
        table = build_table(resource, spec)
        table.labels = _labels_patch(clients.bigquery.get_table(resource.name).labels, spec["labels"])
        clients.bigquery.update_table(table, [self.mask[c] for c in changed])

    def delete(self, clients, resource, spec):
        clients.bigquery.delete_table(resource.name, not_found_ok=True)


# The salt is a query parameter, never SQL text: the job's text holds only the table name.
SET_SALT_SQL = """begin transaction;
delete from `{table}` where true;
insert into `{table}` (salt) values (@salt);
commit transaction;"""


def build_salt_job(spec: dict) -> tuple[str, bigquery.QueryJobConfig]:
    """Return (SQL, job config) replacing the key table's row with spec["salt"], passed as a parameter."""
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("salt", "STRING", spec["salt"])])
    return SET_SALT_SQL.format(table=spec["table"]), config


class PiiSaltHandler(Handler):
    """The one row of keys.pii_salt: read to compare, written with a parameterised query."""

    kind = "pii_salt"

    def read(self, clients, resource, spec):
        try:
            rows = list(clients.bigquery.query(f"select salt from `{spec['table']}`").result())
        except gexc.NotFound:
            return None
        if len(rows) != 1:
            return None
        return Observed({"table": spec["table"], "salt": rows[0]["salt"]})

    def create(self, clients, resource, spec):
        sql, config = build_salt_job(spec)
        clients.bigquery.query(sql, job_config=config).result()

    def update(self, clients, resource, spec, changed):
        self.create(clients, resource, spec)

    def delete(self, clients, resource, spec):
        """The row goes with its table (a data resource, deleted only by destroy --include-data)."""


def build_connection(resource: Resource, spec: dict) -> bigquery_connection_v1.CreateConnectionRequest:
    """Return the request creating the BigLake Cloud Resource connection."""
    return bigquery_connection_v1.CreateConnectionRequest(
        parent=_parent(resource.name),
        connection_id=_last(resource.name),
        connection=bigquery_connection_v1.Connection(
            friendly_name=spec["friendly_name"],
            description=spec["description"],
            cloud_resource=bigquery_connection_v1.CloudResourceProperties(),
        ),
    )


def observe_connection(connection: bigquery_connection_v1.Connection) -> Observed:
    """Return the desired-spec view of a connection; its output is the connection's service account."""
    return Observed(
        {
            "friendly_name": connection.friendly_name,
            "description": connection.description,
            "cloud_resource": "cloud_resource" in connection,
        },
        {"service_account": connection.cloud_resource.service_account_id},
        managed=MARKER in connection.description,
    )


class ConnectionHandler(Handler):
    """The BigLake Cloud Resource connection; its output is the connection's service account."""

    kind = "connection"
    immutable = frozenset({"cloud_resource"})
    mask = {"friendly_name": "friendly_name", "description": "description"}

    def read(self, clients, resource, spec):
        found = _get(clients.connections.get_connection,
                     bigquery_connection_v1.GetConnectionRequest(name=resource.name))  # fmt: skip
        return observe_connection(found) if found else None

    def create(self, clients, resource, spec):
        clients.connections.create_connection(request=build_connection(resource, spec))

    def update(self, clients, resource, spec, changed):
        connection = build_connection(resource, spec).connection
        connection.name = resource.name
        clients.connections.update_connection(
            request=bigquery_connection_v1.UpdateConnectionRequest(
                name=resource.name, connection=connection, update_mask=_mask([self.mask[c] for c in changed])
            )
        )

    def delete(self, clients, resource, spec):
        clients.connections.delete_connection(
            request=bigquery_connection_v1.DeleteConnectionRequest(name=resource.name)
        )


# --- Pub/Sub -----------------------------------------------------------------------------------


def build_topic(resource: Resource, spec: dict) -> pubsub_v1.types.Topic:
    """Return the Topic that `resource` describes."""
    return pubsub_v1.types.Topic(name=resource.name, labels=spec["labels"])


class TopicHandler(Handler):
    """Pub/Sub topics."""

    kind = "topic"
    mask = {"labels": "labels"}

    def read(self, clients, resource, spec):
        found = _get(clients.topics.get_topic, pubsub_v1.types.GetTopicRequest(topic=resource.name))
        if found is None:
            return None
        return Observed({"labels": dict(found.labels)}, managed=_labelled(found.labels))

    def create(self, clients, resource, spec):
        clients.topics.create_topic(request=build_topic(resource, spec))

    def update(self, clients, resource, spec, changed):
        clients.topics.update_topic(request=pubsub_v1.types.UpdateTopicRequest(
            topic=build_topic(resource, spec), update_mask=_mask(["labels"])))  # fmt: skip

    def delete(self, clients, resource, spec):
        clients.topics.delete_topic(request=pubsub_v1.types.DeleteTopicRequest(topic=resource.name))


def build_subscription(resource: Resource, spec: dict) -> pubsub_v1.types.Subscription:
    """Return the Subscription (BigQuery subscription with dead letter and retry, or a pull one)."""
    T = pubsub_v1.types
    subscription = T.Subscription(name=resource.name, topic=spec["topic"], labels=spec["labels"])
    if spec.get("never_expires"):
        # An empty TTL: without it an idle subscription is deleted after 31 days.
        subscription.expiration_policy = T.ExpirationPolicy()
    if "bigquery_table" in spec:
        subscription.bigquery_config = T.BigQueryConfig(
            table=spec["bigquery_table"],
            write_metadata=spec["write_metadata"],
            service_account_email=spec["service_account_email"],
        )
        subscription.dead_letter_policy = T.DeadLetterPolicy(
            dead_letter_topic=spec["dead_letter_topic"], max_delivery_attempts=spec["max_delivery_attempts"]
        )
        subscription.retry_policy = T.RetryPolicy(
            minimum_backoff=dt.timedelta(seconds=spec["min_backoff_s"]),
            maximum_backoff=dt.timedelta(seconds=spec["max_backoff_s"]),
        )
    if "message_retention_s" in spec:
        subscription.message_retention_duration = dt.timedelta(seconds=spec["message_retention_s"])
        subscription.retain_acked_messages = False
    if "ack_deadline_s" in spec:
        subscription.ack_deadline_seconds = spec["ack_deadline_s"]
    return subscription


def observe_subscription(sub: pubsub_v1.types.Subscription, desired: dict) -> Observed:
    """Return the desired-spec view of a subscription (only the keys the desired spec has)."""
    seen: dict[str, Any] = {"topic": sub.topic, "labels": dict(sub.labels)}
    if "never_expires" in desired:
        seen["never_expires"] = "expiration_policy" in sub and not sub.expiration_policy.ttl
    if "bigquery_config" in sub:
        seen.update(
            bigquery_table=sub.bigquery_config.table,
            write_metadata=sub.bigquery_config.write_metadata,
            service_account_email=sub.bigquery_config.service_account_email,
        )
    if "dead_letter_policy" in sub:
        seen.update(
            dead_letter_topic=sub.dead_letter_policy.dead_letter_topic,
            max_delivery_attempts=sub.dead_letter_policy.max_delivery_attempts,
        )
    if "retry_policy" in sub:
        seen.update(
            min_backoff_s=int(sub.retry_policy.minimum_backoff.total_seconds()),
            max_backoff_s=int(sub.retry_policy.maximum_backoff.total_seconds()),
        )
    if "message_retention_s" in desired:
        seen["message_retention_s"] = int(sub.message_retention_duration.total_seconds())
    if "ack_deadline_s" in desired:
        seen["ack_deadline_s"] = sub.ack_deadline_seconds
    return Observed(seen, managed=_labelled(sub.labels))


class SubscriptionHandler(Handler):
    """Pub/Sub subscriptions: BigQuery ones with dead letter and retry, and the hold one."""

    kind = "subscription"
    immutable = frozenset({"topic"})
    mask = {
        "bigquery_table": "bigquery_config",
        "write_metadata": "bigquery_config",
        "service_account_email": "bigquery_config",
        "dead_letter_topic": "dead_letter_policy",
        "max_delivery_attempts": "dead_letter_policy",
        "min_backoff_s": "retry_policy",
        "max_backoff_s": "retry_policy",
        "message_retention_s": "message_retention_duration",
        "ack_deadline_s": "ack_deadline_seconds",
        "never_expires": "expiration_policy",
        "labels": "labels",
    }

    def read(self, clients, resource, spec):
        found = _get(clients.subscriptions.get_subscription,
                     pubsub_v1.types.GetSubscriptionRequest(subscription=resource.name))  # fmt: skip
        return observe_subscription(found, spec) if found else None

    def create(self, clients, resource, spec):
        clients.subscriptions.create_subscription(request=build_subscription(resource, spec))

    def update(self, clients, resource, spec, changed):
        clients.subscriptions.update_subscription(request=pubsub_v1.types.UpdateSubscriptionRequest(
            subscription=build_subscription(resource, spec),
            update_mask=_mask([self.mask[c] for c in changed])))  # fmt: skip

    def delete(self, clients, resource, spec):
        clients.subscriptions.delete_subscription(
            request=pubsub_v1.types.DeleteSubscriptionRequest(subscription=resource.name)
        )


# --- Dataform ----------------------------------------------------------------------------------

D = dataform_v1


def build_repository(resource: Resource, spec: dict) -> D.CreateRepositoryRequest:
    """Return the request creating the Dataform repository linked to the git remote."""
    return D.CreateRepositoryRequest(
        parent=_parent(resource.name),
        repository_id=_last(resource.name),
        repository=D.Repository(
            git_remote_settings=D.Repository.GitRemoteSettings(
                url=spec["git_remote"],
                default_branch=spec["default_branch"],
                authentication_token_secret_version=spec["token_secret_version"],
            ),
            service_account=spec["service_account"],
            workspace_compilation_overrides=D.Repository.WorkspaceCompilationOverrides(
                default_database=spec["workspace_project"], schema_suffix=spec["workspace_schema_suffix"]
            ),
            labels=spec["labels"],
        ),
    )


class RepositoryHandler(Handler):
    """The Dataform repository linked to the git remote."""

    kind = "dataform_repository"
    mask = {
        "git_remote": "git_remote_settings",
        "default_branch": "git_remote_settings",
        "token_secret_version": "git_remote_settings",
        "service_account": "service_account",
        "workspace_project": "workspace_compilation_overrides",
        "workspace_schema_suffix": "workspace_compilation_overrides",
        "labels": "labels",
    }

    def read(self, clients, resource, spec):
        found = _get(clients.dataform.get_repository, D.GetRepositoryRequest(name=resource.name))
        if found is None:
            return None
        git = found.git_remote_settings
        return Observed(
            {
                "git_remote": git.url,
                "default_branch": git.default_branch,
                "token_secret_version": git.authentication_token_secret_version,
                "service_account": found.service_account,
                "workspace_project": found.workspace_compilation_overrides.default_database,
                "workspace_schema_suffix": found.workspace_compilation_overrides.schema_suffix,
                "labels": dict(found.labels),
            },
            managed=_labelled(found.labels),
        )

    def create(self, clients, resource, spec):
        clients.dataform.create_repository(request=build_repository(resource, spec))

    def update(self, clients, resource, spec, changed):
        repository = build_repository(resource, spec).repository
        repository.name = resource.name
        clients.dataform.update_repository(request=D.UpdateRepositoryRequest(
            repository=repository, update_mask=_mask([self.mask[c] for c in changed])))  # fmt: skip

    def delete(self, clients, resource, spec):
        clients.dataform.delete_repository(request=D.DeleteRepositoryRequest(name=resource.name, force=True))


def build_release_config(resource: Resource, spec: dict) -> D.ReleaseConfig:
    """Return the release config: compile `git_commitish` with the environment's project and vars."""
    return D.ReleaseConfig(
        name=resource.name,
        git_commitish=spec["git_commitish"],
        code_compilation_config=D.CodeCompilationConfig(
            default_database=spec["default_database"],
            default_location=spec["default_location"],
            vars=spec["vars"],
        ),
    )


class ReleaseConfigHandler(Handler):
    """The environment's Dataform release config."""

    kind = "release_config"
    mask = {
        "git_commitish": "git_commitish",
        "default_database": "code_compilation_config",
        "default_location": "code_compilation_config",
        "vars": "code_compilation_config",
    }

    def read(self, clients, resource, spec):
        found = _get(clients.dataform.get_release_config, D.GetReleaseConfigRequest(name=resource.name))
        if found is None:
            return None
        config = found.code_compilation_config
        return Observed({
            "git_commitish": found.git_commitish,
            "default_database": config.default_database,
            "default_location": config.default_location,
            "vars": dict(sorted(config.vars.items())),
        })  # fmt: skip

    def create(self, clients, resource, spec):
        clients.dataform.create_release_config(request=D.CreateReleaseConfigRequest(
            parent=_parent(resource.name), release_config_id=_last(resource.name),
            release_config=build_release_config(resource, spec)))  # fmt: skip

    def update(self, clients, resource, spec, changed):
        clients.dataform.update_release_config(request=D.UpdateReleaseConfigRequest(
            release_config=build_release_config(resource, spec),
            update_mask=_mask([self.mask[c] for c in changed])))  # fmt: skip

    def delete(self, clients, resource, spec):
        clients.dataform.delete_release_config(request=D.DeleteReleaseConfigRequest(name=resource.name))


# --- Cloud Functions and Cloud Scheduler -------------------------------------------------------


def build_function(resource: Resource, spec: dict) -> functions_v2.Function:
    """Return the 2nd-gen HTTP function: source from the archive, its own service account, IAM-only."""
    bucket, _, obj = spec["source"].removeprefix("gs://").partition("/")
    return functions_v2.Function(
        name=resource.name,
        environment=functions_v2.Environment.GEN_2,
        build_config=functions_v2.BuildConfig(
            runtime=spec["runtime"],
            entry_point=spec["entry_point"],
            source=functions_v2.Source(storage_source=functions_v2.StorageSource(bucket=bucket, object_=obj)),
        ),
        service_config=functions_v2.ServiceConfig(
            available_memory=spec["memory"],
            timeout_seconds=spec["timeout_s"],
            max_instance_count=spec["max_instances"],
            environment_variables=spec["environment_variables"],
            service_account_email=spec["service_account_email"],
            ingress_settings=functions_v2.ServiceConfig.IngressSettings[spec["ingress"]],
            all_traffic_on_latest_revision=True,
        ),
        labels=spec["labels"],
        event_trigger=build_event_trigger(spec["event_trigger"]) if "event_trigger" in spec else None,
    )


def build_event_trigger(trigger: dict) -> functions_v2.EventTrigger:
    """Return the Eventarc trigger: one event type on one bucket, delivered as a service account."""
    return functions_v2.EventTrigger(
        event_type=trigger["event_type"],
        event_filters=[functions_v2.EventFilter(attribute="bucket", value=trigger["bucket"])],
        trigger_region=trigger["trigger_region"],
        service_account_email=trigger["service_account_email"],
        retry_policy=functions_v2.EventTrigger.RetryPolicy.RETRY_POLICY_RETRY
        if trigger["retry"]
        else functions_v2.EventTrigger.RetryPolicy.RETRY_POLICY_DO_NOT_RETRY,
    )


def observe_function(function: functions_v2.Function) -> Observed:
    """Return the desired-spec view of a function; its output is the HTTPS URL."""
    source = function.build_config.source.storage_source
    service = function.service_config
    seen = {
        "runtime": function.build_config.runtime,
        "ingress": functions_v2.ServiceConfig.IngressSettings(service.ingress_settings).name,
        "entry_point": function.build_config.entry_point,
        "source": f"gs://{source.bucket}/{source.object_}",
        "service_account_email": service.service_account_email,
        "memory": service.available_memory,
        "timeout_s": service.timeout_seconds,
        "max_instances": service.max_instance_count,
        "environment_variables": {
            k: v for k, v in sorted(service.environment_variables.items()) if k not in PLATFORM_ENV_VARS
        },
        "labels": dict(function.labels),
    }
    if "event_trigger" in function:
        trigger = function.event_trigger
        seen["event_trigger"] = {
            "event_type": trigger.event_type,
            "bucket": next((f.value for f in trigger.event_filters if f.attribute == "bucket"), None),
            "trigger_region": trigger.trigger_region,
            "service_account_email": trigger.service_account_email,
            "retry": trigger.retry_policy == functions_v2.EventTrigger.RetryPolicy.RETRY_POLICY_RETRY,
        }
    outputs = {"url": service.uri or function.url, "service": service.service}
    return Observed(seen, outputs, managed=_labelled(function.labels))


class FunctionHandler(Handler):
    """Cloud Functions (2nd gen); its outputs are the URL and the Cloud Run service."""

    kind = "function"
    mask = {
        "runtime": "build_config.runtime",
        "ingress": "service_config.ingress_settings",
        "entry_point": "build_config.entry_point",
        "source": "build_config.source",
        "service_account_email": "service_config.service_account_email",
        "memory": "service_config.available_memory",
        "timeout_s": "service_config.timeout_seconds",
        "max_instances": "service_config.max_instance_count",
        "environment_variables": "service_config.environment_variables",
        "event_trigger": "event_trigger",
        "labels": "labels",
    }

    def read(self, clients, resource, spec):
        found = _get(clients.functions.get_function, functions_v2.GetFunctionRequest(name=resource.name))
        return observe_function(found) if found else None

    def create(self, clients, resource, spec):
        operation = clients.functions.create_function(request=functions_v2.CreateFunctionRequest(
            parent=_parent(resource.name), function_id=_last(resource.name),
            function=build_function(resource, spec)))  # fmt: skip
        operation.result(timeout=OPERATION_TIMEOUT_S)

    def update(self, clients, resource, spec, changed):
        operation = clients.functions.update_function(request=functions_v2.UpdateFunctionRequest(
            function=build_function(resource, spec),
            update_mask=_mask([self.mask[c] for c in changed])))  # fmt: skip
        operation.result(timeout=OPERATION_TIMEOUT_S)

    def delete(self, clients, resource, spec):
        operation = clients.functions.delete_function(request=functions_v2.DeleteFunctionRequest(
            name=resource.name))  # fmt: skip
        operation.result(timeout=OPERATION_TIMEOUT_S)


def build_job(resource: Resource, spec: dict) -> scheduler_v1.Job:
    """Return the Cloud Scheduler job: POST a JSON body to the function with an OIDC token."""
    return scheduler_v1.Job(
        name=resource.name,
        description=spec["description"],
        schedule=spec["schedule"],
        time_zone=spec["time_zone"],
        http_target=scheduler_v1.HttpTarget(
            uri=spec["uri"],
            http_method=scheduler_v1.HttpMethod.POST,
            headers={"Content-Type": "application/json"},
            body=spec["body"].encode(),
            oidc_token=scheduler_v1.OidcToken(
                service_account_email=spec["service_account_email"], audience=spec["audience"]
            ),
        ),
        retry_config=scheduler_v1.RetryConfig(retry_count=spec["retry_count"]),
        attempt_deadline=dt.timedelta(seconds=spec["attempt_deadline_s"]),
    )


def observe_job(job: scheduler_v1.Job) -> Observed:
    """Return the desired-spec view of a scheduler job."""
    target = job.http_target
    return Observed(
        {
            "schedule": job.schedule,
            "time_zone": job.time_zone,
            "uri": target.uri,
            "body": target.body.decode(),
            "service_account_email": target.oidc_token.service_account_email,
            "audience": target.oidc_token.audience,
            "retry_count": job.retry_config.retry_count,
            "attempt_deadline_s": int(job.attempt_deadline.total_seconds()),
            "description": job.description,
        },
        managed=MARKER in job.description,
    )


class JobHandler(Handler):
    """Cloud Scheduler jobs."""

    kind = "scheduler_job"
    mask = {
        "schedule": "schedule",
        "time_zone": "time_zone",
        "uri": "http_target",
        "body": "http_target",
        "service_account_email": "http_target",
        "audience": "http_target",
        "retry_count": "retry_config",
        "attempt_deadline_s": "attempt_deadline",
        "description": "description",
    }

    def read(self, clients, resource, spec):
        found = _get(clients.scheduler.get_job, scheduler_v1.GetJobRequest(name=resource.name))
        return observe_job(found) if found else None

    def create(self, clients, resource, spec):
        clients.scheduler.create_job(request=scheduler_v1.CreateJobRequest(
            parent=_parent(resource.name), job=build_job(resource, spec)))  # fmt: skip

    def update(self, clients, resource, spec, changed):
        clients.scheduler.update_job(request=scheduler_v1.UpdateJobRequest(
            job=build_job(resource, spec), update_mask=_mask([self.mask[c] for c in changed])))  # fmt: skip

    def delete(self, clients, resource, spec):
        clients.scheduler.delete_job(request=scheduler_v1.DeleteJobRequest(name=resource.name))


# --- IAM bindings ------------------------------------------------------------------------------

IAM_SCOPES = {
    "project": "projects",
    "service_account": "service_accounts",
    "bucket": "storage",
    "dataset": "dataset_iam",
    "connection": "connections",
    "topic": "topics",
    "subscription": "subscriptions",
    "dataform_repository": "dataform",
    "run_service": "run",
}


def with_member(policy: policy_pb2.Policy, role: str, member: str) -> bool:
    """Add `member` to `role` in `policy` (in place); return whether the policy changed."""
    for binding in policy.bindings:
        if binding.role == role and not binding.HasField("condition"):
            if member in binding.members:
                return False
            binding.members.append(member)
            return True
    policy.bindings.add(role=role, members=[member])
    return True


def without_member(policy: policy_pb2.Policy, role: str, member: str) -> bool:
    """Remove `member` from `role` in `policy` (in place, dropping an emptied binding); return if changed."""
    for index, binding in enumerate(policy.bindings):
        if binding.role == role and member in binding.members and not binding.HasField("condition"):
            binding.members.remove(member)
            if not binding.members:
                del policy.bindings[index]
            return True
    return False


class BindingHandler(Handler):
    """One (resource, role, member) grant, added to and removed from the resource's policy alone."""

    kind = "iam_binding"

    def _client(self, clients, spec):
        return getattr(clients, IAM_SCOPES[spec["scope"]])

    def _policy(self, clients, spec) -> policy_pb2.Policy:
        request = iam_policy_pb2.GetIamPolicyRequest(resource=spec["resource"], options={"requested_policy_version": 3})
        if spec["scope"] in ("bucket", "dataset"):
            return self._client(clients, spec).get_iam_policy({"resource": spec["resource"]})
        return self._client(clients, spec).get_iam_policy(request=request)

    def _set(self, clients, spec, policy) -> None:
        if spec["scope"] in ("bucket", "dataset"):
            self._client(clients, spec).set_iam_policy({"resource": spec["resource"], "policy": policy})
        else:
            request = iam_policy_pb2.SetIamPolicyRequest(resource=spec["resource"], policy=policy)
            self._client(clients, spec).set_iam_policy(request=request)

    def read(self, clients, resource, spec):
        try:
            policy = self._policy(clients, spec)
        except gexc.NotFound:
            return None
        for binding in policy.bindings:
            if binding.role == spec["role"] and spec["member"] in binding.members:
                return Observed(dict(spec))
        return None

    def create(self, clients, resource, spec):
        policy = self._policy(clients, spec)
        if with_member(policy, spec["role"], spec["member"]):
            self._set(clients, spec, policy)

    def delete(self, clients, resource, spec):
        try:
            policy = self._policy(clients, spec)
        except gexc.NotFound:
            return
        if without_member(policy, spec["role"], spec["member"]):
            self._set(clients, spec, policy)


def handlers(project_dir: Any = ".") -> dict[str, Handler]:
    """Return one handler per resource kind."""
    all_handlers = [
        ServiceAccountHandler(), BucketHandler(), SourceArchiveHandler(project_dir), DatasetHandler(),
        TableHandler(), AuthorizedDatasetHandler(), ConnectionHandler(), TopicHandler(), SubscriptionHandler(),
        RepositoryHandler(), ReleaseConfigHandler(), FunctionHandler(), JobHandler(), BindingHandler(),
        PiiSaltHandler(),
    ]  # fmt: skip
    from deploy import dataplex, monitoring, serving  # the gold API's Cloud Run service; scans and alerts

    all_handlers += serving.handlers() + dataplex.handlers() + monitoring.handlers()
    return {h.kind: h for h in all_handlers}
