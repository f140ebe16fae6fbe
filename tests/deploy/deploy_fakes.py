"""In-memory Google Cloud clients for deploy tests, storing and answering the libraries' own types."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import (
    bigquery,
    bigquery_connection_v1,
    dataform_v1,
    functions_v2,
    iam_admin_v1,
    pubsub_v1,
    resourcemanager_v3,
    scheduler_v1,
    storage,
)
from google.iam.v1 import policy_pb2

from deploy.clients import Clients, DatasetIamAdapter

# A salt deploy accepts (long, not public, not a demo salt); tests assert it is in no plan or SQL text.
TEST_SALT = "0f3c9a7e5b1d24680ace13579bdf02468ace13579bdf0246"

REPO = Path(__file__).resolve().parents[2]

BASE_ENV = {
    "environment": "dev",
    "project": "lakehouse-test-1",
    "project_number": "123456789012",
    "region": "us-central1",
    "bigquery_location": "US",
    "prefix": "lh-test",
    "buckets": {
        "landing": "lh-test-landing",
        "dead_letter": "lh-test-dead-letter",
        "lake": "lh-test-lake",
        "functions_source": "lh-test-functions",
    },
    "dataform": {
        "git_remote": "https://github.com/example/lakehouse.git",
        "token_secret_version": "projects/lakehouse-test-1/secrets/git-token/versions/1",
        "vars": {"api_token": "${env:TEST_PII_SALT}", "lookback_days": "3"},
    },
    "schedules": {
        "generator": "*/2 * * * *",
        "workflows": [{"name": "hourly", "cron": "5 * * * *", "tags": ["hourly"]}],
    },
}

PROJECT_NUMBER = "123456789012"
CONNECTION_SA = "bqcx-123456789012-abcd@gcp-sa-bigquery-condel.iam.gserviceaccount.com"


def _resource(request: Any) -> str:
    return request["resource"] if isinstance(request, dict) else request.resource


def _copy_paths(stored: Any, new: Any, paths: list[str]) -> None:
    """Apply an update mask: copy each path of `new` onto `stored` (proto-plus messages)."""
    for path in paths:
        *parents, leaf = path.split(".")
        src, dst = new, stored
        for part in parents:
            src, dst = getattr(src, part), getattr(dst, part)
        value = getattr(src, leaf)
        if hasattr(value, "items") and not hasattr(value, "_pb"):
            value = dict(value.items())
        setattr(dst, leaf, value)


class Recorder:
    """Records every call; `fail` maps a method name to an exception raised on its next call."""

    def __init__(self, cloud: FakeCloud):
        self.cloud = cloud

    def _call(self, method: str, request: Any) -> None:
        self.cloud.calls.append((method, request))
        error = self.cloud.fail.pop(method, None)
        if error is not None:
            raise error


class PolicyStore(Recorder):
    """get/set IAM policy on any resource name, as the gRPC clients do."""

    def get_iam_policy(self, request: Any = None, **kwargs) -> policy_pb2.Policy:
        request = request or kwargs
        self._call("get_iam_policy", request)
        policy = policy_pb2.Policy()
        policy.CopyFrom(self.cloud.policies.get(_resource(request), policy_pb2.Policy(version=1, etag=b"e0")))
        return policy

    def set_iam_policy(self, request: Any = None, **kwargs) -> policy_pb2.Policy:
        request = request or kwargs
        self._call("set_iam_policy", request)
        policy = policy_pb2.Policy()
        policy.CopyFrom(request["policy"] if isinstance(request, dict) else request.policy)
        self.cloud.policies[_resource(request)] = policy
        return policy


class FakeServiceAccounts(PolicyStore):
    def get_service_account(self, request):
        self._call("get_service_account", request)
        found = self.cloud.store.get(request.name)
        if found is None:
            raise gexc.NotFound(f"{request.name} not found")
        return copy.deepcopy(found)

    def create_service_account(self, request):
        self._call("create_service_account", request)
        project = request.name.split("/")[1]
        email = f"{request.account_id}@{project}.iam.gserviceaccount.com"
        name = f"projects/{project}/serviceAccounts/{email}"
        if name in self.cloud.store:
            raise gexc.AlreadyExists(f"{email} exists")
        account = iam_admin_v1.ServiceAccount(request.service_account)
        account.name, account.email, account.project_id = name, email, project
        self.cloud.store[name] = account
        return copy.deepcopy(account)

    def patch_service_account(self, request):
        self._call("patch_service_account", request)
        stored = self.cloud.store[request.service_account.name]
        _copy_paths(stored, request.service_account, list(request.update_mask.paths))
        return copy.deepcopy(stored)

    def delete_service_account(self, request):
        self._call("delete_service_account", request)
        if self.cloud.store.pop(request.name, None) is None:
            raise gexc.NotFound(request.name)


class FakeStorage(Recorder):
    """BucketClient with storage.Bucket objects, plus bucket IAM in the adapter's dict form."""

    def lookup_bucket(self, name):
        self._call("lookup_bucket", name)
        found = self.cloud.buckets.get(name)
        if found is None:
            return None
        bucket = storage.Bucket(client=None, name=name)
        bucket._properties = copy.deepcopy(found)
        return bucket

    def create_bucket(self, bucket, project, location):
        self._call("create_bucket", bucket)
        if bucket.name in self.cloud.buckets:
            raise gexc.Conflict(f"bucket {bucket.name} exists")
        properties = copy.deepcopy(bucket._properties)
        properties["location"] = location.upper()
        self.cloud.buckets[bucket.name] = properties
        return bucket

    def patch_bucket(self, bucket):
        self._call("patch_bucket", bucket)
        self.cloud.buckets[bucket.name].update(copy.deepcopy({k: bucket._properties[k] for k in bucket._changes}))

    def delete_bucket(self, name, force):
        self._call("delete_bucket", name)
        del self.cloud.buckets[name]
        count = sum(1 for k in self.cloud.objects if k[0] == name)
        self.cloud.objects = {k: v for k, v in self.cloud.objects.items() if k[0] != name}
        return count

    def create_lock(self, bucket, name, data):
        self._call("create_lock", (bucket, name))
        if bucket not in self.cloud.buckets:
            raise gexc.NotFound(f"bucket {bucket}")
        if (bucket, name) in self.cloud.objects:
            return None
        self.cloud.objects[(bucket, name)] = data
        return 1

    def read_lock(self, bucket, name):
        self._call("read_lock", (bucket, name))
        return self.cloud.objects.get((bucket, name))

    def delete_lock(self, bucket, name, generation):
        self._call("delete_lock", (bucket, name))
        self.cloud.objects.pop((bucket, name), None)

    def object_exists(self, bucket, name):
        self._call("object_exists", (bucket, name))
        return (bucket, name) in self.cloud.objects

    def upload_object(self, bucket, name, data):
        self._call("upload_object", (bucket, name))
        if bucket not in self.cloud.buckets:
            raise gexc.NotFound(f"bucket {bucket}")
        self.cloud.objects[(bucket, name)] = data

    get_iam_policy = PolicyStore.get_iam_policy
    set_iam_policy = PolicyStore.set_iam_policy


