"""The environment config: one YAML file per environment from which every GCP resource is derived."""

from __future__ import annotations

import dataclasses
import os
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from croniter import croniter

from deploy import naming

COMPONENTS = ("landing", "generator", "audit", "trigger", "dataform", "scheduler", "pubsub_writer")
FUNCTIONS = ("landing", "generator", "audit", "trigger")
# silver_restricted holds the raw records and PII in clear (staging, batch, quarantine): no analyst role.
DATASETS = ("bronze", "silver", "silver_restricted", "gold", "assertions", "ops")
# The datasets the `analysts` members read; bronze, silver_restricted and keys hold PII in clear.
ANALYST_DATASETS = ("silver", "gold", "ops")
# An analyst is a person, a group or a domain; a public member would publish silver and gold.
_ANALYST_MEMBER = re.compile(r"^(user|group|serviceAccount):[^@\s]+@[^@\s]+\.[^@\s]+$|^domain:[a-z0-9.-]+\.[a-z]+$")
BUCKETS = ("landing", "dead_letter", "lake", "functions_source")
DEFAULT_GENERATOR_CRON = "*/2 * * * *"
# Where the functions' Python code is, as "module:function" inside the deployed source archive.
DEFAULT_ENTRY_POINTS = {
    "landing": "ingest.main:land_http",
    "generator": "ingest.main:generate_http",
    "audit": "ingest.main:on_object_finalized",
    "trigger": "deploy.function:workflow_trigger",
}
# Release-config vars deploy sets itself, from the resources they name.
DERIVED_VARS = {
    "landing_bucket": "buckets.landing",
    "dead_letter_bucket": "buckets.dead_letter",
    "iceberg_bucket": "buckets.lake",
    "iceberg_connection": "the BigLake connection <prefix>-lake",
}
# The landing bucket moves objects to Nearline at this age (resources.py); an hourly scan reaching it
# would bill retrieval per GB, so lookback_days must stay below it (docs/deploy.md).
LANDING_NEARLINE_AGE_DAYS = 90
# Salts anyone can know: the old committed default and the demo salts `lakehouse run` makes locally.
PUBLIC_SALTS = frozenset({"local-dev-salt-change-me"})
DEMO_SALT_PREFIX = "demo-"
MIN_SALT_LENGTH = 32
_ENV_REFERENCE = re.compile(r"^\$\{env:([A-Z_][A-Z0-9_]*)\}$")
_SECRET_VAR = re.compile(r"salt|secret|token|password|key", re.IGNORECASE)


