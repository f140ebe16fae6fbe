"""Each action's time in the first (full) run of a large bench home against a small one: issue 9's
"each action at 10M events <= 12x its time at 1M". Reads the run records the benchmark left.

    .venv/bin/python bench/incremental_bench.py --events 1000000 --home /tmp/b1m --keep
    .venv/bin/python bench/incremental_bench.py --events 10000000 --batch-size 20000 --home /tmp/b10m --keep
    .venv/bin/python bench/scale_ratio.py /tmp/b1m /tmp/b10m

Lists the actions that took at least --min-seconds in the large run, by ratio. The records are of runs
with up to one action per core at once, so an action's time includes waiting for a core while
another runs beside it; --alone re-runs the listed actions over the ratio one at a time in both homes
(`lakehouse run --full-refresh --actions A --concurrency 1`) and prints those ratios too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from incremental_bench import LAKEHOUSE, REPO  # noqa: E402

TARGET = 12.0


def mark(ratio: float) -> str:
    return " ✗" if ratio > TARGET else ""


def first_run(home: Path) -> dict:
    """Return the earliest run record under `home` (the benchmark's first, full run)."""
    records = sorted(path for path in (home / "runs").glob("2*.json"))
    if not records:
        raise SystemExit(f"{home} has no run record (runs/*.json): run bench/incremental_bench.py --keep first")
    return json.loads(records[0].read_text())


def alone(home: Path, action: str) -> float:
    """Run `action` alone, a full refresh with one action at a time; return its duration."""
    env = {**os.environ, "LAKEHOUSE_HOME": str(home)}
    command = [LAKEHOUSE, "run", "--full-refresh", "--concurrency", "1", "--actions", action]
    subprocess.run(command, cwd=REPO, env=env, capture_output=True, check=False)
    record = json.loads((home / "runs" / "latest.json").read_text())
    (result,) = [a for a in record["actions"] if a["name"] == action]
    if result["status"] != "success":
        raise SystemExit(f"{action} did not succeed alone in {home}: {result.get('error')}")
    return result["duration_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("small", type=Path, help="LAKEHOUSE_HOME of the small bench (e.g. 1M events)")
    parser.add_argument("large", type=Path, help="LAKEHOUSE_HOME of the large bench (e.g. 10M events)")
    parser.add_argument(
        "--min-seconds", type=float, default=1.0, help="list actions at least this long in the large run"
    )
    parser.add_argument("--alone", action="store_true", help=f"re-run the actions over {TARGET:g}x one at a time")
    args = parser.parse_args()

    small = {a["name"]: a for a in first_run(args.small)["actions"]}
    large = [a for a in first_run(args.large)["actions"] if (a["duration_s"] or 0) >= args.min_seconds]
    rows = []
    for action in large:
        before = small.get(action["name"])
        if before and before["duration_s"]:
            rows.append((action["duration_s"] / before["duration_s"], action["name"], before["duration_s"],
                         action["duration_s"]))  # fmt: skip
    rows.sort(reverse=True)
    print(f"\n{args.small} -> {args.large}, first runs, actions of {args.min_seconds:g} s or more in the large one\n")
    print("| action | small | large | ratio |" + (" alone: small | large | ratio |" if args.alone else ""))
    print("| --- | ---: | ---: | ---: |" + (" ---: | ---: | ---: |" if args.alone else ""))
    for ratio, name, before, after in rows:
        line = f"| {name.split('.', 1)[1]} | {before:.2f} s | {after:.2f} s | {ratio:.1f}x{mark(ratio)} |"
        if args.alone and ratio > TARGET:
            a, b = alone(args.small, name), alone(args.large, name)
            line += f" {a:.2f} s | {b:.2f} s | {b / a:.1f}x{mark(b / a)} |"
        print(line)
    over = sum(1 for ratio, *_ in rows if ratio > TARGET)
    print(
        f"\n{over} of {len(rows)} actions over {TARGET:g}x in the runs"
        + (" (re-run alone: see the last columns)" if args.alone and over else "")
    )


if __name__ == "__main__":
    main()
