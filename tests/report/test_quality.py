"""Incoming data quality: the ops views against the tables they count, and the report that shows them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from models.project import KIT_VARS
from report.test_dashboard import CHROMIUM, needs_chromium, render

from ingest.contracts import load_contracts
from lakehouse import paths, warehouse
from lakehouse.engine import translate
from lakehouse.report import publish
from lakehouse.report.build import build
from lakehouse.report.context import open_context
from lakehouse.report.junit import JUNIT_XSD
from lakehouse.report.quality import mask_record

REPO = Path(__file__).resolve().parents[2]
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
PROJECT = "lakehouse-dev"
SOURCES = sorted(load_contracts(REPO))
CONTRACTS = load_contracts(REPO)

pytestmark = pytest.mark.slow


def lakehouse(home: Path, *args: str) -> str:
    done = subprocess.run(
        [LAKEHOUSE, *args],
        cwd=REPO,
        env={**os.environ, "LAKEHOUSE_HOME": str(home), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"lakehouse {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Path:
    """A warehouse after two runs: 2,000 events (seed 5, every fault kind), a run, 600 more (seed 6), a run."""
    home = tmp_path_factory.mktemp("quality-home")
    lakehouse(
        home, "generate", "--events", "2000", "--seed", "5", "--pubsub-share", "0.3",
        "--batch-size", "100", "--in-process-bus",
    )  # fmt: skip
    lakehouse(home, "run", "--now", "2026-11-30T12:00:00Z")
    lakehouse(
        home, "generate", "--events", "600", "--seed", "6", "--pubsub-share", "0.3",
        "--batch-size", "100", "--in-process-bus",
    )  # fmt: skip
    lakehouse(home, "run", "--now", "2026-11-30T13:00:00Z")
    return home


def rows(home: Path, sql: str) -> list[tuple]:
    con = warehouse.connect(home, [PROJECT], read_only=True)
    try:
        translate.register_functions(con)  # the views call the engine's BigQuery macros
        return con.execute(sql).fetchall()
    finally:
        con.close()


def one(home: Path, sql: str):
    return rows(home, sql)[0][0]


def t(dataset: str, name: str) -> str:
    return f'"{PROJECT}"."{dataset}"."{name}"'


def dead_letter_files(home: Path) -> dict[tuple[str, str], int]:
    """Return dead-letter records per (source, reason), counted from the bucket's JSONL files directly."""
    counts: dict[tuple[str, str], int] = {}
    bucket = paths.gcs_root(home) / KIT_VARS["dead_letter_bucket"]
    for path in bucket.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            key = (record["source"], record["reason"])
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_source_quality_matches_the_silver_tables_exactly(loaded):
    view = {r[0]: r[1:] for r in rows(loaded, f"SELECT * FROM {t('ops', 'source_quality')}")}
    assert sorted(view) == SOURCES
    dead = dead_letter_files(loaded)
    for source in SOURCES:
        event = CONTRACTS[source].event_time
        silver = one(loaded, f"SELECT count(*) FROM {t('silver', source)}")
        quarantined = one(loaded, f"SELECT count(*) FROM {t('silver_restricted', source + '_quarantine')}")
        duplicates = one(loaded, f"SELECT count(*) FROM {t('silver', source + '_duplicates')}")
        bronze = one(loaded, f"SELECT count(*) FROM {t('bronze', source + '_landing')}") + one(
            loaded, f"SELECT count(*) FROM {t('bronze', source + '_raw')}"
        )
        late = one(
            loaded,
            f"SELECT count(*) FROM (SELECT {event} AS e, ingested_at FROM {t('silver', source)} UNION ALL "
            f"SELECT {event}, ingested_at FROM {t('silver', source + '_duplicates')}) "
            "WHERE ingested_at - e >= INTERVAL 24 HOUR",
        )
        taken = silver + quarantined + duplicates
        assert taken == bronze > 0, source
        assert quarantined > 0, source  # every source has faults the rules catch
        expected = (
            taken,
            silver,
            quarantined,
            round(100 * quarantined / taken, 1),
            duplicates,
            sum(n for (s, _), n in dead.items() if s == source),
            late,
            round(100 * (silver + duplicates) / taken, 1),
        )
        assert tuple(float(v) if isinstance(v, float) else v for v in view[source]) == expected, source


def test_dead_letter_reasons_match_the_bucket(loaded):
    view = {(s, r): n for s, r, n in rows(loaded, f"SELECT * FROM {t('ops', 'dead_letter_reasons')}")}
    assert view == dead_letter_files(loaded)
    assert sum(view.values()) > 0


