"""A producer adding fields: records keep flowing, the drift is reported, the contract diff accepts it and
the next incremental run adds the columns."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from models.project import REPO, copy_project, load_contract
from models.test_models_end_to_end import LAKEHOUSE, query

pytestmark = pytest.mark.slow

AS_OF = "2026-03-02T00:00:00Z"
NOW = "2026-03-02T01:00:00Z"
# What the generator's extra_field fault appends (ingest/generator.py EXTRA_FIELDS) and the JSON type of each.
EXTRA = {"client_version": "string", "coupon_code": "string", "experiment": "object", "utm_source": "string"}
ADDED = ("client_version", "coupon_code", "utm_source")


def cli(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [LAKEHOUSE, *args], cwd=cwd, env={**os.environ, "LAKEHOUSE_HOME": str(home), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"lakehouse {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def generate(home: Path, seed: int) -> None:
    # the producer (the repository's contracts) keeps sending the extra keys, before and after the change
    cli(
        home, REPO, "generate", "--events", "1500", "--seed", str(seed), "--as-of", AS_OF, "--batch-size", "250",
        "--fault-rate", "extra_field=0.2", "--in-process-bus",
    )  # fmt: skip


def orders_with_extra(home: Path) -> dict[str, dict]:
    rows = query(home, "select record_id, extra from silver.orders where extra is not null")
    return {row["record_id"]: row for row in rows}


def test_a_producer_adding_fields_is_accepted_without_a_full_refresh(tmp_path: Path):
    project, home = copy_project(tmp_path / "project"), tmp_path / "home"
    generate(home, 51)
    cli(home, REPO, "run", "--project-dir", str(project), "--now", NOW)

    # 0 records quarantined for the extra keys, in any source; the valid ones reach silver with `extra`
    unexpected = query(
        home,
        " union all ".join(
            f"select count(*) as n from silver_restricted.{s}_quarantine"
            " where 'record_unexpected_field' in unnest(failed_rules)"
            for s in ("orders", "page_views", "ad_clicks", "inventory", "user_activity")
        ),
    )
    assert [row["n"] for row in unexpected] == [0] * 5
    first = orders_with_extra(home)
    assert first
    keys = {key for row in first.values() for key in json.loads(row["extra"])}
    assert keys == set(EXTRA)

    drift = query(
        home,
        "select field_name, json_type, record_count, quarantined_count from ops.schema_drift "
        "where source_name = 'orders' order by field_name",
    )
    seen = {(row["field_name"], row["json_type"]) for row in drift}
    # besides the extra keys, the renamed_field fault's customerId: every such record is quarantined
    # for customer_id_required, which the drift shows
    assert seen - {("customerId", "string"), ("customerId", "null")} == set(EXTRA.items())
    assert all(row["quarantined_count"] == row["record_count"] for row in drift if row["field_name"] == "customerId")
    # each record carries one extra key; those not quarantined for other rules are in silver or duplicates
    # (which keep no `extra`: the run's batch says which had one)
    kept = query(
        home,
        "select (select count(*) from silver.orders where extra is not null)"
        " + (select count(*) from silver.orders_duplicates inner join silver_restricted.orders_batch using (record_id)"
        " where array_length(orders_batch.extra_fields) > 0) as n",
    )
    assert kept == [{"n": sum(row["record_count"] - row["quarantined_count"] for row in drift)}]

    diff = subprocess.run(
        [LAKEHOUSE, "contract", "diff", "--source", "orders", "--write", "--project-dir", str(project)],
        cwd=REPO, env={**os.environ, "LAKEHOUSE_HOME": str(home)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert diff.returncode == 0, diff.stdout + diff.stderr
    patch = json.loads(diff.stdout)
    assert [(op["op"], op["value"]["name"], op["value"]["type"]) for op in patch] == [
        ("add", name, "STRING") for name in ADDED
    ]
    assert "note: experiment: values are object; no contract type takes them (they stay in `extra`)" in diff.stderr
    contract = load_contract("orders", project)
    assert [field["name"] for field in contract["fields"]][-3:] == list(ADDED)

    generate(home, 52)
    second = cli(home, REPO, "run", "--project-dir", str(project), "--now", "2026-03-02T02:00:00Z")
    assert "full refresh" not in (second.stdout + second.stderr).lower()
    columns = query(
        home,
        "select column_name from `lakehouse-dev.silver`.INFORMATION_SCHEMA.COLUMNS where table_name = 'orders'",
    )
    assert set(ADDED) <= {row["column_name"] for row in columns}
    # as the Dataform CLI does, the run that adds a column merges the columns the table had when it
    # started, so the columns are filled from the next run on (docs/parity.md)
    added_by = query(
        home, "select count(coupon_code) + count(client_version) + count(utm_source) as n from silver.orders"
    )
    assert added_by == [{"n": 0}]
    # ... and that run keeps the new fields' values in `extra`, so nothing is lost: each record it took
    # has in `extra` exactly the extra keys of its raw line
    transition = query(
        home,
        "select orders.record_id, orders.extra, orders_batch.raw_record from silver.orders"
        " inner join silver_restricted.orders_batch using (record_id)",
    )
    assert transition
    for row in transition:
        assert set(json.loads(row["extra"] or "{}")) == set(json.loads(row["raw_record"])) & set(EXTRA)
    assert {key for row in transition for key in json.loads(row["extra"] or "{}")} == set(EXTRA)
    before = {row["record_id"] for row in query(home, "select record_id from silver.orders")}

    generate(home, 53)
    cli(home, REPO, "run", "--project-dir", str(project), "--now", "2026-03-02T03:00:00Z")
    # the next batch fills the columns, and only the object-valued key stays in `extra`
    filled = query(
        home,
        "select record_id, coupon_code, client_version, utm_source, extra from silver.orders "
        "where coalesce(coupon_code, client_version, utm_source) is not null",
    )
    assert filled
    assert not {row["record_id"] for row in filled} & before
    assert {row["coupon_code"] for row in filled} <= {"SAVE10", None}
    assert {row["client_version"] for row in filled} <= {"2.7.1", None}
    assert {row["utm_source"] for row in filled} <= {"newsletter", None}
    assert all(row["extra"] is None for row in filled)
    newer = query(home, "select record_id, extra from silver.orders where extra is not null")
    newer = [row for row in newer if row["record_id"] not in before]
    assert newer
    assert {key for row in newer for key in json.loads(row["extra"])} == {"experiment"}
    # rows of the earlier run stay as they were: NULL in the new columns, their keys still in `extra`
    earlier = query(
        home,
        "select record_id, extra, coupon_code, client_version, utm_source from silver.orders "
        "where record_id in (" + ",".join(f"'{r}'" for r in first) + ")",
    )
    assert len(earlier) == len(first)
    for row in earlier:
        assert (row["coupon_code"], row["client_version"], row["utm_source"]) == (None, None, None)
        assert row["extra"] == first[row["record_id"]]["extra"]


def test_a_key_written_with_json_escapes_is_read_as_json_reads_it(tmp_path: Path):
    """`"coup\\u006fn_code"` is the key coupon_code: it lands in `extra` and the drift report like the
    plain spelling, and a contract field spelled with escapes is that field, not an unknown key."""
    home = tmp_path / "home"
    cli(home, REPO, "generate", "--events", "200", "--seed", "7", "--as-of", AS_OF, "--in-process-bus")
    folder = next(home.glob("gcs/*landing*/source=orders/ingest_date=*/hour=*"))
    record = {
        "source": "orders", "event_id": "escaped-1", "order_id": "ORD-0000000000EE", "customer_id": "CUST-00001",
        "product_id": "PROD-0001", "quantity": 1, "price": 2.5, "currency": "USD", "status": "paid",
        "event_ts": "2026-03-01T23:00:00Z",
    }  # fmt: skip
    line = json.dumps(record)[:-1] + ', "coup\\u006fn_code": "SAVE20", "curr\\u0065ncy_note": {"a": 1}}'
    line = line.replace('"currency"', '"curr\\u0065ncy"')
    (folder / "escaped.jsonl").write_text(line + "\n")

    cli(home, REPO, "run", "--now", NOW)

    sql = "select currency, to_json_string(extra) as extra from silver.orders where event_id = 'escaped-1'"
    (row,) = query(home, sql)
    assert row["currency"] == "USD"
    assert json.loads(json.loads(row["extra"])) == {"coupon_code": "SAVE20", "currency_note": {"a": 1}}
    drift = query(home, "select field_name from ops.schema_drift where source_name = 'orders'")
    assert {"coupon_code", "currency_note"} <= {r["field_name"] for r in drift}


def test_a_file_in_a_folder_outside_the_hour_layout_is_quarantined_with_its_reason(tmp_path: Path):
    """hour=xx and hour=99 give no arrival time: the records are quarantined as record_landing_path, the
    batch and the intake ledger keep the day's start, and the next run passes its error-severity checks."""
    home = tmp_path / "home"
    cli(home, REPO, "generate", "--events", "200", "--seed", "7", "--as-of", AS_OF, "--in-process-bus")
    day = next(home.glob("gcs/*landing*/source=orders/ingest_date=*"))
    for hour in ("xx", "99"):
        (day / f"hour={hour}").mkdir()
        record = {
            "source": "orders", "event_id": f"path-{hour}", "order_id": "ORD-0000000000PP", "customer_id": "CUST-00001",
            "product_id": "PROD-0001", "quantity": 1, "price": 2.5, "currency": "USD", "status": "paid",
            "event_ts": "2026-03-01T23:00:00Z",
        }  # fmt: skip
        (day / f"hour={hour}" / "placed.jsonl").write_text(json.dumps(record) + "\n")

    cli(home, REPO, "run", "--now", NOW)
    cli(home, REPO, "run", "--now", NOW)

    quarantined = query(
        home,
        "select origin, failed_rules, ingested_at from silver_restricted.orders_quarantine "
        "where 'record_landing_path' in unnest(failed_rules) order by origin",
    )
    assert [row["origin"].split("/")[-2] for row in quarantined] == ["hour=99", "hour=xx"]
    assert all(row["ingested_at"] == f"{day.name.split('=')[1]}T00:00:00+00:00" for row in quarantined)
    assert query(home, "select count(*) as n from silver.orders where event_id like 'path-%'") == [{"n": 0}]
    assert query(home, "select count(*) as n from ops.orders_intake where ingested_at is null") == [{"n": 0}]


