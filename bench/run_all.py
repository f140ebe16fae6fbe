"""Run every benchmark of the kit and print one table of figures (and write them as JSON).

    .venv/bin/python bench/run_all.py                    # full sizes: 1M events, 10M rows incremental
    .venv/bin/python bench/run_all.py --quick            # small sizes, about a minute
    .venv/bin/python bench/run_all.py --only e2e,incremental --events 200000 --json out.json

Steps, each in its own process (its peak resident memory is read from os.wait4):
  engine       bench/engine_bench.py: per-action overhead, engine vs direct DuckDB, cached vs cold compile
  ingest       bench/ingest_bench.py: generator and landing rates, Pub/Sub path (when the script exists)
  compile      the repository's own project: cold compile (pinned CLI) vs cached compile
  e2e          N generated events → landing → bronze → silver → gold.daily_product_summary with the engine,
               against a hand-written DuckDB SQL baseline doing the same work (bench/baseline_all.sql's orders)
  incremental  an incremental table over M rows: +1% new rows incrementally vs a full refresh
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("engine", "ingest", "compile", "e2e", "incremental")
E2E_TARGET = "gold.daily_product_summary"


# -- running steps in their own processes ---------------------------------------------------------------
def run_child(command: list[str], timeout: float) -> tuple[int, float, float, str]:
    """Run `command`; return (exit status, seconds, peak RSS in MB, last lines of its output)."""
    code, seconds, usage, output = run_child_usage(command, timeout)
    return code, seconds, usage.ru_maxrss / 1024, output  # ru_maxrss is in KiB on Linux


def run_child_usage(command: list[str], timeout: float, env: dict[str, str] | None = None):
    """Run `command` (in `env`, default this process's); return (exit status, seconds, its resource usage
    from os.wait4 (CPU time and peak memory, its own and its reaped children's), its output). A command
    still running after `timeout` seconds is killed (exit status -1)."""
    started = time.perf_counter()
    log = tempfile.TemporaryFile(mode="w+")
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                             env=os.environ.copy() if env is None else env)  # fmt: skip
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            child.kill()
            pid, status, usage = os.wait4(child.pid, 0)
            status = -1
            break
        time.sleep(0.05)
    child.returncode = 0  # reaped by wait4: keep Popen from waiting again
    seconds = time.perf_counter() - started
    log.seek(0)
    output = log.read()
    code = status if status == -1 else os.waitstatus_to_exitcode(status)
    return code, seconds, usage, output


def step_command(step: str, args: argparse.Namespace, out: Path) -> list[str] | None:
    """Return the command that measures `step` and writes its figures to `out`, or None when unavailable."""
    python = sys.executable
    if step == "engine":
        return [
            python,
            "bench/engine_bench.py",
            "--rows",
            str(args.engine_rows),
            "--actions",
            str(args.actions),
            "--repeat",
            str(args.repeat),
            "--json",
            str(out),
        ]
    if step == "ingest":
        script = REPO / "bench" / "ingest_bench.py"
        if not script.is_file():
            return None
        command = [python, str(script)]
        if args.quick:
            command.append("--quick")
        return command + ["--json", str(out)]
    return [python, __file__, "--step", step, "--step-json", str(out), *forwarded(args)]


def forwarded(args: argparse.Namespace) -> list[str]:
    return [
        "--events",
        str(args.events),
        "--incremental-rows",
        str(args.incremental_rows),
        "--repeat",
        str(args.repeat),
    ]


def ingest_flags_supported() -> tuple[bool, bool]:
    """Return whether bench/ingest_bench.py takes --json and --quick (it belongs to the ingest work)."""
    script = REPO / "bench" / "ingest_bench.py"
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )
    return "--json" in done.stdout, "--quick" in done.stdout


# -- step: compile ---------------------------------------------------------------------------------------
def measure_compile(args: argparse.Namespace) -> dict:
    """Cold (pinned CLI) and cached compiles of the repository's project."""
    from lakehouse.engine.compile import compile_project

    cold, cached = [], []
    for _ in range(max(1, args.repeat)):
        started = time.perf_counter()
        compiled = compile_project(REPO, use_cache=False)
        cold.append(time.perf_counter() - started)
    for _ in range(10):
        started = time.perf_counter()
        assert compile_project(REPO).cached
        cached.append(time.perf_counter() - started)
    graph = compiled.graph
    return {
        "repo_actions": sum(len(graph.get(k) or []) for k in ("tables", "operations", "assertions")),
        "repo_cold_compile_s": sorted(cold)[len(cold) // 2],
        "repo_cached_compile_ms": sorted(cached)[len(cached) // 2] * 1000,
    }


# -- step: e2e ---------------------------------------------------------------------------------------------
class DirStore:
    """An ObjectStore writing objects as files where the local engine reads gs:// paths."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def put_new(self, bucket, name, data, *, content_type, metadata):
        from ingest.storage import StoredObject
        from lakehouse import paths

        path = paths.gcs_object_path(self.home, bucket, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        if created:
            path.write_bytes(data)
        return StoredObject(bucket, name, created, {"size": len(data), "contentType": content_type})


def land_events(home: Path, events: int, settings: dict) -> dict:
    """Generate `events` events and land them with the landing function's own route/land; return figures."""
    from ingest import landing
    from ingest.contracts import load_contracts
    from ingest.generator import batches, generate

    contracts = load_contracts(REPO)
    as_of = datetime(2026, 1, 15, tzinfo=UTC)
    started = time.perf_counter()
    generated = generate(contracts, events, seed=7, as_of=as_of, span=timedelta(days=3))
    generate_s = time.perf_counter() - started
    config = landing.LandingConfig(
        landing_bucket=settings["vars"]["landing_bucket"],
        dead_letter_bucket="lakehouse-dead-letter",
        sources=frozenset(contracts),
    )
    store = DirStore(home)
    started = time.perf_counter()
    lines = 0
    for source, made in generated.items():
        for batch in batches(made.lines, 10_000):
            routed = landing.route(b"\n".join(batch), source, config)
            landing.land(routed, store, config, as_of)
            lines += len(batch)
    land_s = time.perf_counter() - started
    return {
        "events": events,
        "lines_landed": lines,
        "generate_s": generate_s,
        "land_s": land_s,
        "generator_events_per_s": events / generate_s,
        "landing_lines_per_s": lines / land_s,
    }


def gold_snapshot(con, table: str) -> list[tuple]:
    """Return (day, product, units, revenue rounded to cents) of a daily product summary table, sorted."""
    columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    day = next(c for c in columns if "date" in c or c == "day")
    units = next(c for c in columns if "unit" in c or "quantity" in c)
    revenue = next(c for c in columns if "revenue" in c)
    rows = con.execute(
        f'SELECT CAST("{day}" AS DATE), product_id, sum("{units}"), round(sum("{revenue}"), 2) FROM {table} '
        "GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    return [tuple(r) for r in rows]


def measure_e2e(args: argparse.Namespace) -> dict:
    """Events → Gold with the engine vs the hand-written DuckDB baseline, same landed files, same machine."""
    import yaml

    from lakehouse import warehouse
    from lakehouse.engine.compile import compile_project
    from lakehouse.engine.graph import Graph
    from lakehouse.engine.runner import run

    settings = yaml.safe_load((REPO / "workflow_settings.yaml").read_text())
    project = settings["defaultProject"]
    graph = Graph.from_compiled(compile_project(REPO).graph)
    target = next((n for n in graph.actions if n.endswith("." + E2E_TARGET)), None)
    if target is None:
        return {"not_measured": f"the repository has no {E2E_TARGET} model yet"}
    sys.path.insert(0, str(REPO / "bench"))
    from incremental_bench import baseline_script  # the orders section of bench/baseline_all.sql

    from ingest.pubsub import RAW_COLUMNS

    home = Path(os.environ["LAKEHOUSE_HOME"])
    figures = land_events(home, args.events, settings)
    # Every event arrives through the landing files here; the Pub/Sub raw table exists, empty.
    con = warehouse.connect(home, [project])
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{project}".bronze')
    columns = ", ".join(f"{name} {duck}" for name, _, duck in RAW_COLUMNS)
    con.execute(f'CREATE TABLE IF NOT EXISTS "{project}".bronze.orders_raw ({columns})')
    con.close()
    started = time.perf_counter()
    record = run(REPO, actions=(target,), include_deps=True, home_dir=home)
    figures["engine_s"] = time.perf_counter() - started
    figures["engine_actions"] = len(record.actions)
    figures["engine_status"] = record.status
    figures["engine_action_s"] = {a.name.rsplit(".", 1)[-1]: round(a.duration_s, 3) for a in record.actions}
    failed = [a for a in record.actions if a.status == "failed" and a.type != "assertion"]
    if failed:
        figures["engine_error"] = failed[0].error
    script = baseline_script(home, settings["vars"]["landing_bucket"], ("orders",), (E2E_TARGET.split(".")[-1],))
    con = warehouse.connect(home, [project])
    try:
        # the salt the engine's run made in keys.pii_salt, so both hash alike
        salt = con.execute(f'SELECT salt FROM "{project}".keys.pii_salt').fetchone()[0]
        script = script.replace("{pii_salt}", salt)
        con.execute(f'USE "{project}"')  # the baseline writes into the same DuckDB file as the engine
        con.execute("CREATE SCHEMA IF NOT EXISTS baseline")
        started = time.perf_counter()
        con.execute(script)
        figures["baseline_s"] = time.perf_counter() - started
        baseline_gold = gold_snapshot(con, "baseline.daily_product_summary")
        figures["baseline_gold_rows"] = len(baseline_gold)
        if "engine_error" in figures:
            return figures
        engine_gold = gold_snapshot(con, ".".join(f'"{p}"' for p in target.split(".")))
    finally:
        con.close()
    figures["engine_vs_baseline_ratio"] = figures["engine_s"] / figures["baseline_s"]
    figures["gold_rows"] = len(engine_gold)
    figures["gold_matches_baseline"] = engine_gold == baseline_gold
    return figures


# -- step: incremental -------------------------------------------------------------------------------------
INCREMENTAL_FILES = {
    "definitions/sources/events.sqlx": 'config { type: "declaration", schema: "bronze", name: "events" }',
    "definitions/silver/events.sqlx": """
        config { type: "incremental", schema: "silver", uniqueKey: ["event_id"] }
        select event_id, customer_id, amount_usd, event_ts
        from ${ref("bronze", "events")}
        where true ${when(incremental(), `and event_ts > (select max(event_ts) from ${self()})`)}
        qualify row_number() over (partition by event_id order by event_ts desc) = 1
    """,
    "definitions/gold/daily_revenue.sqlx": """
        config { type: "incremental", schema: "gold", uniqueKey: ["day"] }
        select date(event_ts) as day, count(*) as events, sum(amount_usd) as revenue_usd
        from ${ref("silver", "events")}
        ${when(incremental(), `where date(event_ts) >= (select max(day) from ${self()})`)}
        group by 1
    """,
}


def _seed_events(home: Path, project: str, first: int, count: int, start: datetime) -> None:
    from lakehouse import warehouse

    con = warehouse.connect(home, [project])
    try:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{project}".bronze')
        con.execute(
            f'CREATE TABLE IF NOT EXISTS "{project}".bronze.events '
            "(event_id BIGINT, customer_id VARCHAR, amount_usd DOUBLE, event_ts TIMESTAMPTZ)"
        )
        con.execute(
            f"INSERT INTO \"{project}\".bronze.events SELECT i, 'CUST-' || (i % 50000), (i % 997) * 0.25, "
            f"TIMESTAMPTZ '{start.isoformat()}' + to_seconds(CAST((i - {first}) AS BIGINT)) "
            f"FROM range({first}, {first + count}) t(i)"
        )
    finally:
        con.close()


def _gold(home: Path, project: str) -> list[tuple]:
    from lakehouse import warehouse

    con = warehouse.connect(home, [project], read_only=True)
    try:
        return con.execute(
            f'SELECT day, events, round(revenue_usd, 2) FROM "{project}".gold.daily_revenue ORDER BY day'
        ).fetchall()
    finally:
        con.close()


def measure_incremental(args: argparse.Namespace) -> dict:
    """An incremental silver + gold over M rows: first build, +1% rows incrementally, then a full refresh."""
    from lakehouse.engine.runner import run

    # tests/conftest.py by path: under pytest, the module name `conftest` may be another folder's.
    spec = importlib.util.spec_from_file_location("lakehouse_tests_root_conftest", REPO / "tests" / "conftest.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    write_project = fixtures.write_project

    home = Path(os.environ["LAKEHOUSE_HOME"])
    project_name = "bench-incremental"
    project = write_project(home.parent / "incremental-project", INCREMENTAL_FILES, project=project_name)
    rows = args.incremental_rows
    start = datetime(2026, 1, 1, tzinfo=UTC)
    _seed_events(home, project_name, 0, rows, start)
    started = time.perf_counter()
    first = run(project, home_dir=home)
    first_s = time.perf_counter() - started
    assert first.status == "success", [a.error for a in first.actions if a.error]
    added = max(1, rows // 100)
    _seed_events(home, project_name, rows, added, start + timedelta(seconds=rows))
    started = time.perf_counter()
    incremental = run(project, home_dir=home)
    incremental_s = time.perf_counter() - started
    assert incremental.status == "success", [a.error for a in incremental.actions if a.error]
    after_incremental = _gold(home, project_name)
    started = time.perf_counter()
    full = run(project, home_dir=home, full_refresh=True)
    full_s = time.perf_counter() - started
    assert full.status == "success", [a.error for a in full.actions if a.error]
    return {
        "rows": rows,
        "rows_added": added,
        "first_build_s": first_s,
        "incremental_s": incremental_s,
        "full_refresh_s": full_s,
        "full_vs_incremental_ratio": full_s / incremental_s,
        "incremental_rows_merged": next(
            a.rows_affected for a in incremental.actions if a.name.endswith("silver.events")
        ),
        "incremental_equals_full_refresh": after_incremental == _gold(home, project_name),
    }


# -- the table ---------------------------------------------------------------------------------------------
def rows_of(results: dict) -> list[tuple[str, str, str, str]]:
    """Return (step, figure, value, target) rows for the table, from every step's figures."""
    out = []

    def add(step, label, value, target=""):
        out.append((step, label, value, target))

    for step, result in results.items():
        f = result.get("figures") or {}
        if result["status"] != "ok":
            add(step, "not measured", result.get("reason", result["status"]))
            continue
        if step == "engine":
            add(step, "cold compile (pinned CLI, bench project)", f"{f['cold_compile_s']:.2f} s")
            add(step, "cached compile (bench project)", f"{f['cached_compile_ms']:.1f} ms", "≤ 50 ms")
            add(
                step,
                f"engine run, {f['actions_per_run']} actions, {f['seed_rows']:,} rows",
                f"{f['engine_run_s']:.2f} s",
            )
            add(step, "same statements, direct DuckDB", f"{f['direct_duckdb_s']:.2f} s")
            add(step, "engine / direct", f"{f['run_vs_direct_ratio']:.3f}×", "≤ 1.10×")
            add(step, "overhead per action", f"{f['overhead_per_action_ms']:.1f} ms", "≤ 20 ms")
        elif step == "ingest":
            for key, value in f.items():
                add(
                    step,
                    key.replace("_", " "),
                    f"{value:,.1f}" if isinstance(value, float) else str(value),
                    _ingest_target(key),
                )
        elif step == "compile":
            add(
                step,
                f"cold compile, this repository ({f['repo_actions']} actions)",
                f"{f['repo_cold_compile_s']:.2f} s",
            )
            add(step, "cached compile, this repository", f"{f['repo_cached_compile_ms']:.1f} ms", "≤ 50 ms")
        elif step == "e2e":
            if "not_measured" in f:
                add(step, "not measured", f["not_measured"])
                continue
            add(
                step,
                f"generate {f['events']:,} events",
                f"{f['generate_s']:.2f} s ({f['generator_events_per_s']:,.0f}/s)",
                "≥ 200k/s",
            )
            add(
                step,
                f"land {f['lines_landed']:,} lines (route + write)",
                f"{f['land_s']:.2f} s ({f['landing_lines_per_s']:,.0f}/s)",
                "≥ 150k/s/core",
            )
            if "engine_error" in f:
                add(step, f"engine: landing → {E2E_TARGET}", "FAILED: " + f["engine_error"][:160])
                add(step, "hand-written DuckDB SQL, same work", f"{f['baseline_s']:.2f} s")
                add(step, "peak memory (RSS) of the step", f"{result['peak_rss_mb']:.0f} MB")
                continue
            add(step, f"engine: landing → {E2E_TARGET} ({f['engine_actions']} actions)", f"{f['engine_s']:.2f} s")
            slowest = sorted(f.get("engine_action_s", {}).items(), key=lambda item: -item[1])[:3]
            if slowest:
                add(step, "  slowest engine actions", ", ".join(f"{name} {s:.1f} s" for name, s in slowest))
            add(step, "hand-written DuckDB SQL, same work", f"{f['baseline_s']:.2f} s")
            add(step, "engine / baseline", f"{f['engine_vs_baseline_ratio']:.2f}×")
            add(step, "gold equals baseline", "yes" if f["gold_matches_baseline"] else "NO", "yes")
        elif step == "incremental":
            add(step, f"first build, {f['rows']:,} rows", f"{f['first_build_s']:.2f} s")
            add(step, f"incremental, +{f['rows_added']:,} rows (1%)", f"{f['incremental_s']:.2f} s")
            add(step, "full refresh, same data", f"{f['full_refresh_s']:.2f} s")
            add(step, "full refresh / incremental", f"{f['full_vs_incremental_ratio']:.1f}×")
            add(
                step,
                "incremental result = full refresh result",
                "yes" if f["incremental_equals_full_refresh"] else "NO",
                "yes",
            )
        add(step, "peak memory (RSS) of the step", f"{result['peak_rss_mb']:.0f} MB")
    return out


def _ingest_target(key: str) -> str:
    if "generat" in key and "per_s" in key:
        return "≥ 200k/s"
    if "land" in key and "per_s" in key:
        return "≥ 150k/s/core"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: 100k events, 1M incremental rows, 1 repeat")
    parser.add_argument("--only", help=f"comma-separated steps of: {', '.join(STEPS)}")
    parser.add_argument("--events", type=int, default=1_000_000, help="events generated for e2e (default 1M)")
    parser.add_argument("--incremental-rows", type=int, default=10_000_000, help="rows for incremental (default 10M)")
    parser.add_argument("--engine-rows", type=int, default=1_000_000, help="seed rows of engine_bench (default 1M)")
    parser.add_argument("--actions", type=int, default=30, help="actions of engine_bench (default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats where a step takes a median (default 3)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per step before it is stopped")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"), help="where to write the figures")
    parser.add_argument("--step", choices=("compile", "e2e", "incremental"), help=argparse.SUPPRESS)
    parser.add_argument("--step-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.events, args.incremental_rows, args.engine_rows, args.repeat = 100_000, 1_000_000, 100_000, 1
    if args.step:
        measure = {"compile": measure_compile, "e2e": measure_e2e, "incremental": measure_incremental}[args.step]
        args.step_json.write_text(json.dumps(measure(args), default=str))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, shutil.get_terminal_size().columns))
    steps = [s.strip() for s in args.only.split(",")] if args.only else list(STEPS)
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(STEPS)}")
    scratch = Path(tempfile.mkdtemp(prefix="lakehouse-bench-all-"))
    results: dict[str, dict] = {}
    try:
        for step in steps:
            out = scratch / f"{step}.json"
            os.environ["LAKEHOUSE_HOME"] = str(scratch / step / "home")
            command = step_command(step, args, out)
            if step == "ingest" and command is not None:
                takes_json, takes_quick = ingest_flags_supported()
                if not takes_quick and "--quick" in command:
                    command.remove("--quick")
                if not takes_json:
                    command = command[:-2]
            if command is None:
                results[step] = {"status": "not measured", "reason": "bench/ingest_bench.py does not exist yet"}
                continue
            console.print(f"[bold]{step}[/]: {' '.join(command[1:])}", highlight=False)
            code, seconds, peak, output = run_child(command, args.timeout)
            result = {"status": "ok" if code == 0 else "failed", "seconds": seconds, "peak_rss_mb": peak}
            if code != 0:
                result["reason"] = f"exit {code}: " + " | ".join(output.strip().splitlines()[-3:])
            elif out.is_file():
                result["figures"] = json.loads(out.read_text())
            else:
                result["figures"] = {}
                result["output"] = output[-4000:]
            results[step] = result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = Table(title="lakehouse benchmarks" + (" (--quick sizes)" if args.quick else ""))
    for column in ("step", "figure", "value", "target"):
        table.add_column(column, justify="right" if column in ("value", "target") else "left")
    for row in rows_of(results):
        table.add_row(*row)
    console.print(table)
    for step, result in results.items():
        if result.get("output"):
            console.print(f"{step} printed:", style="bold", highlight=False)
            console.print(result["output"], highlight=False, markup=False)
    document = {
        "created_at": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "sizes": {
            "events": args.events,
            "incremental_rows": args.incremental_rows,
            "engine_rows": args.engine_rows,
            "repeat": args.repeat,
        },
        "steps": results,
    }
    args.json.write_text(json.dumps(document, indent=2, default=str))
    console.print(f"figures written to {args.json}", highlight=False)


if __name__ == "__main__":
    main()