def test_quarantine_rules_count_each_rule_and_any_rule(loaded):
    found = rows(
        loaded,
        f"SELECT source_name, rule_name, rule_order, quarantined_rows FROM {t('ops', 'quarantine_rules')} "
        "ORDER BY source_name, rule_order",
    )
    for source in SOURCES:
        table = t("silver_restricted", source + "_quarantine")
        per_rule = dict(
            rows(loaded, f"SELECT r, count(*) FROM (SELECT unnest(failed_rules) AS r FROM {table}) GROUP BY r")
        )
        mine = [(name, order, n) for s, name, order, n in found if s == source]
        assert mine[0] == ("(any rule)", 0, one(loaded, f"SELECT count(*) FROM {table}"))
        # every rule of the contract, in silver's order, each with its exact count (zero included)
        assert [name for name, _, _ in mine[1:]] == CONTRACTS[source].quarantine_rules
        assert {name: n for name, _, n in mine[1:] if n} == per_rule
    orders = {name: n for s, name, _, n in found if s == "orders"}
    # the generator's order faults trip their rules (customer_id null, sku_ ids, string quantities, …)
    for rule in ("customer_id_required", "product_id_pattern", "quantity_type", "quantity_min", "price_required"):
        assert orders[rule] > 0, rule


def test_dimension_scores_count_each_record_once_per_dimension(loaded):
    found = {
        (s, d): (failing, checked, score)
        for s, d, failing, checked, score in rows(loaded, f"SELECT * FROM {t('ops', 'source_quality_dimensions')}")
    }
    table = t("silver_restricted", "orders_quarantine")
    required = "len(list_filter(failed_rules, lambda r: ends_with(r, '_required'))) > 0"
    completeness = one(loaded, f"SELECT count(*) FROM {table} WHERE {required}")
    taken, duplicates = rows(
        loaded, f"SELECT lines_taken, duplicate_rows FROM {t('ops', 'source_quality')} WHERE source_name = 'orders'"
    )[0]
    assert found[("orders", "completeness")] == (completeness, taken, round(100 * (1 - completeness / taken), 1))
    assert found[("orders", "uniqueness")] == (duplicates, taken, round(100 * (1 - duplicates / taken), 1))
    assert {d for s, d in found if s == "orders"} == {
        "completeness",
        "validity",
        "conformity",
        "uniqueness",
        "timeliness",
    }


def test_daily_rows_add_up_to_the_totals(loaded):
    daily = rows(
        loaded,
        f"SELECT source_name, sum(lines_taken), sum(quarantined_rows) FROM {t('ops', 'source_quality_daily')} "
        "GROUP BY 1 ORDER BY 1",
    )
    totals = rows(
        loaded, f"SELECT source_name, lines_taken, quarantined_rows FROM {t('ops', 'source_quality')} ORDER BY 1"
    )
    assert daily == totals


def test_this_run_counts_the_batch_exactly(loaded):
    """ops.source_quality_run and quarantine_rules_run against direct counts of the last run's batch."""
    view = {r[0]: r[1:] for r in rows(loaded, f"SELECT * FROM {t('ops', 'source_quality_run')}")}
    run_rules = rows(loaded, f"SELECT source_name, rule_name, quarantined_rows FROM {t('ops', 'quarantine_rules_run')}")
    assert sorted(view) == SOURCES
    for source in SOURCES:
        batch = t("silver_restricted", source + "_batch")
        in_batch = f"WHERE record_id IN (SELECT record_id FROM {batch})"
        taken = one(loaded, f"SELECT count(*) FROM {batch}")
        silver = one(loaded, f"SELECT count(*) FROM {t('silver', source)} {in_batch}")
        quarantined = one(loaded, f"SELECT count(*) FROM {t('silver_restricted', source + '_quarantine')} {in_batch}")
        duplicates = one(loaded, f"SELECT count(*) FROM {t('silver', source + '_duplicates')} {in_batch}")
        ledger = rows(
            loaded,
            f"SELECT taken_at, sum(record_count) FROM {t('ops', source + '_intake')} "
            f"WHERE taken_at = (SELECT max(taken_at) FROM {t('ops', source + '_intake')}) GROUP BY taken_at",
        )[0]
        assert silver + quarantined + duplicates == taken == ledger[1] > 0, source
        taken_at, ledger_lines, lines, kept, rejected, pct, dups, _late, valid = view[source]
        assert (taken_at, ledger_lines) == ledger, source
        assert (lines, kept, rejected, dups) == (taken, silver, quarantined, duplicates), source
        assert (float(pct), float(valid)) == (
            round(100 * quarantined / taken, 1),
            round(100 * (silver + duplicates) / taken, 1),
        ), source
        per_rule = dict(
            rows(loaded, f"SELECT r, count(*) FROM (SELECT unnest(failed_rules) AS r FROM {batch}) GROUP BY r")
        )
        mine = {rule: n for s, rule, n in run_rules if s == source}
        assert mine.pop("(any rule)") == quarantined, source
        assert {rule: n for rule, n in mine.items() if n} == per_rule, source
    # the second run took fewer lines than everything silver holds
    orders_all = one(loaded, f"SELECT lines_taken FROM {t('ops', 'source_quality')} WHERE source_name = 'orders'")
    assert 0 < view["orders"][2] < orders_all


