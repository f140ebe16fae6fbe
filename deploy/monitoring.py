"""Alerting: log-based metrics on the trigger's errors, failed checks and dead letters, alert policies on
them, and the notification channel they page; as Resources and as the API's own request objects."""

from __future__ import annotations

from typing import Any

from google.cloud import monitoring_v3
from google.cloud.logging_v2.types import LogMetric
from google.protobuf import duration_pb2

from deploy.config import EnvConfig
from deploy.resources import Resource

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
    labels = dict(env.labels)
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
                    "channel": channel,
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
