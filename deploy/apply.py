"""Apply the desired state (idempotently) and destroy what apply created, with API errors explained."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc

from deploy.config import EnvConfig, salt_problem
from deploy.handlers import OPERATION_TIMEOUT_S, Observed
from deploy.orphans import find_orphans
from deploy.plan import diff, entry_point_problems, local_outputs
from deploy.resources import Resource, resolve

log = logging.getLogger(__name__)

# kind -> (API to enable, role the deploying identity needs)
NEEDS = {
    "service_account": ("iam.googleapis.com", "roles/iam.serviceAccountAdmin"),
    "bucket": ("storage.googleapis.com", "roles/storage.admin"),
    "source_archive": ("storage.googleapis.com", "roles/storage.admin"),
    "dataset": ("bigquery.googleapis.com", "roles/bigquery.admin"),
    "table": ("bigquery.googleapis.com", "roles/bigquery.admin"),
    "authorized_dataset": ("bigquery.googleapis.com", "roles/bigquery.admin"),
    "pii_salt": ("bigquery.googleapis.com", "roles/bigquery.admin"),
    "connection": ("bigqueryconnection.googleapis.com", "roles/bigquery.connectionAdmin"),
    "topic": ("pubsub.googleapis.com", "roles/pubsub.admin"),
    "subscription": ("pubsub.googleapis.com", "roles/pubsub.admin"),
    "dataform_repository": ("dataform.googleapis.com", "roles/dataform.admin"),
    "release_config": ("dataform.googleapis.com", "roles/dataform.admin"),
    "function": ("cloudfunctions.googleapis.com", "roles/cloudfunctions.admin"),
    "scheduler_job": ("cloudscheduler.googleapis.com", "roles/cloudscheduler.admin"),
    "iam_binding": ("cloudresourcemanager.googleapis.com", "roles/resourcemanager.projectIamAdmin"),
    "project": ("cloudresourcemanager.googleapis.com", "roles/browser"),
}
# monitoring_channel: the API names a channel; its alert policies need that name.
READ_AFTER_WRITE = frozenset({"connection", "function", "service_account", "monitoring_channel"})


class DeployError(RuntimeError):
    """An apply or destroy step that failed: names the resource, what happened and what to do."""

    def __init__(self, resource: Resource | None, action: str, message: str, hint: str):
        self.resource, self.action, self.message, self.hint = resource, action, message, hint
        where = f"{resource.kind} {resource.name}" if resource else "deploy"
        super().__init__(f"{action} {where} failed: {message}\n  what to do: {hint}")


def explain(error: Exception, resource: Resource, action: str, env: EnvConfig) -> DeployError:
    """Return a DeployError for an API error raised while doing `action` to `resource`."""
    api, role = NEEDS.get(resource.kind, ("", ""))
    text = str(getattr(error, "message", "") or error)
    rerun = "then re-run `lakehouse deploy apply` (finished steps show as unchanged)"
    if "SERVICE_DISABLED" in text or "has not been used in project" in text or "is disabled" in text:
        hint = f"enable the API: gcloud services enable {api} --project {env.project}; {rerun}"
    elif isinstance(error, gexc.PermissionDenied | gexc.Forbidden):
        if resource.kind == "bucket":
            hint = (f"the bucket name may belong to another project: choose another name in {env.path} "
                    f"(field buckets.*), or grant the deploying identity {role}; {rerun}")  # fmt: skip
        else:
            hint = f"grant the deploying identity {role} on project {env.project}; {rerun}"
    elif isinstance(error, gexc.Unauthenticated):
        hint = "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS); " + rerun
    elif isinstance(error, gexc.ResourceExhausted | gexc.TooManyRequests):
        hint = f"a quota or rate limit was hit: wait a minute or request more quota for {api}; {rerun}"
    elif isinstance(error, gexc.AlreadyExists | gexc.Conflict):
        hint = ("the name is taken (by another project, or the resource is being deleted): pick another name "
                f"in {env.path} or wait a few minutes; {rerun}")  # fmt: skip
    elif isinstance(error, gexc.NotFound):
        hint = f"something it depends on is missing (its parent, or {api} is not enabled); {rerun}"
    elif resource.kind == "function" and "build" in text.lower():
        hint = f"the function did not build: read its log (gcloud builds list --project {env.project}); {rerun}"
    elif isinstance(error, gexc.FailedPrecondition | gexc.InvalidArgument | gexc.BadRequest):
        hint = f"the request was refused as invalid for this project's state; check the message; {rerun}"
    elif isinstance(error, gexc.ServiceUnavailable | gexc.DeadlineExceeded | gexc.InternalServerError):
        hint = f"a transient Google Cloud error: {rerun}"
    else:
        hint = rerun
    return DeployError(resource, action, f"{type(error).__name__}: {text}", hint)


@dataclass
class Outcome:
    """What happened to one resource."""

    resource: Resource
    result: str  # created | updated | unchanged | deleted | absent | kept | left-alone
    detail: str = ""


@dataclass
class Report:
    """Every outcome so far; on failure `error` is set and later resources were not touched."""

    outcomes: list[Outcome] = field(default_factory=list)
    error: DeployError | None = None

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)


def _project_outputs(env: EnvConfig, clients: Any, resources: list[Resource]) -> dict[str, dict[str, str]]:
    key = "project:" + env.project
    if env.project_number:
        return {key: {"number": env.project_number}}
    if not any(k == key for r in resources for k, _ in r.placeholders()):
        return {}
    project = clients.projects.get_project(request={"name": f"projects/{env.project}"})
    return {key: {"number": project.name.split("/")[1]}}


def _read(handler: Any, clients: Any, resource: Resource, spec: dict, retries: int, sleep) -> Any:
    """Read after a write: new resources can take a moment to become visible."""
    for attempt in range(retries + 1):
        current = handler.read(clients, resource, spec)
        if current is not None or attempt == retries:
            return current
        sleep(2**attempt)
    return None


# A service account or grant made a moment ago is not visible everywhere at once: creates that name
# one are retried a few times before the error is reported.
PROPAGATION_DELAYS_S = (2, 4, 8, 16, 30)
_PROPAGATION_HINTS = ("does not exist", "service account", "gserviceaccount.com")


def _create(handler: Any, clients: Any, resource: Resource, spec: dict, sleep: Callable[[float], None]) -> None:
    for delay in (*PROPAGATION_DELAYS_S, None):
        try:
            handler.create(clients, resource, spec)
            return
        except (gexc.InvalidArgument, gexc.FailedPrecondition, gexc.NotFound, gexc.PermissionDenied) as error:
            text = str(error).lower()
            if delay is None or "@" not in json.dumps(spec) or not any(h in text for h in _PROPAGATION_HINTS):
                raise
            log.info("%s %s: %s; retrying in %s s (IAM propagation)", resource.kind, resource.name, error, delay)
            sleep(delay)


def apply(
    env: EnvConfig,
    resources: list[Resource],
    clients: Any,
    handlers: Mapping[str, Any],
    project_dir: Path,
    environ: Mapping[str, str] | None = None,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Create or update every resource in order; stop at the first failure (re-running resumes).

    Returns the Report; never raises for API errors (they are in Report.error as DeployError).
    """
    report = Report()
    current_resource = Resource("project", f"projects/{env.project}")
    action = "read"
    try:
        for resource in resources:  # before any change: a public or demo salt must never reach GCP
            if resource.kind == "pii_salt":
                current_resource, action = resource, "check"
                spec, _ = resolve(resource.spec, {}, environ)
                problem = None if spec["salt"] == resource.spec["salt"] else salt_problem(spec["salt"])
                if problem:
                    message = f"{env.pii_salt} {problem}: a dictionary reverses its hashes"
                    hint = "make a secret salt (docs/runbook.md: openssl rand -hex 32 into Secret Manager)"
                    raise DeployError(resource, "check", message, hint)
        current_resource, action = Resource("project", f"projects/{env.project}"), "read"
        outputs = _project_outputs(env, clients, resources)
        for resource in resources:
            current_resource, action = resource, "read"
            handler = handlers[resource.kind]
            outputs.setdefault(resource.key, {}).update(local_outputs(resource, project_dir))
            spec, unknown = resolve(resource.spec, outputs, environ)
            if unknown:
                missing = ", ".join(unknown)
                hint = (
                    "export the environment variables named above"
                    if all(u.startswith("$") for u in unknown)
                    else "apply the resources it depends on first (they come earlier in the plan)"
                )
                raise DeployError(resource, "resolve", f"not known yet: {missing}", hint)
            missing = entry_point_problems(resource, project_dir)
            if missing:
                hint = f"add the function to the repository or set the entry point in {env.path}"
                raise DeployError(resource, "build", "; ".join(missing), hint)
            current = handler.read(clients, resource, spec)
            if current is None:
                action = "create"
                _create(handler, clients, resource, spec, sleep)
                result, detail = "created", ""
            else:
                changed = diff(spec, current.spec)
                if changed and not current.managed:
                    message = f"it exists but was not created by lakehouse-kit (differs in {', '.join(changed)})"
                    hint = f"choose another name in {env.path}, or delete it yourself"
                    raise DeployError(resource, "update", message, hint)
                if set(changed) & handler.immutable:
                    fields = ", ".join(sorted(set(changed) & handler.immutable))
                    raise DeployError(resource, "update", f"{fields} cannot change in place",
                                      f"restore the old value in {env.path}, or destroy the resource "
                                      "(data is lost) and apply again")  # fmt: skip
                if changed:
                    action = "update"
                    handler.update(clients, resource, spec, changed)
                    result, detail = "updated", ", ".join(changed)
                else:
                    result, detail = "unchanged", ""
                    outputs[resource.key].update(current.outputs)
            if result != "unchanged" and resource.kind in READ_AFTER_WRITE:
                action = "read"
                fresh = _read(handler, clients, resource, spec, retries=3, sleep=sleep)
                if fresh is not None:
                    outputs[resource.key].update(fresh.outputs)
            outcome = Outcome(resource, result, detail)
            report.outcomes.append(outcome)
            on_outcome(outcome)
        current_resource, action = Resource("project", f"projects/{env.project}"), "list"
        for orphan in find_orphans(env, resources, clients):
            current_resource, action = orphan, "delete"
            if orphan.data:
                outcome = Outcome(orphan, "kept", "no longer in the config; holds data")
            else:
                handlers[orphan.kind].delete(clients, orphan, {})
                outcome = Outcome(orphan, "deleted", "no longer in the config")
            report.outcomes.append(outcome)
            on_outcome(outcome)
    except DeployError as error:
        report.error = error
    except gexc.GoogleAPICallError as error:
        report.error = explain(error, current_resource, action, env)
    except TimeoutError:
        report.error = _timed_out(current_resource, action)
    return report


