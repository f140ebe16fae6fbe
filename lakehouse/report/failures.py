"""The assertion failure report: each assertion of a run with severity, failing rows, sample, since when."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import duckdb

from lakehouse.engine import records
from lakehouse.report.context import Context, quoted
from lakehouse.report.runs import Streak

log = logging.getLogger(__name__)

SAMPLE_ROWS = 10
# Dataform's built-in assertion names, and those definitions/silver/contracts.js gives the checks it
# generates in their place (includes/checks.js: the same SQL shape, `_whole_table` for the daily ones)
_BUILT_IN = re.compile(r"_assertions_(uniqueKey_\d+|rowConditions)(_whole_table)?$")


@dataclass
class Sample:
    """Up to SAMPLE_ROWS failing rows read from the assertion's view, or why there are none."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    note: str | None = None


@dataclass
class AssertionOutcome:
    """One assertion of the reported run and what its history says about it."""

    name: str
    status: str  # passed | failing | error | not run | disabled
    severity: str
    file_name: str
    failing_rows: int | None
    error: str | None
    duration_s: float
    kind: str  # uniqueKey | rowConditions | file
    checks: list[str]  # the tables it checks (readable names)
    tags: tuple[str, ...] = ()
    description: str = ""
    sample: Sample | None = None
    conditions: dict[str, int] = field(default_factory=dict)  # rowConditions: failing rows per condition
    streak: Streak | None = None
    sequence: list[str] = field(default_factory=list)
    flaky: bool = False

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def failed(self) -> bool:
        return self.status in ("failing", "error")


def status_of(result: records.ActionResult) -> str:
    """Return the report status of an assertion result: passed, failing, error, not run or disabled."""
    if result.status == "success":
        return "passed"
    if result.status == "failed":
        return "failing" if result.failing_rows else "error"
    if result.status == "disabled":
        return "disabled"
    return "not run"


def kind_of(name: str) -> str:
    """Return uniqueKey, rowConditions or file for an assertion's readable name."""
    match = _BUILT_IN.search(name)
    if not match:
        return "file"
    return "uniqueKey" if match.group(1).startswith("uniqueKey") else "rowConditions"


def checked_tables(name: str, dependencies: tuple[str, ...] | list[str]) -> list[str]:
    """Return the table a generated uniqueKey/rowConditions check `name` checks: the dependency whose
    `<schema>_<table>` starts its name (the others are what scope it, the batch), or all of them."""
    short = name.rsplit(".", 1)[-1]
    found = [d for d in dependencies if short.startswith("_".join(d.rsplit(".", 2)[-2:]) + "_assertions_")]
    return found or list(dependencies)


def sample_rows(ctx: Context, name: str, limit: int = SAMPLE_ROWS) -> Sample:
    """Return up to `limit` failing rows from the assertion view `name`, or a Sample saying why not.

    Rows a trigger report carries (sampled when the run ended) are used first.
    """
    if name in ctx.samples:
        rows = ctx.samples[name][:limit]
        columns = list(rows[0]) if rows else []
        return Sample(columns, [tuple(row.get(c) for c in columns) for row in rows], "sampled by the trigger")
    if ctx.con is None:
        return Sample(note="no sample: the local warehouse is empty")
    try:
        columns, rows = ctx.query(f"SELECT * FROM {quoted(name)} LIMIT {int(limit)}")
    except (duckdb.Error, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return Sample(note=f"no sample: the view {name} cannot be read ({first})")
    note = None
    if ctx.run is not ctx.runs[-1]:
        note = f"sampled now, after later runs than {ctx.run.run_id}: the rows may differ from what that run saw"
    return Sample(columns, rows, note)


def condition_counts(ctx: Context, name: str) -> dict[str, int]:
    """Return failing rows per condition of a built-in rowConditions view ({} when it cannot be read)."""
    if ctx.con is None:
        return {}
    try:
        _, rows = ctx.query(f"SELECT failing_row_condition, count(*) FROM {quoted(name)} GROUP BY 1 ORDER BY 2 DESC, 1")
    except (duckdb.Error, ValueError):
        return {}
    return {str(condition): int(count) for condition, count in rows}


def outcomes(ctx: Context) -> list[AssertionOutcome]:
    """Return one outcome per assertion of the run: failing first (errors, then warnings), then the rest."""
    found = []
    for result in ctx.run.assertions:
        action = ctx.graph.actions.get(result.name) if ctx.graph else None
        kind = kind_of(result.name)
        if action is not None and action.parent_action:
            checks = [action.parent_action]
        elif action is not None:
            checks = checked_tables(result.name, action.dependencies) if kind != "file" else list(action.dependencies)
        else:
            checks = []
        description = ""
        if action is not None:
            description = ((action.raw.get("actionDescriptor") or {}).get("description") or "").strip()
        outcome = AssertionOutcome(
            name=result.name,
            status=status_of(result),
            severity=result.severity or "error",
            file_name=result.file_name or (action.file_name if action else "") or "",
            failing_rows=result.failing_rows,
            error=result.error,
            duration_s=result.duration_s,
            kind=kind,
            checks=checks,
            tags=action.tags if action else (),
            description=description,
        )
        if outcome.status == "failing":
            outcome.sample = sample_rows(ctx, result.name)
            if kind == "rowConditions":
                outcome.conditions = condition_counts(ctx, result.name)
        outcome.streak = ctx.history.streak(result.name) if outcome.failed else None
        outcome.sequence = ctx.history.sequence(result.name)
        outcome.flaky = ctx.history.flaky(result.name)
        found.append(outcome)
    order = {"failing": 0, "error": 0, "not run": 1, "passed": 2, "disabled": 3}
    found.sort(key=lambda o: (order[o.status], o.severity != "error", o.name))
    return found


def failed_actions(ctx: Context) -> list[records.ActionResult]:
    """Return the run's actions other than assertions that failed (their dependents were skipped)."""
    return [a for a in ctx.run.actions if a.type != "assertion" and a.status == "failed"]


def plain_notes(ctx: Context, found: list[AssertionOutcome]) -> list[str]:
    """Return the plain statements a reader needs first: crash, nothing to check, empty warehouse, skips."""
    run = ctx.run
    notes = []
    if run.crashed:
        notes.append(
            f"run {run.run_id} did not finish (status {run.status!r}, no finish time): it crashed or was "
            f"stopped midway; only the {len(run.actions)} action(s) it recorded are reported"
        )
    if run.source == "table":
        notes.append(
            f"run {run.run_id} has no JSON record under {ctx.home_dir / 'runs'}; it is rebuilt from ops.action_runs"
        )
    if not run.actions:
        notes.append(f"run {run.run_id} recorded no action at all")
    elif not found:
        notes.append(f"run {run.run_id} executed no assertions ({len(run.actions)} action(s)): nothing was checked")
    not_run = [o for o in found if o.status == "not run"]
    if not_run:
        notes.append(
            f"{len(not_run)} assertion(s) did not run because an upstream action failed: their data is unchecked"
        )
    failed = failed_actions(ctx)
    if failed:
        notes.append(f"{len(failed)} action(s) other than assertions failed: " + ", ".join(a.name for a in failed))
    return ctx.notes + notes
