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
VIEWS = (
    "source_quality",
    "quarantine_rules",
    "source_quality_dimensions",
    "source_quality_daily",
    "dead_letter_reasons",
    "quarantine_failures",
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
    """One earlier (or this) run's totals per source, from its reports/<run>/quality.json."""

    run_id: str
    started_at: datetime
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
        """Return the per-source totals of this report as the JSON a later report reads for its run trend."""
        return {
            "run_id": run_id,
            "started_at": started_at.isoformat(),
            "sources": {
                s.name: {
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
    if quality is None or quality.empty:
        return None
    taken = source.lines_taken
    rate = lambda n, d: n / d if d else None  # noqa: E731 - the same safe_divide as the views
    measured = {
        "max_reject_rate": rate(source.quarantined_rows, taken),
        "max_duplicate_rate": rate(source.duplicate_rows, taken),
        "max_dead_letter_rate": rate(source.dead_lettered_rows, taken + source.dead_lettered_rows),
        "max_late_rate": rate(source.late_rows, source.silver_rows + source.duplicate_rows),
    }
    found = [
        Threshold(name, getattr(quality, name), measured[name], quality.severity)
        for name in measured
        if getattr(quality, name) is not None
    ]
    by_rule = {r.rule: r.quarantined_rows for r in source.rules}
    for rule, limit in sorted(quality.rules.items()):
        found.append(Threshold(f"rules.{rule}", limit, rate(by_rule.get(rule, 0), taken), quality.severity))
    return found


def _samples(ctx: Context, source: SourceQuality, pii: list[str]) -> dict[str, list[str]]:
    failing = [r.rule for r in source.rules if r.quarantined_rows]
    if not failing:
        return {}
    table = f'"{ctx.project}"."silver"."{source.name}_quarantine"'
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


def _run_points(ctx: Context) -> list[RunPoint]:
    """Return the per-run totals that earlier reports wrote (reports/*/quality.json), up to this run."""
    points = []
    for path in sorted((ctx.home_dir / "reports").glob("*/quality.json")):
        try:
            data = json.loads(path.read_text())
            point = RunPoint(data["run_id"], datetime.fromisoformat(data["started_at"]), data["sources"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("skipping unreadable %s: %s", path, error)
            continue
        if (point.started_at, point.run_id) < (ctx.run.started_at, ctx.run.run_id):
            points.append(point)
    points.sort(key=lambda p: (p.started_at, p.run_id))
    return points[-(TREND_RUNS - 1) :]


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
        for r in rules:
            if r["source_name"] != name:
                continue
            if r["rule_name"] == ANY_RULE:
                source.any_rule = int(r["quarantined_rows"])
                continue
            source.rules.append(
                RuleCount(name, r["rule_name"], r["dimension"], int(r["quarantined_rows"]), _pct(r["quarantined_pct"]))
            )
        source.rules.sort(key=lambda r: -r.quarantined_rows)
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
    found.runs = _run_points(ctx) + [
        RunPoint(ctx.run.run_id, ctx.run.started_at, found.to_json(ctx.run.run_id, ctx.run.started_at)["sources"])
    ]
    return found


def write(found: Quality, ctx: Context, path: Path) -> Path:
    """Write the run's quality totals (read by later reports for their run trend); return path."""
    path.write_text(json.dumps(found.to_json(ctx.run.run_id, ctx.run.started_at), indent=2, default=str))
    return path
