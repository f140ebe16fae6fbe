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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
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

    run(project)  # first run creates every table; measured runs are reruns of the same graph
    engine_runs, direct_runs, overheads = [], [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        record = run(project)
        wall = time.perf_counter() - started
        assert record.status == "success", [a.error for a in record.actions if a.error]
        compile_s = min(cached)
        engine_s = wall - compile_s
        direct = direct_seconds(home, "bench-local", [a.statements for a in record.actions])
        engine_runs.append(engine_s)
        direct_runs.append(direct)
        overheads.append((engine_s - direct) / len(record.actions))

    figures = {
        "actions_per_run": len(record.actions),
        "seed_rows": args.rows,
        "cold_compile_s": statistics.median(cold),
        "cached_compile_ms": statistics.median(cached) * 1000,
        "engine_run_s": statistics.median(engine_runs),
        "direct_duckdb_s": statistics.median(direct_runs),
        "run_vs_direct_ratio": statistics.median(engine_runs) / statistics.median(direct_runs),
        "overhead_per_action_ms": statistics.median(overheads) * 1000,
    }
    table = Table(
        title=f"engine benchmark ({args.rows:,} seed rows, {len(record.actions)} actions, median of {args.repeat})"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("cold compile (pinned CLI)", f"{figures['cold_compile_s']:.2f} s", "")
    table.add_row("cached compile", f"{figures['cached_compile_ms']:.1f} ms", "≤ 50 ms")
    table.add_row("engine run, compile excluded", f"{figures['engine_run_s']:.2f} s", "")
    table.add_row("same statements, direct DuckDB", f"{figures['direct_duckdb_s']:.2f} s", "")
    table.add_row("engine / direct", f"{figures['run_vs_direct_ratio']:.3f}×", "≤ 1.10×")
    table.add_row("overhead per action", f"{figures['overhead_per_action_ms']:.1f} ms", "≤ 20 ms")
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    duckdb.default_connection().close()
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
