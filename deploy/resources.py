"""The desired state: every GCP resource of an environment as a plain, comparable object."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import naming
from deploy.config import ANALYST_DATASETS, LANDING_NEARLINE_AGE_DAYS, ConfigError, EnvConfig

MANAGED_BY = ("managed-by", "lakehouse-kit")
# Resources without labels (service accounts, connections, scheduler jobs) carry this in their description.
MARKER = "managed-by: lakehouse-kit"
PLACEHOLDER = re.compile(r"@\{([^#}]+)#([a-z_]+)\}")
_ENV_REFERENCE = re.compile(r"^\$\{env:([A-Z_][A-Z0-9_]*)\}$")

# The BigQuery subscription table schema (write_metadata: true, use_topic_schema: false).
RAW_TABLE_SCHEMA = (
    ("subscription_name", "STRING", "NULLABLE"),
    ("message_id", "STRING", "NULLABLE"),
    ("publish_time", "TIMESTAMP", "NULLABLE"),
    ("data", "STRING", "NULLABLE"),
    ("attributes", "STRING", "NULLABLE"),
)
# The PII salt: one row in a dataset only the Dataform identity reads (includes/silver.js piiHash).
KEYS_DATASET, SALT_TABLE = "keys", "pii_salt"
SALT_TABLE_SCHEMA = (("salt", "STRING", "REQUIRED"),)
# One row per action per trigger run, on GCP and locally.
ACTION_RUNS_TABLE = "workflow_action_runs"
FILE_ARRIVALS_TABLE = "file_arrivals"
ACTION_RUNS_SCHEMA = (
    ("run_id", "STRING", "REQUIRED"),
    ("started_at", "TIMESTAMP", "REQUIRED"),
    ("finished_at", "TIMESTAMP", "NULLABLE"),
    ("environment", "STRING", "NULLABLE"),
    ("target", "STRING", "REQUIRED"),
    ("invocation", "STRING", "NULLABLE"),
    ("action_name", "STRING", "REQUIRED"),
    ("action_type", "STRING", "NULLABLE"),
    ("status", "STRING", "REQUIRED"),
    ("severity", "STRING", "NULLABLE"),
    ("duration_s", "FLOAT64", "NULLABLE"),
    ("rows_affected", "INT64", "NULLABLE"),
    ("failing_rows", "INT64", "NULLABLE"),
    ("failing_sample", "STRING", "NULLABLE"),
    ("error", "STRING", "NULLABLE"),
    ("file_name", "STRING", "NULLABLE"),
)
ARCHIVE_KEY = "source_archive:lakehouse"
# Who may reach each function: landing takes producers' posts from anywhere (IAM still checks them);
# the generator and trigger are called by Cloud Scheduler and audit by Eventarc, which internal ingress admits.
INGRESS = {
    "landing": "ALLOW_ALL",
    "generator": "ALLOW_INTERNAL_ONLY",
    "audit": "ALLOW_INTERNAL_ONLY",
    "trigger": "ALLOW_INTERNAL_ONLY",
}
# Cloud Scheduler allows an attempt at most 30 minutes; the trigger answers once the run started.
TRIGGER_ATTEMPT_DEADLINE_S = 600
TRIGGER_CHECK_CRON = "*/10 * * * *"
PRIMITIVE_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})


@dataclass(frozen=True)
class Resource:
    """One resource as it should be: `spec` holds every property apply manages, by value."""

    kind: str
    name: str
    spec: Mapping[str, Any] = field(default_factory=dict)
    data: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    def placeholders(self) -> list[tuple[str, str]]:
        """Return the (resource key, output) pairs this resource's spec refers to."""
        return PLACEHOLDER.findall(json.dumps(self.spec, default=str))


def ref(key: str, output: str) -> str:
    """Return a placeholder for `output` of resource `key`, known only once that resource exists."""
    return f"@{{{key}#{output}}}"


