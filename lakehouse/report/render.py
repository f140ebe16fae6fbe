"""Render a run's report as Markdown and as one self-contained HTML page (inline CSS and SVG, no script)."""

from __future__ import annotations

import base64
import decimal
import functools
from datetime import date, datetime, timedelta
from html import escape

import jinja2
from markupsafe import Markup

from lakehouse.report import lineage
from lakehouse.report.build import Report
from lakehouse.report.failures import AssertionOutcome
from lakehouse.report.quality import DIMENSIONS as QUALITY_DIMENSIONS
from lakehouse.report.quality import Quality, SourceQuality, Threshold
from lakehouse.report.runs import RunSummary
from lakehouse.report.scorecard import DIMENSIONS, Scorecard

CELL_LIMIT = 80


def value_text(value) -> str:
    """Return a sample cell as text: NULL, ISO dates, plain decimals, bytes as base64, long text clipped."""
    if value is None:
        text = "NULL"
    elif isinstance(value, datetime | date):
        text = value.isoformat()
    elif isinstance(value, decimal.Decimal):
        text = format(value, "f")
    elif isinstance(value, bytes | bytearray):
        text = "b64:" + base64.b64encode(bytes(value)).decode()
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= CELL_LIMIT else text[: CELL_LIMIT - 1] + "…"


def age_text(delta: timedelta) -> str:
    """Return a duration as people say it: 45 s, 12 min, 3 h 5 min, 2 days 4 h."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days {seconds % 86400 // 3600} h"


def since_text(report: Report, outcome: AssertionOutcome) -> str:
    """Return how long the assertion has been failing, from the first run of its current failing streak."""
    streak = outcome.streak
    if streak is None:
        return "not failing"
    if streak.runs == 1 and streak.since_run == report.run.run_id:
        return "first failure: this run"
    age = age_text(report.run.started_at - streak.since)
    return (
        f"failing for {streak.runs} runs, since {streak.since:%Y-%m-%d %H:%M:%S} UTC "
        f"(run {streak.since_run}, {age} ago)"
    )


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def score_text(value: float | None) -> str:
    """Return an incoming-quality score as NN.N/100, or — when nothing was measured."""
    return "—" if value is None else f"{value:.1f}/100"


def pct_text(value: float | None) -> str:
    """Return a percentage with one decimal, or — when there is no denominator."""
    return "—" if value is None else f"{value:.1f}%"


def threshold_text(threshold: Threshold) -> str:
    """Return what a threshold allows and what was measured: `max_reject_rate 25.0% (measured 45.8%)`."""
    observed = "—" if threshold.observed_rate is None else f"{100 * threshold.observed_rate:.1f}%"
    return f"{threshold.name} {100 * threshold.max_rate:.1f}% (measured {observed})"


def _rejected(score: float | None, rejected: int, taken: int, pct: float | None, rules: list) -> str:
    text = f"{score_text(score)}: {rejected:,} of {taken:,} lines rejected ({pct_text(pct)})"
    reasons = [f"{r.rule} {r.quarantined_rows:,}" for r in rules if r.quarantined_rows][:3]
    return text + (" — " + ", ".join(reasons) if reasons else "")


def source_line(source: SourceQuality) -> str:
    """Return one plain sentence: how much of a source was rejected and why (its top rules), this run and
    all time, with what was dead-lettered and the thresholds crossed."""
    if not source.lines_taken:
        return f"{source.name}: no line has arrived yet"
    run = source.run
    all_time = _rejected(
        source.score, source.quarantined_rows, source.lines_taken, source.quarantined_pct, source.rules
    )
    if run is None or not run.lines_taken:
        text = f"{source.name}: this run took no line; all time {all_time}"
    elif (run.lines_taken, run.quarantined_rows) == (source.lines_taken, source.quarantined_rows):
        # every line so far came in this run (the first run): one set of numbers, said once
        text = f"{source.name} this run = all time {all_time}"
    else:
        this_run = _rejected(run.valid_pct, run.quarantined_rows, run.lines_taken, run.quarantined_pct, run.rules)
        text = f"{source.name} this run {this_run}; all time {all_time}"
    if source.dead_lettered_rows:
        text += f"; {source.dead_lettered_rows:,} dead-lettered before bronze"
    if source.crossed:
        text += f"; {source.status.upper()}: " + ", ".join(threshold_text(t) for t in source.crossed)
    return text


def run_cells(source: SourceQuality) -> list[str]:
    """Return this run's cells of a source row: score, lines taken, silver, quarantined (%), duplicates, late."""
    run = source.run
    if run is None:
        return ["—"] * 6
    return [
        score_text(run.valid_pct),
        f"{run.lines_taken}",
        f"{run.silver_rows}",
        f"{run.quarantined_rows} ({pct_text(run.quarantined_pct)})",
        f"{run.duplicate_rows}",
        f"{run.late_rows}",
    ]


