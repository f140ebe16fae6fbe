"""The `lakehouse up` demo end to end at a realistic size, and where its time goes: services, generating,
landing over HTTP, Pub/Sub, the raw tables, the Dataform run (by action group) and the reports. Prints a
table (and writes JSON with --json).

    .venv/bin/python bench/up_bench.py                                # 1M events, as `lakehouse up` runs them
    .venv/bin/python bench/up_bench.py --events 100000 --in-process-bus --home /tmp/up --keep

The demo runs in its own process, exactly as a user types it (`lakehouse up --events N --seed S`, its
default batch size and Pub/Sub share); its peak resident memory comes from os.wait4 and covers what it
reaped (the emulators it started). Step times are the ones `lakehouse up` prints; the run's action-seconds
come from its run record.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from incremental_bench import LAKEHOUSE, latest_record, run_seconds, step, summarise  # noqa: E402

# "✓ run the Dataform graph on DuckDB (11.2 s)" and the ingest table's "│ seconds: publish │ 0.54 │"
STEP = re.compile(r"^✓ (?P<name>.+) \((?P<seconds>[0-9.]+) s\)$", re.MULTILINE)
INGEST_SECONDS = re.compile(r"seconds: (?P<name>\w+)\s*│\s*(?P<seconds>[0-9.]+)")
PUBSUB = re.compile(r"Pub/Sub: (?P<kind>[\w -]+)")
# parts of the combined ingest step, as the ingest table names them
INGEST_PARTS = ("generate", "land_http", "publish")


def parse(output: str) -> tuple[list[tuple[str, float]], dict[str, float], str]:
    """Return the steps `lakehouse up` printed with their seconds, its ingest seconds, and its Pub/Sub kind."""
    steps = [(m["name"], float(m["seconds"])) for m in STEP.finditer(output)]
    ingest = {m["name"]: float(m["seconds"]) for m in INGEST_SECONDS.finditer(output)}
    kind = PUBSUB.search(output)
    return steps, ingest, kind["kind"].strip() if kind else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, help="events per HTTP batch (default: lakehouse up's)")
    parser.add_argument("--in-process-bus", action="store_true", help="Pub/Sub in process, not the emulator")
    parser.add_argument("--home", type=Path, help="LAKEHOUSE_HOME to use (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the home directory afterwards")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="lakehouse-up-bench-"))
    if home.exists() and any(home.iterdir()):
        raise SystemExit(f"{home} is not empty: the benchmark starts from nothing")
    env = {"LAKEHOUSE_HOME": str(home), "COLUMNS": "200"}
    command = [LAKEHOUSE, "up", "--events", str(args.events), "--seed", str(args.seed)]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    if args.in_process_bus:
        command.append("--in-process-bus")
    try:
        done = step(f"lakehouse up --events {args.events:,}", command, env, args.timeout)
        record = latest_record(home)
    finally:
        if not (args.keep and args.home):
            shutil.rmtree(home, ignore_errors=True)

    steps, ingest, pubsub = parse(done["output"])
    groups = summarise(record)
    total = done["seconds"]
    services = ingest.get("start_services", 0.0)
    rows: list[tuple[str, float]] = [("start the local services", services)]
    for name, seconds in steps:
        rows.append((name, seconds))
        if name.startswith("generate"):
            rows += [(f"  of which {part.replace('_', ' ')}", ingest[part]) for part in INGEST_PARTS if part in ingest]
        if name.startswith("run the Dataform graph"):
            ran = run_seconds(record)
            rows.append(("  of which compiling (a new home: the Dataform CLI) and starting", seconds - ran))
            rows.append((f"  of which the run, start to end ({len(record['actions'])} actions)", ran))
            rows += [(f"    action-seconds: {group}", seconds) for group, seconds in groups.items()]
    accounted = services + sum(seconds for _, seconds in steps)
    rows.append(("the rest: process start, imports, stopping the services", total - accounted))

    print(f"\n`lakehouse up`, {args.events:,} events, seed {args.seed}, Pub/Sub: {pubsub}; LAKEHOUSE_HOME {home}\n")
    print(f"| {'step':<72} | {'wall':>9} | {'share':>6} |")
    print(f"| {'-' * 72} | {'-' * 8}: | {'-' * 5}: |")
    print(f"| {'end to end':<72} | {total:>7.1f} s | {'100%':>6} |")
    for name, seconds in rows:
        share = f"{seconds / total:.0%}" if not name.startswith("    ") else ""
        print(f"| {name:<72} | {seconds:>7.1f} s | {share:>6} |")
    print(f"\npeak RSS {done['peak_rss_mb']:.0f} MB (the demo and what it reaped); "
          f"{args.events / total:,.0f} events/s end to end")  # fmt: skip
    if args.json:
        figures = {"events": args.events, "pubsub": pubsub, "seconds": total, "peak_rss_mb": done["peak_rss_mb"],
                   "steps": dict(steps), "ingest_seconds": ingest, "run_groups": groups}  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
