"""The data-quality scorecard: 0-100 per table and per dimension from assertion and quarantine results."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from statistics import mean

import duckdb

from lakehouse.report.context import Context, quoted, split_name
from lakehouse.report.failures import AssertionOutcome

DIMENSIONS = ("completeness", "validity", "uniqueness", "freshness", "consistency")
QUARANTINE_SUFFIX = "_quarantine"
# Tag of the contract-threshold assertions (definitions/ops/quality.js): scored as incoming data quality.
INCOMING_TAG = "incoming_quality"

# A file assertion's dimension: a tag naming it wins ("freshness", "dq:freshness", "dq_freshness"), else the
# first keyword group its name matches, else validity. Volume checks count as completeness (did all data
# arrive).
_KEYWORDS = (
    ("freshness", ("fresh", "stale", "latency", "sla")),
    ("consistency", ("reconcil", "conserv", "referential", "integrity", "consisten", "matches", "orphan")),
    ("uniqueness", ("unique", "duplicate", "dedup")),
    ("completeness", ("null", "missing", "complete", "volume", "row_count")),
    ("validity", ("accepted", "valid", "range", "format")),
)
_CONDITION = re.compile(r"'((?:[^'\\]|\\.|'')*)'\s+AS\s+failing_row_condition", re.IGNORECASE)
_NOT_NULL = re.compile(r"^\s*\S+\s+IS\s+NOT\s+NULL\s*$", re.IGNORECASE)
_RULES_COLUMN = re.compile(r"rule|reason|failed|error", re.IGNORECASE)


@dataclass
class Check:
    """One scored check: an assertion (or one row condition of it), or one quarantine dimension."""

    table: str
    dimension: str
    name: str
    source: str  # assertion | quarantine
    passed: bool
    failing_rows: int | None
    rows_checked: int | None
    score: float  # 100 × (1 − failing rows / rows checked); 100 or 0 for a check that is not row-level


@dataclass
class Scorecard:
    """Scores 0-100 by table and dimension: ours (row-level pass ratio) and Dataplex's (rules passed)."""

    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _by(self, key) -> dict:
        grouped: dict = {}
        for check in self.checks:
            grouped.setdefault(key(check), []).append(check)
        return grouped

    @property
    def tables(self) -> list[str]:
        return sorted({c.table for c in self.checks})

    def cell(self, table: str, dimension: str) -> float | None:
        """Return one table's score in one dimension: the mean of its checks' scores (None if unmeasured)."""
        scores = [c.score for c in self.checks if c.table == table and c.dimension == dimension]
        return round(mean(scores), 2) if scores else None

    def table_score(self, table: str) -> float | None:
        """Return a table's score: the mean of its measured dimensions."""
        cells = [s for d in DIMENSIONS if (s := self.cell(table, d)) is not None]
        return round(mean(cells), 2) if cells else None

    def dimension_score(self, dimension: str) -> float | None:
        """Return a dimension's score: the mean over the tables measured in it."""
        cells = [s for t in self.tables if (s := self.cell(t, dimension)) is not None]
        return round(mean(cells), 2) if cells else None

    @property
    def overall(self) -> float | None:
        """Return the overall score: the mean of the table scores."""
        scores = [s for t in self.tables if (s := self.table_score(t)) is not None]
        return round(mean(scores), 2) if scores else None

    @staticmethod
    def _pass_ratio(checks: list[Check]) -> float | None:
        return round(100.0 * sum(c.passed for c in checks) / len(checks), 2) if checks else None

    def dataplex(self, table: str | None = None, dimension: str | None = None) -> float | None:
        """Return Dataplex's score of the selection: 100 × rules passed / rules (passed = no failing row)."""
        return self._pass_ratio(
            [c for c in self.checks if table in (None, c.table) and dimension in (None, c.dimension)]
        )

    def to_json(self) -> dict:
        """Return the scorecard as a JSON-ready dict."""
        return {
            "dimensions": list(DIMENSIONS),
            "overall": self.overall,
            "overall_dataplex": self.dataplex(),
            "by_dimension": {
                d: {"score": self.dimension_score(d), "dataplex": self.dataplex(dimension=d)} for d in DIMENSIONS
            },
            "by_table": {
                t: {
                    "score": self.table_score(t),
                    "dataplex": self.dataplex(table=t),
                    "dimensions": {d: self.cell(t, d) for d in DIMENSIONS},
                }
                for t in self.tables
            },
            "checks": [c.__dict__ for c in self.checks],
            "notes": self.notes,
        }


