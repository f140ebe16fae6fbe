"""The gold API on Cloud Run: its service, its service account (read on gold only) and its scaling."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc

from deploy import naming
from deploy.config import ConfigError, EnvConfig
from deploy.handlers import OPERATION_TIMEOUT_S, Handler, Observed, _labelled, _last, _mask, _parent
from deploy.resources import MARKER, Resource, labels

KIND = "cloud_run_service"
COMPONENT = "serving"
PORT = 8080
# Scaling: no idle cost (min 0), a ceiling on BigQuery spend (max), requests per instance.
MIN_INSTANCES = 0
MAX_INSTANCES = 4
CONCURRENCY = 80
CPU = "1"
MEMORY = "512Mi"
# The container image and the API keys' secret are named at apply time, never committed.
IMAGE = "${env:LAKEHOUSE_SERVE_IMAGE}"
KEYS_SECRET = "${env:LAKEHOUSE_API_KEYS_SECRET}"


def service_account_email(env: EnvConfig) -> str:
    """Return the e-mail of the API's service account."""
    return f"{env.prefix}-{COMPONENT}@{env.project}.iam.gserviceaccount.com"


def resources(env: EnvConfig, environ: Mapping[str, str] | None = None) -> list[Resource]:
    """Return the API's service account, its two grants and its Cloud Run service, in apply order;
    none when LAKEHOUSE_SERVE_IMAGE is not set (the API is deployed once its image is named).

    The account may run BigQuery jobs in the project (roles/bigquery.jobUser: a query is a job) and
    read the gold dataset (roles/bigquery.dataViewer on it); nothing else. Raises ConfigError when
    a derived name breaks a GCP naming rule.
    """
    if "LAKEHOUSE_SERVE_IMAGE" not in (os.environ if environ is None else environ):
        return []
    p, region = env.project, env.region
    account_id = f"{env.prefix}-{COMPONENT}"
    service_id = f"{env.prefix}-gold-api"
    problems = [
        f"derived {what} {value!r} is not valid ({problem}); shorten 'prefix'"
        for what, value, problem in (
            ("service account", account_id, naming.service_account_problem(account_id)),
            ("Cloud Run service", service_id, naming.resource_id_problem(service_id)),
        )
        if problem
    ]
    if problems:
        raise ConfigError(env.path, problems)
    email = service_account_email(env)
    member = f"serviceAccount:{email}"
    gold = f"{p}.{env.datasets['gold']}"
    binding = lambda scope, target, role: Resource(  # noqa: E731
        "iam_binding", f"{scope}:{target}#{role}#{member}",
        {"scope": scope, "resource": target, "role": role, "member": member},
    )  # fmt: skip
    return [
        Resource(
            "service_account",
            f"projects/{p}/serviceAccounts/{email}",
            {
                "project": p,
                "account_id": account_id,
                "display_name": f"lakehouse {env.environment} serving",
                "description": f"Gold API on Cloud Run: reads the gold dataset only. {MARKER}",
            },
        ),  # fmt: skip
        binding("project", f"projects/{p}", "roles/bigquery.jobUser"),
        binding("dataset", gold, "roles/bigquery.dataViewer"),
        Resource(
            KIND,
            f"projects/{p}/locations/{region}/services/{service_id}",
            {
                "image": IMAGE,
                "args": [
                    "serve",
                    "--backend",
                    "bigquery",
                    "--host",
                    "0.0.0.0",
                    "--port",
                    str(PORT),
                    "--graph",
                    "/app/graph.json",
                ],
                "service_account_email": email,
                "min_instances": MIN_INSTANCES,
                "max_instances": MAX_INSTANCES,
                "concurrency": CONCURRENCY,
                "cpu": CPU,
                "memory": MEMORY,
                "ingress": "INGRESS_TRAFFIC_ALL",
                "environment_variables": {
                    "LAKEHOUSE_BIGQUERY_LOCATION": env.bigquery_location,
                    "LAKEHOUSE_GCP_PROJECT": p,
                    "LAKEHOUSE_GOLD_DATASET": env.datasets["gold"],
                },
                "api_keys_secret": KEYS_SECRET,
                "labels": labels(env, COMPONENT),
            },
        ),  # fmt: skip
    ]


