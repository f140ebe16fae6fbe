"""Benchmark reads during a run: what the read copy adds to a run, with and without a reader.

    .venv/bin/python bench/read_copy_bench.py [--events 20000] [--runs 3] [--every 1.0]

Generates --events demo events once, copies the home twice and runs the kit's own project --runs times
(a full build, then runs with nothing new) in each copy: once with nobody reading, once with a reader
process opening the warehouse read-only every --every seconds (as `lakehouse query` does during a run),
which makes the run publish a copy of its last commit at the next moment no action runs. Prints run
seconds, copies published and seconds spent on them, and the reader's wait for each read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)

READER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from lakehouse import warehouse
    home, project, every = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    while True:
        started = time.perf_counter()
        try:
            con = warehouse.connect(home, [project], read_only=True, wait_seconds=60)
            con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ?", [project]).fetchall()
            con.close()
            print(f"read {time.perf_counter() - started:.3f}", flush=True)
        except Exception as error:
            print(f"failed {type(error).__name__}: {error}", flush=True)
        time.sleep(every)
    """
)


def measure(home: Path, runs: int, every: float | None) -> list[dict]:
    from lakehouse import paths, warehouse
    from lakehouse.engine.runner import RunOptions, run

    project = yaml.safe_load((REPO / "workflow_settings.yaml").read_text())["defaultProject"]
    original = warehouse.publish_read_copy
    spent = {"seconds": 0.0, "calls": 0, "copies": 0}

    def timed(con, home_dir):
        started = time.perf_counter()
        written = original(con, home_dir)
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
            reader = None
            if every is not None:
                reader = subprocess.Popen(
                    [sys.executable, "-c", READER, str(home), project, str(every)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            started = time.perf_counter()
            try:
                record = run(REPO, options=RunOptions(now=NOW), home_dir=home)
                total = time.perf_counter() - started
            finally:
                output = ""
                if reader is not None:
                    reader.kill()
                    output = reader.communicate()[0]
            waits = [float(line.split()[1]) for line in output.splitlines() if line.startswith("read ")]
            rows.append(
                {
                    "reader": "none" if every is None else f"every {every:g} s",
                    "run": "full" if index == 0 else "nothing new",
                    "status": record.status,
                    "run_s": total,
                    "publish_s": spent["seconds"],
                    "calls": spent["calls"],
                    "copies": spent["copies"],
                    "reads": len(waits),
                    "failed": sum(1 for line in output.splitlines() if line.startswith("failed ")),
                    "wait": f"{statistics.median(waits):.2f} / {max(waits):.2f}" if waits else "",
                    "errors": [line for line in output.splitlines() if line.startswith("failed ")][:2],
                }
            )
    finally:
        warehouse.publish_read_copy = original
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between the reader's reads")
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
        for every in (None, args.every):
            home = work / ("reader" if every else "alone")
            shutil.copytree(seed, home)
            rows += measure(home, args.runs, every)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table(title=f"reads during a run, {args.events:,} events")
    columns = ("reader", "run", "status", "run s", "copies made", "s copying", "files copied", "reads", "failed",
               "read wait s (median / max)")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("reader", "run", "status") else "right")
    for r in rows:
        cells = [r["reader"], r["run"], r["status"], f"{r['run_s']:.2f}", str(r["calls"]), f"{r['publish_s']:.2f}"]
        table.add_row(*cells, str(r["copies"]), str(r["reads"]), str(r["failed"]), r["wait"])
    Console(width=160).print(table)
    for r in rows:
        for line in r["errors"]:
            print(f"{r['reader']}, {r['run']}: {line}")


if __name__ == "__main__":
    main()
