"""What an Iceberg table's history costs as commits pile up, with and without snapshot expiry.

    .venv/bin/python bench/iceberg_history_bench.py                          # 600 commits, default retention
    .venv/bin/python bench/iceberg_history_bench.py --max-snapshots 1000000  # as before expiry: all kept
    .venv/bin/python bench/iceberg_history_bench.py --retention-ms 60000     # keeping 60 s of history

Commits --commits times to one 1,000-row table through the engine's IcebergStore, as an hourly run
does (`publish_changes`: one new row each commit, one changed row every 5th), and prints, every
sixth of the way, the snapshots kept, the size of the current metadata file, the files and bytes
in the table's folders, the time of the last commits and of loading the table, and peak RSS.
This is the mechanism on a small table (the commit cost, not the rows'); the retention is the
table properties history.expire.max-snapshot-age-ms and lakehouse.history.max-snapshots (docs/engine.md,
"Snapshot history").
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from lakehouse.engine.iceberg import MAX_SNAPSHOT_AGE, MAX_SNAPSHOTS, IcebergStore

TARGET = {"database": "bench", "schema": "silver", "name": "history"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=600, help="commits to make (default 600)")
    parser.add_argument("--retention-ms", type=int, default=None,
                        help=f"set {MAX_SNAPSHOT_AGE} on the table (default: the table's own, 5 days)")  # fmt: skip
    parser.add_argument("--max-snapshots", type=int, default=None,
                        help=f"set {MAX_SNAPSHOTS} on the table (default: the table's own, 100)")  # fmt: skip
    parser.add_argument("--home", type=Path, default=None, help="where the catalog goes (default: a temp dir)")
    args = parser.parse_args()
    if args.commits < 6:
        parser.error("--commits must be at least 6")
    home = args.home or Path(tempfile.mkdtemp(prefix="lakehouse-iceberg-history-"))
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    store = IcebergStore(home)
    con = duckdb.connect(":memory:")
    con.execute("ATTACH ':memory:' AS bench")
    con.execute("CREATE SCHEMA bench.silver")
    con.execute("CREATE TABLE bench.silver.history AS SELECT range AS id, range * 1.0 AS v FROM range(1000)")
    store.publish(con, TARGET, replace_schema=True)
    settings = {
        key: str(value)
        for key, value in ((MAX_SNAPSHOT_AGE, args.retention_ms), (MAX_SNAPSHOTS, args.max_snapshots))
        if value is not None
    }
    if settings:
        table = store.load(TARGET)
        with table.transaction() as tx:
            tx.set_properties(settings)
        store.load_mirror(con, TARGET)
    folder = store.data_dir / "bench.silver" / "history"
    step = args.commits // 6
    print(f"| commits | snapshots | metadata file | files | on disk | last {step} commits | load | peak RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    began = time.perf_counter()
    for commit in range(1, args.commits + 1):
        con.execute("INSERT INTO bench.silver.history VALUES (?, ?)", [1000 + commit, commit])
        if commit % 5 == 0:
            con.execute("UPDATE bench.silver.history SET v = v + 1 WHERE id = ?", [commit])
        store.publish_changes(con, TARGET)
        if commit % step == 0:
            took = time.perf_counter() - began
            loading = time.perf_counter()
            table = store.load(TARGET)
            loaded = time.perf_counter() - loading
            metadata = Path(table.metadata_location.removeprefix("file://")).stat().st_size
            files = [path for path in folder.rglob("*") if path.is_file()]
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"| {commit} | {len(table.snapshots())} | {metadata / 1024:.0f} KB | {len(files)} "
                f"| {sum(path.stat().st_size for path in files) / 1e6:.1f} MB | {took:.1f} s "
                f"| {loaded * 1000:.0f} ms | {rss:.0f} MB |",
                flush=True,
            )
            began = time.perf_counter()
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
