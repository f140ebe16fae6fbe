"""Scorecard: dimension mapping and the aggregation formulas, ours and Dataplex's."""

from __future__ import annotations

from lakehouse.report.scorecard import Check, Scorecard, condition_dimension, dimension_of


def test_file_assertions_map_to_dimensions_by_tag_then_name():
    assert dimension_of("p.assertions.orders_fresh") == "freshness"
    assert dimension_of("p.assertions.orders_reconcile_with_gold") == "consistency"
    assert dimension_of("p.assertions.orders_conservation") == "consistency"
    assert dimension_of("p.assertions.fact_referential_integrity") == "consistency"
    assert dimension_of("p.assertions.volume_today_vs_average") == "completeness"
    assert dimension_of("p.assertions.status_accepted_values") == "validity"
    assert dimension_of("p.assertions.something_else") == "validity"
    assert dimension_of("p.assertions.orders_fresh", ("dq:consistency",)) == "consistency"
    assert dimension_of("p.assertions.x", ("daily", "uniqueness")) == "uniqueness"


def test_row_conditions_map_to_dimensions():
    assert condition_dimension("customer_id IS NOT NULL") == "completeness"
    assert condition_dimension("price > 0") == "validity"
    assert condition_dimension("coalesce(a, b) IS NOT NULL or c > 1") == "validity"


def test_aggregation_is_the_mean_of_checks_then_dimensions_then_tables():
    card = Scorecard(
        [
            Check("t1", "validity", "a", "assertion", False, 10, 100, 90.0),
            Check("t1", "validity", "b", "assertion", True, 0, 100, 100.0),
            Check("t1", "uniqueness", "c", "assertion", False, 50, 100, 50.0),
            Check("t2", "freshness", "d", "assertion", False, 1, None, 0.0),
        ]
    )
    assert card.cell("t1", "validity") == 95.0
    assert card.table_score("t1") == 72.5
    assert card.table_score("t2") == 0.0
    assert card.dimension_score("validity") == 95.0
    assert card.dimension_score("completeness") is None
    assert card.overall == 36.25
    assert card.dataplex() == 25.0
    assert card.dataplex(table="t1") == 33.33
    assert card.dataplex(dimension="freshness") == 0.0
    data = card.to_json()
    assert data["by_table"]["t1"] == {
        "score": 72.5,
        "dataplex": 33.33,
        "dimensions": {
            "completeness": None,
            "validity": 95.0,
            "uniqueness": 50.0,
            "freshness": None,
            "consistency": None,
        },
    }
    assert Scorecard().overall is None and Scorecard().dataplex() is None


def test_pipeline_health_scores_failed_actions_and_never_the_quarantine(tmp_path):
    from datetime import UTC, datetime

    import duckdb

    from lakehouse.engine.records import ActionResult
    from lakehouse.report.context import Context
    from lakehouse.report.runs import History, Run
    from lakehouse.report.scorecard import build

    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS p")
    con.execute("CREATE SCHEMA p.silver")
    con.execute("CREATE SCHEMA p.silver_restricted")
    # a quarantine full of rejects: incoming data quality, which pipeline health must not score
    con.execute("CREATE TABLE p.silver_restricted.orders_quarantine (record_id VARCHAR, failed_rules VARCHAR[])")
    con.execute("INSERT INTO p.silver_restricted.orders_quarantine VALUES ('a', ['customer_id_required'])")
    con.execute("CREATE TABLE p.silver.orders (record_id VARCHAR)")
    actions = [
        ActionResult("p.silver.orders", "table", "success"),
        ActionResult("p.gold.daily_sales", "table", "failed"),
    ]
    run = Run("r", datetime(2026, 1, 1, tzinfo=UTC), None, "failed", actions, "json")
    ctx = Context(tmp_path, tmp_path, "p", None, con, [run], run, History.upto([run], run))
    card = build(ctx, [])
    assert [(c.table, c.dimension, c.name, c.source, c.passed, c.score) for c in card.checks] == [
        ("p.gold.daily_sales", "freshness", "run: daily_sales failed", "action", False, 0.0),
    ]
    assert card.overall == 0.0
