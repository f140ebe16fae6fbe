"""Tests for the warehouse connection's resource settings: memory limit, threads, spill directory."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from lakehouse import warehouse

# A sort of 2M rows of 32-character strings needs more than 64 MB: it only finishes by spilling.
BIG_SORT = (
    "select count(*), sum(hash(i)), min(s), max(s) from "
    "(select i, md5(i::varchar) as s from range(2000000) t(i) order by s)"
)


def _settings(con) -> tuple:
    return con.execute(
        "select current_setting('memory_limit'), current_setting('threads'), current_setting('temp_directory')"
    ).fetchone()


def test_connections_take_the_configured_limits(tmp_path, monkeypatch):
    monkeypatch.setenv(warehouse.MEMORY_LIMIT_ENV, "512MiB")
    monkeypatch.setenv(warehouse.THREADS_ENV, "1")
    con = warehouse.connect(tmp_path, ["lakehouse-dev"])
    try:
        assert _settings(con) == ("512.0 MiB", 1, str(tmp_path / "tmp" / "duckdb-spill"))
    finally:
        con.close()
    assert (tmp_path / "tmp" / "duckdb-spill").is_dir()


def test_the_log_is_checkpointed_at_a_32nd_of_the_memory_limit(tmp_path, monkeypatch):
    # An hourly run at 1M events logs about 20 MiB: under DuckDB's default threshold (16 MiB) one of its
    # commits stopped to checkpoint, a checkpoint the run makes anyway at its end.
    monkeypatch.setenv(warehouse.MEMORY_LIMIT_ENV, "2GiB")
    con = warehouse.connect(tmp_path, ["lakehouse-dev"])
    try:
        assert con.execute("select current_setting('checkpoint_threshold')").fetchone() == ("64.0 MiB",)
        con.execute('create table "lakehouse-dev".main.t (i bigint, s varchar)')
        for start in range(0, 400_000, 100_000):  # small inserts are logged, not written to the file
            con.execute(
                'insert into "lakehouse-dev".main.t select i, md5(i::varchar) || md5((i + 1)::varchar) '
                f"from range({start}, {start + 100_000}) r(i)"
            )
        wal_size = "select wal_size from pragma_database_size() where database_name = 'lakehouse-dev'"
        logged = con.execute(wal_size).fetchone()[0]
        assert logged.endswith("MiB") and float(logged.split()[0]) > 16, logged
        warehouse.checkpoint(con)
        assert con.execute(wal_size).fetchone()[0] == "0 bytes"
    finally:
        con.close()
    monkeypatch.setenv(warehouse.MEMORY_LIMIT_ENV, "512MB")  # never under DuckDB's default
    assert warehouse.resource_settings(tmp_path)["checkpoint_threshold"] == f"{16 * 1024**2}B"


def test_the_default_limit_is_a_share_of_the_machine_capped(tmp_path, monkeypatch):
    monkeypatch.delenv(warehouse.MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.delenv(warehouse.THREADS_ENV, raising=False)
    for machine, expected in ((24 * 1024**3, "2048MiB"), (4 * 1024**3, "1024MiB"), (512 * 1024**2, "256MiB")):
        monkeypatch.setattr(warehouse, "_machine_memory_bytes", lambda machine=machine: machine)
        assert warehouse.resource_settings(tmp_path)["memory_limit"] == expected
    monkeypatch.setattr(warehouse, "_machine_memory_bytes", lambda: 24 * 1024**3)
    with warehouse.open_catalog(tmp_path, "lakehouse-dev") as con:
        limit, threads, _ = _settings(con)
    assert limit == "2.0 GiB"
    assert threads == warehouse._machine_threads()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (warehouse.MEMORY_LIMIT_ENV, "80%", "LAKEHOUSE_MEMORY_LIMIT='80%' is not a memory size"),
        (warehouse.MEMORY_LIMIT_ENV, "lots", "LAKEHOUSE_MEMORY_LIMIT='lots' is not a memory size"),
        (warehouse.THREADS_ENV, "0", "LAKEHOUSE_THREADS='0' is not a positive whole number"),
        (warehouse.THREADS_ENV, "two", "LAKEHOUSE_THREADS='two' is not a positive whole number"),
        (warehouse.COMPRESSION_ENV, "gzip", "LAKEHOUSE_DISABLED_COMPRESSION='gzip' is not a list of DuckDB compr"),
        (warehouse.COMPRESSION_ENV, "fsst;x", "LAKEHOUSE_DISABLED_COMPRESSION='fsst;x' is not a list of DuckDB"),
    ],
)
def test_a_bad_setting_is_one_clear_error(tmp_path, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(warehouse.WarehouseSettingsError) as caught:
        warehouse.connect(tmp_path, ["lakehouse-dev"])
    assert str(caught.value).startswith(message)
    # Reported wherever a warehouse that cannot be opened is reported.
    assert isinstance(caught.value, warehouse.WarehouseBusy)


@pytest.mark.parametrize(("disabled", "used"), [(None, "FSST"), ("fsst", "Uncompressed"), (" FSST ", "Uncompressed")])
def test_a_compression_method_can_be_turned_off(tmp_path, monkeypatch, disabled, used):
    # 64-character strings, all different: DuckDB's default stores them with FSST
    if disabled is None:
        monkeypatch.delenv(warehouse.COMPRESSION_ENV, raising=False)
    else:
        monkeypatch.setenv(warehouse.COMPRESSION_ENV, disabled)
    con = warehouse.connect(tmp_path, ["lakehouse-dev"])
    try:
        con.execute(
            'create table "lakehouse-dev".main.t as select md5(i::varchar) || md5((3 * i)::varchar) as s '
            "from range(200000) r(i)"
        )
        con.execute('checkpoint "lakehouse-dev"')
        storage = con.execute("select compression from pragma_storage_info('\"lakehouse-dev\".main.t')").fetchall()
        methods = {method for (method,) in storage}
    finally:
        con.close()
    assert used in methods
    assert disabled is None or "FSST" not in methods


def test_a_query_larger_than_the_limit_spills_instead_of_failing(tmp_path, monkeypatch):
    reference = duckdb.connect(":memory:")
    expected = reference.execute(BIG_SORT).fetchone()
    reference.close()

    monkeypatch.setenv(warehouse.MEMORY_LIMIT_ENV, "64MB")
    monkeypatch.setenv(warehouse.THREADS_ENV, "2")
    con = warehouse.connect(tmp_path, ["lakehouse-dev"])
    try:
        # The same limit with spilling switched off runs out of memory: the query does need to spill.
        con.execute("SET temp_directory = ''")
        with pytest.raises(duckdb.OutOfMemoryException):
            con.execute(BIG_SORT).fetchone()
    finally:
        con.close()
    con = warehouse.connect(tmp_path, ["lakehouse-dev"])
    try:
        assert con.execute(BIG_SORT).fetchone() == expected
    finally:
        con.close()


def test_statements_with_parameters_do_not_search_for_a_pandas_that_is_not_installed():
    # DuckDB imports pandas at every execute with parameters; absent, the import searched the path each time
    probe = """
import importlib.machinery, sys
looked_up = []
class Counting:  # sees what reaches the search of the import path
    def find_spec(self, name, path=None, target=None):
        looked_up.append(name)
from lakehouse import warehouse
import duckdb
sys.meta_path.insert(sys.meta_path.index(importlib.machinery.PathFinder), Counting())
con = duckdb.connect()
for value in range(5):
    con.execute("select ?", [value]).fetchall()
print(looked_up.count("pandas"))
"""
    try:
        import pandas  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pandas is installed here: DuckDB finds it and keeps it")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0"
