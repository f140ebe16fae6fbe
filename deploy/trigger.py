"""The workflow trigger: compile, invoke, wait, collect every action's result and report failures.

The same TriggerRequest and TriggerReport serve both targets: Dataform on GCP (GcpTarget) and the
embedded engine on this machine (run_local), so `lakehouse trigger` behaves the same on both.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("lakehouse.trigger")

DEFAULT_POLL_S = 10.0
DEFAULT_TIMEOUT_S = 3000.0
SAMPLE_ROWS = 10
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TAG = re.compile(r"^[A-Za-z0-9_\-.:]{1,128}$")
_COMMITISH = re.compile(r"^[A-Za-z0-9_./\-]{1,200}$")


class TriggerRequestError(ValueError):
    """A trigger request with a missing or malformed field."""


class TriggerSetupError(RuntimeError):
    """The trigger cannot start: its environment or local engine is missing something."""


def severity_of(action_type: str, tags: Iterable[str]) -> str | None:
    """Return "warn" for an assertion tagged "warn", "error" for any other assertion, None otherwise."""
    if action_type != "assertion":
        return None
    return "warn" if "warn" in set(tags) else "error"


@dataclass(frozen=True)
class TriggerRequest:
    """What to run: tags (empty = everything), dependencies, full refresh, and optionally what to compile."""

    tags: tuple[str, ...] = ()
    include_dependencies: bool = True
    full_refresh: bool = False
    git_commitish: str | None = None
    vars: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    include_dependents: bool = False

    @classmethod
    def from_json(cls, body: Any) -> TriggerRequest:
        """Return the request in a JSON body; raises TriggerRequestError naming the bad field."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise TriggerRequestError("the request body must be a JSON object")
        known = {"tags", "include_dependencies", "include_dependents", "full_refresh", "git_commitish", "vars",
                 "timeout_s"}  # fmt: skip
        unknown = sorted(set(body) - known)
        if unknown:
            raise TriggerRequestError(f"unknown field(s) {unknown}; known: {sorted(known)}")
        tags = body.get("tags", [])
        if isinstance(tags, str):
            tags = [tags]
        if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.fullmatch(t) for t in tags):
            raise TriggerRequestError("field 'tags' must be a list of tag names (letters, digits, _-.:)")
        flags = {}
        for name, default in (("include_dependencies", True), ("include_dependents", False), ("full_refresh", False)):
            value = body.get(name, default)
            if not isinstance(value, bool):
                raise TriggerRequestError(f"field '{name}' must be true or false, got {value!r}")
            flags[name] = value
        commitish = body.get("git_commitish")
        if commitish is not None and (not isinstance(commitish, str) or not _COMMITISH.fullmatch(commitish)):
            raise TriggerRequestError("field 'git_commitish' must be a branch, tag or commit sha")
        variables = body.get("vars", {})
        if not isinstance(variables, dict) or not all(
            isinstance(k, str) and _VAR_NAME.fullmatch(k) and isinstance(v, str | int | float)
            for k, v in variables.items()
        ):
            raise TriggerRequestError("field 'vars' must map var names to strings")
        if "pii_salt" in variables:
            raise TriggerRequestError(
                "field 'vars.pii_salt': the salt is never a var (it would be stored in the compilation "
                "result and every job's SQL); deploy apply writes it to keys.pii_salt (docs/runbook.md)"
            )
        timeout = body.get("timeout_s")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
            raise TriggerRequestError("field 'timeout_s' must be a positive number of seconds")
        return cls(
            tuple(tags),
            flags["include_dependencies"],
            flags["full_refresh"],
            commitish,
            {k: str(v) for k, v in variables.items()},
            timeout,
            flags["include_dependents"],
        )


@dataclass
class ActionReport:
    """One action's result; status is success | failed | skipped | disabled | cancelled."""

    name: str
    type: str
    status: str
    severity: str | None = None
    duration_s: float | None = None
    rows_affected: int | None = None
    failing_rows: int | None = None
    failing_sample: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    file_name: str | None = None


