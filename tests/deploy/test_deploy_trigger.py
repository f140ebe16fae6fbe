"""The workflow trigger against recorded Dataform API responses (real dataform_v1 messages)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.cloud import bigquery
from google.cloud import dataform_v1 as D

from deploy import trigger
from deploy.resources import ACTION_RUNS_SCHEMA

RECORDINGS = Path(__file__).parent / "recordings"
REPO_NAME = "projects/lh-test/locations/us-central1/repositories/lakehouse"
RELEASE = f"{REPO_NAME}/releaseConfigs/dev"


def load(kind: type, data: dict):
    return kind.from_json(json.dumps(data))


class RecordedDataform:
    """Answers with one scenario's recorded responses; records every request it gets."""

    def __init__(self, scenario: str):
        common = json.loads((RECORDINGS / "common.json").read_text())
        self.recording = {**common, **json.loads((RECORDINGS / f"{scenario}.json").read_text())}
        self.requests: list[tuple[str, object]] = []
        self.states = [load(D.WorkflowInvocation, s) for s in self.recording.get("invocation_states", [])]

    def get_release_config(self, request):
        self.requests.append(("get_release_config", request))
        return load(D.ReleaseConfig, self.recording["release_config"])

    def create_compilation_result(self, request):
        self.requests.append(("create_compilation_result", request))
        return load(D.CompilationResult, self.recording["compilation_result"])

    def query_compilation_result_actions(self, request):
        self.requests.append(("query_compilation_result_actions", request))
        return [load(D.CompilationResultAction, a) for a in self.recording["compilation_actions"]]

    def create_workflow_invocation(self, request):
        self.requests.append(("create_workflow_invocation", request))
        return self.states.pop(0)

    def get_workflow_invocation(self, request):
        self.requests.append(("get_workflow_invocation", request))
        return self.states.pop(0)

    def list_workflow_invocations(self, request):
        self.requests.append(("list_workflow_invocations", request))
        return [load(D.WorkflowInvocation, i) for i in self.recording["listed"]]

    def cancel_workflow_invocation(self, request):
        self.requests.append(("cancel_workflow_invocation", request))

    def query_workflow_invocation_actions(self, request):
        self.requests.append(("query_workflow_invocation_actions", request))
        return [load(D.WorkflowInvocationAction, a) for a in self.recording["invocation_actions"]]


def _job(job_id: str, recorded: dict) -> bigquery.QueryJob:
    """Return a real QueryJob with the recorded statistics."""
    statistics = {"query": {k: v for k, v in recorded.items() if k != "children"}}
    resource = {
        "jobReference": {"projectId": "lh-test", "jobId": job_id, "location": "US"},
        "configuration": {"query": {"query": "..."}},
        "statistics": statistics,
    }
    return bigquery.QueryJob.from_api_repr(resource, client=SimpleNamespace(project="lh-test"))


class RecordedBigQuery:
    """query() answers bigquery.Row objects for the assertion views of the recording."""

    def __init__(self, failing: dict[str, list[dict]], jobs: dict[str, dict] | None = None):
        self.failing = failing
        self.jobs = jobs or {}
        self.jobs_read: list[tuple] = []
        self.queries: list[str] = []
        self.inserted: list[tuple[str, list[dict]]] = []

    def query(self, sql):
        self.queries.append(sql)
        view = sql.split("`")[1]
        rows = self.failing[view]

        class Job:
            def result(self):
                return [bigquery.Row(list(r.values()), {k: i for i, k in enumerate(r)}) for r in rows]

        return Job()

    def get_job(self, job_id, project=None, location=None):
        self.jobs_read.append((job_id, project, location))
        return _job(job_id, self.jobs[job_id])

    def list_jobs(self, project=None, parent_job=None):
        return [_job(f"{parent_job}_{i}", child) for i, child in enumerate(self.jobs[parent_job]["children"])]

    def insert_rows_json(self, table, rows):
        self.inserted.append((table, rows))
        return []


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def run(scenario: str, request: trigger.TriggerRequest | None = None, timeout_s: float = 120.0,
        final_state: str | None = None, actions: list | None = None):  # fmt: skip
    dataform = RecordedDataform(scenario)
    if final_state:
        dataform.states[-1].state = D.WorkflowInvocation.State[final_state]
    if actions is not None:
        dataform.recording["invocation_actions"] = actions
    bq = RecordedBigQuery(dataform.recording.get("failing_rows", {}), dataform.recording.get("jobs"))
    clock = Clock()
    target = trigger.GcpTarget(
        dataform, bq, REPO_NAME, RELEASE,
        service_account="lh-dev-dataform@lh-test.iam.gserviceaccount.com",
        environment="dev", location="US", poll_s=10, timeout_s=timeout_s, clock=clock, sleep=clock.sleep,
        now=lambda: dt.datetime(2026, 11, 22, 1, 0, tzinfo=dt.UTC),
    )  # fmt: skip
    report = target.run(request or trigger.TriggerRequest(tags=("hourly",)))
    return report, dataform, bq, clock


