"""Resources the kit created for an environment that its desired state no longer has (a removed source,
workflow or function): found by listing, so plan shows them and apply/destroy remove them; unmarked
ones in the kit's namespace are reported as not managed and never touched."""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc

from deploy.config import EnvConfig
from deploy.resources import MANAGED_BY, MARKER, Resource

# Kinds listed for orphans; tables only in the kit's own datasets.
ORPHAN_KINDS = ("scheduler_job", "function", "subscription", "topic", "table")


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

    Raises google.api_core errors from listing (see survey).
    """
    return survey(env, resources, clients)[0]


def survey(env: EnvConfig, resources: list[Resource], clients: Any) -> tuple[list[Resource], list[Resource]]:
    """Return (orphans, not managed): listed resources in the kit's namespace (its prefix, its
    Dataform repository) that the desired state does not have, split by whether they carry the kit's
    marker (label, or description marker). Only orphans are ever deleted; the rest are reported.

    Only kinds that `resources` has are listed (a partial list manages only those kinds), plus the
    workflow configs of the kit's repository, which the kit never creates. Tables hold data
    (Resource.data); the rest do not. Raises google.api_core errors from listing.
    """
    wanted = {r.key for r in resources}
    kinds = {r.kind for r in resources}
    p, region = env.project, env.region
    found: list[Resource] = []
    foreign: list[Resource] = []

    def sort(resource: Resource, ours: bool, short_name: str) -> None:
        if ours:
            found.append(resource)
        elif short_name.startswith(f"{env.prefix}-"):
            foreign.append(resource)

    parent = f"projects/{p}/locations/{region}"
    for job in _list(clients.scheduler.list_jobs, {"parent": parent}) if "scheduler_job" in kinds else []:
        short = job.name.rsplit("/", 1)[1]
        sort(Resource("scheduler_job", job.name), MARKER in job.description and short.startswith(f"{env.prefix}-"),
             short)  # fmt: skip
    for function in _list(clients.functions.list_functions, {"parent": parent}) if "function" in kinds else []:
        sort(Resource("function", function.name), _ours(function.labels, env), function.name.rsplit("/", 1)[1])
    repo = f"{parent}/repositories/{env.dataform.repository}"
    if f"dataform_repository:{repo}" in wanted:
        # Made in the UI, or by an older kit that carried no marker on them: never deleted.
        for config in _list(clients.dataform.list_workflow_configs, {"parent": repo}):
            foreign.append(Resource("workflow_config", config.name))
    subscriptions = (
        _list(clients.subscriptions.list_subscriptions, {"project": f"projects/{p}"}) if "subscription" in kinds else []
    )
    for subscription in subscriptions:
        sort(Resource("subscription", subscription.name), _ours(subscription.labels, env),
             subscription.name.rsplit("/", 1)[1])  # fmt: skip
    for topic in _list(clients.topics.list_topics, {"project": f"projects/{p}"}) if "topic" in kinds else []:
        sort(Resource("topic", topic.name), _ours(topic.labels, env), topic.name.rsplit("/", 1)[1])
    for dataset in env.datasets.values() if "table" in kinds else []:
        try:
            tables = list(clients.bigquery.list_tables(f"{p}.{dataset}"))
        except gexc.NotFound:
            continue
        for table in tables:  # Dataform's own tables live here too: only the kit's are listed
            if _ours(table.labels, env):
                found.append(Resource("table", f"{table.project}.{table.dataset_id}.{table.table_id}", data=True))
    return [r for r in found if r.key not in wanted], [r for r in foreign if r.key not in wanted]