@dataclass
class TriggerReport:
    """A whole trigger run. status: running | success | failed | timeout (warn assertions never fail a run)."""

    run_id: str
    target: str
    environment: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    status: str = "running"
    invocation: str | None = None
    compilation_errors: list[str] = field(default_factory=list)
    actions: list[ActionReport] = field(default_factory=list)
    invocation_state: str | None = None
    lookup_errors: list[str] = field(default_factory=list)

    @property
    def failed_error_assertions(self) -> list[ActionReport]:
        return [a for a in self.actions if a.type == "assertion" and a.status == "failed" and a.severity != "warn"]

    @property
    def failed_warn_assertions(self) -> list[ActionReport]:
        return [a for a in self.actions if a.type == "assertion" and a.status == "failed" and a.severity == "warn"]

    @property
    def failed_actions(self) -> list[ActionReport]:
        return [a for a in self.actions if a.type != "assertion" and a.status == "failed"]

    @property
    def http_status(self) -> int:
        """Return 200 for success, 202 while running, 504 for a timeout, 500 for any other failure."""
        return {"success": 200, "running": 202, "timeout": 504}.get(self.status, 500)

    def decide(self) -> None:
        """Set status: failed if an action or an error-severity assertion failed, or the invocation
        ended CANCELLED, or FAILED with no failed action to explain it (a warn assertion failing also
        ends an invocation FAILED, and stays a success); running while the invocation still runs."""
        if self.status == "timeout":
            return
        if self.invocation_state in ("RUNNING", "CANCELING"):
            self.status = "running"
            return
        broken = self.compilation_errors or self.failed_actions or self.failed_error_assertions
        broken = broken or any(a.status == "cancelled" for a in self.actions)
        broken = broken or self.invocation_state == "CANCELLED"
        broken = broken or (self.invocation_state == "FAILED" and not any(a.status == "failed" for a in self.actions))
        self.status = "failed" if broken else "success"

    def summary(self) -> str:
        """Return one line: status and what failed."""
        parts = [f"run {self.run_id} ({self.target}) {self.status}: {len(self.actions)} actions"]
        if self.invocation_state in ("FAILED", "CANCELLED"):
            parts.append(f"invocation {self.invocation_state}")
        if self.compilation_errors:
            parts.append(f"{len(self.compilation_errors)} compilation errors")
        for label, items in (("failed actions", self.failed_actions),
                             ("failed error assertions", self.failed_error_assertions),
                             ("failed warn assertions", self.failed_warn_assertions)):  # fmt: skip
            if items:
                parts.append(f"{label}: {', '.join(a.name for a in items)}")
        if self.lookup_errors:
            parts.append(f"{len(self.lookup_errors)} lookups failed")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        data["http_status"] = self.http_status
        data["summary"] = self.summary()
        return json.loads(json.dumps(data, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _new_run_id(now: dt.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- GCP: Dataform API --------------------------------------------------------------------------


def _target_key(target: Any) -> str:
    return f"{target.database}.{target.schema}.{target.name}"


def _compiled_actions(dataform: Any, compilation: str) -> dict[str, tuple[str, list[str], str]]:
    """Return target -> (type, tags, file path) from the compilation result's actions."""
    from google.cloud import dataform_v1 as D

    kinds: dict[str, tuple[str, list[str], str]] = {}
    request = D.QueryCompilationResultActionsRequest(name=compilation)
    for action in dataform.query_compilation_result_actions(request=request):
        if "relation" in action:
            kind = {
                D.CompilationResultAction.Relation.RelationType.VIEW: "view",
                D.CompilationResultAction.Relation.RelationType.INCREMENTAL_TABLE: "incremental",
                D.CompilationResultAction.Relation.RelationType.MATERIALIZED_VIEW: "view",
            }.get(action.relation.relation_type, "table")
            tags = list(action.relation.tags)
        elif "operations" in action:
            kind, tags = "operations", list(action.operations.tags)
        elif "assertion" in action:
            kind, tags = "assertion", list(action.assertion.tags)
        else:
            continue
        kinds[_target_key(action.target)] = (kind, tags, action.file_path)
    return kinds


def _duration(timing: Any) -> float | None:
    if timing is None or not timing.HasField("start_time") or not timing.HasField("end_time"):
        return None
    return round((timing.end_time.ToDatetime() - timing.start_time.ToDatetime()).total_seconds(), 3)


class GcpTarget:
    """Runs a request on Dataform: compile, invoke, poll to completion or timeout, collect, sample."""

    def __init__(
        self,
        dataform: Any,
        bigquery: Any,
        repository: str,
        release_config: str,
        *,
        service_account: str | None = None,
        environment: str = "",
        location: str | None = None,
        poll_s: float = DEFAULT_POLL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        sample_rows: int = SAMPLE_ROWS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], dt.datetime] = _utcnow,
    ):
        self.dataform, self.bigquery = dataform, bigquery
        self.repository, self.release_config = repository, release_config
        self.service_account, self.environment, self.location = service_account, environment, location
        self.poll_s, self.timeout_s, self.sample_rows = poll_s, timeout_s, sample_rows
        self.clock, self.sleep, self.now = clock, sleep, now

    def compile(self, request: TriggerRequest) -> Any:
        """Return the created CompilationResult: the release config as it is, or with another
        commitish and/or extra vars on top of its compilation settings."""
        from google.cloud import dataform_v1 as D

        if request.git_commitish or request.vars:
            release = self.dataform.get_release_config(request=D.GetReleaseConfigRequest(name=self.release_config))
            config = D.CodeCompilationConfig(release.code_compilation_config)
            config.vars.update(dict(request.vars))
            commitish = request.git_commitish or release.git_commitish
            result = D.CompilationResult(git_commitish=commitish, code_compilation_config=config)
        else:
            result = D.CompilationResult(release_config=self.release_config)
        return self.dataform.create_compilation_result(
            request=D.CreateCompilationResultRequest(parent=self.repository, compilation_result=result)
        )

    def invocation_request(self, compilation: str, request: TriggerRequest) -> Any:
        """Return the CreateWorkflowInvocationRequest for `compilation` (pure)."""
        from google.cloud import dataform_v1 as D

        config = D.InvocationConfig(
            included_tags=list(request.tags),
            transitive_dependencies_included=request.include_dependencies,
            transitive_dependents_included=request.include_dependents,
            fully_refresh_incremental_tables_enabled=request.full_refresh,
        )
        if self.service_account:
            config.service_account = self.service_account
        return D.CreateWorkflowInvocationRequest(
            parent=self.repository,
            workflow_invocation=D.WorkflowInvocation(compilation_result=compilation, invocation_config=config),
        )

    def start(self, request: TriggerRequest) -> tuple[TriggerReport, Any, dict]:
        """Return (report, created invocation or None, compiled actions): compile and invoke, never wait.

        With compilation errors the report is already failed and nothing was invoked.
        """
        report = TriggerReport(_new_run_id(self.now()), "gcp", self.environment, self.now())
        compilation = self.compile(request)
        if compilation.compilation_errors:
            report.compilation_errors = [
                f"{e.path or (_target_key(e.action_target) if e.action_target else '')}: {e.message}".lstrip(": ")
                for e in compilation.compilation_errors
            ]
            report.status, report.finished_at = "failed", self.now()
            return report, None, {}
        kinds = _compiled_actions(self.dataform, compilation.name)
        invocation = self.dataform.create_workflow_invocation(
            request=self.invocation_request(compilation.name, request)
        )
        report.invocation, report.invocation_state = invocation.name, _state_name(invocation.state)
        return report, invocation, kinds

    def run(self, request: TriggerRequest) -> TriggerReport:
        """Return the report of one run, waiting for it (the CLI; the function uses start and check).

        Raises google.api_core errors only for failed API calls.
        """
        from google.cloud import dataform_v1 as D

        report, invocation, kinds = self.start(request)
        if invocation is None:
            return report
        deadline = self.clock() + (request.timeout_s or self.timeout_s)
        while _state_name(invocation.state) not in TERMINAL:
            if self.clock() >= deadline:
                report.status = "timeout"
                self.dataform.cancel_workflow_invocation(
                    request=D.CancelWorkflowInvocationRequest(name=invocation.name)
                )
                break
            self.sleep(self.poll_s)
            invocation = self.dataform.get_workflow_invocation(
                request=D.GetWorkflowInvocationRequest(name=invocation.name)
            )
        return self.finish(report, invocation, kinds)

    def finish(self, report: TriggerReport, invocation: Any, kinds: Mapping) -> TriggerReport:
        """Return `report` completed from the invocation as it is now: actions, state, verdict."""
        report.invocation, report.invocation_state = invocation.name, _state_name(invocation.state)
        report.actions = self.collect(invocation.name, kinds, report)
        report.finished_at = self.now()
        report.decide()
        return report

    def check(self, reported: set[str], lookback: dt.timedelta = dt.timedelta(days=2)) -> list[TriggerReport]:
        """Return a report for each of this repository's invocations that ended and is not in `reported`.

        Idempotent per invocation: the caller passes the invocations already recorded (ops table).
        An invocation still running past the timeout is cancelled and reported as a timeout; one
        CANCELING is still running. Only invocations run as this target's service account and started
        within `lookback` are considered. Raises google.api_core errors for failed API calls.
        """
        from google.cloud import dataform_v1 as D

        now = self.now()
        reports = []
        request = D.ListWorkflowInvocationsRequest(parent=self.repository)
        for invocation in self.dataform.list_workflow_invocations(request=request):
            if invocation.name in reported:
                continue
            if self.service_account and invocation.invocation_config.service_account != self.service_account:
                continue
            timing = invocation.invocation_timing if "invocation_timing" in invocation else None
            if timing is None or not timing.HasField("start_time"):
                continue
            started = timing.start_time.ToDatetime(tzinfo=dt.UTC)
            if started < now - lookback:
                continue
            report = TriggerReport(_run_id_of(invocation.name), "gcp", self.environment, started)
            state = _state_name(invocation.state)
            if state == "CANCELING":  # still running: reported once it has ended
                continue
            if state not in TERMINAL:
                if now - started < dt.timedelta(seconds=self.timeout_s):
                    continue
                self.dataform.cancel_workflow_invocation(
                    request=D.CancelWorkflowInvocationRequest(name=invocation.name)
                )
                report.status = "timeout"
            # A workflow config's invocation names its compilation only as the resolved one.
            compilation = invocation.compilation_result or invocation.resolved_compilation_result
            kinds = _compiled_actions(self.dataform, compilation)
            reports.append(self.finish(report, invocation, kinds))
        return reports

    def collect(
        self, invocation: str, kinds: Mapping[str, tuple[str, list[str], str]], report: TriggerReport | None = None
    ) -> list[ActionReport]:
        """Return every action's report, with failing-row samples for failed assertions.

        A sample that cannot be read is listed in `report.lookup_errors` (and the action's error).
        Rows affected are not looked up on GCP: reading the Dataform account's jobs needs a
        project-wide role that also shows every job's SQL text.
        """
        from google.cloud import dataform_v1 as D

        states = {
            D.WorkflowInvocationAction.State.SUCCEEDED: "success",
            D.WorkflowInvocationAction.State.FAILED: "failed",
            D.WorkflowInvocationAction.State.SKIPPED: "skipped",
            D.WorkflowInvocationAction.State.DISABLED: "disabled",
        }
        reports = []
        request = D.QueryWorkflowInvocationActionsRequest(name=invocation)
        for action in self.dataform.query_workflow_invocation_actions(request=request):
            key = _target_key(action.target)
            kind, tags, file_name = kinds.get(key, ("table", [], None))
            item = ActionReport(
                name=key,  # database.schema.name, as the local engine names actions
                type=kind,
                status=states.get(action.state, "cancelled"),
                severity=severity_of(kind, tags),
                duration_s=_duration(action.invocation_timing if "invocation_timing" in action else None),
                error=action.failure_reason or None,
                file_name=file_name,
            )
            if kind == "assertion" and item.status == "failed":
                try:
                    item.failing_rows, item.failing_sample = self.sample(key)
                except Exception as error:  # noqa: BLE001 - the failure is reported; the sample is extra
                    problem = f"failing rows of {key} not read: {type(error).__name__}: {error}"
                    log.warning(problem)
                    item.error = f"{item.error or ''}\n({problem})".lstrip("\n")
                    if report is not None:
                        report.lookup_errors.append(problem)
            reports.append(item)
        return reports

    def sample(self, target: str) -> tuple[int, list[dict[str, Any]]]:
        """Return (failing row count, up to sample_rows of them) of an assertion view; raises the
        BigQuery error when it cannot be read."""
        database, schema, name = target.split(".")
        sql = (
            f"select * from (select count(*) over () as _lakehouse_failing_rows, failing.* "
            f"from `{database}.{schema}.{name}` as failing) limit {int(self.sample_rows)}"
        )
        rows = [dict(row.items()) for row in self.bigquery.query(sql).result()]
        count = rows[0].pop("_lakehouse_failing_rows") if rows else 0
        for row in rows[1:]:
            row.pop("_lakehouse_failing_rows", None)
        return count, json.loads(json.dumps(rows, default=_jsonable))


TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


def _state_name(state: Any) -> str:
    """Return a WorkflowInvocation state's name (RUNNING, SUCCEEDED, FAILED, CANCELLED, CANCELING)."""
    from google.cloud import dataform_v1 as D

    return D.WorkflowInvocation.State(state).name


def _run_id_of(invocation: str) -> str:
    """Return the run id of an invocation reported by check: its id, so a re-check names it the same."""
    return "gcp-" + invocation.rsplit("/", 1)[1]


# --- local: the embedded engine -----------------------------------------------------------------


def run_local(project_dir: Path | str, request: TriggerRequest, environment: str = "local") -> TriggerReport:
    """Run `request` with the embedded engine and return the same report GCP gives.

    A run that cannot start (say, compilation failed) is a failed report with compilation_errors.
    Raises TriggerSetupError when the engine (lakehouse.engine.runner) is not available.
    """
    try:
        from ingest.audit import local_finalize
        from lakehouse.engine import runner
    except ImportError as error:
        raise TriggerSetupError(f"the local engine is not available ({error})") from error
    if request.git_commitish:
        raise TriggerRequestError("git_commitish applies to the gcp target; locally the working tree runs")
    started = _utcnow()
    report = TriggerReport(_new_run_id(started), "local", environment, started)
    try:
        record = runner.run(
            Path(project_dir),
            tags=list(request.tags),
            full_refresh=request.full_refresh,
            include_deps=request.include_dependencies,
            include_dependents=request.include_dependents,
            vars=dict(request.vars),
            prepare=local_finalize,
        )
    except getattr(runner, "RunError", RuntimeError) as error:
        report.compilation_errors = [str(error)]
        report.status, report.finished_at = "failed", _utcnow()
        return report
    report.run_id = getattr(record, "run_id", None) or report.run_id
    report.started_at = getattr(record, "started_at", None) or started
    for action in record.actions:
        item = ActionReport(
            name=action.name,
            type=action.type,
            status=action.status,
            severity=action.severity if action.type == "assertion" else None,
            duration_s=round(action.duration_s, 3) if action.duration_s is not None else None,
            rows_affected=action.rows_affected,
            failing_rows=action.failing_rows,
            error=action.error,
            file_name=action.file_name or None,
        )
        if item.type == "assertion" and item.status == "failed":
            item.failing_sample = _local_sample(Path(project_dir), action.name)
        report.actions.append(item)
    report.finished_at = getattr(record, "finished_at", None) or _utcnow()
    report.decide()
    if record.status != "success" and report.status == "success":
        report.status = "failed"  # the engine saw a failure this report's rules did not (keep them in step)
    return report


_PART = re.compile(r"^[A-Za-z0-9_\-]{1,1024}$")


def _local_sample(project_dir: Path, name: str, limit: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    """Return up to `limit` rows of a failed assertion's view in the local warehouse ([] if unreadable)."""
    from lakehouse import paths, warehouse  # local target only: lakehouse/ is not in the function archive

    parts = name.split(".")
    if len(parts) == 2:
        parts = [paths.default_project(project_dir), *parts]
    if len(parts) != 3 or not all(_PART.fullmatch(p) for p in parts):
        return []

    try:
        con = warehouse.connect(paths.home(project_dir), [parts[0]], read_only=True)
        try:
            cursor = con.execute(f'select * from "{parts[0]}"."{parts[1]}"."{parts[2]}" limit {int(limit)}')
            columns = [c[0] for c in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        finally:
            con.close()
    except Exception as error:  # noqa: BLE001 - a sample is best effort; the failure is still reported
        log.warning("could not sample failing rows of %s: %s", name, error)
        return []
    return json.loads(json.dumps(rows, default=_jsonable))


# --- reporting ----------------------------------------------------------------------------------


def log_entry(report: TriggerReport) -> tuple[int, dict[str, Any]]:
    """Return (logging level, structured entry) for Cloud Logging: ERROR when the run failed."""
    failed = report.failed_actions + report.failed_error_assertions + report.failed_warn_assertions
    if report.status == "running":
        level = logging.INFO
    else:
        failing = report.status != "success"
        level = logging.ERROR if failing else logging.WARNING if failed or report.lookup_errors else logging.INFO
    entry = {
        "severity": logging.getLevelName(level),
        "message": f"lakehouse workflow {report.summary()}",
        "run_id": report.run_id,
        "environment": report.environment,
        "target": report.target,
        "status": report.status,
        "invocation": report.invocation,
        "compilation_errors": report.compilation_errors,
        "invocation_state": report.invocation_state,
        "lookup_errors": report.lookup_errors,
        "failed": [
            {
                "name": a.name,
                "type": a.type,
                "severity": a.severity,
                "error": a.error,
                "failing_rows": a.failing_rows,
                "failing_sample": a.failing_sample,
            }
            for a in failed
        ],  # fmt: skip
        "logging.googleapis.com/labels": {
            "lakehouse_run_id": report.run_id,
            "lakehouse_env": report.environment,
        },
    }
    return level, entry


def ops_rows(report: TriggerReport) -> list[dict[str, Any]]:
    """Return one ops.workflow_action_runs row per action (a single row when compilation failed)."""
    base = {
        "run_id": report.run_id,
        "started_at": report.started_at.isoformat(),
        "finished_at": report.finished_at.isoformat() if report.finished_at else None,
        "environment": report.environment,
        "target": report.target,
        "invocation": report.invocation,
    }
    if report.compilation_errors:
        return [{**base, "action_name": "(compilation)", "action_type": "compilation", "status": "failed",
                 "severity": "error", "error": "\n".join(report.compilation_errors)}]  # fmt: skip
    if not report.actions and report.invocation:
        # One row still records the invocation, so a check reports it once (see already_reported).
        return [{**base, "action_name": "(invocation)", "action_type": "invocation", "status": report.status,
                 "error": f"invocation ended {report.invocation_state}"}]  # fmt: skip
    return [
        {
            **base,
            "action_name": a.name,
            "action_type": a.type,
            "status": a.status,
            "severity": a.severity,
            "duration_s": a.duration_s,
            "rows_affected": a.rows_affected,
            "failing_rows": a.failing_rows,
            "failing_sample": json.dumps(a.failing_sample, default=_jsonable) if a.failing_sample else None,
            "error": a.error,
            "file_name": a.file_name,
        }
        for a in report.actions
    ]


def publish(report: TriggerReport, write_rows: Callable[[list[dict[str, Any]]], None] | None) -> None:
    """Log the structured entry and write the ops rows; a failed write is logged, never raised."""
    level, entry = log_entry(report)
    log.log(level, json.dumps(entry, default=_jsonable))
    if write_rows is None:
        return
    try:
        write_rows(ops_rows(report))
    except Exception as error:  # noqa: BLE001 - the run's outcome matters more than its record
        log.error(json.dumps({"severity": "ERROR", "message": f"could not write run records: {error}",
                              "run_id": report.run_id}))  # fmt: skip


def api_failure(error: Exception) -> dict[str, Any]:
    """Log a failed Dataform/BigQuery API call as a structured ERROR entry; return the answer body."""
    entry = {
        "severity": "ERROR",
        "message": f"lakehouse workflow trigger could not run: {type(error).__name__}: {error}",
        "error": str(error),
    }
    log.error(json.dumps(entry))
    return {"error": entry["message"]}


def already_reported(bigquery: Any, table: str, since: dt.datetime) -> set[str]:
    """Return the invocations with rows in the ops `table` started since `since` (one partition scan
    per day); raises google.api_core errors when the table cannot be read."""
    from google.cloud import bigquery as bq

    sql = f"select distinct invocation from `{table}` where started_at >= @since and invocation is not null"
    config = bq.QueryJobConfig(query_parameters=[bq.ScalarQueryParameter("since", "TIMESTAMP", since)])
    return {row["invocation"] for row in bigquery.query(sql, job_config=config).result()}


def check_and_publish(
    target: GcpTarget, ops_table: str, write_rows: Callable | None, lookback: dt.timedelta = dt.timedelta(days=2)
) -> list[TriggerReport]:
    """Return the reports of invocations that ended since the last check, each published once."""
    # A day more than the lookback: an invocation started just inside it has its rows from then.
    reported = already_reported(target.bigquery, ops_table, target.now() - lookback - dt.timedelta(days=1))
    reports = target.check(reported, lookback)
    for report in reports:
        publish(report, write_rows)
    return reports


def bigquery_writer(bigquery: Any, table: str) -> Callable[[list[dict[str, Any]]], None]:
    """Return a writer streaming rows into BigQuery `table`; raises RuntimeError with the row errors."""

    def write(rows: list[dict[str, Any]]) -> None:
        errors = bigquery.insert_rows_json(table, rows)
        if errors:
            raise RuntimeError(f"{table}: {errors}")

    return write


def local_writer(project_dir: Path | str) -> Callable[[list[dict[str, Any]]], None]:
    """Return a writer appending rows to ops.workflow_action_runs in the local warehouse."""
    from deploy.resources import ACTION_RUNS_SCHEMA, ACTION_RUNS_TABLE

    types = {"STRING": "VARCHAR", "TIMESTAMP": "TIMESTAMPTZ", "FLOAT64": "DOUBLE", "INT64": "BIGINT"}

    def write(rows: list[dict[str, Any]]) -> None:
        from lakehouse import paths, warehouse

        project = paths.default_project(Path(project_dir))
        columns = [name for name, _, _ in ACTION_RUNS_SCHEMA]
        with warehouse.open_catalog(paths.home(project_dir), project) as con:
            con.execute('create schema if not exists "ops"')
            ddl = ", ".join(f"{name} {types[kind]}" for name, kind, _ in ACTION_RUNS_SCHEMA)
            con.execute(f"create table if not exists ops.{ACTION_RUNS_TABLE} ({ddl})")
            insert = f"insert into ops.{ACTION_RUNS_TABLE} ({', '.join(columns)}) values "
            insert += "(" + ", ".join("?" for _ in columns) + ")"
            con.executemany(insert, [[row.get(c) for c in columns] for row in rows])

    return write


def gcp_target_from_environment(environ: Mapping[str, str] | None = None) -> tuple[GcpTarget, Callable]:
    """Return the GcpTarget and ops writer configured by the LAKEHOUSE_* variables deploy sets.

    Raises TriggerSetupError naming each missing variable.
    """
    environ = os.environ if environ is None else environ
    needed = ["LAKEHOUSE_GCP_PROJECT", "LAKEHOUSE_DATAFORM_REPOSITORY", "LAKEHOUSE_RELEASE_CONFIG",
              "LAKEHOUSE_OPS_TABLE"]  # fmt: skip
    missing = [name for name in needed if not environ.get(name)]
    if missing:
        raise TriggerSetupError(f"missing environment variables: {', '.join(missing)}")
    from google.cloud import bigquery, dataform_v1

    bq = bigquery.Client(project=environ["LAKEHOUSE_GCP_PROJECT"],
                         location=environ.get("LAKEHOUSE_BIGQUERY_LOCATION") or None)  # fmt: skip
    target = GcpTarget(
        dataform_v1.DataformClient(),
        bq,
        environ["LAKEHOUSE_DATAFORM_REPOSITORY"],
        environ["LAKEHOUSE_RELEASE_CONFIG"],
        service_account=environ.get("LAKEHOUSE_DATAFORM_SERVICE_ACCOUNT") or None,
        environment=environ.get("LAKEHOUSE_ENVIRONMENT", ""),
        location=environ.get("LAKEHOUSE_BIGQUERY_LOCATION") or None,
        timeout_s=float(environ.get("LAKEHOUSE_TRIGGER_TIMEOUT_S", DEFAULT_TIMEOUT_S)),
    )
    return target, bigquery_writer(bq, environ["LAKEHOUSE_OPS_TABLE"])