def dimension_of(name: str, tags: tuple[str, ...] = ()) -> str:
    """Return the dimension of a file assertion from its tags, else its name (see _KEYWORDS)."""
    for tag in tags:
        cleaned = tag.lower().removeprefix("dq:").removeprefix("dq_")
        if cleaned in DIMENSIONS:
            return cleaned
    lowered = name.rsplit(".", 1)[-1].lower()
    for dimension, words in _KEYWORDS:
        if any(word in lowered for word in words):
            return dimension
    return "validity"


def condition_dimension(condition: str) -> str:
    """Return completeness for a `col IS NOT NULL` row condition (nonNull), validity for any other."""
    return "completeness" if _NOT_NULL.match(condition) else "validity"


def rule_dimension(rule: str) -> str:
    """Return the dimension of a quarantine rule named `<field>_<rule>` (contracts' rule names)."""
    lowered = rule.lower()
    if lowered.endswith("_required") or "missing" in lowered or "null" in lowered:
        return "completeness"
    if "duplicate" in lowered:
        return "uniqueness"
    return "validity"


def _sql_rule(dimension: str) -> str:
    """Return rule_dimension's test for `dimension` as SQL over a lambda parameter `rule`."""
    if dimension == "completeness":
        return (
            "(lower(rule) LIKE '%\\_required' ESCAPE '\\' OR lower(rule) LIKE '%missing%' OR lower(rule) LIKE '%null%')"
        )
    return "lower(rule) LIKE '%duplicate%'"


def declared_conditions(ctx: Context, name: str) -> list[str]:
    """Return the row conditions a built-in rowConditions assertion checks, read from its compiled query."""
    action = ctx.graph.actions.get(name) if ctx.graph else None
    if action is None:
        return []
    return [c.replace("''", "'") for c in _CONDITION.findall(action.raw.get("query") or "")]


def _score(failing: int, rows: int | None) -> float:
    if not failing:
        return 100.0
    if not rows:
        return 0.0
    return round(max(0.0, 100.0 * (1 - failing / rows)), 4)


def assertion_checks(ctx: Context, found: list[AssertionOutcome], count) -> tuple[list[Check], list[str]]:
    """Return the checks of the run's evaluated assertions, and notes on those left out."""
    checks: list[Check] = []
    left_out = []
    for outcome in found:
        if INCOMING_TAG in outcome.tags:
            continue  # a contract threshold on what arrived: reported as incoming quality, not pipeline health
        if outcome.status in ("not run", "disabled"):
            left_out.append(outcome.short_name)
            continue
        tables = outcome.checks or [outcome.name]
        errored = outcome.status == "error"
        for table in tables:
            rows = count(table)
            if outcome.kind == "uniqueKey":
                failing = _duplicate_rows(ctx, outcome) if outcome.status == "failing" else 0
                checks.append(_check(table, "uniqueness", outcome, failing, rows, errored, row_level=True))
            elif outcome.kind == "rowConditions":
                conditions = declared_conditions(ctx, outcome.name) or list(outcome.conditions) or ["(row conditions)"]
                for condition in conditions:
                    failing = outcome.conditions.get(condition, 0)
                    if outcome.status == "failing" and not outcome.conditions and len(conditions) == 1:
                        failing = outcome.failing_rows or 0
                    check = _check(
                        table, condition_dimension(condition), outcome, failing, rows, errored, row_level=True
                    )
                    check.name = f"{outcome.short_name}: {condition}"
                    checks.append(check)
            else:
                failing = outcome.failing_rows or 0
                checks.append(
                    _check(
                        table,
                        dimension_of(outcome.name, outcome.tags),
                        outcome,
                        failing,
                        rows,
                        errored,
                        False,
                    )
                )
    notes = []
    if left_out:
        notes.append(f"not scored (did not run in this run): {', '.join(sorted(left_out))}")
    return checks, notes


def _check(table, dimension, outcome, failing, rows, errored, row_level) -> Check:
    if errored:
        return Check(table, dimension, outcome.short_name, "assertion", False, None, rows, 0.0)
    score = _score(failing, rows) if row_level else (100.0 if not failing else 0.0)
    return Check(table, dimension, outcome.short_name, "assertion", not failing, failing, rows, score)


