"""`lakehouse export` on the real local warehouse, and the EXPORT DATA statements it runs on BigQuery."""

from __future__ import annotations

import datetime as dt
import io
import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from lakehouse.export import Target, export_command, export_statements
from serve.conftest import REPO, rows

TABLE = "lakehouse-dev.gold.daily_product_summary"


def export(home, *args: str):
    # The local buckets, not a storage emulator another test of the session may have left configured.
    env = {"LAKEHOUSE_HOME": str(home), "STORAGE_EMULATOR_HOST": None}
    return CliRunner().invoke(export_command, [*args, "--project-dir", str(REPO)], env=env)


def objects(home, bucket: str) -> dict[str, bytes]:
    root = home / "gcs" / bucket
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_parquet_export_writes_one_file_per_date_and_a_manifest(served_home):
    done = export(served_home, TABLE, "--to", "gs://exports/gold/dps")
    assert done.exit_code == 0, done.output
    days = rows(served_home, "select sales_date, count(*) as n from gold.daily_product_summary group by 1 order by 1")
    written = objects(served_home, "exports")
    names = [f"gold/dps/sales_date={d['sales_date'].isoformat()}/part-00000.parquet" for d in days]
    assert sorted(written) == sorted([*names, "gold/dps/_SUCCESS"])
    for day, name in zip(days, names, strict=True):
        table = pq.read_table(io.BytesIO(written[name]))
        assert table.num_rows == day["n"]
        assert set(table.column("sales_date").to_pylist()) == {day["sales_date"]}
    manifest = json.loads(written["gold/dps/_SUCCESS"])
    assert manifest["objects"] == {name: day["n"] for name, day in zip(names, days, strict=True)}
    assert f"{sum(d['n'] for d in days)} rows in {len(days)} files" in done.output


def test_rerun_replaces_the_previous_export_exactly(served_home):
    assert export(served_home, TABLE, "--format", "jsonl", "--to", "gs://exports/again").exit_code == 0
    first = objects(served_home, "exports")
    stale = served_home / "gcs" / "exports" / "again" / "sales_date=1999-01-01" / "part-00000.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"left": "by an older run"}\n')
    assert export(served_home, TABLE, "--format", "jsonl", "--to", "gs://exports/again").exit_code == 0
    assert objects(served_home, "exports") == first
    lines = b"".join(v for k, v in first.items() if k.startswith("again/sales_date=")).splitlines()
    count = rows(served_home, "select count(*) as n from gold.daily_product_summary")[0]["n"]
    assert len(lines) == count


def test_a_prefix_holding_what_no_export_wrote_is_refused_and_kept(served_home):
    landed = served_home / "gcs" / "landing" / "source=orders" / "ingest_date=2026-01-02" / "hour=03" / "a.jsonl"
    landed.parent.mkdir(parents=True)
    landed.write_text('{"order_id": "o-1"}\n')

    done = export(served_home, TABLE, "--to", "gs://landing/source=orders")
    everything = export(served_home, TABLE, "--to", "gs://landing")

    assert done.exit_code == 1 and everything.exit_code == 1
    named = "holds 1 object(s) no export wrote (first: source=orders/ingest_date=2026-01-02/hour=03/a.jsonl)"
    assert named in " ".join(done.output.split())
    assert list(objects(served_home, "landing")) == ["source=orders/ingest_date=2026-01-02/hour=03/a.jsonl"]


def test_csv_export_has_a_header_per_file(served_home):
    assert export(served_home, TABLE, "--format", "csv", "--to", "gs://exports/csv").exit_code == 0
    files = {k: v for k, v in objects(served_home, "exports").items() if k.startswith("csv/sales_date=")}
    assert files
    for data in files.values():
        assert data.splitlines()[0] == b'"sales_date","product_id","currency","order_count","units","revenue"'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gold.daily_sales", "--to", "gs://bkt/p"], "'gold.daily_sales' is not project.dataset.table"),
        ([TABLE, "--to", "s3://b/p"], "must start with gs://"),
        ([TABLE, "--to", "gs://bkt/../../etc"], "may hold only letters"),
        (["lakehouse-dev.gold.customers", "--to", "gs://bkt/p"], "has no partitionBy in the graph"),
    ],
)
def test_bad_arguments_exit_2_naming_them(served_home, args, message):
    done = export(served_home, *args)
    assert done.exit_code == 2
    assert message in " ".join(done.output.split())


def test_bigquery_export_is_one_parameterised_statement_per_date():
    statements = export_statements(
        ("acme-prod", "gold", "daily_sales"), "sales_date", [dt.date(2026, 1, 2), None], "csv",
        Target("acme-exports", "gold/daily_sales"),
    )  # fmt: skip
    (first, first_params), (second, second_params) = statements
    assert first == (
        "export data options (uri = 'gs://acme-exports/gold/daily_sales/sales_date=2026-01-02/part-*.csv', "
        "format = 'CSV', overwrite = true, header = true) as select * from `acme-prod.gold.daily_sales` "
        "where date(`sales_date`) = @day"
    )
    assert [(p.name, p.type_, p.value) for p in first_params] == [("day", "DATE", dt.date(2026, 1, 2))]
    assert second == (
        "export data options (uri = 'gs://acme-exports/gold/daily_sales/sales_date=__NULL__/part-*.csv', "
        "format = 'CSV', overwrite = true, header = true) as select * from `acme-prod.gold.daily_sales` "
        "where date(`sales_date`) is null"
    )
    assert second_params == []