def test_trend_over_runs_comes_from_the_intake_ledger(loaded):
    trend = rows(
        loaded,
        "SELECT source_name, taken_at, lines_taken, quarantined_rows, valid_rows "
        f"FROM {t('ops', 'source_quality_runs')} ORDER BY source_name, taken_at",
    )
    totals = {
        r[0]: r[1:]
        for r in rows(loaded, f"SELECT source_name, lines_taken, quarantined_rows FROM {t('ops', 'source_quality')}")
    }
    last = {
        r[0]: r[1:]
        for r in rows(
            loaded, f"SELECT source_name, taken_at, lines_taken, quarantined_rows FROM {t('ops', 'source_quality_run')}"
        )
    }
    for source in SOURCES:
        mine = [r[1:] for r in trend if r[0] == source]
        assert len(mine) == 2, source  # two runs took lines of every source
        assert (sum(r[1] for r in mine), sum(r[2] for r in mine)) == totals[source], source
        assert all(taken == rejected + valid for _, taken, rejected, valid in mine), source
        assert mine[-1][:3] == last[source], source


def test_the_report_shows_the_view_numbers_first(loaded, tmp_path):
    written, summary = publish(REPO, loaded, out_dir=tmp_path / "out")
    taken, quarantined, pct, valid = rows(
        loaded,
        f"SELECT lines_taken, quarantined_rows, quarantined_pct, valid_pct FROM {t('ops', 'source_quality')} "
        "WHERE source_name = 'orders'",
    )[0]
    run_taken, run_quarantined, run_pct, run_valid = rows(
        loaded,
        f"SELECT lines_taken, quarantined_rows, quarantined_pct, valid_pct FROM {t('ops', 'source_quality_run')} "
        "WHERE source_name = 'orders'",
    )[0]
    this_run = (
        f"orders this run {run_valid:.1f}/100: {run_quarantined:,} of {run_taken:,} lines rejected ({run_pct:.1f}%) — "
    )
    all_time = f"; all time {valid:.1f}/100: {quarantined:,} of {taken:,} lines rejected ({pct:.1f}%) — "
    markdown = written["markdown"].read_text()
    first_screen = markdown[: markdown.index("**Pipeline health:")]
    line = next(row for row in first_screen.splitlines() if row.startswith("- orders "))
    assert line.startswith(f"- {this_run}") and all_time in line, line
    assert any(s.startswith(f"incoming {this_run}") for s in summary)
    assert "this is not the quality of the incoming data" in summary[-1]
    assert markdown.index("## Failed and warned") < markdown.index("## Incoming data quality per source")
    assert markdown.index("## Incoming data quality per source") < markdown.index("## All assertions, by table")
    assert f"| orders | {run_valid:.1f}/100 | {run_taken} |" in markdown
    assert f"| **{valid:.1f}/100** | {taken} |" in markdown
    assert "> inventory: its contract sets no quality thresholds" in markdown

    quality = json.loads(written["quality"].read_text())
    assert quality["sources"]["orders"]["lines_taken"] == taken
    assert quality["sources"]["orders"]["quarantined_rows"] == quarantined
    assert quality["sources"]["orders"]["this_run"]["lines_taken"] == run_taken
    assert quality["sources"]["orders"]["this_run"]["quarantined_rows"] == run_quarantined


def test_thresholds_crossed_match_the_assertion_rows(loaded):
    with open_context(REPO, loaded) as ctx:
        report = build(ctx)
    orders = next(s for s in report.quality.sources if s.name == "orders")
    crossed = sorted(th.name for th in orders.crossed)
    failing = rows(loaded, f"SELECT threshold FROM {t('assertions', 'orders_quality_thresholds')} ORDER BY 1")
    assert crossed == [r[0] for r in failing]
    assert "max_reject_rate" in crossed
    assert orders.status == "warn"  # the contract says warn: the run still succeeds
    outcome = next(o for o in report.outcomes if o.short_name == "orders_quality_thresholds")
    assert (outcome.status, outcome.severity, outcome.failing_rows) == ("failing", "warn", len(crossed))
    inventory = next(s for s in report.quality.sources if s.name == "inventory")
    assert inventory.thresholds is None and inventory.status == "ok"