def summary(report):
    return [(a.name, a.type, a.status, a.severity, a.duration_s, a.failing_rows) for a in report.actions]


def test_success():
    report, dataform, bq, clock = run("success")
    assert report.status == "success" and report.http_status == 200
    assert (
        report.invocation
        == "projects/lh-test/locations/us-central1/repositories/lakehouse/workflowInvocations/1700000000-abc"
    )
    assert summary(report) == [
        ("lh-test.silver.orders", "incremental", "success", None, 12.5, None),
        ("lh-test.gold.daily_product_summary", "table", "success", None, 6.0, None),
        ("lh-test.assertions.orders_conservation", "assertion", "success", "error", 2.0, None),
        ("lh-test.assertions.orders_volume", "assertion", "success", "warn", 1.0, None),
    ]
    assert [a.file_name for a in report.actions][:2] == [
        "definitions/silver/orders.js",
        "definitions/gold/daily_product_summary.sqlx",
    ]
    assert clock.sleeps == [10, 10]
    assert bq.queries == []
    # Not looked up on GCP: reading the Dataform account's jobs needs a project-wide role.
    assert [a.rows_affected for a in report.actions] == [None, None, None, None]
    assert bq.jobs_read == []
    compile_request = dataform.requests[0][1]
    assert isinstance(compile_request, D.CreateCompilationResultRequest)
    assert compile_request.parent == REPO_NAME
    assert compile_request.compilation_result.release_config == RELEASE
    invocation = next(r for n, r in dataform.requests if n == "create_workflow_invocation")
    assert invocation.workflow_invocation.compilation_result.endswith("/compilationResults/c0ffee")
    config = invocation.workflow_invocation.invocation_config
    assert list(config.included_tags) == ["hourly"]
    assert config.transitive_dependencies_included is True
    assert config.fully_refresh_incremental_tables_enabled is False
    assert config.service_account == "lh-dev-dataform@lh-test.iam.gserviceaccount.com"


def test_failed_error_assertion_samples_rows_and_fails_the_run():
    report, _, bq, _ = run("failed_assertion")
    assert report.status == "failed" and report.http_status == 500
    assert [a.name for a in report.failed_error_assertions] == ["lh-test.assertions.orders_conservation"]
    assert [a.name for a in report.failed_warn_assertions] == ["lh-test.assertions.orders_volume"]
    conservation = report.failed_error_assertions[0]
    assert conservation.failing_rows == 3
    assert conservation.failing_sample[0] == {
        "ingest_date": "2026-11-21",
        "bronze_rows": 1000,
        "accounted_rows": 997,
    }
    assert conservation.error == "Assertion failed: query returned 3 row(s)."
    assert bq.queries[0] == (
        "select * from (select count(*) over () as _lakehouse_failing_rows, failing.* "
        "from `lh-test.assertions.orders_conservation` as failing) limit 10"
    )


def test_only_warn_assertions_failed_is_a_success_with_a_warning(caplog):
    report, _, _, _ = run("warn_only")
    assert report.status == "success" and report.http_status == 200
    level, entry = trigger.log_entry(report)
    assert level == logging.WARNING and entry["severity"] == "WARNING"
    assert entry["failed"] == [{
        "name": "lh-test.assertions.orders_volume", "type": "assertion", "severity": "warn",
        "error": "Assertion failed: query returned 1 row(s).", "failing_rows": 1,
        "failing_sample": [{"today_rows": 10, "trailing_avg": 1000.5}],
    }]  # fmt: skip


def test_failed_action():
    report, _, bq, _ = run("failed_action")
    assert report.status == "failed" and report.http_status == 500
    assert summary(report)[1:] == [
        ("lh-test.gold.daily_product_summary", "table", "failed", None, 1.0, None),
        ("lh-test.assertions.orders_conservation", "assertion", "success", "error", 2.0, None),
        ("lh-test.assertions.orders_volume", "assertion", "skipped", "warn", None, None),
    ]
    assert report.failed_actions[0].error == "Unrecognized name: revenue_usd at [12:5]"
    assert bq.queries == []


