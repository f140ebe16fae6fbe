"""Issue 9's benchmark on the repository's own models: a full run over N generated events, +1% new events
(all actions, then the next 1% of each of --hours hours as the hourly workflow runs it; each 1% lands an
hour after the one before, --arrival-gap-hours), no new data, each with its wall time and peak
memory, beside the hand-written DuckDB baselines on the same landed files, each with the same work run alone
by the engine: the orders chain (its section of bench/baseline_all.sql) and all sources with every gold
table (bench/baseline_all.sql, checked to give the engine's rows). Prints a table (and writes JSON with --json).

A machine shared with others changes speed for minutes at a time, so a ratio of two runs taken minutes
apart says as much about the machine as about the runs. With --repeat R (default 3) the runs are taken
in R rounds: the first lands the data, each later one puts the home back as it was before each run and
runs it again, the full run included. A ratio is the median over rounds of (run / that round's full run).

    .venv/bin/python bench/incremental_bench.py                       # 1M events
    .venv/bin/python bench/incremental_bench.py --events 10000000 --batch-size 20000 --repeat 1
    .venv/bin/python bench/incremental_bench.py --events 100000 --home /tmp/bench-home --keep

Every step runs in its own process; its peak resident memory comes from os.wait4.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import REPO, run_child  # noqa: E402

from lakehouse import warehouse  # noqa: E402
from lakehouse.engine.records import UNCHANGED_NOTE  # noqa: E402

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
ORDERS_CHAIN = ("orders_batch", "orders_quarantine", "orders_duplicates", "orders", "orders_intake")
BASELINE_GOLD = "daily_product_summary"
CHAIN_AND_GOLD = (*ORDERS_CHAIN, BASELINE_GOLD)
SOURCES = tuple(sorted(path.stem for path in (REPO / "includes" / "contracts").glob("*.json")))
GOLD = tuple(sorted(path.stem for path in (REPO / "definitions" / "gold").glob("*.sqlx")))
# The engine's read of a landing table (definitions/sources/bronze.js as lakehouse/engine/translate.py
# renders it), so that the baseline reads the same lines.
CSV_OPTIONS = (
    "delim = chr(1), quote = '', escape = '', strict_mode = false, max_line_size = 16777216, "
    "buffer_size = 16777216, columns = {'line': 'VARCHAR'}, auto_detect = false, header = false, "
    "filename = true, hive_partitioning = true, hive_types = {'ingest_date': 'DATE', 'hour': 'VARCHAR'}"
)
HOURLY = [arg for tag in yaml.safe_load((REPO / "config" / "schedules.yaml").read_text())["workflows"]["hourly"]["tags"]
          for arg in ("--tags", tag)]  # fmt: skip

BASELINE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from lakehouse import warehouse
    home, project, script = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]).read_text()
    con = warehouse.connect(home, [project])
    con.execute(f'USE "{project}"')
    con.execute("CREATE SCHEMA IF NOT EXISTS baseline")
    # the salt the engine's run made in keys.pii_salt, so both hash alike
    salt = con.execute(f'SELECT salt FROM "{project}".keys.pii_salt').fetchone()[0]
    script = script.replace("{pii_salt}", salt)
    started = time.perf_counter()
    con.execute(script)
    print(f"baseline_s={time.perf_counter() - started:.3f}")
    """
)


def baseline_script(home: Path, landing_bucket: str, sources: tuple[str, ...] = SOURCES,
                    gold: tuple[str, ...] = GOLD) -> str:  # fmt: skip
    """Return bench/baseline_all.sql for the landing files under `home`, limited to the sections of
    `sources` and the statements of the `gold` tables ({pii_salt} is left to BASELINE)."""
    filled = {
        "{landing_dir}": str(Path(home) / "gcs" / landing_bucket),
        "{landing_uri}": f"gs://{landing_bucket}",
        "{csv_options}": CSV_OPTIONS,
    }
    script = (REPO / "bench" / "baseline_all.sql").read_text()
    for placeholder, value in filled.items():
        script = script.replace(placeholder, value)
    header, *parts = re.split(r"(?m)^-- (\w+) -+\n", script)
    sections = dict(zip(parts[::2], parts[1::2], strict=True))
    # a gold statement starts at its comment lines, if any, or at its create
    statements = re.split(r"\n\n(?=(?:--[^\n]*\n)*create or replace table )", sections["gold"])
    named = {re.search(r"create or replace table baseline\.(\w+)", text).group(1): text for text in statements}
    # in the file's order, which puts a gold table after the gold tables it reads
    chosen = [text for name, text in named.items() if name in gold]
    return "\n\n".join([header, *(sections[name] for name in sources), *chosen])


