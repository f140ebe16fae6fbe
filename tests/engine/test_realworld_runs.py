"""Whole projects shaped like public Dataform repositories, run by the local engine on real DuckDB."""

from __future__ import annotations

import json

from click.testing import CliRunner

from lakehouse import paths
from lakehouse.cli import main
from lakehouse.engine.runner import run

NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_a_notebook_is_listed_as_skipped_with_why_and_the_rest_runs(make_project, lakehouse_home):
    project = make_project(
        {
            "definitions/report.ipynb": NOTEBOOK,
            "definitions/notebooks.js": 'notebook({ name: "weekly_report", filename: "report.ipynb" });\n',
            "definitions/orders.sqlx": 'config { type: "table" }\nselect 1 as order_id\n',
        }
    )

    record = run(project)

    by_name = {a.name: a for a in record.actions}
    notebook = by_name["test-local.silver.weekly_report"]
    assert (notebook.type, notebook.status, notebook.note) == ("notebook", "skipped", "not run locally")
    assert notebook.error == "a notebook runs on a Colab Enterprise runtime in Google Cloud; it is not run locally"
    assert by_name["test-local.silver.orders"].status == "success"
    assert record.status == "success"
    saved = json.loads((paths.runs_dir(lakehouse_home) / "latest.json").read_text())
    assert {a["name"]: a["status"] for a in saved["actions"]}["test-local.silver.weekly_report"] == "skipped"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


PARTNER = {
    "definitions/accounts_by_region.sqlx": """
        config { type: "table" }
        select region, count(*) as accounts from `partner-data.crm.accounts` group by region
    """,
}


def test_an_undeclared_project_loaded_locally_is_attached_for_run_and_query(make_project, lakehouse_home, tmp_path):
    project = make_project(PARTNER)
    sample = tmp_path / "accounts.csv"
    sample.write_text("account_id,region\n1,emea\n2,emea\n3,apac\n")
    assert invoke("load", "partner-data.crm.accounts", sample, "--project-dir", project).exit_code == 0

    record = run(project)
    # A view in the default project over the partner table resolves in a later query.
    view = "create view silver.partner_accounts as select * from `partner-data`.crm.accounts"
    assert invoke("query", view, "--project-dir", project).exit_code == 0
    result = invoke(
        "query",
        "select a.region, a.accounts, (select count(*) from silver.partner_accounts) as total "
        "from silver.accounts_by_region as a order by region",
        "--project-dir",
        project,
        "--format",
        "csv",
    )

    assert record.status == "success", [a.error for a in record.actions]
    assert result.output == "region,accounts,total\napac,1,3\nemea,2,3\n"


def test_a_table_with_no_local_data_is_named_with_how_to_load_it(make_project, lakehouse_home):
    project = make_project(PARTNER)

    record = run(project)
    result = invoke("query", "select * from `partner-data.crm.accounts`", "--project-dir", project)

    (action,) = record.actions
    assert action.error == (
        "definitions/accounts_by_region.sqlx: action test-local.silver.accounts_by_region: "
        "`partner-data.crm.accounts` has no local data: load a sample with "
        "`lakehouse load partner-data.crm.accounts <file.csv|.jsonl|.parquet>`, or run the action that creates it first"
    )
    assert result.exit_code == 1
    assert " ".join(result.output.split()) == (
        "error: `partner-data.crm.accounts` has no local data: load a sample with `lakehouse load "
        "partner-data.crm.accounts <file.csv|.jsonl|.parquet>`, or run the action that creates it first"
    )


def test_a_failing_statement_that_creates_a_table_shows_its_own_error(make_project, lakehouse_home):
    project = make_project(PARTNER)
    run(project)

    result = invoke("query", "create table silver.ratios as select 1 / 0 as r", "--project-dir", project)

    assert result.exit_code == 1
    assert " ".join(result.output.split()) == "error: Invalid Input Error: division by zero: 1 / 0"


