"""Benchmark the read copy a run publishes after each commit (reads during a run): what it adds to a run.

    .venv/bin/python bench/read_copy_bench.py [--events 20000] [--runs 3]

Generates --events demo events once, copies the home twice and runs the kit's own project --runs times
(a full build, then incremental runs) in each copy: once publishing after every commit, once with
publishing switched off. Prints run seconds, seconds spent publishing, files copied (the rest are
hard-linked) and the warehouse size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def measure(home: Path, runs: int, publish: bool) -> list[dict]:
    from lakehouse import paths, warehouse
    from lakehouse.engine.runner import RunOptions, run

    original = warehouse.publish_read_copy
    spent = {"seconds": 0.0, "calls": 0, "copies": 0}

    def timed(con, home_dir):
        started = time.perf_counter()
        written = original(con, home_dir) if publish else []
        spent["seconds"] += time.perf_counter() - started
        spent["calls"] += 1
        spent["copies"] += len(written)
        return written

    warehouse.publish_read_copy = timed
    os.environ[paths.HOME_ENV] = str(home)
    rows = []
    try:
        for index in range(runs):
            spent.update(seconds=0.0, calls=0, copies=0)
            started = time.perf_counter()
            record = run(REPO, options=RunOptions(now=NOW), home_dir=home)
            total = time.perf_counter() - started
            size = sum(f.stat().st_size for f in paths.warehouse_dir(home).glob("*.duckdb"))
            rows.append(
                {
                    "publish": "on" if publish else "off",
                    "run": "full" if index == 0 else "incremental",
                    "status": record.status,
                    "run_s": total,
                    "publish_s": spent["seconds"] if publish else None,
                    "calls": spent["calls"] if publish else None,
                    "copies": spent["copies"] if publish else None,
                    "warehouse_mb": size / 1e6,
                }
            )
    finally:
        warehouse.publish_read_copy = original
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lakehouse-read-copy-"))
    try:
        seed = work / "seed"
        subprocess.run(
            [sys.executable, "-c", "from lakehouse.cli import main; main()", "generate", "--in-process-bus"]
            + ["--events", str(args.events), "--as-of", NOW.strftime("%Y-%m-%dT%H:%M:%SZ")],
            env={**os.environ, "LAKEHOUSE_HOME": str(seed)},
            check=True,
            capture_output=True,
        )
        rows = []
        for publish in (True, False):
            home = work / ("on" if publish else "off")
            shutil.copytree(seed, home)
            rows += measure(home, args.runs, publish)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table(title=f"read copy after each commit, {args.events:,} events")
    for column in ("publish", "run", "status", "run s", "publish s", "calls", "files copied", "warehouse MB"):
        table.add_column(column, justify="left" if column in ("publish", "run", "status") else "right")
    for r in rows:
        table.add_row(
            r["publish"],
            r["run"],
            r["status"],
            f"{r['run_s']:.2f}",
            "" if r["publish_s"] is None else f"{r['publish_s']:.2f}",
            "" if r["calls"] is None else str(r["calls"]),
            "" if r["copies"] is None else str(r["copies"]),
            f"{r['warehouse_mb']:.1f}",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
