"""Alerting: log-based metrics on the trigger's errors, failed checks and dead letters, alert policies on
them, and the notification channel they page; as Resources and as the API's own request objects."""

from __future__ import annotations

from typing import Any

from google.cloud import monitoring_v3
from google.cloud.logging_v2.types import LogMetric
from google.protobuf import duration_pb2

from deploy.config import EnvConfig
from deploy.resources import Resource, ref
from deploy.resources import labels as resource_labels

# The e-mail the alerts go to: read from the environment at apply time, never committed.
ALERT_EMAIL = "${env:LAKEHOUSE_ALERT_EMAIL}"
WINDOW_S = 300


def _trigger_logs(env: EnvConfig) -> str:
    return f'resource.type="cloud_run_revision" AND resource.labels.service_name="{env.prefix}-trigger"'


def metrics(env: EnvConfig) -> dict[str, tuple[str, str]]:
    """Return {metric id: (description, Cloud Logging filter)} of the log-based metrics."""
    trigger = _trigger_logs(env)
    return {
        f"{env.prefix}-trigger-errors": (
            "ERROR entries of the workflow trigger: a failed run, a failed API call or an unwritten run record.",
            f"{trigger} AND severity>=ERROR",
        ),
        f"{env.prefix}-freshness-failures": (
            "Trigger runs in which a <source>_freshness assertion failed (the freshness SLA was missed).",
            f'{trigger} AND jsonPayload.failed.name:"_freshness"',
        ),
        f"{env.prefix}-reject-rate-over-threshold": (
            "Trigger runs in which a <source>_quality_thresholds assertion failed (a contract threshold crossed).",
            f'{trigger} AND jsonPayload.failed.name:"_quality_thresholds"',
        ),
        f"{env.prefix}-dead-letter-writes": (
            "Objects written to the dead-letter bucket (needs Cloud Storage DATA_WRITE audit logs).",
            f'resource.type="gcs_bucket" AND resource.labels.bucket_name="{env.buckets["dead_letter"]}" '
            'AND protoPayload.methodName="storage.objects.create"',
        ),
    }


# Alert policy -> (metric suffix, documentation). Any entry counted in the window opens an incident.
POLICIES = {
    "workflow-failed": (
        "trigger-errors",
        "A scheduled Dataform run failed or could not start; see the trigger's logs.",
    ),
    "freshness-sla-missed": (
        "freshness-failures",
        "A source's newest silver event is older than freshness_sla_hours; check ingestion and the schedule.",
    ),
    "reject-rate-over-threshold": (
        "reject-rate-over-threshold",
        "A source rejected more than its contract allows; `lakehouse report` lists the rules and samples.",
    ),
    "dead-letters-growing": (
        "dead-letter-writes",
        "Payloads are being dead-lettered; read them in ops.dead_letters and replay after a fix.",
    ),
}


def resources(env: EnvConfig) -> list[Resource]:
    """Return the notification channel, the log-based metrics and one alert policy per metric."""
    labels = resource_labels(env, "alerting")
    channel = f"{env.prefix}-alerts-email"
    found = [
        Resource(
            "monitoring_channel",
            channel,
            {"type": "email", "email_address": ALERT_EMAIL, "display_name": f"{env.prefix} alerts", "labels": labels},
        )
    ]
    for metric_id, (description, log_filter) in metrics(env).items():
        found.append(
            Resource(
                "logging_metric",
                f"projects/{env.project}/metrics/{metric_id}",
                {"description": description, "filter": log_filter},
            )  # fmt: skip
        )
    for policy, (suffix, documentation) in POLICIES.items():
        found.append(
            Resource(
                "monitoring_alert_policy",
                f"{env.prefix}-{policy}",
                {
                    "metric": f"logging.googleapis.com/user/{env.prefix}-{suffix}",
                    "window_s": WINDOW_S,
                    "documentation": documentation,
                    "channel": ref(f"monitoring_channel:{channel}", "name"),
                    "labels": labels,
                },
            )
        )
    return found