class ConfigError(ValueError):
    """A config that cannot be deployed; `problems` holds one line per bad field."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


@dataclass(frozen=True)
class Workflow:
    """A scheduled Dataform run: which tags, how, and when."""

    name: str
    cron: str
    tags: tuple[str, ...]
    full_refresh: bool = False
    include_dependencies: bool = True


@dataclass(frozen=True)
class FunctionSettings:
    """Runtime settings of one Cloud Function (2nd gen)."""

    entry_point: str
    memory: str = "512Mi"
    timeout_s: int = 540
    max_instances: int = 3


@dataclass(frozen=True)
class DataformSettings:
    """The Dataform repository, its release config and the compilation vars."""

    repository: str
    git_remote: str
    default_branch: str
    token_secret_version: str
    release_config: str
    git_commitish: str
    vars: dict[str, str]
    workspace_project: str = ""
    workspace_schema_suffix: str = "_${workspaceName}"


@dataclass(frozen=True)
class EnvConfig:
    """Everything one environment deploys; built by load_env, never edited by hand in code."""

    path: Path
    environment: str
    project: str
    project_number: str | None
    region: str
    bigquery_location: str
    prefix: str
    time_zone: str
    labels: dict[str, str]
    buckets: dict[str, str]
    datasets: dict[str, str]
    service_accounts: dict[str, str]
    dataform: DataformSettings
    generator_cron: str
    workflows: tuple[Workflow, ...]
    functions: dict[str, FunctionSettings]
    max_delivery_attempts: int = 5
    min_backoff_s: int = 10
    max_backoff_s: int = 600
    trigger_timeout_s: int = 3000
    # Where apply reads the PII salt it writes to keys.pii_salt: a ${env:NAME} reference, never a value.
    pii_salt: str = "${env:LAKEHOUSE_PII_SALT}"
    generator_tick: dict[str, Any] = field(default_factory=lambda: {"events": 10})
    # IAM members (group:…, user:…, domain:…) who query silver, gold and ops, never the raw records.
    analysts: tuple[str, ...] = ()

    def service_account_email(self, component: str) -> str:
        """Return the e-mail of the service account of `component` (one of COMPONENTS)."""
        return f"{self.service_accounts[component]}@{self.project}.iam.gserviceaccount.com"

    def resolved_vars(self) -> dict[str, str]:
        """Return the release-config vars with ${env:NAME} references read from the environment.

        Raises ConfigError naming every referenced variable that is not set.
        """
        resolved, missing = {}, []
        for key, value in self.dataform.vars.items():
            match = _ENV_REFERENCE.fullmatch(value)
            if match is None:
                resolved[key] = value
            elif match.group(1) in os.environ:
                resolved[key] = os.environ[match.group(1)]
            else:
                missing.append(
                    f"field 'dataform.vars.{key}': environment variable {match.group(1)} is not set "
                    f"(export it before apply; it is read at deploy time and never committed)"
                )
        if missing:
            raise ConfigError(self.path, missing)
        return resolved


def salt_problem(value: str) -> str | None:
    """Return why `value` must not be a PII salt outside the local demo (public, demo, too short), or None."""
    if value in PUBLIC_SALTS:
        return "is the salt once committed to workflow_settings.yaml, which anyone can read"
    if value.startswith(DEMO_SALT_PREFIX):
        return "is a demo salt made by `lakehouse run` for local data"
    if len(value) < MIN_SALT_LENGTH:
        return f"is {len(value)} characters; use at least {MIN_SALT_LENGTH} random ones (openssl rand -hex 32)"
    return None


def display_var(key: str, value: str) -> str:
    """Return how a release-config var is shown in a plan: env references as is, secrets masked."""
    if _ENV_REFERENCE.fullmatch(value):
        return value
    return "***" if _SECRET_VAR.search(key) else value


class _Reader:
    """Reads fields from parsed YAML, collecting every problem instead of stopping at the first."""

    def __init__(self, data: dict):
        self.data = data
        self.problems: list[str] = []

    def get(self, dotted: str, default: Any = ...) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is ...:
                    self.problems.append(f"field '{dotted}' is missing")
                    return None
                return default
            node = node[part]
        return node

    def string(self, dotted: str, default: Any = ..., check=None) -> str | None:
        value = self.get(dotted, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.problems.append(f"field '{dotted}' must be a non-empty string, got {value!r}")
            return None
        if check is not None:
            problem = check(value)
            if problem:
                self.problems.append(f"field '{dotted}': {value!r} is not valid ({problem})")
                return None
        return value

    def integer(self, dotted: str, default: int, low: int, high: int) -> int:
        value = self.get(dotted, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problems.append(f"field '{dotted}' must be an integer from {low} to {high}, got {value!r}")
            return default
        return value

    def boolean(self, dotted: str, default: bool) -> bool:
        value = self.get(dotted, default)
        if not isinstance(value, bool):
            self.problems.append(f"field '{dotted}' must be true or false, got {value!r}")
            return default
        return value

    def mapping(self, dotted: str, default: Any = ...) -> dict:
        value = self.get(dotted, default)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"field '{dotted}' must be a mapping, got {type(value).__name__}")
            return {}
        return value

    def cron(self, dotted: str, value: Any) -> str | None:
        if not isinstance(value, str) or len(value.split()) != 5 or not croniter.is_valid(value):
            self.problems.append(f"field '{dotted}': {value!r} is not a five-field cron expression")
            return None
        from ingest.schedule import never_fires

        if never_fires(value):
            self.problems.append(f"field '{dotted}': {value!r} never fires (no such date)")
            return None
        return value


def _check_location(value: str) -> str | None:
    if value not in naming.BIGQUERY_LOCATIONS:
        return "unknown BigQuery location; use US, EU or a region such as europe-west1"
    return None


def _check_region(value: str) -> str | None:
    if value not in naming.REGIONS:
        return "unknown region; use one where Cloud Functions, Scheduler and Dataform run, e.g. us-central1"
    return None


def _check_time_zone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "not an IANA time zone such as Etc/UTC or Europe/Paris"
    return None


def _check_https(value: str) -> str | None:
    if not re.fullmatch(r"https://[^\s]+", value):
        return "the git remote must be an https:// URL"
    return None


def _check_secret_version(value: str) -> str | None:
    if not re.fullmatch(r"projects/[^/]+/secrets/[^/]+/versions/[^/]+", value):
        return "expected projects/<project>/secrets/<name>/versions/<version>"
    return None


def _check_prefix(value: str) -> str | None:
    if not re.fullmatch(r"[a-z][a-z0-9-]{1,28}[a-z0-9]", value):
        return "a prefix has 3-30 lower-case letters, digits and hyphens, starting with a letter"
    return None


def _workflows(reader: _Reader, raw: Any, where: str) -> tuple[Workflow, ...]:
    if not isinstance(raw, list):
        reader.problems.append(f"field '{where}' must be a list of workflows")
        return ()
    workflows: list[Workflow] = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, dict):
            reader.problems.append(f"field '{at}' must be a mapping with name, cron and tags")
            continue
        name = item.get("name")
        if not isinstance(name, str) or naming.function_problem(name):
            reader.problems.append(f"field '{at}.name': {name!r} must be lower-case letters, digits and hyphens (2-49)")
            continue
        if name == "check":  # its scheduler job would be <prefix>-trigger-check, the job reporting ended runs
            reader.problems.append(f"field '{at}.name': 'check' is the trigger's own job; pick another name")
            continue
        cron = reader.cron(f"{at}.cron", item.get("cron"))
        tags = item.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            reader.problems.append(f"field '{at}.tags' must be a list of tag names")
            tags = []
        full_refresh = item.get("full_refresh", False)
        include_deps = item.get("include_dependencies", True)
        for key, value in (("full_refresh", full_refresh), ("include_dependencies", include_deps)):
            if not isinstance(value, bool):
                reader.problems.append(f"field '{at}.{key}' must be true or false, got {value!r}")
        if cron:
            workflows.append(Workflow(name, cron, tuple(tags), bool(full_refresh), bool(include_deps)))
    names = [w.name for w in workflows]
    for name in {n for n in names if names.count(n) > 1}:
        reader.problems.append(f"field '{where}': workflow name {name!r} is used twice")
    return tuple(workflows)


# A config is a few kilobytes; anything much larger is not one (and YAML aliases expand without bound).
_MAX_CONFIG_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader refusing anchors and aliases (a 2.6 KB 'billion laughs' file took 2.2 GB expanded)
    and a key given twice in one mapping (YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not accepted in a config: write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


def _load_yaml(path: Path):
    """Return the parsed YAML of `path`; raises ConfigError naming the file when it cannot be a config."""
    data = path.read_bytes()
    if len(data) > _MAX_CONFIG_BYTES:
        raise ConfigError(path, [f"{len(data):,} bytes: a config is at most {_MAX_CONFIG_BYTES:,}"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(path, [f"not UTF-8 text (byte {error.start})"]) from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        raise ConfigError(path, [f"not valid YAML: {error}"]) from error
    except ValueError as error:  # an integer of more digits than Python converts
        raise ConfigError(path, [f"not a usable config: {error}"]) from None


def _shared_schedules(project_dir: Path) -> dict:
    """Return the shared schedule definition (config/schedules.yaml) as parsed YAML, or {}."""
    path = project_dir / "config" / "schedules.yaml"
    if not path.is_file():
        return {}
    data = _load_yaml(path) or {}
    return data if isinstance(data, dict) else {}


def _shared_generator_cron(shared: dict) -> str | None:
    for key in ("generator", "generate"):
        entry = shared.get(key) or (shared.get("schedules") or {}).get(key)
        if isinstance(entry, str):
            return entry
        if isinstance(entry, dict) and isinstance(entry.get("cron"), str):
            return entry["cron"]
    return None


def _shared_generator_tick(shared: dict) -> dict[str, Any]:
    """Return the body of a generator tick (events, batch_size, pubsub_share) from the shared file."""
    for key in ("generator", "generate"):
        entry = shared.get(key) or (shared.get("schedules") or {}).get(key)
        if isinstance(entry, dict):
            tick = {k: entry[k] for k in ("events", "batch_size", "pubsub_share") if k in entry}
            if tick:
                return tick
    return {"events": 10}


def _shared_workflows(shared: dict) -> Any:
    for key in ("workflows", "dataform"):
        entry = shared.get(key) or (shared.get("schedules") or {}).get(key)
        if isinstance(entry, list):
            return entry
        if isinstance(entry, dict):
            return [{"name": name, **spec} for name, spec in entry.items() if isinstance(spec, dict)]
    return None


def _analysts(r: _Reader) -> tuple[str, ...]:
    """Return the `analysts` members in file order; a member that is not a person, group or domain is a problem."""
    raw = r.get("analysts", [])
    if not isinstance(raw, list):
        r.problems.append("field 'analysts' must be a list of IAM members (group:analysts@example.com)")
        return ()
    members = []
    for index, member in enumerate(raw):
        if isinstance(member, str) and _ANALYST_MEMBER.fullmatch(member):
            members.append(member)
        else:
            r.problems.append(
                f"field 'analysts[{index}]': {member!r} must be user:, group:, serviceAccount: (an e-mail) or "
                "domain: (a domain); public members are refused"
            )
    return tuple(dict.fromkeys(members))


def load_env(path: Path | str, project_dir: Path | str = ".") -> EnvConfig:
    """Return the validated environment config at `path`.

    Schedules not given in the file come from the shared config/schedules.yaml under `project_dir`,
    else the defaults. Raises ConfigError listing every missing or malformed field, each named.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, ["file not found"])
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(path, ["expected a mapping of fields at the top level"])
    r = _Reader(data)
    known = {
        "environment", "project", "project_number", "region", "bigquery_location", "prefix", "time_zone",
        "labels", "buckets", "datasets", "service_accounts", "dataform", "schedules", "functions", "pubsub",
        "trigger", "pii_salt", "analysts",
    }  # fmt: skip
    for key in sorted(set(data) - known):
        r.problems.append(f"field '{key}' is not a known field (known: {', '.join(sorted(known))})")

    environment = r.string(
        "environment",
        check=lambda v: naming.label_problem("env", v) and "lower-case letters, digits, '-' or '_'",
    )
    project = r.string("project", check=naming.project_id_problem)
    number = r.get("project_number", None)
    if number is not None and not (isinstance(number, str | int) and re.fullmatch(r"[0-9]{6,20}", str(number))):
        r.problems.append(f"field 'project_number' must be the numeric project number, got {number!r}")
        number = None
    region = r.string("region", check=_check_region)
    location = r.string("bigquery_location", check=_check_location)
    prefix = r.string("prefix", check=_check_prefix)
    time_zone = r.string("time_zone", "Etc/UTC", check=_check_time_zone)

    labels = {}
    for key, value in r.mapping("labels", {}).items():
        value = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else value
        problem = naming.label_problem(str(key), value) if isinstance(value, str) else "must be a string"
        if problem:
            r.problems.append(f"field 'labels.{key}': {problem}")
        else:
            labels[str(key)] = value

    buckets = {}
    for name in BUCKETS:
        default = f"{prefix}-{name.replace('_', '-')}" if prefix else ...
        value = r.string(f"buckets.{name}", default, check=naming.bucket_problem)
        if value:
            buckets[name] = value
    for key in sorted(set(r.mapping("buckets", {})) - set(BUCKETS)):
        r.problems.append(f"field 'buckets.{key}' is not a known bucket (known: {', '.join(BUCKETS)})")
    if len(set(buckets.values())) != len(buckets):
        r.problems.append("field 'buckets': every bucket needs its own name")

    datasets = {}
    for name in DATASETS:
        value = r.string(f"datasets.{name}", name, check=naming.dataset_problem)
        if value:
            datasets[name] = value
    for key in sorted(set(r.mapping("datasets", {})) - set(DATASETS)):
        r.problems.append(f"field 'datasets.{key}' is not a known dataset (known: {', '.join(DATASETS)})")
    # Two datasets of one name would merge their grants: gold named like silver_restricted (or like
    # `keys`, the salt's dataset) would give analysts the raw records (or the salt).
    if len(set(datasets.values())) != len(datasets):
        r.problems.append("field 'datasets': every dataset needs its own name")
    for name, value in sorted(datasets.items()):
        if value == "keys":
            r.problems.append(f"field 'datasets.{name}': 'keys' is the PII salt's dataset; pick another name")

    accounts = {}
    short_env = (environment or "env")[:8]
    for component in COMPONENTS:
        default = f"lh-{short_env}-{component.replace('_', '-')}"
        value = r.string(f"service_accounts.{component}", default, check=naming.service_account_problem)
        if value:
            accounts[component] = value
    for key in sorted(set(r.mapping("service_accounts", {})) - set(COMPONENTS)):
        r.problems.append(f"field 'service_accounts.{key}' is not a component (known: {', '.join(COMPONENTS)})")
    if len(set(accounts.values())) != len(accounts):
        r.problems.append("field 'service_accounts': one service account per component, names must differ")

    raw_vars = r.mapping("dataform.vars", {})
    vars_ = {}
    for key, value in raw_vars.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            r.problems.append(f"field 'dataform.vars': {key!r} is not a valid var name")
        elif isinstance(value, bool) or not isinstance(value, str | int | float):
            r.problems.append(f"field 'dataform.vars.{key}' must be a string or a number")
        else:
            vars_[key] = str(value)
    # UI workspaces compile into the environment's project unless a sandbox project is named.
    workspace_project = project
    if r.get("dataform.workspace_project", None) is not None:
        workspace_project = r.string("dataform.workspace_project", check=naming.project_id_problem)
    dataform = DataformSettings(
        repository=r.string("dataform.repository", "lakehouse", check=naming.resource_id_problem) or "",
        git_remote=r.string("dataform.git_remote", check=_check_https) or "",
        default_branch=r.string("dataform.default_branch", "main") or "",
        token_secret_version=r.string("dataform.token_secret_version", check=_check_secret_version) or "",
        release_config=r.string("dataform.release_config", environment or "", check=naming.resource_id_problem) or "",
        git_commitish=r.string("dataform.git_commitish", "main") or "",
        vars=vars_,
        workspace_project=workspace_project or "",
        workspace_schema_suffix=r.string("dataform.workspace_schema_suffix", "_${workspaceName}") or "",
    )

    schedules = r.mapping("schedules", {})
    for key in sorted(set(schedules) - {"generator", "workflows"}, key=str):
        # a typo (`workfows:`) would deploy the default workflows instead of the ones written
        r.problems.append(f"field 'schedules.{key}' is not a known field (known: generator, workflows)")
    shared = _shared_schedules(Path(project_dir))
    generator_cron = r.cron(
        "schedules.generator",
        schedules.get("generator", _shared_generator_cron(shared) or DEFAULT_GENERATOR_CRON),
    )
    raw_workflows = schedules.get("workflows")
    where = "schedules.workflows"
    if raw_workflows is None:
        raw_workflows = _shared_workflows(shared)
        where = "config/schedules.yaml workflows"
    if raw_workflows is None:
        raw_workflows = [{"name": "hourly", "cron": "5 * * * *", "tags": ["hourly"]}]
    workflows = _workflows(r, raw_workflows, where)

    functions = {}
    raw_functions = r.mapping("functions", {})
    for key in sorted(set(raw_functions) - set(FUNCTIONS)):
        r.problems.append(f"field 'functions.{key}' is not a function (known: {', '.join(FUNCTIONS)})")
    for name in FUNCTIONS:
        entry = r.string(f"functions.{name}.entry_point", DEFAULT_ENTRY_POINTS[name])
        if entry and not re.fullmatch(r"[a-z_][a-z0-9_.]*:[a-z_][a-z0-9_]*", entry):
            r.problems.append(f"field 'functions.{name}.entry_point': {entry!r} must look like module:function")
        memory = r.string(f"functions.{name}.memory", "512Mi")
        if memory and not re.fullmatch(r"[0-9]+(Mi|Gi)", memory):
            r.problems.append(f"field 'functions.{name}.memory': {memory!r} must look like 512Mi or 1Gi")
        functions[name] = FunctionSettings(
            entry_point=entry or "",
            memory=memory or "512Mi",
            timeout_s=r.integer(f"functions.{name}.timeout_s", {"trigger": 3600, "audit": 60}.get(name, 540), 1, 3600),
            max_instances=r.integer(f"functions.{name}.max_instances", 3, 1, 1000),
        )

    config = EnvConfig(
        path=path,
        environment=environment or "",
        project=project or "",
        project_number=str(number) if number is not None else None,
        region=region or "",
        bigquery_location=location or "",
        prefix=prefix or "",
        time_zone=time_zone or "Etc/UTC",
        labels=labels,
        buckets=buckets,
        datasets=datasets,
        service_accounts=accounts,
        dataform=dataform,
        generator_cron=generator_cron or DEFAULT_GENERATOR_CRON,
        generator_tick=_shared_generator_tick(shared),
        workflows=workflows,
        functions=functions,
        max_delivery_attempts=r.integer("pubsub.max_delivery_attempts", 5, 5, 100),
        min_backoff_s=r.integer("pubsub.min_backoff_s", 10, 0, 600),
        max_backoff_s=r.integer("pubsub.max_backoff_s", 600, 0, 600),
        trigger_timeout_s=r.integer("trigger.timeout_s", 3000, 60, 3500),
        analysts=_analysts(r),
    )
    if config.min_backoff_s > config.max_backoff_s:
        r.problems.append("field 'pubsub.min_backoff_s' must not exceed 'pubsub.max_backoff_s'")
    if config.trigger_timeout_s >= functions.get("trigger", FunctionSettings("")).timeout_s:
        r.problems.append(
            "field 'trigger.timeout_s' must be shorter than 'functions.trigger.timeout_s' "
            "so the trigger reports a timeout before the function is killed"
        )
    for key in DERIVED_VARS:
        if key in vars_:
            r.problems.append(
                f"field 'dataform.vars.{key}' is derived from the deployed resources ({DERIVED_VARS[key]}); remove it"
            )
    if "pii_salt" in vars_:
        r.problems.append(
            "field 'dataform.vars.pii_salt': the salt is no longer a compilation var (a var is stored in the "
            "release config and every job's SQL); move it to the top-level field 'pii_salt' (docs/runbook.md)"
        )
    salt_source = r.string("pii_salt", "${env:LAKEHOUSE_PII_SALT}") or ""
    if salt_source and not _ENV_REFERENCE.fullmatch(salt_source):
        r.problems.append("field 'pii_salt' must be ${env:NAME}: the salt is read at apply time, never committed")
    lookback = vars_.get("lookback_days")
    if lookback is not None and (
        not re.fullmatch(r"[0-9]{1,6}", str(lookback)) or int(lookback) >= LANDING_NEARLINE_AGE_DAYS
    ):
        r.problems.append(
            f"field 'dataform.vars.lookback_days' must be an integer below {LANDING_NEARLINE_AGE_DAYS}, the age at "
            "which the landing bucket moves files to Nearline: hourly runs would pay retrieval on every scan"
        )
    config = dataclasses.replace(config, pii_salt=salt_source)
    if r.problems:
        raise ConfigError(path, r.problems)
    return config