def _duplicate_rows(ctx: Context, outcome: AssertionOutcome) -> int:
    # The uniqueKey view has one row per duplicated key with its row count: rows involved = their sum.
    try:
        _, rows = ctx.query(f"SELECT sum(index_row_count) FROM {quoted(outcome.name)}")
        return int(rows[0][0] or 0) or (outcome.failing_rows or 0)
    except (duckdb.Error, ValueError):
        return outcome.failing_rows or 0


def quarantine_checks(ctx: Context, count) -> tuple[list[Check], list[str]]:
    """Return checks from every `<dataset>.<source>_quarantine` table next to its `<dataset>.<source>` table.

    A dimension's score is 100 × (1 − quarantined rows failing a rule of it / rows arrived), rows arrived
    being kept + quarantined + `<source>_duplicates` rows.
    """
    checks: list[Check] = []
    notes: list[str] = []
    names = list(ctx.graph.actions) if ctx.graph else []
    for name in names:
        if not name.endswith(QUARANTINE_SUFFIX) or ctx.graph.actions[name].kind == "assertion":
            continue
        kept_table = name[: -len(QUARANTINE_SUFFIX)]
        quarantined = count(name)
        kept = count(kept_table)
        if quarantined is None or kept is None:
            notes.append(f"quarantine {name} or its table {kept_table} is not in the warehouse: not scored")
            continue
        duplicates = count(f"{kept_table}_duplicates") or 0  # arrived, valid, not the latest version
        total = kept + quarantined + duplicates
        per_dimension = _quarantine_by_dimension(ctx, name, quarantined)
        for dimension, failing in sorted(per_dimension.items()):
            checks.append(
                Check(
                    kept_table,
                    dimension,
                    f"quarantine ({dimension} rules)",
                    "quarantine",
                    failing == 0,
                    failing,
                    total,
                    _score(failing, total),
                )
            )
    return checks, notes


def _quarantine_by_dimension(ctx: Context, name: str, quarantined: int) -> dict[str, int]:
    project, dataset, table = split_name(name)
    columns = ctx.con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = ? "
        "AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [project, dataset, table],
    ).fetchall()
    rules = next((c for c, kind in columns if _RULES_COLUMN.search(c) and kind.endswith("[]")), None)
    if rules is None:
        return {"validity": quarantined}
    # Counted in the warehouse (a quarantine can hold millions of rows); the same mapping as rule_dimension.
    _, rows = ctx.query(
        f"""
        WITH dims AS (
            SELECT list_transform(coalesce("{rules}", []), lambda rule: CASE
                WHEN {_sql_rule("completeness")} THEN 'completeness'
                WHEN {_sql_rule("uniqueness")} THEN 'uniqueness'
                ELSE 'validity' END) AS d
            FROM {quoted(name)}
        )
        SELECT count(*) FILTER (WHERE list_contains(d, 'completeness')),
               count(*) FILTER (WHERE list_contains(d, 'validity') OR len(d) = 0),
               count(*) FILTER (WHERE list_contains(d, 'uniqueness'))
        FROM dims
        """
    )
    completeness, validity, uniqueness = (int(n) for n in rows[0])
    counts = {"completeness": completeness, "validity": validity, "uniqueness": uniqueness}
    # A dimension with no quarantine rule of its kind at all is not measured by the quarantine.
    return {d: n for d, n in counts.items() if n or d != "uniqueness"}


def build(ctx: Context, found: list[AssertionOutcome]) -> Scorecard:
    """Return the scorecard of the reported run."""

    @functools.cache
    def count(table: str) -> int | None:
        try:
            _, rows = ctx.query(f"SELECT count(*) FROM {quoted(table)}")
        except (duckdb.Error, ValueError):
            return None
        return int(rows[0][0])

    card = Scorecard()
    checks, notes = assertion_checks(ctx, found, count)
    card.checks.extend(checks)
    card.notes.extend(notes)
    if ctx.con is not None:
        checks, notes = quarantine_checks(ctx, count)
        card.checks.extend(checks)
        card.notes.extend(notes)
    if not card.checks:
        card.notes.append("no assertion or quarantine result to score: the scorecard is empty")
    return card