def resolve(
    spec: Any, outputs: Mapping[str, Mapping[str, str]], environ: Mapping[str, str] | None = None
) -> tuple[Any, list[str]]:
    """Return (`spec` with placeholders and ${env:NAME} references filled in, what is still unknown).

    Unknown values stay as they are; each is listed as a readable "resource#output" or "$NAME".
    """
    environ = os.environ if environ is None else environ
    unknown: list[str] = []

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [fill(v) for v in value]
        if not isinstance(value, str):
            return value
        env_ref = _ENV_REFERENCE.match(value)
        if env_ref:
            if env_ref.group(1) in environ:
                return environ[env_ref.group(1)]
            unknown.append("$" + env_ref.group(1))
            return value

        def replace(match: re.Match) -> str:
            known = outputs.get(match.group(1), {}).get(match.group(2))
            if known is None:
                unknown.append(f"{match.group(1)}#{match.group(2)}")
                return match.group(0)
            return known

        return PLACEHOLDER.sub(replace, value)

    return fill(spec), unknown


def discover_sources(project_dir: Path) -> list[str]:
    """Return the source names of includes/contracts/*.json, sorted.

    Raises ConfigError for a contract whose name is not a safe identifier or differs from its file name.
    """
    problems, sources = [], []
    folder = Path(project_dir) / "includes" / "contracts"
    for path in sorted(folder.glob("*.json")):
        try:
            name = json.loads(path.read_text()).get("name", path.stem)
        except (ValueError, AttributeError) as error:
            problems.append(f"{path.name}: not a JSON object ({error})")
            continue
        problem = naming.source_problem(str(name))
        if problem or name != path.stem:
            problems.append(f"{path.name}: field 'name' {name!r} must equal the file name and {problem or 'match it'}")
            continue
        sources.append(name)
    if problems:
        raise ConfigError(folder, problems)
    return sources


def file_arrival_columns() -> list[tuple[str, str, str]]:
    """Return (name, BigQuery type, mode) of ops.file_arrivals, as ingest.audit defines them."""
    from ingest.audit import COLUMNS

    return [(name, kind, "NULLABLE") for name, kind, _ in COLUMNS]


def derived_vars(env: EnvConfig) -> dict[str, str]:
    """Return the release-config vars that name deployed resources (includes/params.js reads them)."""
    return {
        "landing_bucket": env.buckets["landing"],
        "dead_letter_bucket": env.buckets["dead_letter"],  # ops.dead_letters (definitions/ops/quality.js)
        "iceberg_bucket": env.buckets["lake"],
        "iceberg_connection": lake_connection(env),
    }


def lake_connection(env: EnvConfig) -> str:
    """Return the full name of the BigLake Cloud Resource connection of `env`."""
    return f"projects/{env.project}/locations/{env.bigquery_location.lower()}/connections/{env.prefix}-lake"


def labels(env: EnvConfig, component: str) -> dict[str, str]:
    """Return the labels every labelled resource of `component` carries."""
    return {**env.labels, MANAGED_BY[0]: MANAGED_BY[1], "lakehouse-env": env.environment,
            "lakehouse-component": component}  # fmt: skip


def _sa(env: EnvConfig, component: str) -> str:
    return f"serviceAccount:{env.service_account_email(component)}"


def _binding(scope: str, target: str, role: str, member: str) -> Resource:
    return Resource(
        "iam_binding",
        f"{scope}:{target}#{role}#{member}",
        {"scope": scope, "resource": target, "role": role, "member": member},
    )


def _schema(columns: Iterable[tuple[str, str, str]]) -> list[list[str]]:
    return [list(column) for column in columns]