class FakeBigQuery(Recorder):
    """Datasets and tables kept as API representations, answered as bigquery.Dataset / Table."""

    def get_dataset(self, ref):
        self._call("get_dataset", ref)
        ref = str(ref.reference if hasattr(ref, "reference") else ref)
        if ref not in self.cloud.datasets:
            raise gexc.NotFound(f"Dataset {ref}")
        return bigquery.Dataset.from_api_repr(copy.deepcopy(self.cloud.datasets[ref]))

    def create_dataset(self, dataset):
        self._call("create_dataset", dataset)
        key = f"{dataset.project}.{dataset.dataset_id}"
        if key in self.cloud.datasets:
            raise gexc.Conflict(f"Dataset {key} exists")
        self.cloud.datasets[key] = dataset.to_api_repr()
        return dataset

    def update_dataset(self, dataset, fields):
        self._call("update_dataset", (dataset, fields))
        key = f"{dataset.project}.{dataset.dataset_id}"
        stored = bigquery.Dataset.from_api_repr(self.cloud.datasets[key])
        for name in fields:
            if name == "labels":
                stored.labels = {k: v for k, v in dataset.labels.items() if v is not None}
            else:
                setattr(stored, name, getattr(dataset, name))
        self.cloud.datasets[key] = stored.to_api_repr()
        return stored

    def delete_dataset(self, dataset, delete_contents=False, not_found_ok=False):
        self._call("delete_dataset", dataset)
        self.cloud.datasets.pop(str(dataset), None)
        self.cloud.tables = {k: v for k, v in self.cloud.tables.items() if not k.startswith(f"{dataset}.")}

    def get_table(self, ref):
        self._call("get_table", ref)
        if str(ref) not in self.cloud.tables:
            raise gexc.NotFound(f"Table {ref}")
        return bigquery.Table.from_api_repr(copy.deepcopy(self.cloud.tables[str(ref)]))

    def create_table(self, table):
        self._call("create_table", table)
        key = f"{table.project}.{table.dataset_id}.{table.table_id}"
        if f"{table.project}.{table.dataset_id}" not in self.cloud.datasets:
            raise gexc.NotFound(f"Dataset {table.project}:{table.dataset_id}")
        representation = table.to_api_repr()
        for column in representation["schema"]["fields"]:  # the API answers with legacy type names
            column["type"] = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}.get(
                column["type"], column["type"]
            )
        self.cloud.tables[key] = representation
        return table

    def update_table(self, table, fields):
        self._call("update_table", (table, fields))
        key = f"{table.project}.{table.dataset_id}.{table.table_id}"
        stored = bigquery.Table.from_api_repr(self.cloud.tables[key])
        for name in fields:
            if name == "labels":
                stored.labels = {k: v for k, v in table.labels.items() if v is not None}
            else:
                setattr(stored, name, getattr(table, name))
        self.cloud.tables[key] = stored.to_api_repr()
        return stored

    def query(self, sql, job_config=None):
        """The two queries deploy runs, on keys.pii_salt: read its rows, or replace them with @salt."""
        table = re.search(r"`([^`]+)`", sql).group(1)
        if table not in self.cloud.tables:
            self._call("get_query_results", sql)
            raise gexc.NotFound(f"Table {table}")
        if sql.startswith("select salt from"):
            self._call("get_query_results", sql)
            return _Rows([{"salt": value} for value in self.cloud.rows.get(table, [])])
        self._call("query", (sql, job_config))
        assert sql.startswith("begin transaction;\ndelete from"), sql
        (parameter,) = job_config.query_parameters
        self.cloud.rows[table] = [parameter.value]
        return _Rows([])

    def list_tables(self, dataset):
        self._call("list_tables", dataset)
        if str(dataset) not in self.cloud.datasets:
            raise gexc.NotFound(f"Dataset {dataset}")
        return [
            bigquery.table.TableListItem(copy.deepcopy(v))
            for k, v in self.cloud.tables.items()
            if k.rsplit(".", 1)[0] == str(dataset)
        ]

    def delete_table(self, table, not_found_ok=False):
        self._call("delete_table", table)
        self.cloud.tables.pop(str(table), None)


