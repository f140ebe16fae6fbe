"""The trigger's Cloud Function, served by functions-framework and called over HTTP."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import functions_framework
import pytest

from deploy import trigger

SOURCE = Path(__file__).resolve().parents[2] / "deploy" / "function.py"


class Reported:
    """bigquery.Client stand-in for the ops table: answers the invocations already recorded."""

    def __init__(self, invocations):
        self.invocations, self.queries = invocations, []

    def query(self, sql, job_config=None):
        self.queries.append((sql, [(p.name, p.value) for p in job_config.query_parameters]))
        rows = [{"invocation": name} for name in self.invocations]
        return type("Job", (), {"result": lambda self: rows})()


class StubTarget:
    """A GcpTarget stand-in: start returns a fixed report; check reports what `ended` lists."""

    def __init__(self, status: str, actions: list[trigger.ActionReport], ended=(), reported=()):
        self.status, self.actions, self.ended = status, actions, list(ended)
        self.requests: list[trigger.TriggerRequest] = []
        self.checked: list[set[str]] = []
        self.bigquery = Reported(reported)

    def now(self):
        return dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)

    def _report(self, run_id, status, actions):
        report = trigger.TriggerReport(run_id, "gcp", "dev", dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
        report.actions, report.status = actions, status
        return report

    def start(self, request):
        self.requests.append(request)
        report = self._report("r1", self.status, self.actions)
        if self.status == "running":
            report.invocation = "projects/p/locations/l/repositories/r/workflowInvocations/i1"
        return report, None, {}

    def check(self, reported, lookback):
        self.checked.append(set(reported))
        return [self._report(run_id, status, actions) for run_id, status, actions in self.ended
                if run_id not in reported]  # fmt: skip


@pytest.fixture
def client():
    app = functions_framework.create_app(target="workflow_trigger", source=str(SOURCE))
    return app.test_client()


def serve(monkeypatch, target):
    written = []
    monkeypatch.setattr(trigger, "gcp_target_from_environment", lambda: (target, written.extend))
    return written


def test_a_started_run_answers_202_at_once_and_writes_nothing_yet(client, monkeypatch):
    target = StubTarget("running", [])
    written = serve(monkeypatch, target)
    response = client.post("/", json={"tags": ["hourly"], "full_refresh": True})
    assert response.status_code == 202
    body = response.get_json()
    invocation = "projects/p/locations/l/repositories/r/workflowInvocations/i1"
    assert (body["status"], body["invocation"]) == ("running", invocation)
    assert target.requests == [trigger.TriggerRequest(tags=("hourly",), full_refresh=True)]
    assert written == []


def test_a_compilation_failure_answers_500_and_writes_its_row(client, monkeypatch):
    target = StubTarget("failed", [])
    written = serve(monkeypatch, target)
    monkeypatch.setattr(target, "_report", lambda run_id, status, actions: _compile_failed())
    response = client.post("/", data="", content_type="application/json")
    assert response.status_code == 500
    assert [(r["action_name"], r["status"]) for r in written] == [("(compilation)", "failed")]


def _compile_failed():
    report = trigger.TriggerReport("r1", "gcp", "dev", dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    report.compilation_errors, report.status = ["definitions/x.sqlx: Unexpected token"], "failed"
    return report


def test_check_reports_each_ended_run_once_and_fails_when_one_failed(client, monkeypatch):
    failed = trigger.ActionReport("p.assertions.a", "assertion", "failed", "error", failing_rows=2)
    ok = trigger.ActionReport("p.silver.orders", "table", "success")
    target = StubTarget("running", [], ended=[("gcp-a", "failed", [failed]), ("gcp-b", "success", [ok])],
                        reported=["gcp-b"])  # fmt: skip
    monkeypatch.setenv("LAKEHOUSE_OPS_TABLE", "p.ops.workflow_action_runs")
    written = serve(monkeypatch, target)
    response = client.post("/", json={"check": True})
    assert response.status_code == 500
    assert [r["summary"] for r in response.get_json()["reported"]] == [
        "run gcp-a (gcp) failed: 1 actions; failed error assertions: p.assertions.a"
    ]
    assert target.checked == [{"gcp-b"}]
    sql, parameters = target.bigquery.queries[0]
    assert sql == ("select distinct invocation from `p.ops.workflow_action_runs` "
                   "where started_at >= @since and invocation is not null")  # fmt: skip
    assert parameters == [("since", dt.datetime(2026, 11, 19, 3, 0, tzinfo=dt.UTC))]
    assert [(r["run_id"], r["action_name"], r["failing_rows"]) for r in written] == [("gcp-a", "p.assertions.a", 2)]


def test_check_with_nothing_new_answers_200(client, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_OPS_TABLE", "p.ops.workflow_action_runs")
    serve(monkeypatch, StubTarget("running", [], ended=[("gcp-b", "success", [])], reported=["gcp-b"]))
    response = client.post("/", json={"check": True})
    assert (response.status_code, response.get_json()) == (200, {"reported": []})


def test_bad_body_answers_400_naming_the_field(client, monkeypatch):
    serve(monkeypatch, StubTarget("success", []))
    response = client.post("/", json={"full_refresh": "yes"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "field 'full_refresh' must be true or false, got 'yes'"}


def test_missing_environment_answers_500_naming_the_variables(client, monkeypatch):
    for name in ("LAKEHOUSE_GCP_PROJECT", "LAKEHOUSE_DATAFORM_REPOSITORY", "LAKEHOUSE_RELEASE_CONFIG",
                 "LAKEHOUSE_OPS_TABLE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    response = client.post("/", json={})
    assert response.status_code == 500
    assert response.get_json()["error"].startswith("missing environment variables: LAKEHOUSE_GCP_PROJECT")


def test_an_api_failure_answers_502_and_logs_an_error(client, monkeypatch, caplog):
    from google.api_core import exceptions as gexc

    class Denied:
        def start(self, request):
            raise gexc.PermissionDenied("dataform.compilationResults.create denied")

    serve(monkeypatch, Denied())
    response = client.post("/", json={})
    assert response.status_code == 502
    assert response.get_json() == {
        "error": "lakehouse workflow trigger could not run: "
        "PermissionDenied: 403 dataform.compilationResults.create denied"
    }
    entry = json.loads(caplog.records[-1].getMessage())
    assert entry["severity"] == "ERROR"