def request(resource: Resource, project: str, channel_name: str | None = None) -> Any:
    """Return the create request (logging LogMetric, or monitoring NotificationChannel / AlertPolicy) of a
    resource, built from the installed google-cloud-logging / google-cloud-monitoring types.

    `channel_name` is the channel's resource name once created (projects/…/notificationChannels/…).
    Raises ValueError for a kind this module does not make.
    """
    spec = resource.spec
    if resource.kind == "logging_metric":
        return LogMetric(
            name=resource.name.rsplit("/", 1)[1],
            description=spec["description"],
            filter=spec["filter"],
            metric_descriptor={"metric_kind": "DELTA", "value_type": "INT64", "unit": "1"},
        )
    if resource.kind == "monitoring_channel":
        return monitoring_v3.CreateNotificationChannelRequest(
            name=f"projects/{project}",
            notification_channel=monitoring_v3.NotificationChannel(
                type_=spec["type"],
                display_name=spec["display_name"],
                labels={"email_address": spec["email_address"]},
                user_labels=spec["labels"],
            ),
        )
    if resource.kind == "monitoring_alert_policy":
        condition = monitoring_v3.AlertPolicy.Condition(
            display_name=f"{resource.name}: any entry in {spec['window_s'] // 60} min",
            condition_threshold=monitoring_v3.AlertPolicy.Condition.MetricThreshold(
                filter=f'metric.type="{spec["metric"]}"',
                comparison=monitoring_v3.ComparisonType.COMPARISON_GT,
                threshold_value=0,
                duration=duration_pb2.Duration(seconds=0),
                aggregations=[
                    monitoring_v3.Aggregation(
                        alignment_period=duration_pb2.Duration(seconds=spec["window_s"]),
                        per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_SUM,
                    )
                ],
            ),
        )
        return monitoring_v3.CreateAlertPolicyRequest(
            name=f"projects/{project}",
            alert_policy=monitoring_v3.AlertPolicy(
                display_name=resource.name,
                combiner=monitoring_v3.AlertPolicy.ConditionCombinerType.OR,
                conditions=[condition],
                documentation=monitoring_v3.AlertPolicy.Documentation(
                    content=spec["documentation"], mime_type="text/markdown"
                ),
                notification_channels=[channel_name] if channel_name else [],
                user_labels=spec["labels"],
            ),
        )
    raise ValueError(f"{resource.kind} is not a logging or monitoring resource")


# --- apply: read, create, update and delete each kind (deploy.apply drives them) ----------------------------


class LogMetricHandler:
    """Log-based metrics (logging_v2 MetricsServiceV2): named projects/<p>/metrics/<id>."""

    kind = "logging_metric"
    immutable: frozenset[str] = frozenset()
    mask = {"description": "description", "filter": "filter"}

    def local_outputs(self, resource: Resource) -> dict[str, str]:
        return {}

    def read(self, clients: Any, resource: Resource, spec: dict) -> Any:
        """Return the metric as it is (handlers.Observed), or None when it does not exist."""
        from google.api_core import exceptions as gexc

        from deploy.handlers import Observed

        try:
            found = clients.log_metrics.get_log_metric(request={"metric_name": resource.name})
        except gexc.NotFound:
            return None
        # A metric has no labels: one under the environment's prefixed name is taken as the kit's own.
        return Observed({"description": found.description, "filter": found.filter}, {"name": resource.name})

    def create(self, clients: Any, resource: Resource, spec: dict) -> None:
        """Create the metric; raises API errors."""
        metric = request(Resource(resource.kind, resource.name, spec), resource.name.split("/")[1])
        clients.log_metrics.create_log_metric(request={"parent": resource.name.rsplit("/metrics/", 1)[0],
                                                       "metric": metric})  # fmt: skip

    def update(self, clients: Any, resource: Resource, spec: dict, changed: list[str]) -> None:
        """Replace the metric (the API updates a metric whole); raises API errors."""
        metric = request(Resource(resource.kind, resource.name, spec), resource.name.split("/")[1])
        clients.log_metrics.update_log_metric(request={"metric_name": resource.name, "metric": metric})

    def delete(self, clients: Any, resource: Resource, spec: dict) -> None:
        """Delete the metric; raises API errors (NotFound included)."""
        clients.log_metrics.delete_log_metric(request={"metric_name": resource.name})


