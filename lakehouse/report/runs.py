"""Run records and their history: one run from its JSON file or the ops table, and every run before it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from lakehouse import paths
from lakehouse.engine import records

# Statuses that mean an assertion was evaluated; skipped/disabled ones say nothing about the data.
EVALUATED = ("success", "failed")
FLAKY_WINDOW = 10


class ReportInputError(Exception):
    """There is nothing to report on (no run, unknown run id, unreadable record); the message says what."""


@dataclass
class Run:
    """One run as the report sees it: from runs/<id>.json, or rebuilt from ops.action_runs."""

    run_id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    actions: list[records.ActionResult]
    source: str  # "json" | "table"
    project_dir: str | None = None

    @property
    def crashed(self) -> bool:
        """True when the run never finished (no finish time, still `running`, or a trigger `timeout`)."""
        finished = self.finished_at is not None and self.status in ("success", "failed")
        return self.source in ("json", "trigger") and not finished

    @property
    def assertions(self) -> list[records.ActionResult]:
        return [a for a in self.actions if a.type == "assertion"]


def _parse_time(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def run_from_json(data: dict) -> Run:
    """Return the Run of a record written by lakehouse.engine.records.write_json.

    Raises ReportInputError when a required field is missing.
    """
    try:
        actions = [
            records.ActionResult(
                name=a["name"],
                type=a["type"],
                status=a["status"],
                file_name=a.get("file_name") or "",
                duration_s=float(a.get("duration_s") or 0.0),
                rows_affected=a.get("rows_affected"),
                failing_rows=a.get("failing_rows"),
                severity=a.get("severity"),
                error=a.get("error"),
                note=a.get("note"),
            )
            for a in data.get("actions") or []
        ]
        return Run(
            run_id=data["run_id"],
            started_at=_parse_time(data["started_at"]),
            finished_at=_parse_time(data.get("finished_at")),
            status=data.get("status") or "running",
            actions=actions,
            source="json",
            project_dir=data.get("project_dir"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ReportInputError(f"the run record is malformed: {error!r} is missing or wrong") from error


def run_from_trigger(data: dict) -> tuple[Run, dict[str, list[dict]], list[str]]:
    """Return the run of a `lakehouse trigger --json` report (local or GCP), its failing-row samples by
    assertion, and its compilation errors.

    Raises ReportInputError when the report lacks a required field.
    """
    if not isinstance(data, dict) or "actions" not in data:
        raise ReportInputError("not a trigger report: no 'actions' (write one with `lakehouse trigger --json`)")
    run = run_from_json({**data, "status": data.get("status") or "running"})
    run.source = "trigger"
    # rows are objects of column -> value; a sample of another shape is not one (it was edited): left out
    samples = {
        a["name"]: a["failing_sample"]
        for a in data["actions"]
        if isinstance(a.get("failing_sample"), list) and all(isinstance(row, dict) for row in a["failing_sample"])
    }
    return run, samples, [str(e) for e in data.get("compilation_errors") or []]


def json_runs(home_dir: Path) -> list[Run]:
    """Return every run with a JSON record under home_dir/runs (dry runs excluded), oldest first.

    Raises ReportInputError naming the file when a record (runs/latest.json included) does not parse:
    records are written whole (temporary file + rename), so an unreadable one was damaged from outside,
    and reporting on the runs around it as if it did not exist would hide a run.
    """
    folder = paths.runs_dir(home_dir)
    runs = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ReportInputError("it is not a JSON object")
            if path.name == "latest.json":
                continue
            if data.get("dry_run"):
                continue
            runs.append(run_from_json(data))
        except (OSError, ValueError, RecursionError, ReportInputError) as error:
            raise ReportInputError(_unreadable(path, error)) from None
    return sorted(runs, key=lambda r: (r.started_at, r.run_id))


def _unreadable(path: Path, error: Exception) -> str:
    reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
    if path.name == "latest.json":
        remedy = f"it is only a copy of the newest run's record: delete it (rm {path}); the next run writes it again"
    else:
        remedy = (
            f"move it out of the way (mv {path} {path}.broken) and report again; the actions of a run that "
            f"finished are also in the warehouse table ops.{records.RUNS_TABLE}"
        )
    return f"the run record {path} is unreadable ({reason}); {remedy}"


def ops_table(project: str) -> str:
    """Return the quoted name of the ops run table of `project`."""
    return f'"{project}"."{records.OPS_DATASET}"."{records.RUNS_TABLE}"'


def has_ops_table(con: duckdb.DuckDBPyConnection | None, project: str) -> bool:
    """Return whether "<project>".ops.action_runs exists on this connection."""
    if con is None:
        return False
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? "
        "AND table_name = ?",
        [project, records.OPS_DATASET, records.RUNS_TABLE],
    ).fetchone()[0]
    return bool(found)


def table_runs(con: duckdb.DuckDBPyConnection | None, project: str, limit: int = 200) -> list[Run]:
    """Return the last `limit` runs in "<project>".ops.action_runs, oldest first; [] without the table."""
    if not has_ops_table(con, project):
        return []
    rows = con.execute(
        f"""
        WITH recent AS (
            SELECT run_id, min(started_at) AS started_at FROM {ops_table(project)}
            GROUP BY run_id ORDER BY started_at DESC, run_id DESC LIMIT ?
        )
        SELECT r.run_id, r.started_at, a.action_name, a.action_type, a.status, a.duration_s,
               a.rows_affected, a.failing_rows, a.severity, a.file_name, a.error
        FROM {ops_table(project)} a JOIN recent r USING (run_id)
        ORDER BY r.started_at, r.run_id, a.rowid
        """,
        [limit],
    ).fetchall()
    runs: dict[str, Run] = {}
    for run_id, started, name, kind, status, duration, affected, failing, severity, file_name, error in rows:
        run = runs.get(run_id)
        if run is None:
            run = runs[run_id] = Run(run_id, started, None, "recorded", [], "table")
        run.actions.append(
            records.ActionResult(
                name=name,
                type=kind,
                status=status,
                file_name=file_name or "",
                duration_s=duration or 0.0,
                rows_affected=affected,
                failing_rows=failing,
                severity=severity,
                error=error,
            )
        )
    for run in runs.values():
        run.status = "failed" if any(_counts_as_failure(a) for a in run.actions) else "success"
    return list(runs.values())


def _counts_as_failure(action: records.ActionResult) -> bool:
    if action.status in ("success", "disabled", "planned"):
        return False
    return not (action.type == "assertion" and action.severity == "warn" and action.status == "failed")


def all_runs(home_dir: Path, con: duckdb.DuckDBPyConnection | None, project: str | None) -> list[Run]:
    """Return the runs known from the ops table and the JSON records, merged by run id, oldest first.

    The JSON record wins when both exist (it also knows the finish time and whether the run finished).
    """
    merged: dict[str, Run] = {}
    if project:
        merged.update((r.run_id, r) for r in table_runs(con, project))
    merged.update((r.run_id, r) for r in json_runs(home_dir))
    return sorted(merged.values(), key=lambda r: (r.started_at, r.run_id))


def select_run(runs: list[Run], run_id: str | None, home_dir: Path) -> Run:
    """Return the run called `run_id`, or the latest run when it is None.

    Raises ReportInputError when there is no run at all or no run with that id.
    """
    if not runs:
        raise ReportInputError(
            f"no run is recorded under {home_dir} (no runs/*.json and no ops.action_runs table): "
            "the warehouse is empty; run `lakehouse run` (or `lakehouse up`) first"
        )
    if run_id is None:
        return runs[-1]
    for run in runs:
        if run.run_id == run_id:
            return run
    recent = ", ".join(r.run_id for r in runs[-5:])
    raise ReportInputError(f"no run {run_id!r} under {home_dir}; recent runs: {recent}")


@dataclass
class Streak:
    """How long an assertion has been failing: the first run of the current failing streak."""

    since_run: str
    since: datetime
    runs: int  # evaluated runs in the streak, this one included


@dataclass
class History:
    """Every run's outcome per action, oldest run first, up to and including the reported run."""

    runs: list[Run]
    outcomes: dict[str, list[tuple[Run, records.ActionResult]]] = field(default_factory=dict)

    @classmethod
    def upto(cls, runs: list[Run], run: Run) -> History:
        """Return the history of the runs that started no later than `run` (later ones are ignored)."""
        kept = [r for r in runs if (r.started_at, r.run_id) <= (run.started_at, run.run_id)]
        history = cls(kept)
        for r in kept:
            for action in r.actions:
                history.outcomes.setdefault(action.name, []).append((r, action))
        return history

    def evaluated(self, name: str) -> list[tuple[Run, records.ActionResult]]:
        """Return the (run, result) pairs in which `name` was evaluated (passed or failed), oldest first."""
        return [(r, a) for r, a in self.outcomes.get(name, []) if a.status in EVALUATED]

    def streak(self, name: str) -> Streak | None:
        """Return the current failing streak of `name` ending at the latest run, None when it last passed.

        Runs in which the action was skipped, disabled or not selected neither extend nor break the streak.
        """
        evaluated = self.evaluated(name)
        if not evaluated or evaluated[-1][1].status != "failed":
            return None
        first = len(evaluated) - 1
        while first > 0 and evaluated[first - 1][1].status == "failed":
            first -= 1
        run = evaluated[first][0]
        return Streak(run.run_id, run.started_at, len(evaluated) - first)

    def sequence(self, name: str, window: int = FLAKY_WINDOW) -> list[str]:
        """Return "pass"/"fail" for the last `window` evaluations of `name`, oldest first."""
        return ["fail" if a.status == "failed" else "pass" for _, a in self.evaluated(name)[-window:]]

    def flaky(self, name: str, window: int = FLAKY_WINDOW) -> bool:
        """Return whether `name` alternated: at least two pass/fail flips in its last `window` evaluations.

        One flip is a change of state (it broke, or it was fixed); two or more mean it comes and goes.
        """
        return flips(self.sequence(name, window)) >= 2

    def trend(self, window: int = FLAKY_WINDOW) -> list[RunSummary]:
        """Return a summary per run for the last `window` runs, oldest first."""
        return [RunSummary.of(r) for r in self.runs[-window:]]


def flips(sequence: list[str]) -> int:
    """Return how many times a pass/fail sequence changes state."""
    return sum(1 for before, after in zip(sequence, sequence[1:], strict=False) if before != after)


@dataclass
class RunSummary:
    """One run in a trend: how many assertions passed and failed, failing rows, actions failed, seconds."""

    run_id: str
    started_at: datetime
    status: str
    assertions_passed: int
    assertions_failed: int
    failing_rows: int
    actions_failed: int
    duration_s: float

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        """Return the summary of `run`."""
        assertions = run.assertions
        return cls(
            run_id=run.run_id,
            started_at=run.started_at,
            status="crashed" if run.crashed else run.status,
            assertions_passed=sum(1 for a in assertions if a.status == "success"),
            assertions_failed=sum(1 for a in assertions if a.status == "failed"),
            failing_rows=sum(a.failing_rows or 0 for a in assertions if a.status == "failed"),
            actions_failed=sum(1 for a in run.actions if a.type != "assertion" and a.status == "failed"),
            duration_s=sum(a.duration_s for a in run.actions),
        )