def all_sources_actions(record: dict) -> list[str]:
    """Return the actions of a run record that the all-sources baseline does the work of: every table
    and incremental action of silver and gold, and the intake ledgers (no views, no assertions)."""
    names = []
    for action in record["actions"]:
        dataset = action["name"].split(".")[-2]
        if action["type"] in ("table", "incremental") and (
            dataset in ("silver", "silver_restricted", "gold") or action["name"].endswith("_intake")
        ):
            names.append(action["name"])
    return names


def compare_with_engine(con, project: str) -> dict[str, tuple[int, int, int, int]]:
    """Return, per table, (engine rows, baseline rows, baseline rows not in the engine's, engine rows not
    in the baseline's), compared with EXCEPT ALL over the baseline's columns (`extra`, JSON, as text):
    silver, quarantine and duplicates of every source, then every gold table. The baseline's tables
    are in schema `baseline` of the connection's current database, the engine's in `project`."""
    tables = [(f"silver.{name}", name) for name in SOURCES]
    tables += [(f"silver_restricted.{name}_quarantine", f"{name}_quarantine") for name in SOURCES]
    tables += [(f"silver.{name}_duplicates", f"{name}_duplicates") for name in SOURCES]
    tables += [(f"gold.{name}", name) for name in GOLD]
    figures = {}
    for engine_table, name in tables:
        columns = [row[0] for row in con.execute(
            "select column_name from information_schema.columns where table_catalog = ? and "
            "table_schema = 'baseline' and table_name = ? order by ordinal_position", [project, name]
        ).fetchall()]  # fmt: skip
        select = ", ".join(f'cast("{c}" as varchar) as "{c}"' if c == "extra" else f'"{c}"' for c in columns)
        engine = f'select {select} from "{project}".{engine_table}'
        baseline = f"select {select} from baseline.{name}"
        figures[engine_table] = tuple(
            con.execute(query).fetchone()[0]
            for query in (
                f"select count(*) from ({engine})",
                f"select count(*) from ({baseline})",
                f"select count(*) from ({baseline} except all {engine})",
                f"select count(*) from ({engine} except all {baseline})",
            )
        )
    return figures


