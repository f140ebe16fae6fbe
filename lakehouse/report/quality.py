"""Incoming data quality per source, read from the ops views: where lines went, rule counts, samples, trends."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb

from lakehouse.report.context import Context

log = logging.getLogger(__name__)

OPS = "ops"
# Where <source>_quarantine and its raw records live (RESTRICTED_SCHEMA in includes/silver.js): the
# samples are read from there and masked before they reach a report anyone may be sent.
RESTRICTED = "silver_restricted"
VIEWS = (
    "source_quality",
    "quarantine_rules",
    "source_quality_dimensions",
    "source_quality_daily",
    "dead_letter_reasons",
    "quarantine_failures",
    "source_quality_run",
    "quarantine_rules_run",
    "source_quality_runs",
)
DIMENSIONS = ("completeness", "validity", "conformity", "uniqueness", "timeliness")
ANY_RULE = "(any rule)"
SAMPLES_PER_RULE = 2
SAMPLE_CHARS = 240
TOP_RULES = 5
TREND_RUNS = 10
MASK = "***"


@dataclass
class RuleCount:
    """Quarantined records failing one rule of a source (a record failing three rules counts under each)."""

    source: str
    rule: str
    dimension: str
    quarantined_rows: int
    quarantined_pct: float | None


@dataclass
class Threshold:
    """One threshold of a contract's quality block and what this report measured against it."""

    name: str  # max_reject_rate, ..., rules.<rule>
    max_rate: float
    observed_rate: float | None
    severity: str

    @property
    def crossed(self) -> bool:
        return self.observed_rate is not None and self.observed_rate > self.max_rate


@dataclass
class RunCounts:
    """What the last run took of one source (its <source>_batch) and where each line went."""

    taken_at: datetime | None  # the run's start, from the intake ledger; None when no run took a line
    ledger_lines: int  # lines the intake ledger records for that run (= lines_taken unless it failed)
    lines_taken: int
    silver_rows: int
    quarantined_rows: int
    quarantined_pct: float | None
    duplicate_rows: int
    late_rows: int
    valid_pct: float | None
    rules: list[RuleCount] = field(default_factory=list)  # failing rules first, then by count
    any_rule: int = 0


@dataclass
class SourceQuality:
    """One source: where every line silver took went, why lines were rejected, and the thresholds."""

    name: str
    lines_taken: int
    silver_rows: int
    quarantined_rows: int
    quarantined_pct: float | None
    duplicate_rows: int
    dead_lettered_rows: int
    late_rows: int
    valid_pct: float | None
    dead_letters: dict[str, int] = field(default_factory=dict)
    rules: list[RuleCount] = field(default_factory=list)  # failing rules first, then by count
    any_rule: int = 0
    dimensions: dict[str, float | None] = field(default_factory=dict)
    thresholds: list[Threshold] | None = None  # None: the contract has no quality block
    samples: dict[str, list[str]] = field(default_factory=dict)  # rule -> masked raw records
    run: RunCounts | None = None  # this run; None when the run views could not be read

    @property
    def score(self) -> float | None:
        """Return the incoming-quality score 0-100 (share of lines taken that passed every rule)."""
        return self.valid_pct

    @property
    def crossed(self) -> list[Threshold]:
        return [t for t in self.thresholds or [] if t.crossed]

    @property
    def status(self) -> str:
        """Return error | warn | ok | empty: the worst crossed threshold, or empty when nothing arrived."""
        if not self.lines_taken:
            return "empty"
        severities = {t.severity for t in self.crossed}
        return "error" if "error" in severities else ("warn" if severities else "ok")


@dataclass
class DailyRow:
    """One source on one ingest day."""

    source: str
    ingest_date: date
    lines_taken: int
    silver_rows: int
    quarantined_rows: int
    duplicate_rows: int
    quarantined_pct: float | None


@dataclass
class RunPoint:
    """One run that took lines, from the intake ledger: per source lines taken, quarantined, valid."""

    taken_at: datetime
    sources: dict[str, dict[str, int]]


