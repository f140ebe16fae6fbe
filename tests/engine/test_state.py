"""Local state under LAKEHOUSE_HOME as a user meets it: damaged files, a moved home, reads during a run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

from click.testing import CliRunner

from lakehouse import paths, warehouse
from lakehouse.cli import main
from lakehouse.engine.iceberg import IcebergStore

PROJECT = "test-local"
FILES = {
    "definitions/sources/orders_landing.sqlx": """
        config { type: "operations", hasOutput: true, schema: "bronze", name: "orders_landing" }
        create or replace external table ${self()} (id int64)
        options (format = 'NEWLINE_DELIMITED_JSON', uris = ['gs://landing/orders/*'])
    """,
    "definitions/silver/orders.sqlx": """
        config { type: "table" }
        select id from ${ref("orders_landing")}
    """,
    "definitions/gold/order_count.sqlx": """
        config {
          type: "table", schema: "gold",
          iceberg: { fileFormat: "PARQUET", connection: "DEFAULT", bucketName: "lake", tableFolderRoot: "gold" },
        }
        select count(*) as orders from ${ref("orders")}
    """,
}
ORDER_COUNT = {"database": PROJECT, "schema": "gold", "name": "order_count"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def land(home, name, ids):
    folder = paths.gcs_object_path(home, "landing", "orders")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(f'{{"id": {i}}}\n' for i in ids))


def count(project, table="gold.order_count", column="orders"):
    result = invoke("query", f"select {column} from {table} order by 1", "--project-dir", project, "--format", "json")
    assert result.exit_code == 0, result.output
    return [row[column] for row in json.loads(result.stdout)]


def ran(project, *extra):
    result = invoke("run", "--project-dir", project, *extra)
    assert "Traceback" not in result.output
    return result


def error_line(result) -> str:
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_a_home_that_is_a_file_is_one_clear_error(make_project, lakehouse_home):
    project = make_project(FILES)
    lakehouse_home.write_text("not a directory")

    for args in (("run", "--project-dir", project), ("query", "select 1", "--project-dir", project)):
        result = invoke(*args)

        assert result.exit_code == 1
        assert error_line(result) == (
            f"Error: LAKEHOUSE_HOME={lakehouse_home} is a file, not a directory; point LAKEHOUSE_HOME at a "
            "directory (a new one is created), or move the file away if it is not yours to keep"
        )
    assert lakehouse_home.read_text() == "not a directory"


def test_a_home_whose_path_duckdb_would_read_as_a_glob_is_one_clear_error(make_project, tmp_path, monkeypatch):
    """Landing files and Iceberg data are read by patterns under the home: a '[' in its path would
    find no file, and the run would take nothing without a word."""
    project = make_project(FILES)
    home = tmp_path / "state[2026]"
    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))

    for args in (("run", "--project-dir", project), ("query", "select 1", "--project-dir", project)):
        result = invoke(*args)

        assert result.exit_code == 1
        assert error_line(result).startswith(
            f"Error: LAKEHOUSE_HOME={home} holds '[' ']', which DuckDB reads as a glob pattern: the landing files"
        )
    assert not home.exists()


def test_a_damaged_warehouse_file_is_named_kept_and_rebuilt_by_the_documented_steps(make_project, lakehouse_home):
    project = make_project(FILES)
    land(lakehouse_home, "a.jsonl", [1, 2])
    assert ran(project).exit_code == 0
    file = paths.catalog_file(lakehouse_home, PROJECT)
    whole = file.read_bytes()

    # cut short inside its catalog: where table data is cut instead, what is still there can be read
    for damaged in (b"garbage" * 100, whole[:12288], b""):
        file.write_bytes(damaged)
        for args in (("run", "--project-dir", project), ("query", "select 1", "--project-dir", project)):
            result = invoke(*args)

            assert result.exit_code == 1
            line = error_line(result)
            assert line.startswith(f"Error: the warehouse file {file} cannot be opened (")
            assert f"move it aside (mv {file} {file}.broken) and rebuild it with `lakehouse run --full-refresh`" in line
        assert file.read_bytes() == damaged

    file.rename(f"{file}.broken")
    assert ran(project, "--full-refresh").exit_code == 0
    assert count(project) == [2]
    assert len(IcebergStore(lakehouse_home).load(ORDER_COUNT).snapshots()) == 2


def test_a_truncated_compile_cache_entry_is_a_miss_and_is_rewritten(make_project, lakehouse_home):
    project = make_project(FILES)
    assert invoke("compile", "--project-dir", project).exit_code == 0
    (entry,) = paths.compile_cache_dir(lakehouse_home).glob("*.json")
    whole = entry.read_text()
    entry.write_text(whole[: len(whole) // 2])

    result = invoke("compile", "--project-dir", project)

    assert result.exit_code == 0, result.output
    assert "(cached)" not in result.output
    assert json.loads(entry.read_text()) == json.loads(whole)
    assert "(cached)" in invoke("compile", "--project-dir", project).output


def test_a_damaged_iceberg_catalog_is_never_replaced_and_recovers_with_its_history(make_project, lakehouse_home):
    project = make_project(FILES)
    land(lakehouse_home, "a.jsonl", [1, 2])
    assert ran(project).exit_code == 0
    land(lakehouse_home, "b.jsonl", [3])
    assert ran(project).exit_code == 0
    catalog = paths.iceberg_dir(lakehouse_home) / "catalog.db"

    for damaged, what in ((b"garbage" * 100, "is not a SQLite database"), (b"", "is empty while 1 Iceberg table(s)")):
        catalog.write_bytes(damaged)

        result = ran(project)

        assert result.exit_code == 1
        assert error_line(result).startswith(f"Error: the Iceberg catalog {catalog} {what}")
        assert f"move it aside (mv {catalog} {catalog}.broken): the next command re-registers" in result.output
        assert catalog.read_bytes() == damaged

    catalog.rename(f"{catalog}.broken")
    land(lakehouse_home, "c.jsonl", [4])
    assert ran(project).exit_code == 0
    table = IcebergStore(lakehouse_home).load(ORDER_COUNT)
    assert [row["orders"] for row in table.scan().to_arrow().to_pylist()] == [4]
    assert len(table.snapshots()) == 3
    assert count(project) == [4]


def test_an_empty_iceberg_catalog_without_tables_is_simply_created(lakehouse_home):
    root = paths.iceberg_dir(lakehouse_home)
    root.mkdir(parents=True)
    (root / "catalog.db").write_bytes(b"")

    store = IcebergStore(lakehouse_home)

    assert store.load(ORDER_COUNT) is None
    assert (root / "catalog.db").read_bytes().startswith(b"SQLite format 3\x00")


def test_a_garbage_latest_run_record_fails_the_report(make_project, lakehouse_home):
    project = make_project(FILES)
    land(lakehouse_home, "a.jsonl", [1])
    assert ran(project).exit_code == 0
    latest = paths.runs_dir(lakehouse_home) / "latest.json"
    latest.write_text("\x00garbage")

    result = invoke("report", "--project-dir", project)

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    # The report prints through rich, which wraps long lines.
    assert f"the run record {latest} is unreadable" in result.output.replace("\n", "")
    latest.unlink()
    assert invoke("report", "--project-dir", project).exit_code == 0


def tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file())


def test_a_moved_home_is_queried_and_run_in_its_new_place(make_project, lakehouse_home, tmp_path, monkeypatch):
    project = make_project(FILES)
    land(lakehouse_home, "a.jsonl", [1, 2])
    assert ran(project).exit_code == 0
    moved = tmp_path / "elsewhere" / "home"
    moved.parent.mkdir()
    shutil.move(lakehouse_home, moved)
    monkeypatch.setenv(paths.HOME_ENV, str(moved))

    assert count(project) == [2]
    assert count(project, table="bronze.orders_landing", column="id") == [1, 2]
    land(moved, "b.jsonl", [3])
    assert ran(project).exit_code == 0
    assert count(project) == [3]

    assert not lakehouse_home.exists()
    assert (paths.home_record(moved)).read_text() == f"{moved}\n"
    files = IcebergStore(moved).data_files(ORDER_COUNT)
    assert files and all(f.startswith(f"{moved}/iceberg/data/") for f in files)


def test_a_copied_home_never_reads_or_writes_the_original(make_project, lakehouse_home, tmp_path, monkeypatch):
    project = make_project(FILES)
    land(lakehouse_home, "a.jsonl", [1, 2])
    assert ran(project).exit_code == 0
    original = tree(lakehouse_home)
    copy = tmp_path / "copy"
    shutil.copytree(lakehouse_home, copy)
    monkeypatch.setenv(paths.HOME_ENV, str(copy))
    # Diverge the copy from the original: a query reading the original's files would see 2 rows.
    (paths.gcs_object_path(copy, "landing", "orders") / "a.jsonl").unlink()
    land(copy, "b.jsonl", [7])

    assert ran(project).exit_code == 0
    assert count(project) == [1]
    assert count(project, table="silver.orders", column="id") == [7]

    assert tree(lakehouse_home) == original
    assert len(IcebergStore(copy).load(ORDER_COUNT).snapshots()) == 2
    assert len(IcebergStore(lakehouse_home).load(ORDER_COUNT).snapshots()) == 1


HOLD = textwrap.dedent(
    """
    import sys
    from lakehouse.engine.runner import run

    def pause(name, result, done, total):
        if name.endswith("gold.order_count") and result is None:
            print("holding", flush=True)
            sys.stdin.readline()

    print(run(sys.argv[1], on_progress=pause).status, flush=True)
    """
)


def test_reads_during_a_run_see_its_last_commit(make_project, lakehouse_home, monkeypatch):
    project = make_project(FILES)
    land(lakehouse_home, "a.jsonl", [1, 2])
    assert ran(project).exit_code == 0
    land(lakehouse_home, "b.jsonl", [3])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(project)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, paths.HOME_ENV: str(lakehouse_home)},
    )
    try:
        assert holder.stdout.readline().strip() == "holding"

        # silver.orders is committed by the running run; gold.order_count is not yet.
        result = invoke("query", "select count(*) as n from silver.orders", "--project-dir", project, "--format", "csv")
        assert result.exit_code == 0, result.output
        assert result.stdout == "n\n3\n"
        assert "note: a run holds the warehouse; reading test-local as of the run's last committed action" in (
            result.output
        )
        assert count(project) == [2]

        write = invoke("query", "create table silver.scratch as select 1 as x", "--project-dir", project)
        assert write.exit_code == 1
        assert (
            "error: a run holds the warehouse, so this query reads the copy of its last commit and cannot write; "
            "run it again when the run has finished (Invalid Input Error: "
        ) in error_free(write).replace("\n", "")

        # With no wait for the lock, the other read-only commands read the copy too.
        monkeypatch.setenv(warehouse.LOCK_WAIT_ENV, "0")
        assert invoke("report", "--project-dir", project).exit_code == 0
        dry = invoke("run", "--dry-run", "--project-dir", project)
        assert dry.exit_code == 0, dry.output
        assert "success: 3 planned" in dry.output

        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "success"
    finally:
        holder.kill()
        holder.wait()
    assert count(project) == [3]


def test_a_run_nobody_reads_during_copies_nothing(make_project, lakehouse_home):
    project = make_project(FILES)
    land(lakehouse_home, "a.jsonl", [1, 2])

    assert ran(project).exit_code == 0
    land(lakehouse_home, "b.jsonl", [3])
    assert ran(project).exit_code == 0

    folder = paths.read_copy_dir(lakehouse_home)
    assert not folder.exists() or not [entry for entry in folder.iterdir() if entry.is_dir()]
    assert count(project) == [3]


def error_free(result) -> str:
    assert "Traceback" not in result.output
    return result.output
