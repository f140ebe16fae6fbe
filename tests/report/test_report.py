"""The report of a real run history: outcomes, streaks, samples, scorecard, files written, the CLI."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import xmlschema
from click.testing import CliRunner

from lakehouse.cli import main
from lakehouse.engine import records
from lakehouse.report import publish, publish_all
from lakehouse.report.build import build
from lakehouse.report.context import open_context
from lakehouse.report.junit import JUNIT_XSD

P = "rpt-local"
ROW_CONDITIONS = f"{P}.assertions.silver_orders_assertions_rowConditions"
UNIQUE = f"{P}.assertions.silver_orders_assertions_uniqueKey_0"
FRESH = f"{P}.assertions.orders_fresh"
GOLD_UNIQUE = f"{P}.assertions.gold_daily_product_summary_assertions_uniqueKey_0"
RECONCILE = f"{P}.assertions.gold_reconciles_with_silver"


def test_latest_run_lists_each_assertion_with_severity_rows_file_and_since_when(history):
    with open_context(history.project, history.home) as ctx:
        report = build(ctx)
    assert report.run.run_id == history.run_ids[-1]
    got = {o.name: (o.status, o.severity, o.failing_rows, o.file_name) for o in report.outcomes}
    assert got == {
        ROW_CONDITIONS: ("failing", "error", 2, "definitions/silver/orders.sqlx"),
        UNIQUE: ("failing", "error", 1, "definitions/silver/orders.sqlx"),
        FRESH: ("failing", "warn", 1, "definitions/assertions/orders_fresh.sqlx"),
        GOLD_UNIQUE: ("passed", "error", 0, "definitions/gold/daily_product_summary.sqlx"),
        RECONCILE: ("passed", "error", 0, "definitions/assertions/gold_reconciles_with_silver.sqlx"),
    }
    assert [o.name for o in report.failing] == [ROW_CONDITIONS, UNIQUE, FRESH]
    by_name = {o.name: o for o in report.outcomes}
    unique = by_name[UNIQUE]
    assert (unique.streak.since_run, unique.streak.runs) == (history.run_ids[3], 2)
    assert unique.sequence == ["pass", "fail", "pass", "fail", "fail"]
    assert unique.flaky is True
    assert (unique.sample.columns, unique.sample.rows) == (["order_id", "index_row_count"], [("O1", 2)])
    fresh = by_name[FRESH]
    assert (fresh.streak.since_run, fresh.streak.runs, fresh.flaky) == (history.run_ids[0], 5, False)
    conditions = by_name[ROW_CONDITIONS]
    assert conditions.conditions == {"customer_id IS NOT NULL": 1, "price > 0": 1}
    assert sorted((r[0], r[1]) for r in conditions.sample.rows) == [
        ("customer_id IS NOT NULL", "O6"),
        ("price > 0", "O7"),
    ]
    assert conditions.checks == [f"{P}.silver.orders"]
    assert [o.name for o in report.flaky] == [ROW_CONDITIONS, UNIQUE]
    assert report.headline() == "2 error and 1 warning assertion(s) failed, of 5."
    assert report.notes == []
    assert [(s.assertions_passed, s.assertions_failed) for s in report.trend] == [
        (4, 1),
        (2, 3),
        (4, 1),
        (2, 3),
        (2, 3),
    ]


def test_an_earlier_run_is_reported_as_it_was(history):
    with open_context(history.project, history.home, history.run_ids[2]) as ctx:
        report = build(ctx)
    assert [o.name for o in report.failing] == [FRESH]
    fresh = report.failing[0]
    assert (fresh.streak.since_run, fresh.streak.runs) == (history.run_ids[0], 3)
    assert fresh.sample.note.startswith(f"sampled now, after later runs than {history.run_ids[2]}")
    assert len(report.trend) == 3


def test_scorecard_scores_tables_and_dimensions(history):
    with open_context(history.project, history.home) as ctx:
        card = build(ctx).scorecard
    silver, gold = f"{P}.silver.orders", f"{P}.gold.daily_product_summary"
    assert card.tables == [gold, silver]
    # silver.orders holds 7 rows; its quarantined row is incoming quality, not pipeline health: not scored.
    assert {
        d: card.cell(silver, d) for d in ("completeness", "validity", "uniqueness", "freshness", "consistency")
    } == {
        "completeness": 85.71,  # nonNull: 1 − 1/7
        "validity": 85.71,  # price > 0: 1 − 1/7
        "uniqueness": 71.43,  # 2 of 7 rows share order_id O1
        "freshness": 0.0,  # orders_fresh failed
        "consistency": 100.0,  # gold_reconciles_with_silver passed
    }
    assert card.table_score(silver) == 68.57  # mean(85.71, 85.71, 71.43, 0, 100)
    assert card.dataplex(table=silver) == 20.0  # 1 of 5 checks had no failing row
    assert (card.cell(gold, "uniqueness"), card.cell(gold, "consistency"), card.table_score(gold)) == (
        100.0,
        100.0,
        100.0,
    )
    assert card.cell(gold, "freshness") is None
    assert card.overall == 84.28  # mean(68.57, 100), of the rounded table scores
    assert card.dimension_score("uniqueness") == 85.72
    assert card.dataplex() == 42.86  # 3 of 7 checks


def test_publish_all_writes_every_artifact_and_the_junit_validates(history, tmp_path):
    written = publish_all(history.project, history.home, out_dir=tmp_path / "out")
    assert sorted(written) == [
        "dashboard",
        "html",
        "junit",
        "lineage",
        "markdown",
        "openlineage",
        "quality",
        "scorecard",
    ]
    assert all(path.is_file() for path in written.values())
    # the fixture project has no ops views: the report says so rather than inventing a quality
    assert json.loads(written["quality"].read_text())["notes"] == [
        "incoming data quality is unknown: the ops view(s) ops.source_quality, ops.quarantine_rules, "
        "ops.source_quality_dimensions, ops.source_quality_daily, ops.dead_letter_reasons, "
        "ops.quarantine_failures, ops.source_quality_run, ops.quarantine_rules_run, ops.source_quality_runs are not "
        "in the warehouse (run "
        f"{history.run_ids[-1]} did not build them: it crashed or did not select definitions/ops)"
    ]

    xmlschema.XMLSchema(JUNIT_XSD).validate(str(written["junit"]))
    xmlschema.XMLSchema(str(tmp_path / "out" / "junit.xsd")).validate(str(written["junit"]))
    root = ET.parse(written["junit"]).getroot()
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "5",
        "failures": "2",
        "errors": "0",
        "skipped": "0",
    }
    failures = {
        c.get("name"): c.find("failure").get("message") for c in root.iter("testcase") if c.find("failure") is not None
    }
    assert failures == {
        "silver_orders_assertions_rowConditions": "2 failing row(s)",
        "silver_orders_assertions_uniqueKey_0": "1 failing row(s)",
    }
    fresh = next(c for c in root.iter("testcase") if c.get("name") == "orders_fresh")
    assert fresh.find("system-out").text.startswith("WARN: 1 failing row(s)")
    assert {p.get("name"): p.get("value") for p in fresh.iter("property")}["severity"] == "warn"

    markdown = written["markdown"].read_text()
    assert "### silver_orders_assertions_uniqueKey_0 — ERROR" in markdown
    assert "| O1 | 2 |" in markdown
    assert "- **flaky**: last evaluations pass → fail → pass → fail → fail" in markdown

    lineage = json.loads(written["lineage"].read_text())
    assert sorted((e["from"], e["to"]) for e in lineage["edges"]) == sorted(
        [
            ("source:orders", "landing:orders"),
            ("landing:orders", f"{P}.bronze.orders"),
            (f"{P}.bronze.orders", f"{P}.silver.orders"),
            (f"{P}.bronze.orders", f"{P}.silver.orders_quarantine"),
            (f"{P}.silver.orders", f"{P}.gold.daily_product_summary"),
            (f"{P}.silver.orders", f"{P}.gold.conversion_funnel"),
        ]
    )
    statuses = {n["id"]: n["status"] for n in lineage["nodes"]}
    assert (statuses[f"{P}.silver.orders"], statuses[f"{P}.gold.daily_product_summary"]) == ("failing", "ok")

    html = written["html"].read_text()
    svg = html[html.index('<svg xmlns="http://www.w3.org/2000/svg" class="lineage"') :]
    svg = ET.fromstring(svg[: svg.index("</svg>") + len("</svg>")])
    ns = "{http://www.w3.org/2000/svg}"
    assert len([g for g in svg.iter(f"{ns}g") if g.get("class") == "node"]) == 7
    assert len([p for p in svg.iter(f"{ns}path") if p.get("class") == "edge"]) == 6

    events = [json.loads(line) for line in written["openlineage"].read_text().splitlines()]
    assert len(events) == 2 + 2 * 9  # the run's START and end, and a START and an end per action
    assert (events[0]["eventType"], events[-1]["eventType"]) == ("START", "FAIL")
    unique = [e for e in events if e["job"]["name"] == UNIQUE and e["eventType"] == "FAIL"][0]
    assertion = unique["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"][0]
    assert (unique["inputs"][0]["name"], assertion["success"], assertion["actual"]) == (
        f"{P}.silver.orders",
        False,
        "1",
    )
    table = [e for e in events if e["job"]["name"] == f"{P}.silver.orders" and e["eventType"] == "COMPLETE"][0]
    assert [(o["namespace"], o["name"]) for o in table["outputs"]] == [("bigquery", f"{P}.silver.orders")]
    assert table["run"]["facets"]["parent"]["run"]["runId"] == events[0]["run"]["runId"]
    publish_all(history.project, history.home, out_dir=tmp_path / "out")
    assert len(written["openlineage"].read_text().splitlines()) == 20  # reporting again replaces, never duplicates


def test_cli_report_prints_where_the_files_are(history, tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(history.home))
    result = CliRunner().invoke(
        main,
        [
            "report",
            "--project-dir",
            str(history.project),
            "--out",
            str(tmp_path / "r"),
            "--run",
            history.run_ids[1],
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"run {history.run_ids[1]}: 2 error and 1 warning assertion(s) failed, of 5." in result.output
    assert f"junit        {tmp_path / 'r' / 'junit.xml'}" in result.output
    missing = CliRunner().invoke(main, ["report", "--project-dir", str(history.project), "--run", "nope"])
    assert missing.exit_code == 1
    assert missing.output.startswith("error: ") and "no run 'nope'" in missing.output


def test_cli_report_on_an_empty_home_says_so(report_project, tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "empty"))
    result = CliRunner().invoke(main, ["report", "--project-dir", str(report_project)])
    assert result.exit_code == 1
    assert result.output.startswith("error: no run is recorded under")  # the markup rendered, not printed
    assert "the warehouse is empty" in result.output
    assert "[lakehouse run]" not in result.output and "`lakehouse run`" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def _write_record(home, run_id: str, actions: list[records.ActionResult], finished: bool, cache=None) -> None:
    if cache is not None:  # the fixture project's compiled graph: saves a cold compile per test
        shutil.copytree(cache / "compile-cache", home / "compile-cache")
    started = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    record = records.RunRecord(
        run_id, "/p", started, started if finished else None, "failed" if not finished else "success"
    )
    if not finished:
        record.status = "running"
    record.actions = actions
    records.write_json(record, home)


def test_a_crashed_run_over_an_empty_warehouse_is_reported_plainly(history, tmp_path):
    report_project = history.project
    home = tmp_path / "home"
    _write_record(
        home,
        "crashed-1",
        [
            records.ActionResult(
                f"{P}.silver.orders",
                "table",
                "failed",
                "definitions/silver/orders.sqlx",
                error="definitions/silver/orders.sqlx: action failed: boom",
            ),
            records.ActionResult(
                UNIQUE,
                "assertion",
                "skipped",
                "definitions/silver/orders.sqlx",
                severity="error",
                error=f"skipped: upstream {P}.silver.orders did not succeed",
            ),
        ],
        finished=False,
        cache=history.home,
    )
    written = publish_all(report_project, home, out_dir=tmp_path / "out")
    markdown = written["markdown"].read_text()
    assert (
        "run crashed-1 did not finish (status 'running', no finish time): it crashed or was stopped midway" in markdown
    )
    assert f"the local warehouse under {home} is empty" in markdown
    assert "> incoming data quality is unknown: the local warehouse is empty (nothing was ingested or run)" in markdown
    assert "1 assertion(s) did not run because an upstream action failed" in markdown
    assert f"| `{P}.silver.orders` | table | `definitions/silver/orders.sqlx` |" in markdown
    root = ET.parse(written["junit"]).getroot()
    xmlschema.XMLSchema(JUNIT_XSD).validate(str(written["junit"]))
    assert {k: root.get(k) for k in ("tests", "errors", "skipped")} == {
        "tests": "2",
        "errors": "1",
        "skipped": "1",
    }
    assert "No data: the local warehouse is empty" not in written["dashboard"].read_text()  # drawn by the script
    assert '"empty": "the local warehouse is empty"' in written["dashboard"].read_text()
    events = [json.loads(line) for line in written["openlineage"].read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "START", "FAIL", "START", "ABORT", "ABORT"]


def test_a_run_with_no_assertions_says_nothing_was_checked(history, tmp_path):
    report_project = history.project
    home = tmp_path / "home"
    table = records.ActionResult(f"{P}.silver.orders", "table", "success")
    _write_record(home, "plain-1", [table], finished=True, cache=history.home)
    written = publish_all(report_project, home, out_dir=tmp_path / "out")
    markdown = written["markdown"].read_text()
    assert "**Pipeline health: No assertions ran.**" in markdown
    assert "run plain-1 executed no assertions (1 action(s)): nothing was checked" in markdown
    assert "no assertion or action result to score: the scorecard is empty" in markdown
    root = ET.parse(written["junit"]).getroot()
    xmlschema.XMLSchema(JUNIT_XSD).validate(str(written["junit"]))
    assert (root.get("tests"), len(root.findall("testsuite"))) == ("0", 0)


def test_a_gcp_trigger_report_is_reported_with_the_rows_it_sampled(history, tmp_path):
    from deploy.trigger import ActionReport, TriggerReport

    started = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    trigger = TriggerReport("20260302T060000Z-abcd1234", "gcp", "prod", started, finished_at=started)
    trigger.actions = [
        ActionReport(
            f"{P}.silver.orders", "table", "success", duration_s=2.0, file_name="definitions/silver/orders.sqlx"
        ),
        ActionReport(
            UNIQUE,
            "assertion",
            "failed",
            severity="error",
            duration_s=1.5,
            failing_rows=1,
            failing_sample=[{"order_id": "O9", "index_row_count": 3}],
            file_name="definitions/silver/orders.sqlx",
        ),
        ActionReport(
            FRESH, "assertion", "cancelled", severity="warn", file_name="definitions/assertions/orders_fresh.sqlx"
        ),
    ]
    trigger.decide()
    path = tmp_path / "trigger.json"
    path.write_text(json.dumps(trigger.to_json()))
    written, summary = publish(history.project, history.home, out_dir=tmp_path / "out", trigger_report=path)
    assert summary[0] == "run 20260302T060000Z-abcd1234: 1 error and 0 warning assertion(s) failed, of 2."
    markdown = written["markdown"].read_text()
    assert "| O9 | 3 |" in markdown
    assert "_sampled by the trigger_" in markdown
    assert "comes from a gcp trigger report" in markdown
    assert "- since: first failure: this run" in markdown
    root = ET.parse(written["junit"]).getroot()
    assert {k: root.get(k) for k in ("tests", "failures", "skipped")} == {"tests": "2", "failures": "1", "skipped": "1"}


def test_a_trigger_that_timed_out_is_a_run_that_did_not_finish(history, tmp_path):
    path = tmp_path / "trigger.json"
    path.write_text(
        json.dumps(
            {
                "run_id": "t1",
                "target": "gcp",
                "started_at": "2026-03-02T06:00:00+00:00",
                "finished_at": None,
                "status": "timeout",
                "actions": [],
            }
        )
    )
    written, _ = publish(history.project, history.home, out_dir=tmp_path / "out", trigger_report=path)
    markdown = written["markdown"].read_text()
    assert "run t1 did not finish (status 'timeout', no finish time)" in markdown
    assert "the trigger gave up waiting for run t1 (timeout)" in markdown
    (tmp_path / "bad.json").write_text("[]")
    result = CliRunner().invoke(
        main, ["report", "--project-dir", str(history.project), "--trigger-report", str(tmp_path / "bad.json")]
    )
    assert result.exit_code == 1
    assert "not a trigger report: no 'actions'" in result.output


def test_up_step_writes_the_reports_and_prints_where_they_are(history, tmp_path):
    from types import SimpleNamespace

    from rich.console import Console

    from lakehouse.report import up_step

    console = Console(record=True, width=300)
    ctx = SimpleNamespace(
        settings=SimpleNamespace(project_dir=history.project, home=history.home), console=console, results={}
    )
    up_step(ctx)
    written = ctx.results["reports"]
    assert written["junit"] == history.home / "reports" / history.run_ids[-1] / "junit.xml"
    assert all(path.is_file() for path in written.values())
    text = console.export_text()
    assert f"run {history.run_ids[-1]}: 2 error and 1 warning assertion(s) failed, of 5." in text
    assert f"  dashboard    {written['dashboard']}" in text

    empty = SimpleNamespace(
        settings=SimpleNamespace(project_dir=history.project, home=tmp_path / "empty"), console=console, results={}
    )
    up_step(empty)
    assert empty.results == {}
    assert "no report: no run is recorded under" in console.export_text()


def test_a_run_id_that_is_a_path_writes_nothing_outside_the_reports_folder(history, tmp_path):
    home = tmp_path / "home"
    _write_record(home, "run-1", [], finished=True, cache=history.home)
    for record in (home / "runs").glob("*.json"):
        data = json.loads(record.read_text())
        data["run_id"] = "../../../escaped"
        record.write_text(json.dumps(data))

    written = publish_all(history.project, home)

    assert all(path.resolve().is_relative_to((home / "reports").resolve()) for path in written.values())
    assert written["openlineage"].parent == home / "reports" / "_.._.._escaped" / "openlineage"
    assert not (tmp_path / "escaped").exists() and not (home.parent.parent / "escaped").exists()