def test_samples_mask_every_pii_field(loaded):
    with open_context(REPO, loaded) as ctx:
        report = build(ctx)
    orders = next(s for s in report.quality.sources if s.name == "orders")
    assert set(orders.samples) == {r.rule for r in orders.rules if r.quarantined_rows}
    table = t("silver_restricted", "orders_quarantine")
    emails = rows(
        loaded,
        f"SELECT json_extract_string(raw_record, '$.customer_email') FROM {table} WHERE json_valid(raw_record)",
    )
    real = {e for (e,) in emails if e}
    shown = " ".join(raw for records in orders.samples.values() for raw in records)
    assert real and not any(email in shown for email in real)
    assert '"customer_email": "***"' in shown


def test_junit_carries_a_testcase_per_source(loaded, tmp_path):
    written, _ = publish(REPO, loaded, out_dir=tmp_path / "out")
    xmlschema.XMLSchema(JUNIT_XSD).validate(str(written["junit"]))
    root = ET.parse(written["junit"]).getroot()
    suite = next(s for s in root.iter("testsuite") if s.get("name") == "incoming data quality")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert sorted(cases) == SOURCES
    props = {p.get("name"): p.get("value") for p in cases["orders"].iter("property")}
    taken, quarantined = rows(
        loaded, f"SELECT lines_taken, quarantined_rows FROM {t('ops', 'source_quality')} WHERE source_name = 'orders'"
    )[0]
    assert (props["lines_taken"], props["quarantined_rows"]) == (str(taken), str(quarantined))
    assert "WARN: max_reject_rate 0.25 crossed" in cases["orders"].find("system-out").text


def test_the_report_trends_over_the_runs_of_the_ledger(loaded):
    with open_context(REPO, loaded) as ctx:
        report = build(ctx)
    trend = rows(
        loaded,
        f"SELECT taken_at, source_name, lines_taken, quarantined_rows FROM {t('ops', 'source_quality_runs')} "
        "ORDER BY taken_at, source_name",
    )
    assert [p.taken_at for p in report.quality.runs] == sorted({r[0] for r in trend})
    assert len(report.quality.runs) == 2
    assert [
        (p.taken_at, name, n["lines_taken"], n["quarantined_rows"])
        for p in report.quality.runs
        for name, n in sorted(p.sources.items())
    ] == trend


def screenshot(page: Path, out: Path, tmp_path: Path, height: int = 900) -> Path:
    """Return `out`, a PNG of the top `height` pixels of `page` taken by headless Chromium."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-shots'}",
            f"--window-size=1280,{height}",
            "--virtual-time-budget=5000",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_mask_record_masks_json_and_broken_json():
    pii = ["customer_email", "customer_name"]
    assert mask_record('{"customer_email": "a@b.c", "customer_name": null, "x": 1}', pii) == (
        '{"customer_email": "***", "customer_name": null, "x": 1}'
    )
    assert mask_record('{"customer_email": "a@b.c", "x": ', pii) == '{"customer_email": "***", "x": '
    assert mask_record("x" * 500, pii) == "x" * 239 + "…"


@needs_chromium
def test_chromium_draws_quality_over_time_and_screenshots_the_report(loaded, tmp_path):
    written, _ = publish(REPO, loaded, out_dir=tmp_path / "out")
    drawn = render(written["dashboard"], tmp_path)
    days = rows(loaded, f"SELECT count(DISTINCT ingest_date) FROM {t('ops', 'source_quality_daily')}")[0][0]
    assert drawn.found["chart-quality"]["points"] == days
    assert drawn.found["chart-quality"]["point"] == days
    assert "chart-quality" not in drawn.empty
    # LAKEHOUSE_DOCS_SCREENSHOTS=docs/img writes the pictures docs/reports.md shows
    folder = Path(os.environ.get("LAKEHOUSE_DOCS_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    for kind, name, height in (("html", "report.png", 900), ("dashboard", "dashboard.png", 2000)):
        shot = screenshot(written[kind], folder / name, tmp_path, height)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reporting_an_older_run_says_whose_batch_this_run_counts(loaded):
    with open_context(REPO, loaded) as ctx:
        first, latest = ctx.runs[0].run_id, ctx.run.run_id
    with open_context(REPO, loaded, run_id=first) as ctx:
        report = build(ctx)
    assert (
        f"'this run' is what the latest run ({latest}) took: silver keeps only the last run's batch, so the lines "
        f"run {first} took are counted in the trend over runs, not on their own"
    ) in report.quality.notes