def desired_state(env: EnvConfig, sources: list[str]) -> list[Resource]:
    """Return every resource of `env`, in the order apply creates them (destroy uses the reverse).

    Raises ConfigError when a derived name (topic, subscription, function) breaks a GCP naming rule.
    """
    p, region, location = env.project, env.region, env.bigquery_location
    project_number = env.project_number or ref("project:" + p, "number")
    pubsub_agent = f"serviceAccount:service-{project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    dataform_agent = f"serviceAccount:service-{project_number}@gcp-sa-dataform.iam.gserviceaccount.com"
    storage_agent = f"serviceAccount:service-{project_number}@gs-project-accounts.iam.gserviceaccount.com"
    out: list[Resource] = []
    problems: list[str] = []

    def check(what: str, value: str, rule) -> str:
        problem = rule(value)
        if problem:
            problems.append(f"derived {what} {value!r} is not valid ({problem}); shorten 'prefix' or the name")
        return value

    components = {
        "landing": "Landing function: writes accepted events to the landing bucket, rejects to dead-letter.",
        "generator": "Generator function: publishes synthetic events and posts batches to landing.",
        "audit": "Audit function: records every finalized landing object in ops.file_arrivals.",
        "trigger": "Workflow trigger function: compiles and invokes Dataform, reports assertions.",
        "dataform": "Dataform workflow executor: builds bronze, silver, gold and assertions.",
        "scheduler": "Cloud Scheduler caller: invokes the generator and trigger with OIDC tokens.",
        "pubsub_writer": "Pub/Sub BigQuery subscriptions: append raw messages to bronze.",
    }
    for component, description in components.items():
        email = env.service_account_email(component)
        out.append(Resource("service_account", f"projects/{p}/serviceAccounts/{email}", {
            "project": p,
            "account_id": env.service_accounts[component],
            "display_name": f"lakehouse {env.environment} {component.replace('_', ' ')}",
            "description": f"{description} {MARKER}",
        }))  # fmt: skip
    sa_dataform = f"projects/{p}/serviceAccounts/{env.service_account_email('dataform')}"
    sa_writer = f"projects/{p}/serviceAccounts/{env.service_account_email('pubsub_writer')}"
    out += [
        # Eventarc: the audit function's trigger receives events as the audit account, and Cloud Storage
        # publishes them through its own service agent.
        _binding("project", f"projects/{p}", "roles/eventarc.eventReceiver", _sa(env, "audit")),
        _binding("project", f"projects/{p}", "roles/pubsub.publisher", storage_agent),
        _binding("project", f"projects/{p}", "roles/bigquery.jobUser", _sa(env, "dataform")),
        _binding("project", f"projects/{p}", "roles/bigquery.jobUser", _sa(env, "trigger")),
        _binding("service_account", sa_writer, "roles/iam.serviceAccountTokenCreator", pubsub_agent),
        _binding("service_account", sa_dataform, "roles/iam.serviceAccountTokenCreator", dataform_agent),
        _binding("service_account", sa_dataform, "roles/iam.serviceAccountUser", _sa(env, "trigger")),
    ]

    tiering = [
        {"action": "SetStorageClass", "storage_class": "NEARLINE", "age_days": LANDING_NEARLINE_AGE_DAYS},
        {"action": "SetStorageClass", "storage_class": "COLDLINE", "age_days": 365},
    ]
    bucket_specs = {
        "landing": ("Bronze landing: raw JSONL as it arrived.", tiering, True),
        "dead_letter": ("Rejected payloads with their reasons.", tiering, True),
        "lake": ("BigLake Iceberg table data (silver).", [], True),
        "functions_source": ("Zipped Cloud Functions source.", [{"action": "Delete", "age_days": 30}], False),
    }
    for name, (_, rules, holds_data) in bucket_specs.items():
        out.append(Resource("bucket", env.buckets[name], {
            "project": p,
            "location": location.upper(),  # the Storage API answers in upper case
            "storage_class": "STANDARD",
            "uniform_bucket_level_access": True,
            "public_access_prevention": "enforced",
            "lifecycle_rules": rules,
            "labels": labels(env, name.replace("_", "-")),
        }, data=holds_data))  # fmt: skip
    landing, dead, lake = env.buckets["landing"], env.buckets["dead_letter"], env.buckets["lake"]
    out += [
        _binding("bucket", landing, "roles/storage.objectCreator", _sa(env, "landing")),
        _binding("bucket", landing, "roles/storage.objectViewer", _sa(env, "landing")),
        _binding("bucket", dead, "roles/storage.objectCreator", _sa(env, "landing")),
        _binding("bucket", landing, "roles/storage.objectViewer", _sa(env, "dataform")),
        # The trigger samples failing rows of assertions, whose views read bronze's external tables.
        _binding("bucket", landing, "roles/storage.objectViewer", _sa(env, "trigger")),
    ]

    descriptions = {
        "bronze": "Raw data as it arrived: landing external tables and Pub/Sub subscription tables.",
        "silver": "Typed, cleansed, deduplicated data, PII hashed.",
        "silver_restricted": (
            "Restricted: raw records with PII in clear (per-source staging, batch and quarantine). "
            "Grant no analyst access; ops.quarantine_failures gives the reasons without the records."
        ),
        "gold": "Business-ready facts and dimensions.",
        "assertions": "Dataform assertion views: each row is a failing row.",
        "ops": "Run records of the workflow trigger.",
    }
    for name, description in descriptions.items():
        out.append(Resource("dataset", f"{p}.{env.datasets[name]}", {
            "project": p,
            "location": location,
            "description": description,
            "labels": labels(env, name),
        }, data=True))  # fmt: skip
    ds = {name: f"{p}.{env.datasets[name]}" for name in descriptions}
    out += [
        _binding("dataset", ds["bronze"], "roles/bigquery.dataEditor", _sa(env, "pubsub_writer")),
        _binding("dataset", ds["bronze"], "roles/bigquery.dataEditor", _sa(env, "dataform")),
        _binding("dataset", ds["silver"], "roles/bigquery.dataEditor", _sa(env, "dataform")),
        _binding("dataset", ds["silver_restricted"], "roles/bigquery.dataEditor", _sa(env, "dataform")),
        _binding("dataset", ds["gold"], "roles/bigquery.dataEditor", _sa(env, "dataform")),
        _binding("dataset", ds["assertions"], "roles/bigquery.dataEditor", _sa(env, "dataform")),
        _binding("dataset", ds["bronze"], "roles/bigquery.dataViewer", _sa(env, "trigger")),
        _binding("dataset", ds["silver"], "roles/bigquery.dataViewer", _sa(env, "trigger")),
        # the conservation assertions the trigger samples read <source>_batch and _quarantine
        _binding("dataset", ds["silver_restricted"], "roles/bigquery.dataViewer", _sa(env, "trigger")),
        _binding("dataset", ds["gold"], "roles/bigquery.dataViewer", _sa(env, "trigger")),
        _binding("dataset", ds["assertions"], "roles/bigquery.dataViewer", _sa(env, "trigger")),
        _binding("dataset", ds["ops"], "roles/bigquery.dataEditor", _sa(env, "trigger")),
        _binding("dataset", ds["ops"], "roles/bigquery.dataEditor", _sa(env, "audit")),
    ]
    # The ops quality views count silver_restricted's batch and quarantine and show no raw record; a
    # BigQuery view runs with its reader's rights unless its dataset is authorized on the source, so
    # analysts, who get no role on silver_restricted, could not read them otherwise. Whoever can create
    # views in ops (the pipeline's identities, never analysts) can therefore read silver_restricted.
    out.append(Resource("authorized_dataset", f"{ds['silver_restricted']}#{ds['ops']}", {
        "dataset": ds["silver_restricted"],
        "authorized": ds["ops"],
    }))  # fmt: skip
    # Analysts read the hashed and aggregated layers and run their queries; bronze, silver_restricted
    # and keys, which hold PII in clear or the salt that reverses the hashes, get no analyst binding.
    for member in env.analysts:
        out.append(_binding("project", f"projects/{p}", "roles/bigquery.jobUser", member))
        out += [_binding("dataset", ds[name], "roles/bigquery.dataViewer", member) for name in ANALYST_DATASETS]
    for source in sources:
        out.append(Resource("table", f"{ds['bronze']}.{source}_raw", {
            "schema": _schema(RAW_TABLE_SCHEMA),
            "partition_field": "publish_time",
            "description": f"Messages of topic {env.prefix}-{source}, written by its BigQuery subscription.",
            "labels": labels(env, "bronze"),
        }, data=True))  # fmt: skip
    out.append(Resource("table", f"{ds['ops']}.{FILE_ARRIVALS_TABLE}", {
        "schema": _schema(file_arrival_columns()),
        "partition_field": "arrived_at",
        "description": "Every object finalized in the landing bucket (written by the audit function).",
        "labels": labels(env, "ops"),
    }, data=True))  # fmt: skip
    out.append(Resource("table", f"{ds['ops']}.{ACTION_RUNS_TABLE}", {
        "schema": _schema(ACTION_RUNS_SCHEMA),
        "partition_field": "started_at",
        "description": "One row per Dataform action per workflow trigger run.",
        "labels": labels(env, "ops"),
    }, data=True))  # fmt: skip

    # The key dataset: read by the Dataform identity alone (analysts get no role on it; whoever runs
    # apply writes the row). The salt is never in a spec: apply reads it from the environment.
    keys_dataset = f"{p}.{KEYS_DATASET}"
    out.append(Resource("dataset", keys_dataset, {
        "project": p,
        "location": location,
        "description": "Restricted: the PII salt silver's hashes read. Grant no one else access.",
        "labels": labels(env, "keys"),
    }, data=True))  # fmt: skip
    out.append(_binding("dataset", keys_dataset, "roles/bigquery.dataViewer", _sa(env, "dataform")))
    salt_table = f"{keys_dataset}.{SALT_TABLE}"
    out.append(Resource("table", salt_table, {
        "schema": _schema(SALT_TABLE_SCHEMA),
        "partition_field": None,
        "description": "One row: the PII salt. Written by deploy apply from the deployer's environment.",
        "labels": labels(env, "keys"),
    }, data=True))  # fmt: skip
    # The row, not a resource of its own: it goes with its table (destroy --include-data).
    out.append(Resource("pii_salt", salt_table, {"table": salt_table, "salt": env.pii_salt}))

    connection = lake_connection(env)
    out.append(Resource("connection", connection, {
        "friendly_name": f"{env.prefix} Iceberg lake",
        "description": f"BigLake Cloud Resource connection for Iceberg tables in gs://{lake}. {MARKER}",
        "cloud_resource": True,
    }))  # fmt: skip
    connection_sa = "serviceAccount:" + ref("connection:" + connection, "service_account")
    out += [
        # BigLake Iceberg tables: the connection's own account reads and writes the data files and
        # needs storage.buckets.get on the bucket (Legacy Bucket Reader has it, objectUser does not).
        _binding("bucket", lake, "roles/storage.objectUser", connection_sa),
        _binding("bucket", lake, "roles/storage.legacyBucketReader", connection_sa),
        # Creating or merging into an Iceberg table delegates to the connection:
        # bigquery.connections.delegate, which Connection Admin has and Connection User lacks.
        _binding("connection", connection, "roles/bigquery.connectionAdmin", _sa(env, "dataform")),
    ]

    dead_topic = f"projects/{p}/topics/" + check("topic", f"{env.prefix}-dead-letter", naming.pubsub_problem)
    topics = {}
    for source in sources:
        topics[source] = f"projects/{p}/topics/" + check("topic", f"{env.prefix}-{source}", naming.pubsub_problem)
        out.append(Resource("topic", topics[source], {"labels": labels(env, "ingest")}))
        out.append(_binding("topic", topics[source], "roles/pubsub.publisher", _sa(env, "generator")))
    out.append(Resource("topic", dead_topic, {"labels": labels(env, "ingest")}))
    out.append(_binding("topic", dead_topic, "roles/pubsub.publisher", pubsub_agent))
    for source in sources:
        sub = f"projects/{p}/subscriptions/" + check("subscription", f"{env.prefix}-{source}-bq", naming.pubsub_problem)
        out.append(Resource("subscription", sub, {
            "topic": topics[source],
            "bigquery_table": f"{p}.{env.datasets['bronze']}.{source}_raw",
            "write_metadata": True,
            "service_account_email": env.service_account_email("pubsub_writer"),
            "dead_letter_topic": dead_topic,
            "max_delivery_attempts": env.max_delivery_attempts,
            "min_backoff_s": env.min_backoff_s,
            "max_backoff_s": env.max_backoff_s,
            "never_expires": True,
            "labels": labels(env, "ingest"),
        }))  # fmt: skip
        out.append(_binding("subscription", sub, "roles/pubsub.subscriber", pubsub_agent))
    # Dead-lettered messages need a subscription to be kept: the runbook replays from it.
    hold = f"projects/{p}/subscriptions/" + check(
        "subscription", f"{env.prefix}-dead-letter-hold", naming.pubsub_problem
    )
    out.append(Resource("subscription", hold, {
        "topic": dead_topic,
        "message_retention_s": 7 * 24 * 3600,
        "ack_deadline_s": 60,
        "never_expires": True,
        "labels": labels(env, "ingest"),
    }))  # fmt: skip

    repo = f"projects/{p}/locations/{region}/repositories/{env.dataform.repository}"
    out.append(Resource("dataform_repository", repo, {
        "git_remote": env.dataform.git_remote,
        "default_branch": env.dataform.default_branch,
        "token_secret_version": env.dataform.token_secret_version,
        "service_account": env.service_account_email("dataform"),
        # Workspaces in the Dataform UI compile into the workspace project, each developer's
        # datasets suffixed with the workspace name, never into the release's datasets.
        "workspace_project": env.dataform.workspace_project,
        "workspace_schema_suffix": env.dataform.workspace_schema_suffix,
        "labels": labels(env, "dataform"),
    }))  # fmt: skip
    out.append(_binding("dataform_repository", repo, "roles/dataform.editor", _sa(env, "trigger")))
    release = f"{repo}/releaseConfigs/{env.dataform.release_config}"
    out.append(Resource("release_config", release, {
        "git_commitish": env.dataform.git_commitish,
        "default_database": p,
        "default_location": location,
        # ${env:NAME} values are read at apply; bucket and connection vars follow the resources above.
        "vars": dict(sorted({**env.dataform.vars, **derived_vars(env)}.items())),
    }))  # fmt: skip
    archive = f"gs://{env.buckets['functions_source']}/lakehouse-{ref(ARCHIVE_KEY, 'sha')}.zip"
    functions: dict[str, str] = {}
    env_vars = {
        # ingest.landing.LandingConfig.from_env reads these; Cloud Run IAM (run.invoker) checks callers.
        "landing": {
            "LANDING_BUCKET": landing,
            "DEAD_LETTER_BUCKET": dead,
            "LANDING_SOURCES": ",".join(sources),
            "LANDING_AUTH_MODE": "iam",
        },
        "generator": {
            "LAKEHOUSE_TOPIC_PREFIX": f"projects/{p}/topics/{env.prefix}-",
        },
        "audit": {"FILE_ARRIVALS_TABLE": f"{ds['ops']}.{FILE_ARRIVALS_TABLE}"},
        "trigger": {
            "LAKEHOUSE_DATAFORM_REPOSITORY": repo,
            "LAKEHOUSE_RELEASE_CONFIG": release,
            "LAKEHOUSE_DATAFORM_SERVICE_ACCOUNT": env.service_account_email("dataform"),
            "LAKEHOUSE_OPS_TABLE": f"{ds['ops']}.{ACTION_RUNS_TABLE}",
            "LAKEHOUSE_BIGQUERY_LOCATION": location,
            "LAKEHOUSE_TRIGGER_TIMEOUT_S": str(env.trigger_timeout_s),
        },
    }
    for name in ("landing", "generator", "audit", "trigger"):
        settings = env.functions[name]
        function_id = check("function", f"{env.prefix}-{name}", naming.function_problem)
        functions[name] = f"projects/{p}/locations/{region}/functions/{function_id}"
        variables = {"LAKEHOUSE_GCP_PROJECT": p, "LAKEHOUSE_ENVIRONMENT": env.environment, **env_vars[name]}
        if name == "generator":
            variables["LAKEHOUSE_LANDING_URL"] = ref("function:" + functions["landing"], "url")
        out.append(Resource("function", functions[name], {
            "runtime": "python311",
            "ingress": INGRESS[name],
            "entry_point": settings.entry_point.split(":")[1],
            "source": archive,
            "service_account_email": env.service_account_email(name),
            "memory": settings.memory,
            "timeout_s": settings.timeout_s,
            "max_instances": settings.max_instances,
            "environment_variables": dict(sorted(variables.items())),
            "labels": labels(env, name),
        }))  # fmt: skip
        if name == "audit":
            out[-1].spec["event_trigger"] = {
                "event_type": "google.cloud.storage.object.v1.finalized",
                "bucket": landing,
                "trigger_region": location.lower(),  # a storage trigger lives where its bucket is
                "service_account_email": env.service_account_email("audit"),
                "retry": True,
            }
        service = ref("function:" + functions[name], "service")  # the function's Cloud Run service
        callers = {"landing": ["generator"], "generator": ["scheduler"], "audit": ["audit"], "trigger": ["scheduler"]}[
            name
        ]
        for caller in callers:
            out.append(_binding("run_service", service, "roles/run.invoker", _sa(env, caller)))

    jobs = [("generator", env.generator_cron, dict(env.generator_tick), functions["generator"])]
    for workflow in env.workflows:
        body = {
            "tags": list(workflow.tags),
            "include_dependencies": workflow.include_dependencies,
            "full_refresh": workflow.full_refresh,
        }
        jobs.append((f"trigger-{workflow.name}", workflow.cron, body, functions["trigger"]))
    # The trigger answers as soon as the invocation starts; this job reports the ones that ended.
    jobs.append(("trigger-check", TRIGGER_CHECK_CRON, {"check": True}, functions["trigger"]))
    for job_name, cron, body, function in jobs:
        job_id = check("scheduler job", f"{env.prefix}-{job_name}", naming.resource_id_problem)
        url = ref("function:" + function, "url")
        out.append(Resource("scheduler_job", f"projects/{p}/locations/{region}/jobs/{job_id}", {
            "schedule": cron,
            "time_zone": env.time_zone,
            "uri": url,
            "body": json.dumps(body, sort_keys=True),
            "service_account_email": env.service_account_email("scheduler"),
            "audience": url,
            # A workflow run is not retried by the scheduler: a failure is reported, not repeated.
            "retry_count": 0 if job_name.startswith("trigger") else 1,
            # The trigger never waits for a run, so each attempt ends in seconds (the cap is 1800).
            "attempt_deadline_s": TRIGGER_ATTEMPT_DEADLINE_S if job_name.startswith("trigger") else 180,
            "description": f"lakehouse {env.environment} {job_name} ({cron}). {MARKER}",
        }))  # fmt: skip
    if problems:
        raise ConfigError(env.path, problems)
    from deploy import serving  # the gold API (lakehouse serve) on Cloud Run

    out += serving.resources(env)
    return _with_archive(out, env)


def _with_archive(resources: list[Resource], env: EnvConfig) -> list[Resource]:
    """Insert the function source archive right before the first function."""
    entry_points = {name: settings.entry_point for name, settings in sorted(env.functions.items())}
    archive = Resource(
        "source_archive",
        ARCHIVE_KEY.split(":", 1)[1],
        {"bucket": env.buckets["functions_source"], "entry_points": entry_points},
    )
    index = next(i for i, r in enumerate(resources) if r.kind == "function")
    return resources[:index] + [archive] + resources[index:]


def iam_bindings(resources: Iterable[Resource]) -> list[Resource]:
    """Return the IAM bindings among `resources`."""
    return [r for r in resources if r.kind == "iam_binding"]
