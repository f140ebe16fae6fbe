"""The trigger's Cloud Function, served by functions-framework and called over HTTP."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import functions_framework
import pytest

from deploy import trigger

SOURCE = Path(__file__).resolve().parents[2] / "deploy" / "function.py"


class StubTarget:
    """A GcpTarget stand-in returning a fixed report and keeping the request it got."""

    def __init__(self, status: str, actions: list[trigger.ActionReport]):
        self.status, self.actions = status, actions
        self.requests: list[trigger.TriggerRequest] = []

    def run(self, request):
        self.requests.append(request)
        report = trigger.TriggerReport("r1", "gcp", "dev", dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
        report.actions, report.status = self.actions, self.status
        return report


@pytest.fixture
def client():
    app = functions_framework.create_app(target="workflow_trigger", source=str(SOURCE))
    return app.test_client()


def serve(monkeypatch, target):
    written = []
    monkeypatch.setattr(trigger, "gcp_target_from_environment", lambda: (target, written.extend))
    return written


def test_failed_error_assertion_answers_500_and_writes_rows(client, monkeypatch):
    failed = trigger.ActionReport("p.assertions.a", "assertion", "failed", "error", failing_rows=2)
    target = StubTarget("failed", [failed])
    written = serve(monkeypatch, target)
    response = client.post("/", json={"tags": ["hourly"], "full_refresh": True})
    assert response.status_code == 500
    assert response.get_json()["summary"] == "run r1 (gcp) failed: 1 actions; failed error assertions: p.assertions.a"
    assert target.requests == [trigger.TriggerRequest(tags=("hourly",), full_refresh=True)]
    assert [(r["action_name"], r["status"], r["failing_rows"]) for r in written] == [("p.assertions.a", "failed", 2)]


def test_success_answers_200(client, monkeypatch):
    serve(monkeypatch, StubTarget("success", [trigger.ActionReport("p.silver.orders", "table", "success")]))
    response = client.post("/", data="", content_type="application/json")
    assert response.status_code == 200
    assert json.loads(response.data)["http_status"] == 200


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
        def run(self, request):
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
