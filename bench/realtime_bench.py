"""Toward real time: events arrive at a fixed rate and a run follows every interval; prints, per cycle,
how long landing and the run took and how far gold lags behind the newest landed event.

    .venv/bin/python bench/realtime_bench.py                          # 11,600 events/s (1B a day), 60 s cycles
    .venv/bin/python bench/realtime_bench.py --rate 2000 --interval 30 --cycles 4 --home /tmp/rt

Each cycle lands `rate × interval` events stamped within the cycle (`lakehouse generate --as-of now`),
then runs what the hourly workflow runs (`lakehouse run --tags hourly`, config/schedules.yaml), which
takes only what arrived; `--all-actions` runs the daily whole-table checks too, which read all history
every cycle. Gold lag of a cycle = when its run finished − when the cycle's first event landed: the
oldest event of the cycle waited that long to be in gold. The loop keeps up when a cycle (land + run)
fits in the interval; a cycle that does not delays the next, and the table says so. Peak RSS of each
step from os.wait4.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from incremental_bench import HOURLY, LAKEHOUSE, step  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=11_600, help="events per second (default: 1B a day)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between runs")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--warm-events", type=int, default=1_000_000, help="history landed before the loop")
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--pubsub-share", default="0", help="share of events over Pub/Sub (default: landing only)")
    parser.add_argument("--home", type=Path, help="LAKEHOUSE_HOME (default: a temporary directory)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--all-actions", action="store_true", help="run every action each cycle, the daily whole-table checks too"
    )
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="lakehouse-realtime-"))
    if home.exists() and any(home.iterdir()):
        raise SystemExit(f"{home} is not empty: the benchmark starts from nothing")
    env = {"LAKEHOUSE_HOME": str(home), "COLUMNS": "200"}
    generate = [LAKEHOUSE, "generate", "--batch-size", str(args.batch_size), "--pubsub-share", args.pubsub_share]
    per_cycle = int(args.rate * args.interval)
    rows = []
    try:
        if args.warm_events:
            warm = [*generate, "--seed", "1", "--events", str(args.warm_events)]
            step(f"history: {args.warm_events:,} events", warm, env, args.timeout)
            step("history: first run", [LAKEHOUSE, "run"], env, args.timeout)
        started = time.monotonic()
        for cycle in range(args.cycles):
            due = started + cycle * args.interval
            time.sleep(max(0.0, due - time.monotonic()))
            begun = time.monotonic()
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            land = [*generate, "--seed", str(100 + cycle), "--events", str(per_cycle), "--as-of", now,
                    "--span-hours", str(max(0.01, args.interval / 3600))]  # fmt: skip
            # no CPU probe between the steps of a cycle: its time would count in the gold lag
            landed = step(f"cycle {cycle + 1}: land {per_cycle:,} events", land, env, args.timeout, probe=False)
            run = [LAKEHOUSE, "run", *([] if args.all_actions else HOURLY)]
            ran = step(f"cycle {cycle + 1}: run", run, env, args.timeout, probe=False)
            finished = time.monotonic()
            rows.append(
                {
                    "cycle": cycle + 1,
                    "late_s": max(0.0, begun - due),
                    "land_s": landed["seconds"],
                    "run_s": ran["seconds"],
                    "lag_s": finished - begun,
                    "rss_mb": max(landed["peak_rss_mb"], ran["peak_rss_mb"]),
                }
            )
        total = time.monotonic() - started
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)

    events = per_cycle * args.cycles
    print(f"\n{args.rate:,} events/s target, {args.interval:.0f} s cycles, {per_cycle:,} events a cycle, "
          f"history {args.warm_events:,} events; each cycle runs "
          f"{'every action' if args.all_actions else 'the hourly workflow'}; LAKEHOUSE_HOME {home}\n")  # fmt: skip
    print("| cycle | started late | land | run | gold lag | peak RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['cycle']} | {row['late_s']:.1f} s | {row['land_s']:.1f} s | {row['run_s']:.1f} s "
            f"| {row['lag_s']:.1f} s | {row['rss_mb']:.0f} MB |"
        )
    kept_up = all(row["land_s"] + row["run_s"] <= args.interval for row in rows)
    print(
        f"\nsustained {events / total:,.0f} events/s over {total:.0f} s; worst gold lag "
        f"{max(row['lag_s'] for row in rows):.1f} s; "
        + ("every cycle fit its interval" if kept_up else "some cycles did not fit their interval: it fell behind")
    )


if __name__ == "__main__":
    main()
