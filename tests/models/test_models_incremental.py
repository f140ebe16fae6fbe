"""Incremental runs: any sequence of runs over the same landed data ends where one full run does, a
killed run is repaired by the next plain run, and data landing during a run waits for the next."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse import paths, warehouse
from lakehouse.engine.iceberg import IcebergStore
from models.project import KIT_VARS, REPO, contract_names
from models.test_models_end_to_end import (
    LAKEHOUSE,
    PROJECT,
    conservation,
    lakehouse,
    query,
    silver_and_gold,
    snapshot,
)

pytestmark = pytest.mark.slow

ICEBERG_TABLES = ("silver.orders",)  # the BigLake Iceberg tables of definitions/ (iceberg: {...})


def generate(home: Path, seed: int, events: int = 800, pubsub_share: str = "0.3") -> None:
    lakehouse(
        home, "generate", "--events", str(events), "--seed", str(seed), "--pubsub-share", pubsub_share,
        "--batch-size", "100", "--in-process-bus",
    )  # fmt: skip


def assert_conserved(home: Path) -> None:
    for source, (bronze, silver, quarantine, duplicates) in conservation(home).items():
        assert bronze == silver + quarantine + duplicates, (source, bronze, silver, quarantine, duplicates)


def start_run(home: Path, **popen) -> subprocess.Popen:
    """Start `lakehouse run` on `home` in the background."""
    return subprocess.Popen([LAKEHOUSE, "run"], cwd=REPO, env={**os.environ, "LAKEHOUSE_HOME": str(home)}, **popen)


def landing_files(home: Path) -> list[Path]:
    bucket = paths.gcs_object_path(home, KIT_VARS["landing_bucket"], "")
    return sorted(bucket.glob("source=*/ingest_date=*/hour=*/*.jsonl"))


def converges(home: Path) -> None:
    """A plain run succeeds, conserves every record, has committed every Iceberg snapshot its warehouse
    tables hold, and equals a full refresh of the same home."""
    lakehouse(home, "run")
    assert_conserved(home)
    iceberg_holds_the_warehouse_rows(home)
    equals_a_full_refresh(home)


def iceberg_holds_the_warehouse_rows(home: Path) -> None:
    """The current snapshot of each Iceberg table holds exactly the rows of its warehouse table, and
    no table is marked as holding changes still to commit."""
    store = IcebergStore(home)
    con = warehouse.connect(home, [PROJECT], read_only=True)
    try:
        for table in ICEBERG_TABLES:
            schema, name = table.split(".")
            rows = store.load({"database": PROJECT, "schema": schema, "name": name}).scan().to_arrow()
            con.register("in_iceberg", rows)
            differ = con.execute(
                f'(SELECT * FROM in_iceberg EXCEPT ALL SELECT * FROM "{PROJECT}".{table}) UNION ALL '
                f'(SELECT * FROM "{PROJECT}".{table} EXCEPT ALL SELECT * FROM in_iceberg)'
            ).fetchall()
            con.unregister("in_iceberg")
            assert (table, rows.num_rows, differ[:3]) == (table, rows.num_rows, [])
        assert con.execute(f'SELECT count(*) FROM "{PROJECT}"._lakehouse.iceberg_pending').fetchone()[0] == 0
    finally:
        con.close()


def equals_a_full_refresh(home: Path) -> None:
    """Silver and gold as incremental runs left them are what a full refresh of the same home builds."""
    tables = silver_and_gold()
    incremental = snapshot(home, tables)
    lakehouse(home, "run", "--full-refresh")
    assert snapshot(home, tables) == incremental


def landing_line(home: Path, source: str, event_id: str) -> tuple[Path, dict]:
    """Return the landing file of `source` holding the record of `event_id`, and that record."""
    return next(
        (path, record)
        for path in landing_files(home)
        if f"source={source}" in str(path)
        for record in map(json.loads, path.read_text().splitlines())
        if record.get("event_id") == event_id
    )


def test_any_sequence_of_runs_ends_where_a_full_refresh_does(tmp_path: Path):
    home = tmp_path / "home"
    rng = random.Random(20261130)
    for seed in range(11, 16):
        generate(home, seed)
        if rng.random() < 0.6:
            lakehouse(home, "run")
    # a whole file delivered again under another name (after the last generate: the storage
    # emulator does not know the copy): every line of it is a redelivery
    copied = rng.choice(landing_files(home))
    shutil.copy(copied, copied.with_name("redelivered-" + copied.name))
    lakehouse(home, "run")
    assert_conserved(home)
    tables = silver_and_gold()
    incremental = snapshot(home, tables)
    again = lakehouse(home, "run")
    assert snapshot(home, tables) == incremental, "a run with no new data changed something"
    assert "0 row" not in again.stderr
    lakehouse(home, "run", "--full-refresh")
    assert snapshot(home, tables) == incremental


def test_a_version_moving_an_order_rebuilds_the_keys_it_leaves(tmp_path: Path):
    """A newer version of an order with another customer, product and day: the incremental gold tables
    rebuild the customer, product and day the order left (known from duplicates) as well as the new ones."""
    home = tmp_path / "home"
    generate(home, 51, events=600, pubsub_share="0")
    lakehouse(home, "run")
    kept = query(
        home,
        """
        select order_id, event_id, customer_id, product_id
        from silver.orders
        where status != 'cancelled'
        qualify count(*) over (partition by customer_id) >= 2
        order by order_id
        limit 1
    """,
    )[0]
    customer, product = kept["customer_id"], kept["product_id"]
    other = query(
        home,
        f"""
        select
          (select min(customer_id) from silver.orders where customer_id != '{customer}') as customer_id,
          (select min(product_id) from silver.orders where product_id != '{product}') as product_id
    """,
    )[0]
    orders_of_customer = f"select order_count from gold.customer_360 where customer_id = '{customer}'"
    [before] = query(home, orders_of_customer)
    path, line = landing_line(home, "orders", kept["event_id"])
    moved = {
        **line,
        "event_id": "0" * 31 + "1",
        "customer_id": other["customer_id"],
        "product_id": other["product_id"],
        "event_ts": "2099-01-02T03:04:05.000Z",
    }
    path.with_name("moved-" + path.name).write_text(json.dumps(moved) + "\n")
    lakehouse(home, "run")
    assert query(home, orders_of_customer) == [{"order_count": before["order_count"] - 1}]
    equals_a_full_refresh(home)


def test_a_late_version_between_two_recorded_ones_repoints_only_the_one_it_displaces(tmp_path: Path):
    """duplicate_of is the version that displaced a record (the next newer one of its key): a version
    arriving late, older than silver's and newer than a recorded duplicate, is recorded as displaced
    by the version above it, re-points the one directly below it, and leaves every other row alone."""
    home = tmp_path / "home"
    generate(home, 61, events=1500, pubsub_share="0")
    lakehouse(home, "run")
    duplicates = "select * from silver.inventory_duplicates"
    before = {row["record_id"]: row for row in query(home, duplicates)}
    # a recorded version (lower) displaced by another recorded one (upper) a few seconds newer
    lower, upper = next(
        (row, before[row["duplicate_of"]])
        for row in sorted(before.values(), key=lambda row: row["record_id"])
        if row["duplicate_of"] in before
        and _instant(before[row["duplicate_of"]]["event_ts"]) - _instant(row["event_ts"]) >= timedelta(seconds=2)
    )
    path, line = landing_line(home, "inventory", lower["event_id"])
    between = _instant(lower["event_ts"]) + (_instant(upper["event_ts"]) - _instant(lower["event_ts"])) / 2
    late = {**line, "event_id": "0" * 31 + "2", "event_ts": between.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}
    path.with_name("late-" + path.name).write_text(json.dumps(late) + "\n")
    silver_before = snapshot(home, ["silver.inventory"])
    lakehouse(home, "run")
    after = {row["record_id"]: row for row in query(home, duplicates)}
    [added] = set(after) - set(before)
    assert set(before) <= set(after)
    assert after[added]["event_id"] == late["event_id"]
    assert (after[added]["duplicate_of"], after[added]["duplicate_kind"]) == (upper["record_id"], "older_version")
    assert after[lower["record_id"]]["duplicate_of"] == added
    assert after[lower["record_id"]]["duplicate_kind"] == "older_version"
    assert {key: row for key, row in after.items() if key not in (added, lower["record_id"])} == {
        key: row for key, row in before.items() if key != lower["record_id"]
    }
    assert snapshot(home, ["silver.inventory"]) == silver_before
    equals_a_full_refresh(home)


def _instant(value: str) -> datetime:
    """Return the instant of a timestamp as `lakehouse query` prints it."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_runs_killed_at_random_points_are_repaired_by_the_next_plain_run(tmp_path: Path):
    home = tmp_path / "home"
    rng = random.Random(7)
    generate(home, 21, events=1500)
    kills, attempts, longest = 0, 0, 4.0
    while kills < 20 and attempts < 45:
        attempts += 1
        if attempts % 6 == 0:
            generate(home, 30 + attempts, events=300)
        started = time.monotonic()
        process = start_run(home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        # anywhere in the run: compile, bronze, a commit window, assertions, the run record
        time.sleep(rng.uniform(0.2, longest))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        else:
            longest = max(0.5, 0.9 * (time.monotonic() - started))
        process.wait(timeout=60)
    assert kills >= 20, f"only {kills} of {attempts} runs were still running when killed"
    converges(home)


def test_data_landing_during_a_run_is_taken_by_the_next_run(tmp_path: Path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    generate(home, 41, events=2000, pubsub_share="0")
    generate(elsewhere, 42, events=1000, pubsub_share="0")
    arriving = landing_files(elsewhere)
    # the first run, which has all of home's data to take, is the one the files land during
    running = start_run(home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    landed_while_running = 0
    for path in arriving:
        # files land in the bucket one by one while the run reads bronze and builds silver
        target = home / path.relative_to(elsewhere)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        landed_while_running += running.poll() is None
        time.sleep(0.05)
    out, err = running.communicate(timeout=600)
    assert landed_while_running > 0
    assert running.returncode == 0, out + err
    lakehouse(home, "run")
    assert_conserved(home)
    assert set(conservation(home)) == set(contract_names())


def test_a_file_arriving_late_in_a_folder_older_than_the_lookback_is_taken(tmp_path: Path):
    """The watermark is by arrival, not by path: a file copied now into a landing folder dated long
    before lookback_days is recorded as arrived (locally by the run, on GCP by the finalize
    notification) and taken by the next run, once."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    generate(home, 51, events=600, pubsub_share="0")
    generate(elsewhere, 52, events=300, pubsub_share="0")
    lakehouse(home, "run")
    newest = max(path.parent.parent.name for path in landing_files(home))  # ingest_date=YYYY-MM-DD
    old_day = datetime.strptime(newest, "ingest_date=%Y-%m-%d") - timedelta(days=int(KIT_VARS["lookback_days"]) + 7)
    late = next(path for path in landing_files(elsewhere) if "source=orders/" in str(path))
    name = f"source=orders/ingest_date={old_day:%Y-%m-%d}/hour=05/late.jsonl"
    target = paths.gcs_object_path(home, KIT_VARS["landing_bucket"], name)
    target.parent.mkdir(parents=True)
    shutil.copy(late, target)
    lines = len(target.read_text().splitlines())

    lakehouse(home, "run")
    uri = f"gs://{KIT_VARS['landing_bucket']}/{name}"
    taken = query(home, f"select record_count from ops.orders_intake where origin = '{uri}'")
    assert taken == [{"record_count": lines}]
    arrived = query(home, f"select count(*) as n from ops.file_arrivals where object_name = '{name}'")
    assert arrived == [{"n": 1}]
    assert_conserved(home)
    lakehouse(home, "run")
    assert query(home, f"select count(*) as n from ops.orders_intake where origin = '{uri}'") == [{"n": 1}]
    equals_a_full_refresh(home)


def test_a_folder_dated_in_the_future_does_not_stop_what_arrives_next(tmp_path: Path):
    """Arrivals are read from lookback_days before the newest landing hour taken or the last run,
    whichever is earlier: a file in a folder dated a year ahead is taken, and so is the next file
    landed in a folder of today."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    generate(home, 61, events=600, pubsub_share="0")
    generate(elsewhere, 62, events=600, pubsub_share="0")
    lakehouse(home, "run")
    files = [path for path in landing_files(elsewhere) if "source=orders/" in str(path)]
    bucket = paths.gcs_object_path(home, KIT_VARS["landing_bucket"], "")
    ahead = datetime.now(UTC) + timedelta(days=400)
    future = bucket / f"source=orders/ingest_date={ahead:%Y-%m-%d}/hour=05/ahead.jsonl"
    future.parent.mkdir(parents=True)
    shutil.copy(files[0], future)
    lakehouse(home, "run")
    today = next(path.parent for path in landing_files(home) if "source=orders/" in str(path) and path != future)
    shutil.copy(files[1], today / "next.jsonl")
    lakehouse(home, "run")
    origins = {row["origin"] for row in query(home, "select origin from ops.orders_intake")}
    for path in (future, today / "next.jsonl"):
        assert f"gs://{KIT_VARS['landing_bucket']}/{path.relative_to(bucket).as_posix()}" in origins
    assert_conserved(home)


NOW = "2026-11-20T13:00:00Z"  # the runs' clock: the attribution tests depend on no real date
T = datetime(2026, 11, 15, 12, tzinfo=UTC)  # the crafted orders' time


def _order(n: int, order: str, customer: str, at: datetime, status: str = "paid") -> dict:
    return {
        "source": "orders", "event_id": f"a77{n:029x}", "order_id": f"ORD-{order:0>12}", "customer_id": customer,
        "customer_email": "a@example.com", "customer_name": "A B", "shipping_address": "1 Road, Town",
        "product_id": "PROD-0001", "quantity": 1, "price": 10, "currency": "USD", "status": status,
        "event_ts": _iso(at),
    }  # fmt: skip


def _click(n: int, click: str, customer: str, at: datetime) -> dict:
    return {
        "source": "ad_clicks", "event_id": f"c11{n:029x}", "click_id": f"CLK-{click:0>12}", "campaign_id": "CMP-001",
        "session_id": "SESS-000001", "customer_id": customer, "ad_network": "google_ads", "cost_usd": 0.5,
        "event_ts": _iso(at),
    }  # fmt: skip


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _land(home: Path, name: str, records: list[dict]) -> None:
    """Land `records` as a new file `name` in an existing landing folder of each record's source."""
    for source in {record["source"] for record in records}:
        folder = next(path.parent for path in landing_files(home) if f"source={source}/" in str(path))
        lines = [json.dumps(record) for record in records if record["source"] == source]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def _attributed(home: Path) -> dict[str, str | None]:
    """Return click_id by order_id of the crafted orders in gold.ad_attribution, after checking that the
    table equals the rule over all of silver (ops.ad_attribution_reference)."""
    assert (
        snapshot(home, ["gold.ad_attribution"])["gold.ad_attribution"]
        == (snapshot(home, ["ops.ad_attribution_reference"])["ops.ad_attribution_reference"])
    )
    rows = query(home, "select order_id, click_id from gold.ad_attribution where customer_id like 'CUST-9000%'")
    return {row["order_id"][-1:]: row["click_id"][-1:] for row in rows}


def test_attribution_follows_late_moved_and_outside_clicks_and_changed_orders(tmp_path: Path):
    """gold.ad_attribution, incremental, recomputes exactly the orders whose version changed and those
    within the window after a click that was added, moved in time or to another customer, up to the
    customer's next click."""
    home = tmp_path / "home"
    generate(home, 71, events=300, pubsub_share="0")
    c1, c2, c3, c4 = (f"CUST-9000{n}" for n in range(1, 5))
    hour, day = timedelta(hours=1), timedelta(days=1)
    _land(home, "attribution-1", [
        _order(1, "1", c1, T), _order(2, "2", c2, T), _order(3, "3", c3, T), _order(4, "4", c4, T + day),
        _order(5, "5", c1, T + 2 * hour), _order(6, "6", c2, T - hour / 2),
        _click(1, "1", c1, T - 2 * hour), _click(2, "2", c2, T - hour), _click(3, "3", c3, T - 3 * hour),
        # eleven days before O4: outside its window (attribution_window_days, 7)
        _click(4, "4", c4, T - 10 * day),
    ])  # fmt: skip
    lakehouse(home, "run", "--now", NOW)
    assert _attributed(home) == {"1": "1", "2": "2", "3": "3", "5": "1", "6": "2"}
    _land(home, "attribution-2", [
        # a late click between K1 and O1 steals O1 (and O5) from K1
        _click(5, "5", c1, T - hour),
        # K2's new version moves it after O2 and O6: neither has a click before it any more
        _click(6, "2", c2, T + hour),
        # K3's new version moves it to C4, within O4's window: O3 loses it, O4 gains it
        _click(7, "3", c4, T + day - hour),
        # O5 is cancelled; O6 moves to C1, whose last click before it is now K5
        _order(7, "5", c1, T + 3 * hour, status="cancelled"),
        _order(8, "6", c1, T - hour / 2 + timedelta(seconds=1)),
    ])  # fmt: skip
    lakehouse(home, "run", "--now", NOW)
    assert _attributed(home) == {"1": "5", "4": "3", "6": "5"}
    before = snapshot(home, ["gold.ad_attribution"])
    # a click of C1 older than the window of every order of C1 changes no row
    _land(home, "attribution-3", [_click(8, "8", c1, T - 8 * day)])
    lakehouse(home, "run", "--now", NOW)
    assert query(home, "select count(*) as n from silver.ad_clicks where click_id = 'CLK-000000000008'") == [{"n": 1}]
    assert snapshot(home, ["gold.ad_attribution"]) == before
    # a click of C3 an hour before O3 wins it; then a second click at that very instant, with a greater
    # click_id, wins it from the first: the next click after a touched one is the next strictly later
    _land(home, "attribution-4", [_click(9, "9", c3, T - hour)])
    lakehouse(home, "run", "--now", NOW)
    assert _attributed(home) == {"1": "5", "3": "9", "4": "3", "6": "5"}
    _land(home, "attribution-5", [_click(10, "A", c3, T - hour)])
    lakehouse(home, "run", "--now", NOW)
    assert _attributed(home) == {"1": "5", "3": "A", "4": "3", "6": "5"}
    equals_a_full_refresh(home)
