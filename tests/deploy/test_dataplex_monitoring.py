"""Dataplex scans and alerting from the contracts: the requests the installed client libraries accept."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from deploy_fakes import FakeApi
from google.cloud import dataplex_v1, monitoring_v3
from google.cloud.logging_v2.types import LogMetric

from deploy import dataplex, monitoring
from deploy.apply import apply, destroy
from deploy.clients import Clients
from deploy.config import load_env
from deploy.handlers import handlers
from ingest.contracts import load_contracts

REPO = Path(__file__).resolve().parents[2]
ENV = load_env(REPO / "config" / "environments" / "dev.yaml", REPO)
LOCATION = f"projects/{ENV.project}/locations/{ENV.region}"


def _by_name(resources):
    return {r.name: r for r in resources}


def test_lake_zones_and_assets_cover_the_buckets_and_datasets():
    found = dataplex.resources(ENV, REPO, dataplex.gold_tables(REPO))
    lake = f"{LOCATION}/lakes/lakehouse-dev-lake"
    kinds = [(r.kind, r.name) for r in found if r.kind != "dataplex_datascan"]
    assert kinds[:3] == [
        ("dataplex_lake", lake),
        ("dataplex_zone", f"{lake}/zones/raw"),
        ("dataplex_zone", f"{lake}/zones/curated"),
    ]
    assets = {r.name.rsplit("/", 1)[1]: r.spec["resource"] for r in found if r.kind == "dataplex_asset"}
    assert assets == {
        "landing": f"projects/{ENV.project}/buckets/{ENV.buckets['landing']}",
        "dead-letter": f"projects/{ENV.project}/buckets/{ENV.buckets['dead_letter']}",
        "bronze": f"projects/{ENV.project}/datasets/{ENV.datasets['bronze']}",
        "lake": f"projects/{ENV.project}/buckets/{ENV.buckets['lake']}",
        "silver": f"projects/{ENV.project}/datasets/{ENV.datasets['silver']}",
        "gold": f"projects/{ENV.project}/datasets/{ENV.datasets['gold']}",
    }
    zone = dataplex.request(_by_name(found)[f"{lake}/zones/raw"])
    assert isinstance(zone, dataplex_v1.CreateZoneRequest)
    assert (zone.parent, zone.zone_id, zone.zone.type_) == (lake, "raw", dataplex_v1.Zone.Type.RAW)
    assert zone.zone.resource_spec.location_type == dataplex_v1.Zone.ResourceSpec.LocationType.MULTI_REGION
    asset = dataplex.request(_by_name(found)[f"{lake}/zones/curated/assets/silver"])
    assert asset.asset.resource_spec.type_ == dataplex_v1.Asset.ResourceSpec.Type.BIGQUERY_DATASET


def test_one_quality_scan_per_silver_table_with_the_contract_rules():
    found = dataplex.resources(ENV, REPO, dataplex.gold_tables(REPO))
    scans = {r.name.rsplit("/", 1)[1]: r for r in found if r.kind == "dataplex_datascan"}
    assert sorted(n for n in scans if "-dq-" in n) == sorted(
        f"lakehouse-dev-dq-{dataplex.dataplex_id(s)}" for s in load_contracts(REPO)
    )
    assert sorted(n for n in scans if "-profile-" in n) == sorted(
        f"lakehouse-dev-profile-{dataplex.dataplex_id(t)}" for t in dataplex.gold_tables(REPO)
    )
    made = dataplex.request(scans["lakehouse-dev-dq-orders"])
    assert isinstance(made, dataplex_v1.CreateDataScanRequest)
    assert (made.parent, made.data_scan_id) == (LOCATION, "lakehouse-dev-dq-orders")
    scan = made.data_scan
    assert scan.data.resource == f"//bigquery.googleapis.com/projects/{ENV.project}/datasets/silver/tables/orders"
    assert scan.execution_spec.trigger.schedule.cron == "30 * * * *"
    assert scan.data_quality_spec.post_scan_actions.bigquery_export.results_table.endswith(
        "/datasets/ops/tables/dataplex_dq_results"
    )
    rules = {r.name: r for r in scan.data_quality_spec.rules}
    assert rules["customer-id-required"].non_null_expectation is not None
    assert rules["customer-id-required"].column == "customer_id"
    # the contract allows 10% of orders to miss a customer: the scan's threshold says the same
    assert rules["customer-id-required"].threshold == 0.9
    assert rules["product-id-pattern"].regex_expectation.regex == "^PROD-[0-9]{4}$"
    assert rules["price-min-exclusive"].range_expectation.strict_min_enabled is True
    assert rules["price-min-exclusive"].range_expectation.min_value == "0"
    assert list(rules["currency-accepted-values"].set_expectation.values) == ["USD", "EUR", "GBP"]
    assert rules["order-id-unique"].dimension == "UNIQUENESS"
    assert rules["event-date-matches-event-time"].row_condition_expectation.sql_expression == (
        "event_date = date(event_ts)"
    )
    # PII is hashed in silver: its rules check the hash column, and never a pattern on the hash
    assert not any(r.column in ("customer_email", "customer_name") for r in scan.data_quality_spec.rules)
    profile = dataplex.request(scans["lakehouse-dev-profile-daily-sales"]).data_scan
    assert profile.data_profile_spec.sampling_percent == 100.0


def test_alerting_metrics_and_policies_build_with_the_client_types():
    found = _by_name(monitoring.resources(ENV))
    metric = monitoring.request(found[f"projects/{ENV.project}/metrics/lakehouse-dev-trigger-errors"], ENV.project)
    assert isinstance(metric, LogMetric)
    assert metric.filter == (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="lakehouse-dev-trigger" '
        "AND severity>=ERROR"
    )
    dead = found[f"projects/{ENV.project}/metrics/lakehouse-dev-dead-letter-writes"].spec["filter"]
    assert f'resource.labels.bucket_name="{ENV.buckets["dead_letter"]}"' in dead
    channel = monitoring.request(found["lakehouse-dev-alerts-email"], ENV.project)
    assert isinstance(channel, monitoring_v3.CreateNotificationChannelRequest)
    assert channel.notification_channel.labels["email_address"] == "${env:LAKEHOUSE_ALERT_EMAIL}"
    policy = monitoring.request(
        found["lakehouse-dev-reject-rate-over-threshold"], ENV.project, "projects/p/notificationChannels/1"
    ).alert_policy
    condition = policy.conditions[0].condition_threshold
    assert condition.filter == 'metric.type="logging.googleapis.com/user/lakehouse-dev-reject-rate-over-threshold"'
    assert condition.comparison == monitoring_v3.ComparisonType.COMPARISON_GT
    assert list(policy.notification_channels) == ["projects/p/notificationChannels/1"]
    assert sorted(n for n, r in found.items() if r.kind == "monitoring_alert_policy") == [
        "lakehouse-dev-dead-letters-growing",
        "lakehouse-dev-freshness-sla-missed",
        "lakehouse-dev-reject-rate-over-threshold",
        "lakehouse-dev-workflow-failed",
    ]


def test_the_plan_counts_them_and_says_when_a_contract_is_unreadable(tmp_path):
    found, problem = dataplex.observability_resources(ENV, REPO)
    assert problem == ""
    assert [r.kind for r in found].count("dataplex_datascan") == 13
    text = dataplex.observability_plan(ENV, REPO)
    assert "planned, not created" not in text
    assert text.endswith(
        "22 Dataplex resources (13 scans), 9 alerting resources (the e-mail channel's address is read from "
        "LAKEHOUSE_ALERT_EMAIL at apply time)."
    )
    broken = tmp_path / "includes" / "contracts"
    broken.mkdir(parents=True)
    (broken / "orders.json").write_text('{"name": "orders"')
    text = dataplex.observability_plan(ENV, tmp_path)
    assert "! Dataplex not planned: a contract cannot be read (" in text
    assert "\n0 Dataplex resources (0 scans), 9 alerting resources" in text


# --- apply, against in-memory stand-ins that take and return the client libraries' own types -------------


def _cloud():
    store, calls = {}, []
    clients = Clients(
        project=ENV.project,
        dataplex=FakeApi(store, calls, operations=True),
        datascans=FakeApi(store, calls, operations=True),
        log_metrics=FakeApi(store, calls),
        notification_channels=FakeApi(store, calls),
        alert_policies=FakeApi(store, calls),
    )
    return store, calls, clients


EMAIL = {"LAKEHOUSE_ALERT_EMAIL": "data-oncall@example.com"}


def _writes(calls) -> list[str]:
    return [name for name, _ in calls if not name.startswith(("get_", "list_"))]


def test_apply_creates_every_dataplex_and_alerting_resource_then_changes_nothing():
    found, _ = dataplex.observability_resources(ENV, REPO)
    store, calls, clients = _cloud()
    report = apply(ENV, found, clients, handlers(REPO), REPO, environ=EMAIL, sleep=lambda s: None)
    assert report.error is None, report.error
    assert [o.result for o in report.outcomes] == ["created"] * len(found) == ["created"] * 31
    scan = store[f"{LOCATION}/dataScans/lakehouse-dev-dq-orders"]
    assert isinstance(scan, dataplex_v1.DataScan)
    assert [dataplex.rule_dict(r) for r in scan.data_quality_spec.rules] == dataplex.quality_rules(
        load_contracts(REPO)["orders"]
    )
    channel = next(v for v in store.values() if isinstance(v, monitoring_v3.NotificationChannel))
    assert channel.labels["email_address"] == "data-oncall@example.com"
    policies = [v for v in store.values() if isinstance(v, monitoring_v3.AlertPolicy)]
    assert len(policies) == 4 and all(list(p.notification_channels) == [channel.name] for p in policies)
    assert isinstance(store[f"projects/{ENV.project}/metrics/lakehouse-dev-trigger-errors"], LogMetric)

    calls.clear()
    again = apply(ENV, found, clients, handlers(REPO), REPO, environ=EMAIL, sleep=lambda s: None)
    assert again.error is None, again.error
    assert {o.result for o in again.outcomes} == {"unchanged"}
    assert _writes(calls) == []


def test_apply_updates_in_place_what_changed():
    found, _ = dataplex.observability_resources(ENV, REPO)
    store, calls, clients = _cloud()
    assert apply(ENV, found, clients, handlers(REPO), REPO, environ=EMAIL, sleep=lambda s: None).error is None
    scan_name = f"{LOCATION}/dataScans/lakehouse-dev-dq-orders"
    changed = [
        replace(r, spec={**r.spec, "schedule": "45 * * * *"}) if r.name == scan_name
        else replace(r, spec={**r.spec, "documentation": "Page the data team."})
        if r.name == "lakehouse-dev-freshness-sla-missed"
        else r
        for r in found
    ]  # fmt: skip
    calls.clear()
    report = apply(ENV, changed, clients, handlers(REPO), REPO, environ=EMAIL, sleep=lambda s: None)
    assert report.error is None, report.error
    updated = [(o.resource.name, o.detail) for o in report.outcomes if o.result == "updated"]
    assert updated == [(scan_name, "schedule"), ("lakehouse-dev-freshness-sla-missed", "documentation")]
    assert _writes(calls) == ["update_data_scan", "update_alert_policy"]
    assert store[scan_name].execution_spec.trigger.schedule.cron == "45 * * * *"
    policy = next(v for v in store.values() if getattr(v, "display_name", "") == "lakehouse-dev-freshness-sla-missed")
    assert policy.documentation.content == "Page the data team."


def test_apply_without_the_alert_email_stops_at_the_channel_and_says_what_to_export():
    found, _ = dataplex.observability_resources(ENV, REPO)
    store, _, clients = _cloud()
    report = apply(ENV, found, clients, handlers(REPO), REPO, environ={}, sleep=lambda s: None)
    assert report.error is not None
    assert "$LAKEHOUSE_ALERT_EMAIL" in str(report.error) and "export" in str(report.error)
    # every resource before the channel (the Dataplex ones) was applied
    assert [o.result for o in report.outcomes] == ["created"] * 22
    assert not any(isinstance(v, monitoring_v3.NotificationChannel) for v in store.values())


def test_apply_refuses_to_change_a_lake_the_kit_did_not_create():
    found, _ = dataplex.observability_resources(ENV, REPO)
    store, calls, clients = _cloud()
    lake = found[0]
    store[lake.name] = dataplex_v1.Lake(name=lake.name, display_name="someone else's lake", labels={"team": "x"})
    report = apply(ENV, found, clients, handlers(REPO), REPO, environ=EMAIL, sleep=lambda s: None)
    assert report.outcomes == []
    assert "it exists but was not created by lakehouse-kit (differs in display_name, labels)" in str(report.error)
    assert _writes(calls) == []


def test_destroy_removes_every_one_apply_created():
    found, _ = dataplex.observability_resources(ENV, REPO)
    store, _, clients = _cloud()
    assert apply(ENV, found, clients, handlers(REPO), REPO, environ=EMAIL, sleep=lambda s: None).error is None
    assert len(store) == 31
    report = destroy(ENV, found, clients, handlers(REPO), REPO)
    assert report.error is None, report.error
    assert [o.result for o in report.outcomes] == ["deleted"] * 31
    assert store == {}
