"""The kind and checked table of an assertion, read from its name (lakehouse/report/failures.py)."""

from __future__ import annotations

from lakehouse.report.failures import checked_tables, kind_of

P = "lakehouse-dev"


def test_generated_checks_have_the_built_in_kinds():
    assert kind_of(f"{P}.assertions.silver_orders_assertions_uniqueKey_0") == "uniqueKey"
    assert kind_of(f"{P}.assertions.silver_orders_assertions_uniqueKey_0_whole_table") == "uniqueKey"
    assert kind_of(f"{P}.assertions.silver_orders_duplicates_assertions_rowConditions_whole_table") == "rowConditions"
    assert kind_of(f"{P}.assertions.orders_conservation") == "file"
    assert kind_of(f"{P}.assertions.silver_orders_assertions_rowConditions_daily") == "file"


def test_a_generated_check_checks_the_table_its_name_starts_with_not_the_batch():
    dependencies = (f"{P}.silver_restricted.orders_batch", f"{P}.silver.orders_duplicates")
    name = f"{P}.assertions.silver_orders_duplicates_assertions_uniqueKey_0"
    assert checked_tables(name, dependencies) == [f"{P}.silver.orders_duplicates"]
    quarantine = f"{P}.assertions.silver_restricted_orders_quarantine_assertions_rowConditions"
    both = (f"{P}.silver_restricted.orders_quarantine", f"{P}.silver_restricted.orders_batch")
    assert checked_tables(quarantine, both) == [f"{P}.silver_restricted.orders_quarantine"]
    # a name naming none of its dependencies: all of them
    assert checked_tables(f"{P}.assertions.x_assertions_rowConditions", dependencies) == list(dependencies)
