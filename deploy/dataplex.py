"""Dataplex from the contracts: a lake with raw/curated zones over the buckets and datasets, a data-quality
scan per silver table and a data-profile scan per gold table, as Resources and as the API's own requests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from google.cloud import dataplex_v1

from deploy.config import EnvConfig
from deploy.resources import Resource
from deploy.resources import labels as resource_labels

# After the hourly workflow (minute 0 by default): scans run at half past, on what it wrote.
SCAN_CRON = "30 * * * *"
RESULTS_TABLE = "dataplex_dq_results"
OPERATION_TIMEOUT_S = 900
ZONES = {"raw": "RAW", "curated": "CURATED"}
_ID = re.compile(r"[^a-z0-9-]+")
_MULTI_REGIONS = {"US", "EU"}
# Assets: (zone, kind, env attribute, name in it)
_ASSETS = (
    ("raw", "STORAGE_BUCKET", "buckets", "landing"),
    ("raw", "STORAGE_BUCKET", "buckets", "dead_letter"),
    ("raw", "BIGQUERY_DATASET", "datasets", "bronze"),
    ("curated", "STORAGE_BUCKET", "buckets", "lake"),
    ("curated", "BIGQUERY_DATASET", "datasets", "silver"),
    ("curated", "BIGQUERY_DATASET", "datasets", "gold"),
)


def dataplex_id(text: str) -> str:
    """Return `text` as a Dataplex resource id: lower-case letters, digits and hyphens, at most 63."""
    cleaned = _ID.sub("-", text.lower()).strip("-")
    return cleaned[:63].rstrip("-")


def _location(env: EnvConfig) -> str:
    return f"projects/{env.project}/locations/{env.region}"


def _lake(env: EnvConfig) -> str:
    return f"{_location(env)}/lakes/{dataplex_id(env.prefix + '-lake')}"


def _table(env: EnvConfig, dataset: str, table: str) -> str:
    return f"//bigquery.googleapis.com/projects/{env.project}/datasets/{env.datasets[dataset]}/tables/{table}"


def _column(field: Any) -> str:
    return f"{field.name}_hash" if field.pii else field.name


def quality_rules(contract: Any) -> list[dict[str, Any]]:
    """Return the data-quality rules of a silver table from its contract, as plain dicts.

    Each rule's threshold is 1 − the contract's allowed share for that rule (quality.rules), else 1.0:
    silver holds only records that passed every rule, so any failing row there is a pipeline bug.
    """
    allowed = contract.quality.rules

    def threshold(rule: str) -> float:
        return round(1.0 - allowed.get(rule, 0.0), 6)

    rules: list[dict[str, Any]] = []
    for field in contract.fields:
        column = _column(field)
        required = field.required or field.name in contract.key or field.name == contract.event_time
        if required:
            name = f"{field.name}_required"
            rules.append({"name": name, "column": column, "dimension": "COMPLETENESS", "non_null": True,
                          "threshold": threshold(name)})  # fmt: skip
        if field.pattern is not None and not field.pii:
            name = f"{field.name}_pattern"
            rules.append({"name": name, "column": column, "dimension": "VALIDITY", "regex": field.pattern,
                          "threshold": threshold(name)})  # fmt: skip
        if field.accepted_values is not None and not field.pii:
            name = f"{field.name}_accepted_values"
            rules.append({"name": name, "column": column, "dimension": "VALIDITY",
                          "set": list(field.accepted_values), "threshold": threshold(name)})  # fmt: skip
        for bound, strict in (("min", False), ("min_exclusive", True)):
            value = getattr(field, bound)
            if value is not None:
                name = f"{field.name}_{bound}"
                rules.append({"name": name, "column": column, "dimension": "VALIDITY", "min": str(value),
                              "strict_min": strict, "threshold": threshold(name)})  # fmt: skip
    if len(contract.key) == 1:
        key = next(f for f in contract.fields if f.name == contract.key[0])
        rules.append({"name": f"{key.name}_unique", "column": _column(key), "dimension": "UNIQUENESS",
                      "unique": True, "threshold": 1.0})  # fmt: skip
    rules.append({"name": "event_date_matches_event_time", "column": "event_date", "dimension": "CONSISTENCY",
                  "row_condition": f"event_date = date({contract.event_time})", "threshold": 1.0})  # fmt: skip
    return rules


def rule_proto(rule: dict[str, Any]) -> dataplex_v1.DataQualityRule:
    """Return the DataQualityRule of one rule dict made by quality_rules."""
    proto = dataplex_v1.DataQualityRule(
        name=rule["name"].replace("_", "-"),
        column=rule["column"],
        dimension=rule["dimension"],
        threshold=rule["threshold"],
    )
    if rule.get("non_null"):
        proto.non_null_expectation = dataplex_v1.DataQualityRule.NonNullExpectation()
    elif "regex" in rule:
        proto.regex_expectation = dataplex_v1.DataQualityRule.RegexExpectation(regex=rule["regex"])
        proto.ignore_null = True
    elif "set" in rule:
        proto.set_expectation = dataplex_v1.DataQualityRule.SetExpectation(values=rule["set"])
        proto.ignore_null = True
    elif "min" in rule:
        proto.range_expectation = dataplex_v1.DataQualityRule.RangeExpectation(
            min_value=rule["min"], strict_min_enabled=rule["strict_min"]
        )
        proto.ignore_null = True
    elif rule.get("unique"):
        proto.uniqueness_expectation = dataplex_v1.DataQualityRule.UniquenessExpectation()
    elif "row_condition" in rule:
        proto.row_condition_expectation = dataplex_v1.DataQualityRule.RowConditionExpectation(
            sql_expression=rule["row_condition"]
        )
    else:
        raise ValueError(f"rule {rule['name']!r} has no expectation")
    return proto


def resources(env: EnvConfig, project_dir: Path | str, gold_tables: list[str]) -> list[Resource]:
    """Return the Dataplex lake, its zones and assets, a quality scan per source's silver table and a profile
    scan per gold table. Raises ingest.contracts.ContractError for an invalid contract."""
    from ingest.contracts import load_contracts

    lake = _lake(env)
    labels = resource_labels(env, "dataplex")
    found = [
        Resource("dataplex_lake", lake, {"display_name": f"{env.prefix} lakehouse", "labels": labels}),
    ]
    multi = env.bigquery_location.upper() in _MULTI_REGIONS
    for zone, kind in ZONES.items():
        found.append(
            Resource(
                "dataplex_zone",
                f"{lake}/zones/{zone}",
                {
                    "type": kind,
                    "location_type": "MULTI_REGION" if multi else "SINGLE_REGION",
                    "discovery": True,
                    "labels": labels,
                },
            )
        )
    for zone, kind, attribute, name in _ASSETS:
        target = getattr(env, attribute)[name]
        if kind == "STORAGE_BUCKET":
            path = f"projects/{env.project}/buckets/{target}"
        else:
            path = f"projects/{env.project}/datasets/{target}"
        found.append(
            Resource(
                "dataplex_asset",
                f"{lake}/zones/{zone}/assets/{dataplex_id(name)}",
                {"type": kind, "resource": path, "labels": labels},
            )
        )
    results = _table(env, "ops", RESULTS_TABLE)
    for name, contract in sorted(load_contracts(project_dir).items()):
        found.append(
            Resource(
                "dataplex_datascan",
                f"{_location(env)}/dataScans/{dataplex_id(f'{env.prefix}-dq-{name}')}",
                {
                    "type": "DATA_QUALITY",
                    "table": _table(env, "silver", name),
                    "schedule": SCAN_CRON,
                    "rules": quality_rules(contract),
                    "results_table": results,
                    "labels": labels,
                },
            )
        )
    for table in sorted(gold_tables):
        found.append(
            Resource(
                "dataplex_datascan",
                f"{_location(env)}/dataScans/{dataplex_id(f'{env.prefix}-profile-{table}')}",
                {"type": "DATA_PROFILE", "table": _table(env, "gold", table), "schedule": SCAN_CRON, "labels": labels},
            )
        )
    return found


def gold_tables(project_dir: Path | str) -> list[str]:
    """Return the gold table names: one .sqlx file per table in definitions/gold/."""
    return sorted(path.stem for path in (Path(project_dir) / "definitions" / "gold").glob("*.sqlx"))


def _parent_and_id(name: str) -> tuple[str, str]:
    parent, _, last = name.rpartition("/")
    return parent.rsplit("/", 1)[0], last


def request(resource: Resource) -> Any:
    """Return the create request of a Dataplex resource, built from the installed google-cloud-dataplex types.

    Raises ValueError for a kind this module does not make.
    """
    spec = resource.spec
    parent, resource_id = _parent_and_id(resource.name)
    if resource.kind == "dataplex_lake":
        return dataplex_v1.CreateLakeRequest(
            parent=parent,
            lake_id=resource_id,
            lake=dataplex_v1.Lake(display_name=spec["display_name"], labels=spec["labels"]),
        )
    if resource.kind == "dataplex_zone":
        return dataplex_v1.CreateZoneRequest(
            parent=parent,
            zone_id=resource_id,
            zone=dataplex_v1.Zone(
                type_=spec["type"],
                labels=spec["labels"],
                resource_spec=dataplex_v1.Zone.ResourceSpec(location_type=spec["location_type"]),
                discovery_spec=dataplex_v1.Zone.DiscoverySpec(enabled=spec["discovery"]),
            ),
        )
    if resource.kind == "dataplex_asset":
        return dataplex_v1.CreateAssetRequest(
            parent=parent,
            asset_id=resource_id,
            asset=dataplex_v1.Asset(
                labels=spec["labels"],
                resource_spec=dataplex_v1.Asset.ResourceSpec(name=spec["resource"], type_=spec["type"]),
            ),
        )
    if resource.kind == "dataplex_datascan":
        scan = dataplex_v1.DataScan(
            labels=spec["labels"],
            data=dataplex_v1.DataSource(resource=spec["table"]),
            execution_spec=dataplex_v1.DataScan.ExecutionSpec(
                trigger=dataplex_v1.Trigger(schedule=dataplex_v1.Trigger.Schedule(cron=spec["schedule"]))
            ),
        )
        if spec["type"] == "DATA_QUALITY":
            scan.data_quality_spec = dataplex_v1.DataQualitySpec(
                rules=[rule_proto(rule) for rule in spec["rules"]],
                post_scan_actions=dataplex_v1.DataQualitySpec.PostScanActions(
                    bigquery_export=dataplex_v1.DataQualitySpec.PostScanActions.BigQueryExport(
                        results_table=spec["results_table"]
                    )
                ),
            )
        else:
            scan.data_profile_spec = dataplex_v1.DataProfileSpec(sampling_percent=100.0)
        return dataplex_v1.CreateDataScanRequest(parent=parent, data_scan_id=resource_id, data_scan=scan)
    raise ValueError(f"{resource.kind} is not a Dataplex resource")


def observability_resources(env: EnvConfig, project_dir: Path | str) -> tuple[list[Resource], str]:
    """Return the Dataplex and alerting resources `deploy plan` and `apply` add to the desired state, each
    request built with the client libraries' types first (so a contract they cannot express fails here), and
    why Dataplex is left out ("" when it is not): a contract that cannot be read leaves out Dataplex only.

    Raises ValueError for a rule with no expectation.
    """
    from deploy import monitoring
    from ingest.contracts import ContractError

    alerting = monitoring.resources(env)
    try:
        planned = resources(env, project_dir, gold_tables(project_dir))
    except ContractError as error:
        planned, problem = [], f"Dataplex not planned: a contract cannot be read ({error})"
    else:
        problem = ""
    for resource in planned:
        request(resource)
    for resource in alerting:
        monitoring.request(resource, env.project, "projects/-/notificationChannels/-")
    return planned + alerting, problem


def observability_plan(env: EnvConfig, project_dir: Path | str) -> str:
    """Return the Dataplex and alerting summary `deploy plan` prints after the resources: how many of each,
    and why Dataplex is left out when a contract cannot be read. Raises ValueError as
    observability_resources."""
    found, problem = observability_resources(env, project_dir)
    planned = [r for r in found if r.kind.startswith("dataplex_")]
    scans = sum(1 for r in planned if r.kind == "dataplex_datascan")
    lines = ["", "Dataplex and alerting (generated from includes/contracts, in the plan above; apply creates them):"]
    if problem:
        lines.append(f"! {problem}")
    lines.append(
        f"{len(planned)} Dataplex resources ({scans} scans), {len(found) - len(planned)} alerting resources "
        "(the e-mail channel's address is read from LAKEHOUSE_ALERT_EMAIL at apply time)."
    )
    return "\n".join(lines)


# --- apply: read, create, update and delete each kind (deploy.apply drives them) ----------------------------


def rule_dict(proto: dataplex_v1.DataQualityRule) -> dict[str, Any]:
    """Return the rule dict (quality_rules' shape) of a DataQualityRule: the inverse of rule_proto."""
    rule: dict[str, Any] = {
        "name": proto.name.replace("-", "_"),
        "column": proto.column,
        "dimension": proto.dimension,
        "threshold": round(proto.threshold, 6),
    }
    kind = dataplex_v1.DataQualityRule.pb(proto).WhichOneof("rule_type")
    if kind == "non_null_expectation":
        rule["non_null"] = True
    elif kind == "regex_expectation":
        rule["regex"] = proto.regex_expectation.regex
    elif kind == "set_expectation":
        rule["set"] = list(proto.set_expectation.values)
    elif kind == "range_expectation":
        rule["min"] = proto.range_expectation.min_value
        rule["strict_min"] = proto.range_expectation.strict_min_enabled
    elif kind == "uniqueness_expectation":
        rule["unique"] = True
    elif kind == "row_condition_expectation":
        rule["row_condition"] = proto.row_condition_expectation.sql_expression
    return rule


def observe(resource: Resource, found: Any) -> dict[str, Any]:
    """Return the spec (as `resources` writes it) of a Dataplex lake, zone, asset or scan read from the API."""
    labels = dict(found.labels)
    if resource.kind == "dataplex_lake":
        return {"display_name": found.display_name, "labels": labels}
    if resource.kind == "dataplex_zone":
        return {
            "type": found.type_.name,
            "location_type": found.resource_spec.location_type.name,
            "discovery": found.discovery_spec.enabled,
            "labels": labels,
        }
    if resource.kind == "dataplex_asset":
        return {"type": found.resource_spec.type_.name, "resource": found.resource_spec.name, "labels": labels}
    quality = dataplex_v1.DataScan.pb(found).HasField("data_quality_spec")
    spec: dict[str, Any] = {
        "type": "DATA_QUALITY" if quality else "DATA_PROFILE",
        "table": found.data.resource,
        "schedule": found.execution_spec.trigger.schedule.cron,
    }
    if quality:
        spec["rules"] = [rule_dict(rule) for rule in found.data_quality_spec.rules]
        spec["results_table"] = found.data_quality_spec.post_scan_actions.bigquery_export.results_table
    spec["labels"] = labels
    return spec


# spec key -> update-mask path, per kind; what is not here cannot change in place
_MASKS = {
    "dataplex_lake": {"display_name": "display_name", "labels": "labels"},
    "dataplex_zone": {"discovery": "discovery_spec", "labels": "labels"},
    "dataplex_asset": {"labels": "labels"},
    "dataplex_datascan": {
        "schedule": "execution_spec",
        "rules": "data_quality_spec",
        "results_table": "data_quality_spec",
        "labels": "labels",
    },
}
# kind -> (client attribute, method suffix, request field of the resource)
_CALLS = {
    "dataplex_lake": ("dataplex", "lake", "lake"),
    "dataplex_zone": ("dataplex", "zone", "zone"),
    "dataplex_asset": ("dataplex", "asset", "asset"),
    "dataplex_datascan": ("datascans", "data_scan", "data_scan"),
}


class DataplexHandler:
    """Lakes, zones, assets and data scans: get / create / update (masked) / delete, waiting on operations."""

    def __init__(self, kind: str):
        self.kind = kind
        self.mask = _MASKS[kind]
        fixed = ("type", "location_type", "resource", "table")
        self.immutable = frozenset(key for key in fixed if key not in self.mask)

    def _client(self, clients: Any) -> Any:
        return getattr(clients, _CALLS[self.kind][0])

    def _call(self, clients: Any, verb: str, request: Any) -> Any:
        result = getattr(self._client(clients), f"{verb}_{_CALLS[self.kind][1]}")(request=request)
        return result.result(timeout=OPERATION_TIMEOUT_S) if hasattr(result, "result") else result

    def local_outputs(self, resource: Resource) -> dict[str, str]:
        return {}

    def read(self, clients: Any, resource: Resource, spec: dict) -> Any:
        """Return the resource as it is (handlers.Observed), or None when it does not exist."""
        from google.api_core import exceptions as gexc

        from deploy.handlers import Observed, _labelled

        try:
            found = getattr(self._client(clients), f"get_{_CALLS[self.kind][1]}")(request={"name": resource.name})
        except gexc.NotFound:
            return None
        return Observed(observe(resource, found), {"name": found.name}, _labelled(found.labels))

    def create(self, clients: Any, resource: Resource, spec: dict) -> None:
        """Create the resource from `request`; raises API errors."""
        self._call(clients, "create", request(Resource(resource.kind, resource.name, spec)))

    def update(self, clients: Any, resource: Resource, spec: dict, changed: list[str]) -> None:
        """Update the changed keys in place (an update mask of them); raises API errors."""
        from google.protobuf import field_mask_pb2

        made = request(Resource(resource.kind, resource.name, spec))
        field = _CALLS[self.kind][2]
        body = getattr(made, field)
        body.name = resource.name
        paths = sorted({self.mask[key] for key in changed})
        update = getattr(dataplex_v1, f"Update{type(body).__name__}Request")
        self._call(clients, "update", update({field: body, "update_mask": field_mask_pb2.FieldMask(paths=paths)}))

    def delete(self, clients: Any, resource: Resource, spec: dict) -> None:
        """Delete the resource; raises API errors (NotFound included)."""
        self._call(clients, "delete", {"name": resource.name})


def handlers() -> list[DataplexHandler]:
    """Return the apply handlers of the Dataplex kinds."""
    return [DataplexHandler(kind) for kind in _CALLS]