def cpu_probe(loops: int = 3_000_000) -> float:
    """Return the seconds a fixed piece of pure Python takes here now (best of 3): how fast this machine
    runs at the moment. A shared host can slow one down by half for minutes at a time; a ratio of
    two steps measured at different speeds says more about the host than about the runs."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(loops):
            total += number
        best = min(best, time.perf_counter() - started)
    return best


def step(name: str, command: list[str], env: dict[str, str], timeout: float, *, probe: bool = True) -> dict:
    """Run one step in a child process; return its figures (raises SystemExit when it fails). With
    `probe` (the default) it is measured on a settled machine: what the steps before wrote is on disk
    first (a home copied back, a day of generated files: a run's checkpoint syncs its file, and with the
    page cache full of earlier writes that took 0.6 s more on this benchmark's machine), and the CPU
    probe is taken just before it (`probe_s`, None without `probe`)."""
    if probe and hasattr(os, "sync"):
        os.sync()
    probe_s = cpu_probe() if probe else None
    previous = dict(os.environ)
    os.environ.update(env)
    try:
        code, seconds, rss_mb, output = run_child(command, timeout)
    finally:
        os.environ.clear()
        os.environ.update(previous)
    if code != 0:
        raise SystemExit(f"{name} failed (exit {code}):\n{output[-3000:]}")
    return {"step": name, "seconds": seconds, "peak_rss_mb": rss_mb, "output": output, "probe_s": probe_s}


def latest_record(home: Path) -> dict:
    return json.loads((home / "runs" / "latest.json").read_text())


def actions_run(record: dict) -> int:
    """Return how many of a run's actions ran (the others were kept as unchanged)."""
    return sum(1 for a in record["actions"] if not (a.get("note") or "").startswith(UNCHANGED_NOTE))


def keep_home(home: Path, copy: Path) -> None:
    """Copy `home` to `copy`, which exists only once the copy is complete (never a copy cut short)."""
    partial = copy.parent / f"{copy.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(home, partial, symlinks=True)
    partial.rename(copy)


def put_back(copy: Path, home: Path) -> None:
    """Put `home` back as `copy` holds it, at its own path (nothing in it moves)."""
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(copy, home, symlinks=True)


class Rounds:
    """The homes as they were before each measured run (a copy each, beside the home), to run it again."""

    def __init__(self, home: Path, count: int):
        self.home, self.count = home, count
        self.store = home.parent / f"{home.name}.rounds"
        self.kept: dict[str, Path] = {}

    def keep(self, name: str) -> None:
        """Copy the home as it is now under `name` (nothing to keep with a single round)."""
        if self.count > 1:
            self.kept[name] = self.store / name
            self.store.mkdir(parents=True, exist_ok=True)
            keep_home(self.home, self.kept[name])

    def restore(self, name: str) -> None:
        """Put the home back as it was when `name` was kept (at the same path: nothing in it moves)."""
        put_back(self.kept[name], self.home)

    def discard(self) -> None:
        shutil.rmtree(self.store, ignore_errors=True)


def measured(item: dict, full_round: list[float]) -> tuple[float, float, float]:
    """Return a run's (median wall, median ratio to the same round's full run, peak RSS over rounds)."""
    rounds = [item, *item.get("rounds", [])]
    walls = [r["seconds"] for r in rounds]
    ratios = [r["seconds"] / full for r, full in zip(rounds, full_round, strict=False)]
    return statistics.median(walls), statistics.median(ratios), max(r["peak_rss_mb"] for r in rounds)


def action_seconds(record: dict) -> dict[str, float]:
    return {a["name"].rsplit(".", 1)[-1]: a.get("duration_s") or 0.0 for a in record["actions"]}


def run_seconds(record: dict) -> float:
    """Return a run's time from its start to its end as its record gives them (process start excluded)."""
    started, finished = (datetime.fromisoformat(record[key]) for key in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def summarise(record: dict) -> dict:
    """Return action-seconds by group: each source's silver chain, gold, assertions, and the rest."""
    groups: dict[str, float] = {}
    for action in record["actions"]:
        name = action["name"]
        dataset = name.split(".")[1] if name.count(".") >= 2 else ""
        if action["type"] == "assertion":
            group = "assertions"
        elif dataset == "gold":
            group = "gold"
        elif dataset in ("silver", "silver_restricted", "ops") and action["type"] != "view":
            group = "silver + ledger"
        else:
            group = "bronze, views, other"
        groups[group] = groups.get(group, 0.0) + (action.get("duration_s") or 0.0)
    return groups


def alone_and_baseline(what: str, actions: list[str], script: str, home: Path, env: dict[str, str],
                       args: argparse.Namespace) -> tuple[dict, dict]:  # fmt: skip
    """Run `actions` alone as a full refresh, then the hand-written baseline `script` (the same work) on the
    same home; return both steps, the baseline's with its own SQL time as baseline_s."""
    project = yaml.safe_load((REPO / "workflow_settings.yaml").read_text())["defaultProject"]
    alone = step(
        f"run: {what} alone (--full-refresh --actions)",
        [LAKEHOUSE, "run", "--full-refresh", "--actions", ",".join(actions)],
        env,
        args.timeout,
    )
    alone["record"] = latest_record(home)
    path = Path(home) / f"baseline_{what.replace(' ', '_')}.sql"
    path.write_text(script)
    name = f"hand-written DuckDB baseline, {what}"
    baseline = step(name, [sys.executable, "-c", BASELINE, str(home), project, str(path)], env, args.timeout)
    baseline["baseline_s"] = float(baseline["output"].strip().rsplit("baseline_s=", 1)[1])
    return alone, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--home", type=Path, help="LAKEHOUSE_HOME to use (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the home directory afterwards")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument(
        "--arrival-gap-hours",
        type=float,
        default=1.0,
        help="hours between the arrivals of the history and of each 1%% (default 1: each 1%% is the next hour's "
        "data, in its own hour= landing folder, as an hourly pipeline sees it; 0: everything lands now)",
    )
    parser.add_argument(
        "--hours",
        type=int,
        default=3,
        help="successive hours of the hourly workflow, each on its own next 1%% (default 3: one such run is "
        "a single draw of a noisy machine; the median of the ratios is printed)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of the runs (default 3; each later round restores the home before each run, which needs "
        "a copy of the home per run measured: use 1 at 10M events); every figure of a run is the median of its "
        "rounds, its peak RSS the largest",
    )
    args = parser.parse_args()
    if args.hours < 1:
        parser.error("--hours must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    home = args.home or Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    if home.exists() and any(home.iterdir()):
        raise SystemExit(f"{home} is not empty: the benchmark starts from nothing")
    env = {"LAKEHOUSE_HOME": str(home), "COLUMNS": "200"}
    settings = yaml.safe_load((REPO / "workflow_settings.yaml").read_text())
    project = settings["defaultProject"]
    # The history arrives first and each 1% one gap later (the last one now): `--as-of` is when a batch
    # lands (its ingest_date=/hour= folder) and the end of its events' time window.
    now = datetime.now(UTC).replace(microsecond=0)
    last = 1 + args.hours
    arrivals = [(now - timedelta(hours=args.arrival_gap_hours * (last - n))).isoformat() for n in range(last + 1)]
    generate = [LAKEHOUSE, "generate", "--seed", str(args.seed), "--batch-size", str(args.batch_size)]
    steps = []
    rounds = Rounds(home, args.repeat)
    try:
        first = [*generate, "--events", str(args.events), "--as-of", arrivals[0]]
        steps.append(step(f"generate {args.events:,} events", first, env, args.timeout))
        rounds.keep("full")
        full = step("run: first (full)", [LAKEHOUSE, "run"], env, args.timeout)
        full["record"] = latest_record(home)
        steps.append(full)
        extra = max(1, args.events // 100)
        new_data = [LAKEHOUSE, "generate", "--seed", str(args.seed + 1), "--batch-size", str(args.batch_size)]
        plus_data = [*new_data, "--events", str(extra), "--as-of", arrivals[1]]
        steps.append(step(f"generate +{extra:,} events (1%)", plus_data, env, args.timeout))
        rounds.keep("plus")
        plus = step("run: +1% new data", [LAKEHOUSE, "run"], env, args.timeout)
        plus["record"] = latest_record(home)
        steps.append(plus)
        idle = step("run: no new data", [LAKEHOUSE, "run"], env, args.timeout)
        idle["record"] = latest_record(home)
        steps.append(idle)
        # The +1% run changed the incremental tables, so the first run after it runs them once more
        # (to their fixed point, docs/engine.md "Unchanged actions are skipped"); this is the steady state.
        again = step("run: no new data, again", [LAKEHOUSE, "run"], env, args.timeout)
        again["record"] = latest_record(home)
        steps.append(again)

        # What the hourly workflow config runs (config/schedules.yaml: tags ["hourly"]) on the next 1%:
        # the whole-table checks tagged daily wait for the daily workflow. The batch tables hold what
        # the last run took (nothing), not everything the full run took, as every hour after the first.
        hourly_runs = []
        for hour in range(args.hours):
            label = "" if args.hours == 1 else f", hour {hour + 1}"
            seed = str(args.seed + 2 + hour)
            later = [*new_data[:3], seed, *new_data[4:], "--events", str(extra), "--as-of", arrivals[2 + hour]]
            steps.append(step(f"generate +{extra:,} events (1%){label}", later, env, args.timeout))
            rounds.keep(f"hour {hour}")
            hourly = step(f"run: +1% new data, hourly workflow (--tags hourly){label}", [LAKEHOUSE, "run", *HOURLY],
                          env, args.timeout)  # fmt: skip
            hourly["record"] = latest_record(home)
            steps.append(hourly)
            hourly_runs.append(hourly)

        # Later rounds: each run again from the home as it was before it, its full run among them. The
        # home ends as the first round left it (the last hour's run on the same data).
        full_round = [full["seconds"]]
        for number in range(2, args.repeat + 1):
            again_of = {}
            rounds.restore("full")
            again_of["full"] = step(f"run: first (full), round {number}", [LAKEHOUSE, "run"], env, args.timeout)
            again_of["full"]["actions_run"] = actions_run(latest_record(home))
            rounds.restore("plus")
            for key in ("plus", "idle", "again"):
                again_of[key] = step(f"run, round {number}", [LAKEHOUSE, "run"], env, args.timeout)
                again_of[key]["actions_run"] = actions_run(latest_record(home))
            for hour in range(args.hours):
                rounds.restore(f"hour {hour}")
                again_of[hour] = step(f"hourly run, round {number}", [LAKEHOUSE, "run", *HOURLY], env, args.timeout)
                again_of[hour]["actions_run"] = actions_run(latest_record(home))
            full_round.append(again_of["full"]["seconds"])
            measured_runs = [("full", full), ("plus", plus), ("idle", idle), ("again", again), *enumerate(hourly_runs)]
            for key, item in measured_runs:
                item.setdefault("rounds", []).append(
                    {k: again_of[key][k] for k in ("seconds", "peak_rss_mb", "probe_s", "actions_run")}
                )
        rounds.discard()

        # The same work as the baseline, alone: in the full run the orders chain shares the two cores
        # with the other sources' batches, so its action-seconds count time spent waiting for a core.
        chain = [a["name"] for a in full["record"]["actions"] if a["name"].rsplit(".", 1)[-1] in CHAIN_AND_GOLD]
        bucket = settings["vars"]["landing_bucket"]
        alone, baseline = alone_and_baseline(
            "orders chain", chain, baseline_script(home, bucket, ("orders",), (BASELINE_GOLD,)), home, env, args
        )
        steps += [alone, baseline]

        # Every source and every gold table, the engine alone and then the baseline, on all landed files.
        every = all_sources_actions(full["record"])
        everything = baseline_script(home, bucket)
        all_alone, all_baseline = alone_and_baseline("all sources", every, everything, home, env, args)
        steps += [all_alone, all_baseline]
        con = warehouse.connect(home, [project])
        con.execute(f'USE "{project}"')
        differences = {
            table: figures for table, figures in compare_with_engine(con, project).items()
            if figures[0] != figures[1] or figures[2] or figures[3]
        }  # fmt: skip
        con.close()
    finally:
        rounds.discard()
        if not args.keep and not args.home:
            shutil.rmtree(home, ignore_errors=True)

    full_s = statistics.median(full_round)
    rows = []
    for item in steps:
        wall, ratio, rss = item["seconds"], "", item["peak_rss_mb"]
        if any(item is run for run in (full, plus, idle, again, *hourly_runs)):
            wall, median_ratio, rss = measured(item, full_round)
            ratio = f"{median_ratio:.3f}x"
        elif item["step"].startswith("run"):
            ratio = f"{wall / full_s:.3f}x"
        actions = item.get("record", {}).get("actions", [])
        counts = f"{actions_run(item['record'])}/{len(actions)}" if actions else ""
        rows.append((item["step"], f"{wall:.1f} s", ratio, f"{rss:.0f} MB", counts,
                     f"{item['probe_s'] * 1000:.0f} ms"))  # fmt: skip
    chain_full = sum(action_seconds(full["record"]).get(n, 0.0) for n in CHAIN_AND_GOLD)
    alone_s = run_seconds(alone["record"])
    chain_note = f"orders chain in the full run: {chain_full:.1f} action-s; baseline {baseline['baseline_s']:.1f} s"
    print(f"\n{args.events:,} events, seed {args.seed}, batch size {args.batch_size}; LAKEHOUSE_HOME {home}")
    settings = warehouse.resource_settings(home)
    print(f"DuckDB: memory limit {settings['memory_limit']}, {settings['threads']} threads (docs/engine.md)")
    if args.repeat > 1:
        print(f"runs: median of {args.repeat} rounds (wall, and ratio to the same round's full run); peak RSS: the "
              "largest; the full runs took " + ", ".join(f"{s:.1f}" for s in full_round) + " s")  # fmt: skip
    print()
    print(f"| {'step':<62} | {'wall':>9} | {'/ full':>8} | {'peak RSS':>9} | {'actions run':>11} | {'CPU probe':>9} |")
    print(f"| {'-' * 62} | {'-' * 9}:| {'-' * 8}:| {'-' * 9}:| {'-' * 11}:| {'-' * 9}:|")
    for name, wall, ratio, rss, counts, probe in rows:
        print(f"| {name:<62} | {wall:>9} | {ratio:>8} | {rss:>9} | {counts:>11} | {probe:>9} |")
    probes = [r["probe_s"] for item in steps for r in (item, *item.get("rounds", []))]
    spread = max(probes) / min(probes)
    low, high = min(probes) * 1000, max(probes) * 1000
    print(f"\nCPU probe (a fixed piece of Python before each step): {low:.0f}-{high:.0f} ms, "
          + (f"the machine's speed varied {spread:.2f}x during the benchmark: the ratios are not reliable, run it "
             "again on a quieter machine" if spread > 1.15 else f"steady (within {spread:.2f}x)"))  # fmt: skip
    print(f"\n{chain_note}: {chain_full / baseline['baseline_s']:.2f}x the baseline")
    print(
        f"orders chain alone (a full refresh of its {len(chain)} actions, run start to end, no process start): "
        f"{alone_s:.1f} s: {alone_s / baseline['baseline_s']:.2f}x the baseline"
    )
    all_s = run_seconds(all_alone["record"])
    print(
        f"all sources alone (a full refresh of its {len(every)} actions, run start to end, no process start): "
        f"{all_s:.1f} s: {all_s / all_baseline['baseline_s']:.2f}x the baseline's {all_baseline['baseline_s']:.1f} s; "
        f"wall with process start {all_alone['seconds']:.1f} s against {all_baseline['seconds']:.1f} s: "
        f"{all_alone['seconds'] / all_baseline['seconds']:.2f}x; peak RSS {all_alone['peak_rss_mb']:.0f} MB against "
        f"{all_baseline['peak_rss_mb']:.0f} MB"
    )
    if differences:
        print(f"the all-sources baseline differs from the engine (engine rows, baseline rows, only in baseline, "
              f"only in engine): {differences}")  # fmt: skip
    else:
        print("the all-sources baseline gives the engine's rows: silver, quarantine, duplicates, gold (EXCEPT ALL)")
    ratios = sorted(measured(item, full_round)[1] for item in hourly_runs)
    if len(ratios) > 1:
        print(
            f"hourly workflow on +1%, {len(ratios)} successive hours: "
            + ", ".join(f"{r:.3f}x" for r in ratios)
            + f" of the full run; median {statistics.median(ratios):.3f}x"
        )
    for item in (full, plus, *hourly_runs, idle, again):
        groups = ", ".join(f"{group} {seconds:.1f}" for group, seconds in sorted(summarise(item["record"]).items()))
        print(f"{item['step']}: action-seconds by group: {groups}")
    slowest = sorted(action_seconds(full["record"]).items(), key=lambda kv: -kv[1])[:8]
    print("slowest actions of the full run: " + ", ".join(f"{n} {s:.1f}s" for n, s in slowest))
    if args.json:
        for item in steps:
            item.pop("output", None)
        args.json.write_text(json.dumps({"events": args.events, "repeat": args.repeat, "full_round": full_round,
                                         "steps": steps}, indent=2, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
