"""The checks of silver, quarantine and duplicates: hourly ones see a violation among the rows this run's
batch could have written, daily ones a violation anywhere (definitions/silver/contracts.js publishChecks)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lakehouse import warehouse
from models.project import REPO
from models.test_models_end_to_end import LAKEHOUSE, PROJECT, query

pytestmark = pytest.mark.slow

FIRST_AS_OF, FIRST_NOW = "2026-03-02T00:00:00Z", "2026-03-02T01:00:00Z"
SECOND_AS_OF, SECOND_NOW = "2026-03-02T06:00:00Z", "2026-03-02T07:00:00Z"
TABLES = {  # checked table -> the name its checks carry
    "silver.{s}": "silver_{s}",
    "silver_restricted.{s}_quarantine": "silver_restricted_{s}_quarantine",
    "silver.{s}_duplicates": "silver_{s}_duplicates",
}
KINDS = ("uniqueKey_0", "rowConditions")


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LAKEHOUSE, *args], cwd=REPO, env={**os.environ, "LAKEHOUSE_HOME": str(home), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, f"exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


def generate(home: Path, seed: int, as_of: str) -> None:
    ok(cli(home, "generate", "--events", "1500", "--seed", str(seed), "--as-of", as_of, "--batch-size", "250",
           "--in-process-bus"))  # fmt: skip


def check_names(source: str, suffix: str) -> list[str]:
    return [f"{TABLES[t].format(s=source)}_assertions_{kind}{suffix}" for t in TABLES for kind in KINDS]


def run_checks(home: Path, names: list[str]) -> dict[str, str]:
    """Run the assertions `names` as of SECOND_NOW; return the status of each from the run record."""
    cli(home, "run", "--now", SECOND_NOW, "--rerun-unchanged", "--actions", ",".join(names))
    record = json.loads(max((home / "runs").glob("*.json")).read_text())
    return {a["name"].split(".")[-1]: a["status"] for a in record["actions"]}


def execute(home: Path, *statements: str) -> None:
    con = warehouse.connect(home, [PROJECT])
    try:
        con.execute(f'USE "{PROJECT}"')
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A warehouse after a first run and an incremental one; the second run's batch is still in place."""
    home = tmp_path_factory.mktemp("checks") / "home"
    generate(home, 61, FIRST_AS_OF)
    ok(cli(home, "run", "--now", FIRST_NOW))
    generate(home, 62, SECOND_AS_OF)
    ok(cli(home, "run", "--now", SECOND_NOW))
    return home


def one(home: Path, sql: str) -> dict:
    rows = query(home, sql)
    assert rows, sql
    return rows[0]


def test_the_checks_pass_after_the_runs_and_run_by_schedule(home: Path):
    names = [*check_names("orders", ""), *check_names("orders", "_whole_table")]
    assert set(run_checks(home, names).values()) == {"success"}
    record = json.loads(max((home / "runs").glob("*.json")).read_text())
    assert len(record["actions"]) == 12
    graph = json.loads(ok_output(cli(home, "compile", "--json")))
    tags = {a["target"]["name"]: a["tags"] for a in graph["assertions"]}
    for name in check_names("page_views", ""):
        assert tags[name] == ["silver", "page_views", "hourly"], name
    for name in check_names("page_views", "_whole_table"):
        assert tags[name] == ["silver", "page_views", "daily"], name
    assert tags["gold_facts_reference_dimensions"] == ["assertions", "daily"]


def ok_output(done: subprocess.CompletedProcess) -> str:
    ok(done)
    return done.stdout


