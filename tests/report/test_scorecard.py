"""Scorecard: dimension mapping and the aggregation formulas, ours and Dataplex's."""

from __future__ import annotations

from lakehouse.report.scorecard import Check, Scorecard, condition_dimension, dimension_of, rule_dimension


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


def test_row_conditions_and_quarantine_rules_map_to_dimensions():
    assert condition_dimension("customer_id IS NOT NULL") == "completeness"
    assert condition_dimension("price > 0") == "validity"
    assert condition_dimension("coalesce(a, b) IS NOT NULL or c > 1") == "validity"
    assert rule_dimension("customer_id_required") == "completeness"
    assert rule_dimension("product_id_pattern") == "validity"
    assert rule_dimension("quantity_type") == "validity"
    assert rule_dimension("order_id_duplicate") == "uniqueness"


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


def test_quarantine_rows_are_counted_per_dimension_in_the_warehouse(tmp_path):
    from datetime import UTC, datetime

    import duckdb

    from lakehouse.report.context import Context
    from lakehouse.report.runs import History, Run
    from lakehouse.report.scorecard import _quarantine_by_dimension

    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS p")
    con.execute("CREATE SCHEMA p.silver")
    con.execute("CREATE TABLE p.silver.orders_quarantine (record_id VARCHAR, failed_rules VARCHAR[])")
    con.execute(
        "INSERT INTO p.silver.orders_quarantine VALUES ('a', ['customer_id_required', 'price_min_exclusive']), "
        "('b', ['record_not_json']), ('c', ['order_id_duplicate']), ('d', []), ('e', NULL), "
        "('f', ['customer_id_required'])"
    )
    run = Run("r", datetime(2026, 1, 1, tzinfo=UTC), None, "success", [], "json")
    ctx = Context(tmp_path, tmp_path, "p", None, con, [run], run, History.upto([run], run))
    assert _quarantine_by_dimension(ctx, "p.silver.orders_quarantine", 6) == {
        "completeness": 2,  # a, f
        "validity": 4,  # a, b, and d, e (no rule named: counted as validity)
        "uniqueness": 1,  # c
    }
    assert [rule_dimension(r) for r in ("customer_id_required", "record_not_json", "order_id_duplicate")] == [
        "completeness",
        "validity",
        "uniqueness",
    ]