def test_an_operation_with_a_loop_runs_in_a_project(make_project, lakehouse_home):
    project = make_project(
        {
            "definitions/calendar.sqlx": """
                config { type: "operations", hasOutput: true }
                declare day date default date '2024-12-30';
                create or replace table ${self()} (calendar_day date, iso_week int64);
                while day <= date '2025-01-02' do
                  insert into ${self()} values (day, extract(isoweek from day));
                  set day = date_add(day, interval 1 day);
                end while
            """,
        }
    )

    record = run(project)
    result = invoke("query", "select * from silver.calendar order by 1", "--project-dir", project, "--format", "csv")

    assert record.status == "success", [a.error for a in record.actions]
    # ISO week 1 of 2025 starts on Monday 30 December 2024.
    assert result.output == "calendar_day,iso_week\n2024-12-30,1\n2024-12-31,1\n2025-01-01,1\n2025-01-02,1\n"


# a declared log table that an operation creates (as cloud-cost-management-toolkit's create_process_log)
PROCESS_LOG = {
    "definitions/process_log.sqlx": 'config { type: "declaration", name: "process_log" }\n',
    "definitions/create_process_log.sqlx": """
        config { type: "operations" }
        create table if not exists ${ref("process_log")} (process_id int64, note string);
        insert into ${ref("process_log")} values (1, 'started')
    """,
}


def test_an_operation_that_creates_its_declared_table_runs_on_a_fresh_warehouse(make_project, lakehouse_home):
    project = make_project(
        {
            **PROCESS_LOG,
        }
    )

    record = run(project)
    result = invoke("query", "select * from silver.process_log", "--project-dir", project, "--format", "csv")

    assert record.status == "success", [a.error for a in record.actions]
    assert result.output == "process_id,note\n1,started\n"


def test_a_table_reads_a_declared_table_an_upstream_operation_created_in_the_same_run(make_project, lakehouse_home):
    project = make_project(
        {
            **PROCESS_LOG,
            "definitions/log_summary.sqlx": """
                config { type: "table", dependencies: ["create_process_log"] }
                select count(*) as processes from ${ref("process_log")}
            """,
        }
    )

    record = run(project)
    result = invoke("query", "select * from silver.log_summary", "--project-dir", project, "--format", "csv")

    assert record.status == "success", [a.error for a in record.actions]
    assert result.output == "processes\n1\n"


SHARDED = {
    "definitions/events.sqlx": 'config { type: "declaration", schema: "analytics", name: "events_*" }\n',
    "definitions/daily_events.sqlx": """
        config { type: "table" }
        select _TABLE_SUFFIX as day, count(*) as events
        from ${ref("events_*")}
        where _TABLE_SUFFIX between '20240102' and '20240131'
        group by day
    """,
}


def test_a_declared_wildcard_table_reads_the_loaded_shards(make_project, lakehouse_home, tmp_path):
    project = make_project(SHARDED)
    for day, rows in (("20240101", "1\n"), ("20240102", "2\n3\n"), ("20240103", "4\n")):
        sample = tmp_path / f"events_{day}.csv"
        sample.write_text("event_id\n" + rows)
        assert invoke("load", f"test-local.analytics.events_{day}", sample, "--project-dir", project).exit_code == 0

    record = run(project)
    result = invoke(
        "query", "select * from silver.daily_events order by day", "--project-dir", project, "--format", "csv"
    )

    assert record.status == "success", [a.error for a in record.actions]
    assert result.output == "day,events\n20240102,2\n20240103,1\n"


def test_a_declared_wildcard_table_with_no_shards_fails_with_bigquerys_message(make_project, lakehouse_home):
    project = make_project(SHARDED)

    record = run(project)

    (action,) = record.actions
    assert action.error == (
        "definitions/daily_events.sqlx: action test-local.silver.daily_events failed: "
        "Not found: Table test-local:analytics.events_* was not found"
    )