def test_a_landing_folder_whose_date_is_not_a_date_is_named_and_taken_once_moved(tmp_path: Path):
    """ingest_date=2026-13-45 stops its source's landing table (DuckDB, as the DATE partition key, cannot
    read the folder): the failure names the folder and what to do, the other sources run, and once its
    files are put under a real date they are taken."""
    home = tmp_path / "home"
    cli(home, REPO, "generate", "--events", "200", "--seed", "7", "--as-of", AS_OF, "--in-process-bus")
    source = next(home.glob("gcs/*landing*/source=orders"))
    bad = source / "ingest_date=2026-13-45" / "hour=05"
    bad.mkdir(parents=True)
    record = {
        "source": "orders", "event_id": "bad-date-1", "order_id": "ORD-0000000000BD", "customer_id": "CUST-00001",
        "product_id": "PROD-0001", "quantity": 1, "price": 2.5, "currency": "USD", "status": "paid",
        "event_ts": "2026-03-01T23:00:00Z",
    }  # fmt: skip
    (bad / "placed.jsonl").write_text(json.dumps(record) + "\n")

    done = subprocess.run(
        [LAKEHOUSE, "run", "--now", NOW], cwd=REPO, env={**os.environ, "LAKEHOUSE_HOME": str(home)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    assert done.returncode == 1
    record = json.loads((home / "runs" / "latest.json").read_text())
    results = {action["name"].rsplit(".", 1)[-1]: action for action in record["actions"]}
    error = results["orders_batch"]["error"]
    assert "a landing folder ingest_date=2026-13-45 is not a DATE" in error
    assert f": {bad.parent}. Move the folder out of the table's prefix" in error
    assert results["ad_clicks_batch"]["status"] == "success"

    day = next(path for path in source.glob("ingest_date=*") if path != bad.parent)
    (day / "hour=05").mkdir(exist_ok=True)
    (bad / "placed.jsonl").rename(day / "hour=05" / "moved.jsonl")
    bad.rmdir()
    bad.parent.rmdir()
    cli(home, REPO, "run", "--now", NOW)

    assert query(home, "select count(*) as n from silver.orders where event_id = 'bad-date-1'") == [{"n": 1}]