@dataclass
class Quality:
    """The incoming-quality part of a report; `notes` say plainly what could not be measured."""

    sources: list[SourceQuality] = field(default_factory=list)
    daily: list[DailyRow] = field(default_factory=list)
    runs: list[RunPoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return bool(self.sources)

    def top_rules(self, limit: int = TOP_RULES) -> list[RuleCount]:
        """Return the rules with the most quarantined records over every source, most first."""
        failing = [r for s in self.sources for r in s.rules if r.quarantined_rows]
        return sorted(failing, key=lambda r: (-r.quarantined_rows, r.source, r.rule))[:limit]

    def to_json(self, run_id: str, started_at: datetime) -> dict:
        """Return the per-source totals of this report, all time and this run, as JSON."""
        return {
            "run_id": run_id,
            "started_at": started_at.isoformat(),
            "sources": {
                s.name: {
                    "this_run": _run_json(s.run),
                    "lines_taken": s.lines_taken,
                    "silver_rows": s.silver_rows,
                    "quarantined_rows": s.quarantined_rows,
                    "duplicate_rows": s.duplicate_rows,
                    "dead_lettered_rows": s.dead_lettered_rows,
                    "late_rows": s.late_rows,
                    "score": s.score,
                    "rules": {r.rule: r.quarantined_rows for r in s.rules},
                    "status": s.status,
                }
                for s in self.sources
            },
            "notes": self.notes,
        }


def _run_json(run: RunCounts | None) -> dict | None:
    if run is None:
        return None
    return {
        "taken_at": run.taken_at.isoformat() if run.taken_at else None,
        "lines_taken": run.lines_taken,
        "silver_rows": run.silver_rows,
        "quarantined_rows": run.quarantined_rows,
        "duplicate_rows": run.duplicate_rows,
        "late_rows": run.late_rows,
        "score": run.valid_pct,
        "rules": {r.rule: r.quarantined_rows for r in run.rules},
    }


def mask_record(raw: str, pii: list[str]) -> str:
    """Return a raw record with the values of the PII fields replaced by *** (JSON or not), clipped."""
    text = raw
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for name in pii:
            if name in parsed and parsed[name] is not None:
                parsed[name] = MASK
        text = json.dumps(parsed, ensure_ascii=False)
    else:
        # Not JSON: mask any "<pii field>": "value" pair the text still holds.
        for name in pii:
            text = re.sub(rf'("{re.escape(name)}"\s*:\s*)"(?:[^"\\]|\\.)*"', rf'\1"{MASK}"', text)
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 1] + "…"


def _view(ctx: Context, name: str) -> str:
    return f'"{ctx.project}"."{OPS}"."{name}"'


def _contracts(ctx: Context) -> dict:
    from ingest.contracts import ContractError, load_contracts

    try:
        return load_contracts(ctx.project_dir)
    except ContractError as error:
        log.info("no contracts: %s", error)
        return {}


def _rows(ctx: Context, sql: str, params: list | None = None) -> list[dict]:
    columns, rows = ctx.query(sql, params)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _pct(value) -> float | None:
    return None if value is None else float(value)


def _thresholds(source: SourceQuality, quality) -> list[Threshold] | None:
    """Return the contract's thresholds measured as its assertions measure them: the dead-letter share over
    all time, every other share over this run's lines (see definitions/ops/quality.js)."""
    if quality is None or quality.empty:
        return None
    run = source.run or RunCounts(None, 0, 0, 0, 0, None, 0, 0, None)
    taken = run.lines_taken
    rate = lambda n, d: n / d if d else None  # noqa: E731 - the same safe_divide as the views
    measured = {
        "max_reject_rate": rate(run.quarantined_rows, taken),
        "max_duplicate_rate": rate(run.duplicate_rows, taken),
        "max_dead_letter_rate": rate(source.dead_lettered_rows, source.lines_taken + source.dead_lettered_rows),
        "max_late_rate": rate(run.late_rows, run.silver_rows + run.duplicate_rows),
    }
    found = [
        Threshold(name, getattr(quality, name), measured[name], quality.severity)
        for name in measured
        if getattr(quality, name) is not None
    ]
    by_rule = {r.rule: r.quarantined_rows for r in run.rules}
    for rule, limit in sorted(quality.rules.items()):
        found.append(Threshold(f"rules.{rule}", limit, rate(by_rule.get(rule, 0), taken), quality.severity))
    return found