def test_timeout_cancels_the_invocation():
    report, dataform, _, clock = run("timeout", timeout_s=35)
    assert report.status == "timeout" and report.http_status == 504
    assert clock.sleeps == [10, 10, 10, 10]
    cancel = [r for n, r in dataform.requests if n == "cancel_workflow_invocation"]
    assert len(cancel) == 1 and isinstance(cancel[0], D.CancelWorkflowInvocationRequest)
    assert [a.status for a in report.actions] == ["success", "cancelled", "cancelled", "cancelled"]


def test_request_timeout_overrides_the_default():
    report, _, _, clock = run("timeout", trigger.TriggerRequest(timeout_s=15), timeout_s=1000)
    assert report.status == "timeout" and clock.sleeps == [10, 10]


def test_compilation_errors_fail_before_any_invocation():
    report, dataform, _, _ = run("compilation_error")
    assert report.status == "failed" and report.http_status == 500
    assert report.compilation_errors == [
        "definitions/gold/customers.sqlx: Unexpected token ')'",
        'lh-test.gold.customer_360: Missing dependency detected: Action "silver.orderz" depends on '
        '"silver.orderz" which does not exist',
    ]
    assert [n for n, _ in dataform.requests] == ["create_compilation_result"]
    rows = trigger.ops_rows(report)
    assert [(r["action_name"], r["status"]) for r in rows] == [("(compilation)", "failed")]


def test_commitish_and_vars_compile_on_top_of_the_release_config():
    request = trigger.TriggerRequest.from_json(
        {"git_commitish": "v1.4.2", "vars": {"api_token": "new-salt"}, "full_refresh": True, "tags": ["silver"],
         "include_dependents": True}
    )  # fmt: skip
    _, dataform, _, _ = run("success", request)
    compile_request = next(r for n, r in dataform.requests if n == "create_compilation_result")
    result = compile_request.compilation_result
    assert result.git_commitish == "v1.4.2" and result.release_config == ""
    assert dict(result.code_compilation_config.vars) == {"api_token": "new-salt", "lookback_days": "3"}
    assert result.code_compilation_config.default_database == "lh-test"
    invocation = next(r for n, r in dataform.requests if n == "create_workflow_invocation")
    assert invocation.workflow_invocation.invocation_config.fully_refresh_incremental_tables_enabled is True
    assert list(invocation.workflow_invocation.invocation_config.included_tags) == ["silver"]
    assert invocation.workflow_invocation.invocation_config.transitive_dependents_included is True


def test_publish_logs_a_structured_error_and_writes_one_row_per_action(caplog):
    report, _, bq, _ = run("failed_assertion")
    with caplog.at_level(logging.INFO, logger="lakehouse.trigger"):
        trigger.publish(report, trigger.bigquery_writer(bq, "lh-test.ops.workflow_action_runs"))
    record = caplog.records[-1]
    assert record.levelno == logging.ERROR
    entry = json.loads(record.getMessage())
    assert entry["severity"] == "ERROR"
    assert entry["status"] == "failed"
    assert [f["name"] for f in entry["failed"]] == [
        "lh-test.assertions.orders_conservation",
        "lh-test.assertions.orders_volume",
    ]
    assert entry["message"].startswith(f"lakehouse workflow run {report.run_id} (gcp) failed: 4 actions; ")
    table, rows = bq.inserted[0]
    assert table == "lh-test.ops.workflow_action_runs"
    assert len(rows) == 4
    columns = {name for name, _, _ in ACTION_RUNS_SCHEMA}
    assert all(set(row) <= columns for row in rows)
    failed = rows[2]
    assert (failed["action_name"], failed["status"], failed["severity"], failed["failing_rows"]) == (
        "lh-test.assertions.orders_conservation",
        "failed",
        "error",
        3,
    )
    assert json.loads(failed["failing_sample"])[2] == {"ingest_date": "2026-11-19", "bronze_rows": 1010,
                                                       "accounted_rows": 1009}  # fmt: skip