class FakeConnections(PolicyStore):
    def get_connection(self, request):
        self._call("get_connection", request)
        if request.name not in self.cloud.store:
            raise gexc.NotFound(request.name)
        return copy.deepcopy(self.cloud.store[request.name])

    def create_connection(self, request):
        self._call("create_connection", request)
        name = f"{request.parent}/connections/{request.connection_id}"
        connection = bigquery_connection_v1.Connection(request.connection)
        connection.name = name
        connection.cloud_resource.service_account_id = CONNECTION_SA
        self.cloud.store[name] = connection
        return copy.deepcopy(connection)

    def update_connection(self, request):
        self._call("update_connection", request)
        _copy_paths(self.cloud.store[request.name], request.connection, list(request.update_mask.paths))

    def delete_connection(self, request):
        self._call("delete_connection", request)
        del self.cloud.store[request.name]


def _proto_crud(prefix: str, field: str, kind: type, key: str = "name", id_field: str | None = None):
    """Return get/create/update/delete methods for a proto-plus resource type."""

    def name_of(request) -> str:
        if isinstance(request, kind):
            return getattr(request, key)
        if hasattr(request, field) and not isinstance(getattr(request, field), str):
            return getattr(getattr(request, field), key)
        return getattr(request, key if hasattr(request, key) else field)

    def get(self, request):
        self._call(f"get_{prefix}", request)
        found = self.cloud.store.get(name_of(request))
        if found is None:
            raise gexc.NotFound(f"{name_of(request)} not found")
        return copy.deepcopy(found)

    def create(self, request):
        self._call(f"create_{prefix}", request)
        item = kind(request if isinstance(request, kind) else getattr(request, field))
        if id_field:
            setattr(item, key, f"{request.parent}/{field_collection[prefix]}/{getattr(request, id_field)}")
        if getattr(item, key) in self.cloud.store:
            raise gexc.AlreadyExists(f"{getattr(item, key)} exists")
        self.cloud.after_create(prefix, item)
        self.cloud.store[getattr(item, key)] = item
        return self.cloud.operation(prefix, copy.deepcopy(item))

    def update(self, request):
        self._call(f"update_{prefix}", request)
        new = getattr(request, field)
        stored = self.cloud.store[getattr(new, key)]
        _copy_paths(stored, new, list(request.update_mask.paths))
        return self.cloud.operation(prefix, copy.deepcopy(stored))

    def delete(self, request):
        self._call(f"delete_{prefix}", request)
        if self.cloud.store.pop(name_of(request), None) is None:
            raise gexc.NotFound(name_of(request))
        return self.cloud.operation(prefix, None)

    return get, create, update, delete