class _ByDisplayName:
    """Channels and alert policies: the API names them (…/notificationChannels/<number>), so the kit finds its
    own by display name and its managed-by label, and keeps the API's name as the output `name`."""

    kind = ""
    client = ""
    noun = ""
    immutable: frozenset[str] = frozenset()

    def local_outputs(self, resource: Resource) -> dict[str, str]:
        return {}

    def _find(self, clients: Any, resource: Resource, spec: dict) -> Any:
        lister = getattr(getattr(clients, self.client), f"list_{self.noun}s")
        listed = lister(request={"name": f"projects/{clients.project}"})
        display = spec.get("display_name", resource.name)
        return next((item for item in listed if item.display_name == display), None)

    def read(self, clients: Any, resource: Resource, spec: dict) -> Any:
        """Return the resource as it is (handlers.Observed), or None when there is none of that display name."""
        from deploy.handlers import Observed, _labelled

        found = self._find(clients, resource, spec)
        if found is None:
            return None
        return Observed(self.observe(found), {"name": found.name}, _labelled(found.user_labels))

    def create(self, clients: Any, resource: Resource, spec: dict) -> None:
        """Create the resource; raises API errors."""
        made = request(Resource(resource.kind, resource.name, spec), clients.project, spec.get("channel"))
        getattr(getattr(clients, self.client), f"create_{self.noun}")(request=made)

    def update(self, clients: Any, resource: Resource, spec: dict, changed: list[str]) -> None:
        """Replace the resource's managed fields in place; raises API errors."""
        from google.protobuf import field_mask_pb2

        made = request(Resource(resource.kind, resource.name, spec), clients.project, spec.get("channel"))
        body = getattr(made, self.noun)
        body.name = self._find(clients, resource, spec).name
        paths = sorted({self.mask[key] for key in changed})
        getattr(getattr(clients, self.client), f"update_{self.noun}")(
            request={self.noun: body, "update_mask": field_mask_pb2.FieldMask(paths=paths)}
        )

    def delete(self, clients: Any, resource: Resource, spec: dict) -> None:
        """Delete the resource found by display name (none: nothing to do); raises API errors."""
        found = self._find(clients, resource, spec)
        if found is not None:
            getattr(getattr(clients, self.client), f"delete_{self.noun}")(request={"name": found.name})


class ChannelHandler(_ByDisplayName):
    """The e-mail notification channel the alert policies page."""

    kind = "monitoring_channel"
    client = "notification_channels"
    noun = "notification_channel"
    immutable = frozenset({"type"})
    mask = {"email_address": "labels", "display_name": "display_name", "labels": "user_labels"}

    @staticmethod
    def observe(found: Any) -> dict[str, Any]:
        return {
            "type": found.type_,
            "email_address": found.labels.get("email_address", ""),
            "display_name": found.display_name,
            "labels": dict(found.user_labels),
        }


class AlertPolicyHandler(_ByDisplayName):
    """One alert policy per log-based metric: any entry in the window opens an incident."""

    kind = "monitoring_alert_policy"
    client = "alert_policies"
    noun = "alert_policy"
    mask = {
        "metric": "conditions",
        "window_s": "conditions",
        "documentation": "documentation",
        "channel": "notification_channels",
        "labels": "user_labels",
    }

    def _find(self, clients: Any, resource: Resource, spec: dict) -> Any:
        listed = clients.alert_policies.list_alert_policies(request={"name": f"projects/{clients.project}"})
        return next((item for item in listed if item.display_name == resource.name), None)

    @staticmethod
    def observe(found: Any) -> dict[str, Any]:
        threshold = found.conditions[0].condition_threshold if found.conditions else None
        metric = threshold.filter.removeprefix('metric.type="').removesuffix('"') if threshold else ""
        window = int(threshold.aggregations[0].alignment_period.total_seconds()) if threshold else 0
        return {
            "metric": metric,
            "window_s": window,
            "documentation": found.documentation.content,
            "channel": found.notification_channels[0] if found.notification_channels else "",
            "labels": dict(found.user_labels),
        }


def handlers() -> list[Any]:
    """Return the apply handlers of the logging and monitoring kinds (the project is the clients')."""
    return [LogMetricHandler(), ChannelHandler(), AlertPolicyHandler()]