def _samples(ctx: Context, source: SourceQuality, pii: list[str]) -> dict[str, list[str]]:
    failing = [r.rule for r in source.rules if r.quarantined_rows]
    if not failing:
        return {}
    table = f'"{ctx.project}"."{RESTRICTED}"."{source.name}_quarantine"'
    try:
        _, rows = ctx.query(
            f"""
            SELECT rule, raw_record FROM (
                SELECT rule, raw_record,
                       row_number() OVER (PARTITION BY rule ORDER BY record_id) AS n
                FROM (SELECT unnest(failed_rules) AS rule, raw_record, record_id FROM {table})
            ) WHERE n <= ? ORDER BY rule, n
            """,
            [SAMPLES_PER_RULE],
        )
    except duckdb.Error as error:
        log.info("no quarantine sample of %s: %s", source.name, error)
        return {}
    samples: dict[str, list[str]] = {}
    for rule, raw in rows:
        samples.setdefault(rule, []).append(mask_record(raw if isinstance(raw, str) else str(raw), pii))
    return samples


def _rule_counts(name: str, rows: list[dict]) -> tuple[list[RuleCount], int]:
    """Return a source's rule counts (most first) and its '(any rule)' count from quarantine_rules rows."""
    found, any_rule = [], 0
    for r in rows:
        if r["source_name"] != name:
            continue
        if r["rule_name"] == ANY_RULE:
            any_rule = int(r["quarantined_rows"])
            continue
        found.append(
            RuleCount(name, r["rule_name"], r["dimension"], int(r["quarantined_rows"]), _pct(r["quarantined_pct"]))
        )
    found.sort(key=lambda r: -r.quarantined_rows)
    return found, any_rule


def _run_counts(row: dict, rules: list[dict]) -> RunCounts:
    counts = RunCounts(
        taken_at=row["taken_at"],
        ledger_lines=int(row["ledger_lines"]),
        lines_taken=int(row["lines_taken"]),
        silver_rows=int(row["silver_rows"]),
        quarantined_rows=int(row["quarantined_rows"]),
        quarantined_pct=_pct(row["quarantined_pct"]),
        duplicate_rows=int(row["duplicate_rows"]),
        late_rows=int(row["late_rows"]),
        valid_pct=_pct(row["valid_pct"]),
    )
    counts.rules, counts.any_rule = _rule_counts(row["source_name"], rules)
    return counts


def _run_points(rows: list[dict]) -> list[RunPoint]:
    """Return the last TREND_RUNS runs that took lines, oldest first, from ops.source_quality_runs rows."""
    by_run: dict[datetime, dict[str, dict[str, int]]] = {}
    for r in rows:
        by_run.setdefault(r["taken_at"], {})[r["source_name"]] = {
            "lines_taken": int(r["lines_taken"]),
            "quarantined_rows": int(r["quarantined_rows"]),
            "valid_rows": int(r["valid_rows"]),
        }
    return [RunPoint(taken_at, by_run[taken_at]) for taken_at in sorted(by_run)[-TREND_RUNS:]]