def test_violations_in_the_batch_fail_hourly_and_daily_ones_outside_it_fail_daily_only(home: Path):
    # orders: one violation per check among the rows the second run's batch wrote
    batch = "(select record_id from silver_restricted.orders_batch)"
    order = one(home, f"select record_id, order_id from silver.orders where record_id in {batch} limit 1")
    quarantine = "silver_restricted.orders_quarantine"
    rejected = one(home, f"select record_id from {quarantine} where record_id in {batch} limit 1")
    duplicate = one(home, f"select record_id from silver.orders_duplicates where record_id in {batch} limit 1")
    # page_views: the same violations on rows no run wrote since the first (nothing of the batch)
    batch_views = "silver_restricted.page_views_batch"
    old = f"record_id not in (select record_id from {batch_views})"
    view = one(home, f"select record_id from silver.page_views where {old}"
                     f" and view_id not in (select view_id from {batch_views}) limit 1")  # fmt: skip
    old_rejected = one(home, f"select record_id from silver_restricted.page_views_quarantine where {old} limit 1")
    old_duplicate = one(home, f"select record_id from silver.page_views_duplicates where {old}"
                              f" and duplicate_of not in (select record_id from {batch_views})"
                              f" and view_id not in (select view_id from {batch_views}) limit 1")  # fmt: skip
    copy = "insert into {table} select * from {table} where record_id = '{id}'"
    execute(
        home,
        copy.format(table="silver.orders", id=order["record_id"]),
        copy.format(table="silver_restricted.orders_quarantine", id=rejected["record_id"]),
        copy.format(table="silver.orders_duplicates", id=duplicate["record_id"]),
        f"update silver.orders set quantity = 0 where order_id = '{order['order_id']}'",
        f"update silver_restricted.orders_quarantine set failed_rules = [] where record_id = '{rejected['record_id']}'",
        f"update silver.orders_duplicates set duplicate_of = record_id where record_id = '{duplicate['record_id']}'",
        copy.format(table="silver.page_views", id=view["record_id"]),
        copy.format(table="silver_restricted.page_views_quarantine", id=old_rejected["record_id"]),
        copy.format(table="silver.page_views_duplicates", id=old_duplicate["record_id"]),
        f"update silver.page_views set event_date = null where record_id = '{view['record_id']}'",
        "update silver_restricted.page_views_quarantine set failed_rules = []"
        f" where record_id = '{old_rejected['record_id']}'",
        "update silver.page_views_duplicates set duplicate_kind = 'unknown'"
        f" where record_id = '{old_duplicate['record_id']}'",
    )
    hourly_orders, daily_orders = check_names("orders", ""), check_names("orders", "_whole_table")
    hourly_views, daily_views = check_names("page_views", ""), check_names("page_views", "_whole_table")
    statuses = run_checks(home, [*hourly_orders, *daily_orders, *hourly_views, *daily_views])
    expected = {name: "failed" for name in [*hourly_orders, *daily_orders, *daily_views]}
    expected |= {name: "success" for name in hourly_views}
    assert statuses == expected
    # the failing rows name the breaking rows, in the built-in shape the reports read
    rows = query(home, "select failing_row_condition, record_id from assertions.silver_orders_assertions_rowConditions")
    assert {(r["failing_row_condition"], r["record_id"]) for r in rows} == {
        ("total_price = quantity * price", order["record_id"]),
        ("quantity >= 1", order["record_id"]),
    }
    unique = query(home, "select order_id, index_row_count from assertions.silver_orders_assertions_uniqueKey_0")
    assert unique == [{"order_id": order["order_id"], "index_row_count": 2}]


def test_a_recorded_duplicate_re_pointed_by_this_run_is_checked_hourly(home: Path):
    """A stale copy of a duplicate whose record is older than the batch, beside the row this run re-pointed at a
    batch record: the hourly uniqueness check counts both, though only one is in the batch's scope."""
    batch = "silver_restricted.orders_batch"
    older = one(home, f"select record_id from silver.orders_duplicates"
                      f" where record_id not in (select record_id from {batch}) limit 1")  # fmt: skip
    target = one(home, f"select record_id, order_id from {batch} where array_length(failed_rules) = 0 limit 1")
    name = "silver_orders_duplicates_assertions_uniqueKey_0"
    # no copies to begin with (the test above leaves some)
    execute(
        home,
        "delete from silver.orders_duplicates where duplicate_of = record_id",
        "delete from silver.orders_duplicates where rowid not in"
        " (select min(rowid) from silver.orders_duplicates group by record_id)",
    )
    assert run_checks(home, [name]) == {name: "success"}
    execute(
        home,
        "insert into silver.orders_duplicates select * replace ("
        f"'{target['record_id']}' as duplicate_of, '{target['order_id']}' as order_id)"
        f" from silver.orders_duplicates where record_id = '{older['record_id']}'",
    )
    assert run_checks(home, [name]) == {name: "failed"}
    unique = query(home, f"select record_id, index_row_count from assertions.{name}")
    assert unique == [{"record_id": older["record_id"], "index_row_count": 2}]


def test_conservation_finds_a_batch_record_written_at_another_date(home: Path):
    batch = "(select record_id from silver_restricted.ad_clicks_batch)"
    click = one(home, f"select record_id from silver.ad_clicks where record_id in {batch} limit 1")
    name = "ad_clicks_conservation"
    assert run_checks(home, [name]) == {name: "success"}
    moved = f"update silver.ad_clicks set event_date = date '1999-01-01' where record_id = '{click['record_id']}'"
    execute(home, moved)
    assert run_checks(home, [name]) == {name: "failed"}
    rows = query(home, f"select record_id, places from assertions.{name}")
    assert rows == [{"record_id": click["record_id"], "places": 0}]


def test_conservation_names_every_place_a_batch_record_was_found(home: Path):
    batch = "(select record_id from silver_restricted.ad_clicks_batch)"
    click = one(home, f"select record_id from silver.ad_clicks where record_id in {batch}"
                      " and event_date <> date '1999-01-01' limit 1")  # fmt: skip
    name = "ad_clicks_conservation"
    copy = f"insert into silver.ad_clicks select * from silver.ad_clicks where record_id = '{click['record_id']}'"
    execute(home, copy)
    assert run_checks(home, [name]) == {name: "failed"}
    rows = query(home, f"select record_id, places, found_in from assertions.{name} where places > 1")
    assert rows == [{"record_id": click["record_id"], "places": 2, "found_in": "silver, silver"}]