def build_service(resource: Resource, spec: dict) -> Any:
    """Return the run_v2.Service that `spec` describes (keys from Secret Manager, never in plain text)."""
    from google.cloud import run_v2

    container = run_v2.Container(
        image=spec["image"],
        args=list(spec["args"]),
        ports=[run_v2.ContainerPort(container_port=PORT)],
        resources=run_v2.ResourceRequirements(limits={"cpu": spec["cpu"], "memory": spec["memory"]}),
        env=[run_v2.EnvVar(name=k, value=v) for k, v in sorted(spec["environment_variables"].items())]
        + [
            run_v2.EnvVar(
                name="LAKEHOUSE_API_KEYS",
                value_source=run_v2.EnvVarSource(
                    secret_key_ref=run_v2.SecretKeySelector(secret=spec["api_keys_secret"], version="latest")
                ),
            )
        ],
        startup_probe=run_v2.Probe(http_get=run_v2.HTTPGetAction(path="/ready")),
        liveness_probe=run_v2.Probe(http_get=run_v2.HTTPGetAction(path="/health")),
    )
    return run_v2.Service(
        name=resource.name,
        labels=dict(spec["labels"]),
        ingress=run_v2.IngressTraffic[spec["ingress"]],
        template=run_v2.RevisionTemplate(
            service_account=spec["service_account_email"],
            scaling=run_v2.RevisionScaling(
                min_instance_count=spec["min_instances"], max_instance_count=spec["max_instances"]
            ),
            max_instance_request_concurrency=spec["concurrency"],
            containers=[container],
        ),
    )


def observe_service(service: Any) -> Observed:
    """Return a Cloud Run service in the desired spec's shape; its output is the URL."""
    template = service.template
    container = template.containers[0] if template.containers else None
    variables = list(container.env) if container else []
    env_vars = {e.name: e.value for e in variables if not e.value_source.secret_key_ref.secret}
    secrets = [e.value_source.secret_key_ref.secret for e in variables if e.name == "LAKEHOUSE_API_KEYS"]
    spec = {
        "image": container.image if container else "",
        "args": list(container.args) if container else [],
        "service_account_email": template.service_account,
        "min_instances": template.scaling.min_instance_count,
        "max_instances": template.scaling.max_instance_count,
        "concurrency": template.max_instance_request_concurrency,
        "cpu": dict(container.resources.limits).get("cpu", "") if container else "",
        "memory": dict(container.resources.limits).get("memory", "") if container else "",
        "ingress": service.ingress.name,
        "environment_variables": env_vars,
        "api_keys_secret": secrets[0] if secrets else "",
        "labels": dict(service.labels),
    }
    return Observed(spec, {"url": service.uri}, managed=_labelled(service.labels))


class CloudRunServiceHandler(Handler):
    """Cloud Run services (the gold API); updates replace the whole template."""

    kind = KIND

    def read(self, clients, resource, spec):
        from google.cloud import run_v2

        try:
            found = clients.run.get_service(request=run_v2.GetServiceRequest(name=resource.name))
        except gexc.NotFound:
            return None
        return observe_service(found)

    def create(self, clients, resource, spec):
        from google.cloud import run_v2

        service = build_service(resource, spec)
        service.name = ""  # the API names it from service_id
        operation = clients.run.create_service(request=run_v2.CreateServiceRequest(
            parent=_parent(resource.name), service_id=_last(resource.name), service=service))  # fmt: skip
        operation.result(timeout=OPERATION_TIMEOUT_S)

    def update(self, clients, resource, spec, changed):
        from google.cloud import run_v2

        paths = ["labels" if c == "labels" else "ingress" if c == "ingress" else "template" for c in changed]
        operation = clients.run.update_service(request=run_v2.UpdateServiceRequest(
            service=build_service(resource, spec), update_mask=_mask(paths)))  # fmt: skip
        operation.result(timeout=OPERATION_TIMEOUT_S)

    def delete(self, clients, resource, spec):
        from google.cloud import run_v2

        operation = clients.run.delete_service(request=run_v2.DeleteServiceRequest(name=resource.name))
        operation.result(timeout=OPERATION_TIMEOUT_S)


def handlers() -> list[Handler]:
    """Return the handlers of the kinds this module adds."""
    return [CloudRunServiceHandler()]
