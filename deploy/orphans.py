"""Resources the kit created for an environment that its desired state no longer has (a removed source,
workflow or function): found by listing, so plan shows them and apply/destroy remove them."""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc

from deploy.config import EnvConfig
from deploy.resources import MANAGED_BY, MARKER, Resource

# Kinds listed for orphans; tables only in the kit's own datasets.
ORPHAN_KINDS = ("scheduler_job", "function", "workflow_config", "subscription", "topic", "table")


def _ours(labels: Any, env: EnvConfig) -> bool:
    labels = dict(labels or {})
    return labels.get(MANAGED_BY[0]) == MANAGED_BY[1] and labels.get("lakehouse-env") == env.environment


def _list(call, request) -> list:
    try:
        return list(call(request=request))
    except gexc.NotFound:  # the parent (repository, dataset) is not there: nothing under it either
        return []


def find_orphans(env: EnvConfig, resources: list[Resource], clients: Any) -> list[Resource]:
    """Return the kit's resources of `env` that exist but are not in `resources`, in deletion order.

    Only kinds that `resources` has are listed (a partial list manages only those kinds). Tables hold
    data (Resource.data); the rest do not. Raises google.api_core errors from listing.
    """
    wanted = {r.key for r in resources}
    kinds = {r.kind for r in resources}
    p, region = env.project, env.region
    found: list[Resource] = []
    parent = f"projects/{p}/locations/{region}"
    for job in _list(clients.scheduler.list_jobs, {"parent": parent}) if "scheduler_job" in kinds else []:
        if MARKER in job.description and job.name.rsplit("/", 1)[1].startswith(f"{env.prefix}-"):
            found.append(Resource("scheduler_job", job.name))
    for function in _list(clients.functions.list_functions, {"parent": parent}) if "function" in kinds else []:
        if _ours(function.labels, env):
            found.append(Resource("function", function.name))
    repo = f"{parent}/repositories/{env.dataform.repository}"
    if f"dataform_repository:{repo}" in wanted and "workflow_config" in kinds:
        for config in _list(clients.dataform.list_workflow_configs, {"parent": repo}):
            found.append(Resource("workflow_config", config.name))
    subscriptions = (
        _list(clients.subscriptions.list_subscriptions, {"project": f"projects/{p}"}) if "subscription" in kinds else []
    )
    for subscription in subscriptions:
        if _ours(subscription.labels, env):
            found.append(Resource("subscription", subscription.name))
    for topic in _list(clients.topics.list_topics, {"project": f"projects/{p}"}) if "topic" in kinds else []:
        if _ours(topic.labels, env):
            found.append(Resource("topic", topic.name))
    for dataset in env.datasets.values() if "table" in kinds else []:
        try:
            tables = list(clients.bigquery.list_tables(f"{p}.{dataset}"))
        except gexc.NotFound:
            continue
        for table in tables:
            if _ours(table.labels, env):
                found.append(Resource("table", f"{table.project}.{table.dataset_id}.{table.table_id}", data=True))
    return [r for r in found if r.key not in wanted]
