"""`lakehouse trigger --target local`: the embedded engine behind the same request and report as GCP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploy import trigger

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.skipif(
        not (REPO / "lakehouse" / "engine" / "runner.py").exists(),
        reason="lakehouse/engine/runner.py (the embedded engine) does not exist yet",
    ),
    pytest.mark.slow,  # each test compiles with the Dataform CLI and runs DuckDB: seconds each
]

FILES = {
    "definitions/silver/orders.sqlx": """
        config { type: "table", schema: "silver", tags: ["hourly"] }
        select 1 as order_id, 10.5 as amount_usd
        union all select 2, 20.0
        union all select 2, 20.0
    """,
    "definitions/assertions/orders_unique.sqlx": """
        config { type: "assertion", tags: ["hourly"] }
        select order_id, count(*) as copies from ${ref("orders")} group by order_id having count(*) > 1
    """,
    "definitions/assertions/orders_volume.sqlx": """
        config { type: "assertion", tags: ["hourly", "warn"] }
        select count(*) as orders from ${ref("orders")} having count(*) < 100
    """,
    "definitions/gold/totals.sqlx": """
        config { type: "table", schema: "gold", tags: ["daily"] }
        select sum(amount_usd) as amount_usd from ${ref("orders")}
    """,
}


def test_cli_trigger_local_reports_like_gcp_writes_ops_rows_and_exits_nonzero(make_project, lakehouse_home):
    from lakehouse import warehouse
    from lakehouse.cli import main

    project = make_project(FILES)
    result = CliRunner().invoke(main, ["trigger", "--target", "local", "--project-dir", str(project),
                                       "--tags", "hourly", "--json"])  # fmt: skip
    assert result.exit_code == 1, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert (report["status"], report["http_status"], report["target"]) == ("failed", 500, "local")
    by_name = {a["name"]: a for a in report["actions"]}
    unique = by_name["test-local.assertions.orders_unique"]
    assert (unique["status"], unique["severity"], unique["failing_rows"]) == ("failed", "error", 1)
    assert unique["failing_sample"] == [{"order_id": 2, "copies": 2}]
    volume = by_name["test-local.assertions.orders_volume"]
    assert (volume["status"], volume["severity"], volume["failing_sample"]) == (
        "failed",
        "warn",
        [{"orders": 3}],
    )
    assert by_name["test-local.silver.orders"]["status"] == "success"
    assert "test-local.gold.totals" not in by_name  # tag "daily" was not selected
    assert report["summary"].endswith(
        "failed error assertions: test-local.assertions.orders_unique; "
        "failed warn assertions: test-local.assertions.orders_volume"
    )
    con = warehouse.connect(lakehouse_home, ["test-local"], read_only=True)
    try:
        rows = con.execute(
            "select action_name, status, severity, failing_rows, target "
            'from "test-local".ops.workflow_action_runs order by action_name'
        ).fetchall()
    finally:
        con.close()
    assert rows == [
        ("test-local.assertions.orders_unique", "failed", "error", 1, "local"),
        ("test-local.assertions.orders_volume", "failed", "warn", 1, "local"),
        ("test-local.silver.orders", "success", None, None, "local"),
    ]


def test_only_warn_failures_succeed(make_project, lakehouse_home):
    files = dict(FILES)
    files["definitions/silver/orders.sqlx"] = files["definitions/silver/orders.sqlx"].replace(
        "union all select 2, 20.0\n", "", 1
    )
    report = trigger.run_local(make_project(files), trigger.TriggerRequest(tags=("hourly",)))
    assert [a.name for a in report.failed_warn_assertions] == ["test-local.assertions.orders_volume"]
    assert report.failed_error_assertions == []
    assert report.status == "success" and report.http_status == 200


def test_a_compile_error_is_a_failed_report(make_project, lakehouse_home):
    files = {"definitions/broken.sqlx": 'config { type: "table" }\nselect ${ref("nope")}'}
    report = trigger.run_local(make_project(files), trigger.TriggerRequest())
    assert report.status == "failed"
    assert report.actions == []
    assert "nope" in report.compilation_errors[0]
