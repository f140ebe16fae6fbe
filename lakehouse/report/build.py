"""Assemble one run's report: assertion outcomes, notes, trend, flaky assertions, scorecard and lineage."""

from __future__ import annotations

from dataclasses import dataclass, field

from lakehouse.engine import records
from lakehouse.report import failures, lineage, quality, scorecard
from lakehouse.report.context import Context
from lakehouse.report.runs import RunSummary


@dataclass
class Report:
    """Everything the Markdown, HTML and JUnit renderings of one run show."""

    ctx: Context
    outcomes: list[failures.AssertionOutcome]
    failed_actions: list[records.ActionResult]
    notes: list[str]
    trend: list[RunSummary]
    scorecard: scorecard.Scorecard
    lineage: lineage.Lineage
    quality: quality.Quality = field(default_factory=quality.Quality)
    flaky: list[failures.AssertionOutcome] = field(default_factory=list)

    @property
    def run(self):
        return self.ctx.run

    @property
    def failing(self) -> list[failures.AssertionOutcome]:
        return [o for o in self.outcomes if o.failed]

    @property
    def failed_first(self) -> list[failures.AssertionOutcome]:
        """Return the failed assertions: errors first, then warnings."""
        return sorted(self.failing, key=lambda o: o.severity != "error")

    def by_table(self) -> list[tuple[str, list[failures.AssertionOutcome]]]:
        """Return every assertion grouped by the table it checks (its first), tables in name order."""
        grouped: dict[str, list[failures.AssertionOutcome]] = {}
        for outcome in self.outcomes:
            table = outcome.checks[0] if outcome.checks else "(cross-table and file assertions)"
            grouped.setdefault(table, []).append(outcome)
        return sorted(grouped.items())

    def counts(self) -> dict[str, int]:
        """Return the number of assertions per report status."""
        found: dict[str, int] = {}
        for outcome in self.outcomes:
            found[outcome.status] = found.get(outcome.status, 0) + 1
        return found

    def headline(self) -> str:
        """Return one sentence: how many assertions failed, by severity, out of how many."""
        if not self.outcomes:
            return "No assertions ran."
        errors = sum(1 for o in self.failing if o.severity == "error")
        warnings = sum(1 for o in self.failing if o.severity == "warn")
        total = len(self.outcomes)
        if not errors and not warnings:
            return (
                f"All {total} assertions passed."
                if self.counts().get("passed") == total
                else (f"No assertion failed; {total - self.counts().get('passed', 0)} of {total} did not run.")
            )
        return f"{errors} error and {warnings} warning assertion(s) failed, of {total}."


def table_statuses(
    outcomes: list[failures.AssertionOutcome], run_actions: list[records.ActionResult]
) -> dict[str, str]:
    """Return ok | warn | failing | failed per table, from the assertions that check it and its own action."""
    rank = {"ok": 0, "warn": 1, "failing": 2, "failed": 3}
    statuses: dict[str, str] = {}

    def put(table: str, status: str) -> None:
        if rank[status] >= rank.get(statuses.get(table, "ok"), 0):
            statuses[table] = status

    for outcome in outcomes:
        if outcome.status in ("not run", "disabled"):
            continue
        status = "ok" if outcome.status == "passed" else ("warn" if outcome.severity == "warn" else "failing")
        for table in outcome.checks:
            put(table, status)
    for action in run_actions:
        if action.type != "assertion" and action.status == "failed":
            put(action.name, "failed")
    return statuses


def build(ctx: Context, window: int = 10) -> Report:
    """Return the report of ctx.run."""
    found = failures.outcomes(ctx)
    card = scorecard.build(ctx, found)
    graph_lineage = lineage.build(ctx.graph, ctx.project_dir, table_statuses(found, ctx.run.actions))
    return Report(
        ctx=ctx,
        outcomes=found,
        failed_actions=failures.failed_actions(ctx),
        notes=failures.plain_notes(ctx, found),
        trend=ctx.history.trend(window),
        scorecard=card,
        lineage=graph_lineage,
        flaky=[o for o in found if o.flaky],
        quality=quality.build(ctx),
    )