def test_a_failed_ops_write_is_logged_not_raised(caplog):
    report, _, _, _ = run("success")

    def broken(rows):
        raise RuntimeError("lh-test.ops.workflow_action_runs: [{'index': 0, 'errors': ['no such field']}]")

    with caplog.at_level(logging.INFO, logger="lakehouse.trigger"):
        trigger.publish(report, broken)
    assert json.loads(caplog.records[-1].getMessage())["message"].startswith("could not write run records: ")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the request body must be a JSON object"),
        ({"tag": ["x"]}, "unknown field(s) ['tag']; known: "),
        ({"tags": ["ok", "bad tag"]}, "field 'tags' must be a list of tag names"),
        ({"full_refresh": "yes"}, "field 'full_refresh' must be true or false, got 'yes'"),
        ({"git_commitish": "main; rm -rf"}, "field 'git_commitish' must be a branch, tag or commit sha"),
        ({"vars": {"bad-name": "x"}}, "field 'vars' must map var names to strings"),
        ({"timeout_s": -1}, "field 'timeout_s' must be a positive number of seconds"),
    ],
)
def test_bad_requests_are_named(body, message):
    with pytest.raises(trigger.TriggerRequestError) as caught:
        trigger.TriggerRequest.from_json(body)
    assert str(caught.value).startswith(message)


def test_request_defaults_and_single_tag():
    assert trigger.TriggerRequest.from_json(None) == trigger.TriggerRequest()
    assert trigger.TriggerRequest.from_json({"tags": "hourly"}).tags == ("hourly",)


def test_severity_convention():
    assert trigger.severity_of("assertion", ["hourly", "warn"]) == "warn"
    assert trigger.severity_of("assertion", ["hourly"]) == "error"
    assert trigger.severity_of("table", ["warn"]) is None


def test_gcp_target_from_environment_names_missing_variables():
    with pytest.raises(trigger.TriggerSetupError) as caught:
        trigger.gcp_target_from_environment({"LAKEHOUSE_GCP_PROJECT": "p"})
    assert str(caught.value) == (
        "missing environment variables: LAKEHOUSE_DATAFORM_REPOSITORY, LAKEHOUSE_RELEASE_CONFIG, LAKEHOUSE_OPS_TABLE"
    )


@pytest.mark.parametrize(
    ("final_state", "empty", "status"),
    [
        ("FAILED", False, "failed"),  # every action succeeded, yet the invocation failed
        ("FAILED", True, "failed"),
        ("CANCELLED", False, "failed"),
        ("CANCELLED", True, "failed"),
        ("SUCCEEDED", True, "success"),
    ],
)
def test_the_invocation_state_decides_when_no_action_explains_it(final_state, empty, status):
    report, _, _, _ = run("success", final_state=final_state, actions=[] if empty else None)
    assert (report.status, report.invocation_state) == (status, final_state)
    if status == "failed":
        assert report.http_status == 500
        assert f"invocation {final_state}" in report.summary()
    if empty:
        rows = trigger.ops_rows(report)
        assert [(r["action_name"], r["action_type"], r["status"], r["error"]) for r in rows] == [
            ("(invocation)", "invocation", status, f"invocation ended {final_state}")
        ]


def test_a_warn_assertion_ending_the_invocation_failed_stays_a_success():
    report, _, _, _ = run("warn_only")
    assert (report.invocation_state, report.status) == ("FAILED", "success")


def test_an_unreadable_failing_sample_is_reported_not_hidden(caplog):
    from google.api_core import exceptions as gexc

    dataform = RecordedDataform("failed_assertion")
    bq = RecordedBigQuery({})
    bq.query = lambda sql: (_ for _ in ()).throw(gexc.Forbidden("Access Denied: Table lh-test:bronze.orders_raw"))
    clock = Clock()
    target = trigger.GcpTarget(dataform, bq, REPO_NAME, RELEASE, clock=clock, sleep=clock.sleep,
                               now=lambda: dt.datetime(2026, 11, 22, 1, 0, tzinfo=dt.UTC))  # fmt: skip
    report = target.run(trigger.TriggerRequest())
    problem = ("failing rows of lh-test.assertions.orders_conservation not read: Forbidden: 403 Access Denied: "
               "Table lh-test:bronze.orders_raw")  # fmt: skip
    assert problem in report.lookup_errors
    conservation = next(a for a in report.actions if a.name == "lh-test.assertions.orders_conservation")
    assert conservation.error == f"Assertion failed: query returned 3 row(s).\n({problem})"
    assert report.summary().endswith("2 lookups failed")
    level, entry = trigger.log_entry(report)
    assert entry["lookup_errors"] == report.lookup_errors


