"""Dataplex from the contracts: a lake with raw/curated zones over the buckets and datasets, a data-quality
scan per silver table and a data-profile scan per gold table, as Resources and as the API's own requests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from google.cloud import dataplex_v1

from deploy.config import EnvConfig
from deploy.resources import Resource

# After the hourly workflow (minute 0 by default): scans run at half past, on what it wrote.
SCAN_CRON = "30 * * * *"
RESULTS_TABLE = "dataplex_dq_results"
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
    labels = dict(env.labels)
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


def observability_plan(env: EnvConfig, project_dir: Path | str, verbose: bool = True) -> str:
    """Return the Dataplex and alerting part of `deploy plan`: each resource with its properties, every
    request built with the client libraries' types first (so a contract they cannot express fails here).

    These kinds are planned, not yet applied: apply leaves them to `gcloud` or the console for now.
    A contract that cannot be read is said in the text (the rest of the plan still shows). Raises ValueError
    for a rule with no expectation.
    """
    import json

    from deploy import monitoring
    from ingest.contracts import ContractError

    alerting = monitoring.resources(env)
    try:
        planned = resources(env, project_dir, gold_tables(project_dir))
    except ContractError as error:
        planned = []
        problem = f"Dataplex not planned: a contract cannot be read ({error})"
    else:
        problem = ""
    for resource in planned:
        request(resource)
    for resource in alerting:
        monitoring.request(resource, env.project)
    lines = [
        "",
        "Dataplex and alerting (generated from includes/contracts; planned here, not created by apply yet):",
    ]
    if problem:
        lines.append(f"! {problem}")
    for resource in planned + alerting:
        lines.append(f"+ planned   {resource.kind:<24} {resource.name}")
        if verbose:
            for key, value in resource.spec.items():
                if key == "rules":
                    lines += [f"      rule {r['name']}: {json.dumps(r, sort_keys=True)}" for r in value]
                elif key != "labels":
                    lines.append(f"      {key}: {value if isinstance(value, str) else json.dumps(value)}")
    scans = sum(1 for r in planned if r.kind == "dataplex_datascan")
    lines.append(f"Planned: {len(planned)} Dataplex resources ({scans} scans), {len(alerting)} alerting resources.")
    return "\n".join(lines)