def dead_letter_text(source: SourceQuality) -> str:
    """Return the dead-lettered count of a source with its reasons: `5 (not_json 3, not_utf8 2)`."""
    if not source.dead_letters:
        return str(source.dead_lettered_rows)
    reasons = ", ".join(f"{reason} {n}" for reason, n in source.dead_letters.items())
    return f"{source.dead_lettered_rows} ({reasons})"


def thresholds_cell(source: SourceQuality) -> str:
    """Return a source's threshold state: none set, all within, or those crossed."""
    if source.thresholds is None:
        return "none set"
    if not source.crossed:
        return f"{len(source.thresholds)} within"
    return f"{source.status}: " + "; ".join(threshold_text(t) for t in source.crossed)


def quality_first_screen_markdown(quality: Quality) -> list[str]:
    """Return the opening lines: per source, how much was rejected and why."""
    lines = ["## Incoming data: how much of each source was rejected, and why", ""]
    if not quality.measured:
        return lines + [f"> {note}" for note in quality.notes] + [""]
    lines += [f"- {_md_cell(source_line(s))}" for s in quality.sources]
    return lines + [""]


def quality_markdown(quality: Quality) -> list[str]:
    """Return the per-source quality section: where lines went, dimensions, rules, samples, trends."""
    lines = ["## Incoming data quality per source", ""]
    if not quality.measured:
        return lines + [f"> {note}" for note in quality.notes] + [""]
    lines += [
        "**This run** is the lines the last run took (`silver_restricted.<source>_batch`, "
        "`ops.source_quality_run`); "
        "**all time** is what the silver tables hold (`ops.source_quality`). The score is the share of lines "
        "taken that passed every rule. Read the same numbers in BigQuery from `ops.source_quality_run`, "
        "`ops.quarantine_rules_run`, `ops.source_quality_runs`, `ops.source_quality`, `ops.quarantine_rules`, "
        "`ops.source_quality_dimensions` and `ops.source_quality_daily`.",
        "",
        "| source | this run: quality | taken | silver | quarantined | duplicates | late "
        "| all time: quality | taken | silver | quarantined | duplicates | dead-lettered | late | thresholds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in quality.sources:
        lines.append(
            f"| {s.name} | " + " | ".join(run_cells(s)) + f" | **{score_text(s.score)}** | {s.lines_taken} | "
            f"{s.silver_rows} | {s.quarantined_rows} ({pct_text(s.quarantined_pct)}) | {s.duplicate_rows} | "
            f"{_md_cell(dead_letter_text(s))} | {s.late_rows} | {_md_cell(thresholds_cell(s))} |"
        )
    lines += ["", "### Score per dimension (0–100)", ""]
    lines.append("| source | " + " | ".join(QUALITY_DIMENSIONS) + " |")
    lines.append("|---|" + "---|" * len(QUALITY_DIMENSIONS))
    for s in quality.sources:
        cells = " | ".join("—" if s.dimensions.get(d) is None else f"{s.dimensions[d]:.1f}" for d in QUALITY_DIMENSIONS)
        lines.append(f"| {s.name} | {cells} |")
    top = quality.top_rules()
    lines += ["", "### Top failing rules", ""]
    if top:
        lines += ["| source | rule | dimension | records | % of lines taken |", "|---|---|---|---|---|"]
        lines += [
            f"| {r.source} | `{r.rule}` | {r.dimension} | {r.quarantined_rows} | {pct_text(r.quarantined_pct)} |"
            for r in top
        ]
    else:
        lines.append("No record was quarantined.")
    for s in quality.sources:
        lines += ["", f"### {s.name}: quarantine per rule", ""]
        failing = [r for r in s.rules if r.quarantined_rows]
        if not failing:
            lines.append("No record failed a rule." if s.lines_taken else "No line has arrived yet.")
            continue
        run_rules = {r.rule: r for r in s.run.rules} if s.run else {}
        lines += ["| rule | dimension | this run | all time | % of lines taken (all time) |", "|---|---|---|---|---|"]
        lines += [
            f"| `{r.rule}` | {r.dimension} | {run_rules[r.rule].quarantined_rows if r.rule in run_rules else '—'} | "
            f"{r.quarantined_rows} | {pct_text(r.quarantined_pct)} |"
            for r in failing
        ]
        lines.append(
            f"| **records with any failed rule** | | **{s.run.any_rule if s.run else '—'}** | **{s.any_rule}** | "
            f"**{pct_text(s.quarantined_pct)}** |"
        )
        passing = len(s.rules) - len(failing)
        lines += ["", f"{passing} other rule(s) of the contract failed no record."]
        if s.samples:
            lines += [
                "",
                "<details>",
                "<summary>Sample of quarantined raw records per rule (PII masked as ***; in clear only in "
                "the restricted dataset silver_restricted)</summary>",
                "",
            ]
            for rule, records in s.samples.items():
                for raw in records:
                    lines.append(f"- `{rule}`: `{raw.replace('`', chr(39))}`")
            lines += ["", "</details>"]
    lines += ["", "### Trend over runs (lines rejected / lines taken by each run, from the intake ledger)", ""]
    names = [s.name for s in quality.sources]
    lines.append("| run started (UTC) | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for point in quality.runs:
        cells = []
        for name in names:
            totals = point.sources.get(name)
            cells.append(f"{totals['quarantined_rows']}/{totals['lines_taken']}" if totals else "—")
        lines.append(f"| {point.taken_at:%Y-%m-%d %H:%M:%S} | " + " | ".join(cells) + " |")
    lines += ["", "### Trend over ingest days (quarantined % of the lines that arrived that day)", ""]
    days = sorted({d.ingest_date for d in quality.daily})
    lines.append("| ingest date | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    by_key = {(d.source, d.ingest_date): d for d in quality.daily}
    for day in days[-14:]:
        cells = []
        for name in names:
            row = by_key.get((name, day))
            cells.append(f"{pct_text(row.quarantined_pct)} of {row.lines_taken}" if row else "—")
        lines.append(f"| {day} | " + " | ".join(cells) + " |")
    lines += [""] + [f"> {note}" for note in quality.notes]
    return lines + [""]


def markdown(report: Report) -> str:
    """Return the report as GitHub-flavoured Markdown: incoming data first, then failures and warnings,
    per-source quality, and the full assertion list by table."""
    run = report.run
    lines = [
        f"# Data-quality report — run {run.run_id}",
        "",
        f"Started {run.started_at:%Y-%m-%d %H:%M:%S} UTC · "
        f"run status **{'crashed' if run.crashed else run.status}**"
        f" · {len(run.actions)} actions · project `{report.ctx.project or '?'}`",
        "",
        *quality_first_screen_markdown(report.quality),
        f"**Pipeline health: {report.headline()}**",
        "",
    ]
    for note in report.notes:
        lines.append(f"> {note}")
    if report.notes:
        lines.append("")
    lines += ["## Failed and warned", ""]
    crossed = [s for s in report.quality.sources if s.crossed]
    for source in crossed:
        lines.append(
            f"- **{source.name}** crossed its contract thresholds ({source.status.upper()}): "
            + ", ".join(threshold_text(t) for t in source.crossed)
        )
    if crossed:
        lines.append("")
    if not report.failing and not crossed:
        lines += ["None.", ""]
    for outcome in report.failed_first:
        rows = "could not run" if outcome.status == "error" else f"{outcome.failing_rows} failing row(s)"
        lines += [
            f"### {outcome.short_name} — {outcome.severity.upper()}",
            "",
            f"- assertion: `{outcome.name}`",
            f"- defined in: `{outcome.file_name}`",
            f"- result: {rows}",
            f"- since: {since_text(report, outcome)}",
        ]
        if outcome.checks:
            lines.append(f"- checks: {', '.join(f'`{t}`' for t in outcome.checks)}")
        if outcome.flaky:
            lines.append(f"- **flaky**: last evaluations {' → '.join(outcome.sequence)}")
        if outcome.error and outcome.status == "error":
            lines.append(f"- error: {outcome.error}")
        if outcome.conditions:
            lines.append(
                "- failing rows per condition: " + ", ".join(f"`{c}`: {n}" for c, n in outcome.conditions.items())
            )
        sample = outcome.sample
        if sample and sample.columns:
            lines += ["", f"Sample ({len(sample.rows)} of {outcome.failing_rows} rows):", ""]
            lines.append("| " + " | ".join(_md_cell(c) for c in sample.columns) + " |")
            lines.append("|" + "---|" * len(sample.columns))
            for row in sample.rows:
                lines.append("| " + " | ".join(_md_cell(value_text(v)) for v in row) + " |")
        if sample and sample.note:
            lines += ["", f"_{sample.note}_"]
        lines.append("")
    if report.failed_actions:
        lines += ["## Actions that failed", "", "| action | type | file | error |", "|---|---|---|---|"]
        for action in report.failed_actions:
            lines.append(f"| `{action.name}` | {action.type} | `{action.file_name}` | {_md_cell(action.error or '')} |")
        lines.append("")
    lines += quality_markdown(report.quality)
    lines += ["## All assertions, by table", ""]
    if report.outcomes:
        for table, outcomes in report.by_table():
            passed = sum(1 for o in outcomes if o.status == "passed")
            lines += [
                "<details>",
                f"<summary>{escape(table)}: {passed} of {len(outcomes)} passed</summary>",
                "",
                "| assertion | severity | status | failing rows | file |",
                "|---|---|---|---|---|",
            ]
            for o in outcomes:
                rows = "" if o.failing_rows is None else str(o.failing_rows)
                lines.append(f"| {o.short_name} | {o.severity} | {o.status} | {rows} | `{o.file_name}` |")
            lines += ["", "</details>", ""]
    else:
        lines.append("No assertion ran in this run.")
    lines += [
        "",
        "## Trend (last runs)",
        "",
        "| run | started (UTC) | status | passed | failed | failing rows | actions failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report.trend:
        lines.append(
            f"| {s.run_id} | {s.started_at:%Y-%m-%d %H:%M:%S} | {s.status} | {s.assertions_passed} | "
            f"{s.assertions_failed} | {s.failing_rows} | {s.actions_failed} |"
        )
    lines += ["", "## Flaky assertions", ""]
    if report.flaky:
        for o in report.flaky:
            lines.append(f"- `{o.short_name}`: {' → '.join(o.sequence)}")
    else:
        lines.append("None (flaky = at least two pass/fail flips in the last 10 evaluations).")
    lines += ["", *scorecard_markdown(report.scorecard)]
    return "\n".join(lines) + "\n"


def scorecard_markdown(card: Scorecard) -> list[str]:
    """Return the scorecard section as Markdown lines."""
    lines = ["## Pipeline health scorecard (assertions on the tables, 0–100)", ""]
    if not card.checks:
        return lines + [f"> {note}" for note in card.notes] + [""]
    lines.append("| table | score | Dataplex-style | " + " | ".join(DIMENSIONS) + " |")
    lines.append("|---|---|---|" + "---|" * len(DIMENSIONS))
    for table in card.tables:
        cells = " | ".join(_score(card.cell(table, d)) for d in DIMENSIONS)
        lines.append(
            f"| `{table}` | {_score(card.table_score(table))} | {_score(card.dataplex(table=table))} | {cells} |"
        )
    cells = " | ".join(_score(card.dimension_score(d)) for d in DIMENSIONS)
    lines.append(f"| **all tables** | **{_score(card.overall)}** | {_score(card.dataplex())} | {cells} |")
    lines.append("")
    lines.append(
        "Score: mean of per-check pass ratios (1 − failing rows / rows checked); Dataplex-style: share of "
        "checks with no failing row. See docs/reports.md."
    )
    lines += [f"> {note}" for note in card.notes]
    return lines + [""]


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111827;
max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #e5e7eb}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #e5e7eb;padding:4px 8px;text-align:left}
th{background:#f9fafb}.note{background:#fff7ed;border-left:4px solid #f97316;padding:6px 10px;margin:6px 0}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;margin:12px 0}
.sev-error{background:#b91c1c;color:#fff;border-radius:4px;padding:1px 6px;font-size:12px}
.sev-warn{background:#c2410c;color:#fff;border-radius:4px;padding:1px 6px;font-size:12px}
.flaky{background:#7c3aed;color:#fff;border-radius:4px;padding:1px 6px;font-size:12px}
code{background:#f3f4f6;padding:0 3px;border-radius:3px}.scroll{overflow-x:auto}
.status-warn{color:#c2410c;font-weight:600}.status-error{color:#b91c1c;font-weight:600}
.samples code{font-size:11px;word-break:break-all}details{margin:6px 0}
.passed{color:#15803d}.failing,.error{color:#b91c1c}.not-run{color:#92400e}
"""


def _score_style(value: float | None) -> str:
    if value is None:
        return "background:#f9fafb;color:#9ca3af"
    hue = int(120 * value / 100)  # red 0 → green 120
    return f"background:hsl({hue},70%,88%)"


def trend_svg(trend: list[RunSummary]) -> str:
    """Return stacked bars of passed/failed assertions per run, oldest left (inline SVG)."""
    if not trend:
        return "<p>No runs.</p>"
    width, height, pad = max(240, 46 * len(trend) + 40), 150, 24
    top = max(1, max(s.assertions_passed + s.assertions_failed for s in trend))
    scale = (height - 2 * pad) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="10" role="img"><title>Assertions per run</title>'
    ]
    for i, s in enumerate(trend):
        x = 30 + i * 46
        failed_h, passed_h = s.assertions_failed * scale, s.assertions_passed * scale
        base = height - pad
        parts.append(
            f'<rect class="bar-passed" x="{x}" y="{base - passed_h:.1f}" width="30" height="{passed_h:.1f}" '
            f'fill="#86efac"><title>{escape(s.run_id)}: {s.assertions_passed} passed</title></rect>'
        )
        parts.append(
            f'<rect class="bar-failed" x="{x}" y="{base - passed_h - failed_h:.1f}" width="30" '
            f'height="{failed_h:.1f}" fill="#fca5a5"><title>{escape(s.run_id)}: {s.assertions_failed} failed'
            f"</title></rect>"
        )
        parts.append(f'<text x="{x}" y="{height - 8}">{s.started_at:%H:%M}</text>')
    parts.append(f'<text x="4" y="14">passed (green) / failed (red) assertions, max {top}</text></svg>')
    return "".join(parts)


def scorecard_html(card: Scorecard) -> str:
    """Return the scorecard as an HTML table with cells shaded red (0) to green (100)."""
    if not card.checks:
        return "".join(f'<p class="note">{escape(n)}</p>' for n in card.notes)
    head = "".join(f"<th>{d}</th>" for d in DIMENSIONS)
    rows = [f'<table class="scorecard"><tr><th>table</th><th>score</th><th>Dataplex-style</th>{head}</tr>']
    for table in card.tables:
        cells = "".join(
            f'<td style="{_score_style(card.cell(table, d))}">{_score(card.cell(table, d))}</td>' for d in DIMENSIONS
        )
        score = card.table_score(table)
        rows.append(
            f"<tr><td><code>{escape(table)}</code></td>"
            f'<td style="{_score_style(score)}"><b>{_score(score)}</b>'
            f"</td><td>{_score(card.dataplex(table=table))}</td>{cells}</tr>"
        )
    cells = "".join(
        f'<td style="{_score_style(card.dimension_score(d))}">{_score(card.dimension_score(d))}</td>'
        for d in DIMENSIONS
    )
    rows.append(
        "<tr><td><b>all tables</b></td>"
        f'<td style="{_score_style(card.overall)}"><b>{_score(card.overall)}</b></td>'
        f"<td>{_score(card.dataplex())}</td>{cells}</tr></table>"
    )
    rows.append(
        "<p>Score: mean of per-check pass ratios (1 − failing rows / rows checked). Dataplex-style: share of "
        "checks with no failing row. — means the dimension is not measured for that table.</p>"
    )
    rows.extend(f'<p class="note">{escape(n)}</p>' for n in card.notes)
    return "".join(rows)


PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#4b5563")


def quality_svg(quality: Quality) -> str:
    """Return a line per source of its incoming-quality score (share of lines valid) per ingest day (SVG)."""
    days = sorted({d.ingest_date for d in quality.daily})
    names = sorted({d.source for d in quality.daily})
    if not days:
        return "<p>No ingest day to chart yet.</p>"
    width, height, left, pad = max(320, 60 * len(days) + 160), 200, 40, 24
    step = (width - left - 140) / max(1, len(days) - 1)
    by_key = {(d.source, d.ingest_date): d for d in quality.daily}

    def y(score: float) -> float:
        return pad + (100 - score) * (height - 2 * pad) / 100

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="quality-trend" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="10" role="img"><title>Incoming quality per ingest day</title>'
    ]
    for score in (0, 50, 100):
        parts.append(
            f'<line x1="{left}" x2="{width - 140}" y1="{y(score):.1f}" y2="{y(score):.1f}" stroke="#e5e7eb"/>'
            f'<text x="4" y="{y(score) + 3:.1f}">{score}</text>'
        )
    for i, day in enumerate(days):
        parts.append(f'<text x="{left + i * step - 14:.1f}" y="{height - 6}">{day:%m-%d}</text>')
    for n, name in enumerate(names):
        color = PALETTE[n % len(PALETTE)]
        points = []
        for i, day in enumerate(days):
            row = by_key.get((name, day))
            if row is None or row.quarantined_pct is None:
                continue
            score = 100 - row.quarantined_pct
            points.append((left + i * step, y(score), f"{name} {day}: {score:.1f}/100 of {row.lines_taken} lines"))
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{yy:.1f}" for x, yy, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, yy, label in points:
            parts.append(
                f'<circle class="quality-point" cx="{x:.1f}" cy="{yy:.1f}" r="3" fill="{color}">'
                f"<title>{escape(label)}</title></circle>"
            )
        parts.append(f'<text x="{width - 130}" y="{pad + 14 * n}" fill="{color}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("lakehouse.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def html(report: Report) -> str:
    """Return the report as one self-contained HTML page, rendered from templates/report.html.j2."""
    run = report.run
    return (
        _templates()
        .get_template("report.html.j2")
        .render(
            run=run,
            status="crashed" if run.crashed else run.status,
            project=report.ctx.project or "?",
            css=Markup(CSS),
            headline=report.headline(),
            notes=report.notes,
            quality=report.quality,
            failing=report.failed_first,
            failed_actions=report.failed_actions,
            outcomes=report.outcomes,
            by_table=report.by_table(),
            flaky=report.flaky,
            dimensions=QUALITY_DIMENSIONS,
            source_line=source_line,
            run_cells=run_cells,
            threshold_text=threshold_text,
            thresholds_cell=thresholds_cell,
            dead_letter_text=dead_letter_text,
            score_text=score_text,
            pct_text=pct_text,
            score_style=_score_style,
            value_text=value_text,
            since_text=lambda outcome: since_text(report, outcome),
            # generated below with every value escaped; the template must not escape them again
            quality_svg=Markup(quality_svg(report.quality)),
            trend_svg=Markup(trend_svg(report.trend)),
            scorecard_html=Markup(scorecard_html(report.scorecard)),
            lineage_svg=Markup(lineage.svg(report.lineage)),
        )
    )
