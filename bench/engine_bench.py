"""Benchmark the embedded engine: per-action overhead, run vs direct DuckDB, cached vs cold compile.

    .venv/bin/python bench/engine_bench.py [--rows 1000000] [--actions 30] [--repeat 3] [--json out.json]

The engine run executes exactly the translated statements that a direct DuckDB session executes
afterwards; the difference is the engine's own cost (state lookups, transactions, records).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import write_project  # noqa: E402

from lakehouse import warehouse  # noqa: E402
from lakehouse.engine import translate  # noqa: E402
from lakehouse.engine.compile import compile_project  # noqa: E402
from lakehouse.engine.runner import run  # noqa: E402


def project_files(rows: int, actions: int) -> dict[str, str]:
    """A seed table of `rows` rows and a chain of table/view/incremental actions over it."""
    files = {
        "definitions/seed.sqlx": f"""
            config {{ type: "operations", hasOutput: true, schema: "bronze", name: "events" }}
            create or replace table ${{self()}} as
            select x as event_id, concat('CUST-', cast(mod(x, 5000) as string)) as customer_id,
                   mod(x, 97) * 1.5 as amount_usd, timestamp_add(timestamp '2026-01-01', interval x second) as event_ts
            from unnest(generate_array(1, {rows})) as x
        """
    }
    kinds = ["table", "view", "incremental"]
    previous = "events"
    for i in range(actions):
        kind = kinds[i % 3]
        extra = ', uniqueKey: ["event_id"]' if kind == "incremental" else ""
        files[f"definitions/step_{i:02d}.sqlx"] = f"""
            config {{ type: "{kind}"{extra}, assertions: {{ nonNull: ["event_id"] }} }}
            select event_id, customer_id, amount_usd + {i} as amount_usd, event_ts
            from ${{ref("{previous}")}}
            where safe_cast(customer_id as string) is not null
        """
        previous = f"step_{i:02d}"
    return files


def direct_seconds(home: Path, project: str, statements: list[list[str]]) -> float:
    """Execute the same statements straight on DuckDB (one transaction per action); return seconds."""
    con = warehouse.connect(home, [project])
    translate.register_functions(con)
    started = time.perf_counter()
    for action_statements in statements:
        con.execute("BEGIN TRANSACTION")
        for sql in action_statements:
            cursor = con.execute(sql)
            if cursor.description:
                cursor.fetchall()
        con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def measure(project: Path, home: Path, repeat: int, compile_s: float) -> tuple[list[float], list[float], int]:
    """Rerun the project `repeat` times, each followed by the same statements on DuckDB directly.

    Returns (engine seconds per run with the cached compile subtracted, direct seconds, actions).
    """
    run(project)  # the first run creates every table; measured runs are reruns of the same graph
    engine_runs, direct_runs = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        record = run(project)
        wall = time.perf_counter() - started
        assert record.status == "success", [a.error for a in record.actions if a.error]
        engine_runs.append(wall - compile_s)
        direct_runs.append(direct_seconds(home, "bench-local", [a.statements for a in record.actions]))
    return engine_runs, direct_runs, len(record.actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="seed rows of the run-vs-direct comparison")
    parser.add_argument("--overhead-rows", type=int, default=1_000, help="seed rows of the per-action overhead run")
    parser.add_argument("--actions", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    os.environ["LAKEHOUSE_HOME"] = str(scratch / "home")
    home = scratch / "home"
    project = write_project(scratch / "project", project_files(args.rows, args.actions), project="bench-local")

    cold = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        compile_project(project, use_cache=False)
        cold.append(time.perf_counter() - started)
    cached = []
    for _ in range(max(10, args.repeat)):
        started = time.perf_counter()
        assert compile_project(project).cached
        cached.append(time.perf_counter() - started)
    compile_s = statistics.median(cached)

    engine_runs, direct_runs, actions = measure(project, home, args.repeat, compile_s)

    # Per-action overhead on tiny data, where DuckDB's own work is small and the engine's shows.
    small = write_project(scratch / "small", project_files(args.overhead_rows, args.actions), project="bench-local")
    shutil.rmtree(home / "warehouse", ignore_errors=True)
    compile_project(small)
    small_engine, small_direct, small_actions = measure(small, home, max(5, args.repeat), compile_s)
    overheads = [(e - d) / small_actions for e, d in zip(small_engine, small_direct, strict=True)]

    figures = {
        "actions_per_run": actions,
        "seed_rows": args.rows,
        "cold_compile_s": statistics.median(cold),
        "cached_compile_ms": compile_s * 1000,
        "engine_run_s": statistics.median(engine_runs),
        "direct_duckdb_s": statistics.median(direct_runs),
        "run_vs_direct_ratio": statistics.median(engine_runs) / statistics.median(direct_runs),
        "overhead_seed_rows": args.overhead_rows,
        "overhead_per_action_ms": statistics.median(overheads) * 1000,
    }
    table = Table(title=f"engine benchmark ({actions} actions per run, median of {args.repeat}+)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("cold compile (pinned CLI)", f"{figures['cold_compile_s']:.2f} s", "")
    table.add_row("cached compile", f"{figures['cached_compile_ms']:.1f} ms", "≤ 50 ms")
    table.add_row(f"engine run, {args.rows:,} rows, compile excluded", f"{figures['engine_run_s']:.2f} s", "")
    table.add_row("same statements, direct DuckDB", f"{figures['direct_duckdb_s']:.2f} s", "")
    table.add_row("engine / direct", f"{figures['run_vs_direct_ratio']:.3f}×", "≤ 1.10×")
    table.add_row(
        f"overhead per action ({args.overhead_rows:,} rows)", f"{figures['overhead_per_action_ms']:.1f} ms", "≤ 20 ms"
    )
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    duckdb.default_connection().close()
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