def _timed_out(resource: Resource, action: str) -> DeployError:
    return DeployError(resource, action, f"no answer within {OPERATION_TIMEOUT_S} s",
                       "it may still finish: wait a few minutes, then re-run the same command")  # fmt: skip


def destroy(
    env: EnvConfig,
    resources: list[Resource],
    clients: Any,
    handlers: Mapping[str, Any],
    project_dir: Path,
    include_data: bool = False,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
) -> Report:
    """Delete, in reverse order, what apply created: only resources marked as lakehouse-kit's, and
    resources holding data only with `include_data`. Returns the Report (API errors in .error)."""
    report = Report()
    current_resource = Resource("project", f"projects/{env.project}")
    action = "read"
    try:
        outputs = _project_outputs(env, clients, resources)
        seen: dict[str, tuple[dict, Any]] = {}
        orphans = find_orphans(env, resources, clients)
        for orphan in orphans:
            seen[orphan.key] = ({}, Observed({}))
        for resource in resources:
            current_resource = resource
            outputs.setdefault(resource.key, {}).update(local_outputs(resource, project_dir))
            spec, unknown = resolve(resource.spec, outputs, {})
            if resource.kind == "iam_binding" and unknown:
                seen[resource.key] = (spec, None)
                continue
            current = handlers[resource.kind].read(clients, resource, spec)
            if current is not None:
                outputs[resource.key].update(current.outputs)
            seen[resource.key] = (spec, current)
        for resource in [*orphans, *reversed(resources)]:
            current_resource, action = resource, "read"
            spec, current = seen[resource.key]
            if current is None:
                outcome = Outcome(resource, "absent")
            elif not current.managed:
                outcome = Outcome(resource, "left-alone", "not created by lakehouse-kit")
            elif resource.data and not include_data:
                outcome = Outcome(resource, "kept", "holds data; pass --include-data to delete it")
            else:
                action, detail = "delete", ""
                try:
                    detail = handlers[resource.kind].delete(clients, resource, spec) or ""
                except gexc.NotFound:
                    pass
                outcome = Outcome(resource, "deleted", detail)
            report.outcomes.append(outcome)
            on_outcome(outcome)
    except gexc.GoogleAPICallError as error:
        report.error = explain(error, current_resource, action, env)
    except TimeoutError:
        report.error = _timed_out(current_resource, action)
    return report