DATAFORM_SA = "lh-dev-dataform@lh-test.iam.gserviceaccount.com"


def _invocation(name: str, state: str, started: str, service_account: str = DATAFORM_SA):
    return {
        "name": f"{REPO_NAME}/workflowInvocations/{name}",
        "compilationResult": f"{REPO_NAME}/compilationResults/c0ffee",
        "state": state,
        "invocationConfig": {"serviceAccount": service_account},
        "invocationTiming": {"startTime": started},
    }


def checker(listed: list[dict], now: dt.datetime, timeout_s: float = 3000):
    dataform = RecordedDataform("success")
    dataform.recording["listed"] = listed
    bq = RecordedBigQuery({})
    target = trigger.GcpTarget(
        dataform, bq, REPO_NAME, RELEASE, service_account="lh-dev-dataform@lh-test.iam.gserviceaccount.com",
        environment="dev", timeout_s=timeout_s, now=lambda: now,
    )  # fmt: skip
    return target, dataform


def test_start_answers_at_once_without_waiting():
    dataform = RecordedDataform("success")
    clock = Clock()
    target = trigger.GcpTarget(dataform, RecordedBigQuery({}), REPO_NAME, RELEASE, clock=clock, sleep=clock.sleep)
    report, invocation, kinds = target.start(trigger.TriggerRequest(tags=("hourly",)))
    assert (report.status, report.http_status, report.invocation_state) == ("running", 202, "RUNNING")
    assert report.invocation == invocation.name == f"{REPO_NAME}/workflowInvocations/1700000000-abc"
    assert clock.sleeps == [] and clock.now == 0
    assert [n for n, _ in dataform.requests] == [
        "create_compilation_result", "query_compilation_result_actions", "create_workflow_invocation"
    ]  # fmt: skip


def test_check_reports_ended_runs_once_cancels_overdue_ones_and_leaves_running_ones():
    now = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)
    listed = [
        _invocation("done", "SUCCEEDED", "2026-11-22T02:05:00Z"),
        _invocation("already", "FAILED", "2026-11-22T01:05:00Z"),
        _invocation("running", "RUNNING", "2026-11-22T02:30:00Z"),  # 30 min: still within 50
        _invocation("canceling", "CANCELING", "2026-11-22T01:00:00Z"),  # still running, even past the timeout
        _invocation("overdue", "RUNNING", "2026-11-22T02:09:59Z"),  # 50 min 1 s: cancelled, a timeout
        _invocation("old", "FAILED", "2026-11-19T02:05:00Z"),  # outside the two-day lookback
        _invocation("ui", "FAILED", "2026-11-22T02:05:00Z", "someone@example.com"),  # not the Dataform account
    ]
    from_config = _invocation("from-config", "SUCCEEDED", "2026-11-22T02:06:00Z")
    from_config["resolvedCompilationResult"] = from_config.pop("compilationResult").replace("c0ffee", "5eed")
    listed.append(from_config)
    target, dataform = checker(listed, now)
    reports = target.check({f"{REPO_NAME}/workflowInvocations/already"})
    assert [(r.run_id, r.status, r.started_at.isoformat()) for r in reports] == [
        ("gcp-done", "success", "2026-11-22T02:05:00+00:00"),
        ("gcp-overdue", "timeout", "2026-11-22T02:09:59+00:00"),
        ("gcp-from-config", "success", "2026-11-22T02:06:00+00:00"),
    ]
    compiled = [r.name.rsplit("/", 1)[1] for n, r in dataform.requests if n == "query_compilation_result_actions"]
    assert compiled == ["c0ffee", "c0ffee", "5eed"]
    cancelled = [r.name.rsplit("/", 1)[1] for n, r in dataform.requests if n == "cancel_workflow_invocation"]
    assert cancelled == ["overdue"]
    assert [a.name for a in reports[0].actions][0] == "lh-test.silver.orders"
    # A second check, after the first one's rows were written, reports nothing again.
    again, _ = checker(listed, now)
    assert again.check({r.invocation for r in reports} | {f"{REPO_NAME}/workflowInvocations/already"}) == []


def test_a_salt_in_the_vars_is_refused():
    with pytest.raises(trigger.TriggerRequestError, match=r"field 'vars.pii_salt': the salt is never a var"):
        trigger.TriggerRequest.from_json({"vars": {"pii_salt": "local-dev-salt-change-me"}})