def _lister(prefix: str, kind: type, collection: str):
    """Return a list_* method: stored `kind` items under the request's parent (or project)."""

    def list_items(self, request):
        self._call(f"list_{prefix}", request)
        base = request.get("parent") or request.get("project")
        start = f"{base}/{collection}/"
        return [copy.deepcopy(v) for k, v in self.cloud.store.items() if isinstance(v, kind) and k.startswith(start)]

    return list_items


field_collection = {
    "repository": "repositories",
    "release_config": "releaseConfigs",
    "workflow_config": "workflowConfigs",
    "function": "functions",
    "job": "jobs",
}


class FakeTopics(PolicyStore):
    get_topic, create_topic, update_topic, delete_topic = _proto_crud("topic", "topic", pubsub_v1.types.Topic)
    list_topics = _lister("topics", pubsub_v1.types.Topic, "topics")


class FakeSubscriptions(PolicyStore):
    get_subscription, create_subscription, update_subscription, delete_subscription = _proto_crud(
        "subscription", "subscription", pubsub_v1.types.Subscription
    )
    list_subscriptions = _lister("subscriptions", pubsub_v1.types.Subscription, "subscriptions")


class FakeDataform(PolicyStore):
    D = dataform_v1
    get_repository, create_repository, update_repository, delete_repository = _proto_crud(
        "repository", "repository", D.Repository, id_field="repository_id"
    )
    get_release_config, create_release_config, update_release_config, delete_release_config = _proto_crud(
        "release_config", "release_config", D.ReleaseConfig, id_field="release_config_id"
    )
    list_workflow_configs = _lister("workflow_configs", D.WorkflowConfig, "workflowConfigs")


class FakeFunctions(PolicyStore):
    get_function, create_function, update_function, delete_function = _proto_crud(
        "function", "function", functions_v2.Function, id_field="function_id"
    )
    list_functions = _lister("functions", functions_v2.Function, "functions")


class FakeScheduler(Recorder):
    get_job, create_job, update_job, delete_job = _proto_crud("job", "job", scheduler_v1.Job)
    list_jobs = _lister("jobs", scheduler_v1.Job, "jobs")


class FakeProjects(PolicyStore):
    def get_project(self, request):
        self._call("get_project", request)
        name = request["name"] if isinstance(request, dict) else request.name
        return resourcemanager_v3.Project(name=f"projects/{PROJECT_NUMBER}", project_id=name.split("/")[1])


class FakeRun(PolicyStore):
    pass


class _Operation:
    def __init__(self, value):
        self.value = value

    def result(self, timeout=None):
        return self.value


class _Rows(list):
    """A finished query job: result() answers its rows."""

    def result(self):
        return self


