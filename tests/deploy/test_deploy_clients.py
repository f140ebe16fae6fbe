"""The client protocols match the real Google Cloud clients (and the fakes), method for method."""

from __future__ import annotations

import pytest
from deploy_fakes import (
    FakeBigQuery,
    FakeConnections,
    FakeDataform,
    FakeFunctions,
    FakeProjects,
    FakeRun,
    FakeScheduler,
    FakeServiceAccounts,
    FakeStorage,
    FakeSubscriptions,
    FakeTopics,
)
from google.cloud import (
    bigquery,
    bigquery_connection_v1,
    dataform_v1,
    functions_v2,
    iam_admin_v1,
    pubsub_v1,
    resourcemanager_v3,
    run_v2,
    scheduler_v1,
)

from deploy import clients as c


def members(protocol: type) -> set[str]:
    names = set()
    for klass in protocol.__mro__:
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        names |= {n for n in vars(klass) if not n.startswith("_")}
    return names


@pytest.mark.parametrize(
    ("protocol", "real", "fake"),
    [
        (c.ServiceAccountClient, iam_admin_v1.IAMClient, FakeServiceAccounts),
        (c.BucketClient, c.StorageAdapter, FakeStorage),
        (c.IamPolicyClient, c.StorageAdapter, FakeStorage),
        (c.IamPolicyClient, c.DatasetIamAdapter, c.DatasetIamAdapter),
        (c.BigQueryClient, bigquery.Client, FakeBigQuery),
        (c.ConnectionClient, bigquery_connection_v1.ConnectionServiceClient, FakeConnections),
        (c.TopicClient, pubsub_v1.PublisherClient, FakeTopics),
        (c.SubscriptionClient, pubsub_v1.SubscriberClient, FakeSubscriptions),
        (c.DataformClient, dataform_v1.DataformClient, FakeDataform),
        (c.FunctionClient, functions_v2.FunctionServiceClient, FakeFunctions),
        (c.SchedulerClient, scheduler_v1.CloudSchedulerClient, FakeScheduler),
        (c.ProjectClient, resourcemanager_v3.ProjectsClient, FakeProjects),
        (c.IamPolicyClient, run_v2.ServicesClient, FakeRun),
    ],
)
def test_protocol_methods_exist_on_the_real_client_and_the_fake(protocol, real, fake):
    names = members(protocol)
    assert names, protocol
    assert sorted(n for n in names if not callable(getattr(real, n, None))) == []
    assert sorted(n for n in names if not callable(getattr(fake, n, None))) == []


def test_clients_are_made_lazily_and_refuse_unknown_names():
    made = c.Clients(project="p", topics="given")
    assert made.topics == "given"
    assert "storage" not in made._made  # nothing created until asked for
    with pytest.raises(TypeError, match="unknown clients: \\['nope'\\]"):
        c.Clients(nope=1)
    with pytest.raises(AttributeError):
        _ = made.not_a_client


def test_dataset_iam_adapter_changes_only_the_pairs_that_differ():
    from deploy_fakes import FakeCloud
    from google.cloud import bigquery

    from deploy.handlers import with_member, without_member

    cloud = FakeCloud()
    bq = FakeBigQuery(cloud)
    dataset = bigquery.Dataset("p.ops")
    dataset.access_entries = [
        bigquery.AccessEntry("OWNER", "specialGroup", "projectOwners"),
        bigquery.AccessEntry("WRITER", "userByEmail", "old@p.iam.gserviceaccount.com"),
        bigquery.AccessEntry(None, "view", {"projectId": "p", "datasetId": "gold", "tableId": "v"}),
    ]
    bq.create_dataset(dataset)
    adapter = c.DatasetIamAdapter(bq)
    policy = adapter.get_iam_policy({"resource": "p.ops"})
    assert [(b.role, list(b.members)) for b in policy.bindings] == [
        ("roles/bigquery.dataEditor", ["serviceAccount:old@p.iam.gserviceaccount.com"]),
        ("roles/bigquery.dataOwner", ["specialGroup:projectOwners"]),
    ]
    assert without_member(policy, "roles/bigquery.dataEditor", "serviceAccount:old@p.iam.gserviceaccount.com")
    assert with_member(policy, "roles/bigquery.dataViewer", "serviceAccount:new@p.iam.gserviceaccount.com")
    adapter.set_iam_policy({"resource": "p.ops", "policy": policy})
    entries = bigquery.Dataset.from_api_repr(cloud.datasets["p.ops"]).access_entries
    assert [(e.role, e.entity_type, e.entity_id) for e in entries] == [
        ("OWNER", "specialGroup", "projectOwners"),
        (None, "view", {"projectId": "p", "datasetId": "gold", "tableId": "v"}),
        ("roles/bigquery.dataViewer", "iamMember", "serviceAccount:new@p.iam.gserviceaccount.com"),
    ]