def build(ctx: Context) -> Quality:
    """Return the incoming quality of every source, from the ops views of the warehouse.

    Never raises for missing inputs: an empty warehouse, views a crashed run never built, or a source
    with no line are said in `notes`.
    """
    found = Quality()
    if ctx.con is None or ctx.project is None:
        found.notes.append(
            "incoming data quality is unknown: the local warehouse is empty (nothing was ingested or run)"
        )
        return found
    missing = [name for name in VIEWS if not ctx.table_exists(ctx.project, OPS, name)]
    if missing:
        found.notes.append(
            f"incoming data quality is unknown: the ops view(s) {', '.join(f'ops.{m}' for m in missing)} are not in "
            f"the warehouse (run {ctx.run.run_id} did not build them: it crashed or did not select definitions/ops)"
        )
        return found
    ops_actions = [a for a in ctx.run.actions if f".{OPS}." in f".{a.name}" and a.type != "assertion"]
    if ctx.run.crashed or any(a.status != "success" for a in ops_actions):
        found.notes.append(
            f"run {ctx.run.run_id} did not finish its ops views: the quality below is what the silver tables "
            "hold now, including lines earlier runs took"
        )
    contracts = _contracts(ctx)
    try:
        by_source = {row["source_name"]: row for row in _rows(ctx, f"SELECT * FROM {_view(ctx, 'source_quality')}")}
        rules = _rows(ctx, f"SELECT * FROM {_view(ctx, 'quarantine_rules')} ORDER BY source_name, rule_order")
        dimensions = _rows(ctx, f"SELECT * FROM {_view(ctx, 'source_quality_dimensions')}")
        dead = _rows(ctx, f"SELECT * FROM {_view(ctx, 'dead_letter_reasons')} ORDER BY source_name, reason")
        daily = _rows(ctx, f"SELECT * FROM {_view(ctx, 'source_quality_daily')} ORDER BY ingest_date, source_name")
        this_run = {row["source_name"]: row for row in _rows(ctx, f"SELECT * FROM {_view(ctx, 'source_quality_run')}")}
        run_rules = _rows(ctx, f"SELECT * FROM {_view(ctx, 'quarantine_rules_run')} ORDER BY source_name, rule_order")
        runs = _rows(ctx, f"SELECT * FROM {_view(ctx, 'source_quality_runs')} ORDER BY taken_at, source_name")
    except duckdb.Error as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        found.notes.append(f"incoming data quality is unknown: the ops views cannot be read ({first})")
        return found
    for name in sorted(by_source):
        row = by_source[name]
        source = SourceQuality(
            name=name,
            lines_taken=int(row["lines_taken"]),
            silver_rows=int(row["silver_rows"]),
            quarantined_rows=int(row["quarantined_rows"]),
            quarantined_pct=_pct(row["quarantined_pct"]),
            duplicate_rows=int(row["duplicate_rows"]),
            dead_lettered_rows=int(row["dead_lettered_rows"]),
            late_rows=int(row["late_rows"]),
            valid_pct=_pct(row["valid_pct"]),
        )
        source.dead_letters = {r["reason"]: int(r["dead_lettered_rows"]) for r in dead if r["source_name"] == name}
        source.rules, source.any_rule = _rule_counts(name, rules)
        if name in this_run:
            source.run = _run_counts(this_run[name], run_rules)
            if source.run.ledger_lines != source.run.lines_taken:
                found.notes.append(
                    f"{name}: the last run took {source.run.lines_taken:,} line(s) but the intake ledger records "
                    f"{source.run.ledger_lines:,} for its latest run: a run failed before recording its intake, "
                    "and the next run takes those lines again"
                )
        scores = {r["dimension"]: _pct(r["score"]) for r in dimensions if r["source_name"] == name}
        source.dimensions = {d: scores.get(d) for d in DIMENSIONS}
        contract = contracts.get(name)
        source.thresholds = _thresholds(source, contract.quality if contract else None)
        source.samples = _samples(ctx, source, contract.pii_fields if contract else [])
        if not source.lines_taken:
            found.notes.append(f"{name}: no line has arrived yet: nothing to score")
        if source.thresholds is None:
            found.notes.append(
                f"{name}: its contract sets no quality thresholds (includes/contracts/{name}.json has no "
                "quality block): rejects are reported but never warned on"
            )
        found.sources.append(source)
    if not by_source:
        found.notes.append("incoming data quality is unknown: ops.source_quality has no source")
    found.daily = [
        DailyRow(
            r["source_name"],
            r["ingest_date"],
            int(r["lines_taken"]),
            int(r["silver_rows"]),
            int(r["quarantined_rows"]),
            int(r["duplicate_rows"]),
            _pct(r["quarantined_pct"]),
        )
        for r in daily
    ]
    found.runs = _run_points(runs)
    latest = max(ctx.runs, key=lambda r: (r.started_at, r.run_id), default=ctx.run)
    if latest.run_id != ctx.run.run_id:
        found.notes.append(
            f"'this run' is what the latest run ({latest.run_id}) took: silver keeps only the last run's batch, "
            f"so the lines run {ctx.run.run_id} took are counted in the trend over runs, not on their own"
        )
    return found


def write(found: Quality, ctx: Context, path: Path) -> Path:
    """Write the run's quality totals, all time and this run; return path."""
    path.write_text(json.dumps(found.to_json(ctx.run.run_id, ctx.run.started_at), indent=2, default=str))
    return path