class FakeApi:
    """get/create/update/delete (and list) of proto-plus resources in one dict, every call recorded."""

    COLLECTIONS = {"lake": "lakes", "zone": "zones", "asset": "assets", "data_scan": "dataScans"}
    NAMED_BY_API = {
        "notification_channel": "notificationChannels",
        "notification_channels": "notificationChannels",
        "alert_policy": "alertPolicies",
        "alert_policies": "alertPolicies",
    }

    def __init__(self, store: dict, calls: list, operations: bool = False):
        self.store, self.calls, self.operations = store, calls, operations

    def _done(self, value):
        return _Operation(value) if self.operations else value

    def __getattr__(self, method: str):
        verb, _, noun = method.partition("_")
        if verb not in ("get", "create", "update", "delete", "list"):
            raise AttributeError(method)

        def call(request):
            self.calls.append((method, request))
            return getattr(self, f"_{verb}")(noun, request)

        return call

    @staticmethod
    def _name(request) -> str:
        return request.get("name") or request.get("metric_name")

    def _get(self, noun, request):
        if self._name(request) not in self.store:
            raise gexc.NotFound(self._name(request))
        return copy.deepcopy(self.store[self._name(request)])

    def _create(self, noun, request):
        if noun == "log_metric":
            body, name = request["metric"], f"{request['parent']}/metrics/{request['metric'].name}"
        elif noun in self.COLLECTIONS:
            body = getattr(request, noun)
            name = f"{request.parent}/{self.COLLECTIONS[noun]}/{getattr(request, noun + '_id')}"
        else:  # the API names channels and policies
            body = getattr(request, noun)
            name = f"{request.name}/{self.NAMED_BY_API[noun]}/{len(self.store) + 1}"
        if name in self.store:
            raise gexc.AlreadyExists(name)
        body = type(body)(body)
        if noun != "log_metric":
            body.name = name
        self.store[name] = body
        return self._done(copy.deepcopy(body))

    def _update(self, noun, request):
        if noun == "log_metric":
            self.store[request["metric_name"]] = request["metric"]
            return request["metric"]
        body = request[noun] if isinstance(request, dict) else getattr(request, noun)
        paths = request["update_mask"].paths if isinstance(request, dict) else request.update_mask.paths
        stored = self.store[body.name]
        for path in paths:
            setattr(stored, path, getattr(body, path))
        return self._done(copy.deepcopy(stored))

    def _delete(self, noun, request):
        del self.store[self._name(request)]
        return self._done(None)

    def _list(self, noun, request):
        start = f"{request['name']}/{self.NAMED_BY_API[noun]}/"
        return [copy.deepcopy(v) for k, v in self.store.items() if k.startswith(start)]


class FakeCloud:
    """One fake project: all state, every call made, and failures to inject."""

    def __init__(self):
        self.store: dict[str, Any] = {}
        self.policies: dict[str, policy_pb2.Policy] = {}
        self.buckets: dict[str, dict] = {}
        self.objects: dict[tuple[str, str], bytes] = {}
        self.datasets: dict[str, dict] = {}
        self.tables: dict[str, dict] = {}
        self.rows: dict[str, list] = {}  # table -> values of its one column (keys.pii_salt)
        self.calls: list[tuple[str, Any]] = []
        self.fail: dict[str, Exception] = {}

    def after_create(self, prefix: str, item: Any) -> None:
        if prefix == "function":
            function_id = item.name.rsplit("/", 1)[1]
            item.service_config.uri = f"https://{function_id}-abc123-uc.a.run.app"
            item.service_config.service = item.name.replace("/functions/", "/services/")
            item.service_config.environment_variables["LOG_EXECUTION_ID"] = "true"  # as Cloud Functions does

    def operation(self, prefix: str, value: Any) -> Any:
        return _Operation(value) if prefix == "function" else value

    def writes(self) -> list[str]:
        """Return the names of the calls that changed something."""
        readonly = ("get_", "lookup_", "object_exists", "list_")
        return [name for name, _ in self.calls if not name.startswith(readonly)]

    def clients(self) -> Clients:
        bq = FakeBigQuery(self)
        return Clients(
            project="test",
            service_accounts=FakeServiceAccounts(self),
            storage=FakeStorage(self),
            bigquery=bq,
            connections=FakeConnections(self),
            topics=FakeTopics(self),
            subscriptions=FakeSubscriptions(self),
            dataform=FakeDataform(self),
            functions=FakeFunctions(self),
            scheduler=FakeScheduler(self),
            projects=FakeProjects(self),
            run=FakeRun(self),
            dataset_iam=DatasetIamAdapter(bq),
            # Dataplex and alerting: one generic stand-in over the same store
            dataplex=FakeApi(self.store, self.calls, operations=True),
            datascans=FakeApi(self.store, self.calls, operations=True),
            log_metrics=FakeApi(self.store, self.calls),
            notification_channels=FakeApi(self.store, self.calls),
            alert_policies=FakeApi(self.store, self.calls),
        )
