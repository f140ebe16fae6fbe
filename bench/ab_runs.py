"""Compare two ways of running one `lakehouse` command on one home, their runs taken in turn.

    .venv/bin/python bench/ab_runs.py HOME --pairs 10 --b-env LAKEHOUSE_ICEBERG_COMMITTER=inline
    .venv/bin/python bench/ab_runs.py HOME --a-env LAKEHOUSE_THREADS=1 -- run --tags hourly --concurrency 1

A shared machine changes speed by tens of percent for minutes at a time, so two figures taken minutes
apart say little about a change of a few percent. Here A and B run in turn (A B, then B A, ...), each
pair within seconds, and the table gives each side's medians and, pair by pair, how B differs from A.
A side is the command with environment variables of its own (--a-env, --b-env: a switch the code
reads, or LAKEHOUSE_* settings). PYTHONPATH pointing at another checkout of the kit works too, but
that checkout's Dataform CLI is another file, and the compile cache is keyed by it: each of its runs
compiles the project again (a few seconds), which the other side does not.

Every run starts from HOME as it was: it is copied beside it first (HOME.ab) and put back before each
run, at its own path. A copy somewhere else is not the same home: its landing views name the home's
path, so a first run there parses them again. HOME is left as it was found; a comparison that was
stopped leaves HOME.ab, and the next one puts HOME back from it before it starts.

Each run is `lakehouse <command>` (default: run --tags hourly, what the hourly workflow runs) in a
process of its own: wall time, CPU time (user and system, with the processes it waited for, such as
the Iceberg committer) and peak resident memory come from os.wait4. Before each run the page cache is
written out (os.sync) and a fixed piece of Python is timed (the CPU probe, as bench/incremental_bench.py
does), so a comparison taken while the machine's speed moved says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from incremental_bench import LAKEHOUSE, cpu_probe, keep_home, put_back  # noqa: E402
from run_all import run_child_usage  # noqa: E402

DEFAULT_COMMAND = ["run", "--tags", "hourly"]


def environment(assignments: list[str], flag: str) -> dict[str, str]:
    """Return NAME=VALUE assignments as a mapping; SystemExit naming the flag for one without '='."""
    pairs = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not name:
            raise SystemExit(f"{flag} {assignment!r}: give NAME=VALUE, e.g. {flag} LAKEHOUSE_THREADS=1")
        pairs[name] = value
    return pairs


class Pristine:
    """HOME as it was before the comparison: a copy beside it (HOME.ab), put back before every run."""

    def __init__(self, home: Path):
        self.home = home
        self.copy = home.parent / f"{home.name}.ab"

    def keep(self) -> bool:
        """Copy HOME aside (a copy left by a stopped comparison is put back first); return whether a
        stopped comparison's copy was found."""
        if self.copy.is_dir():
            self.restore()
            return True
        keep_home(self.home, self.copy)  # complete or absent: a copy cut short is never taken for HOME
        return False

    def restore(self) -> None:
        """Put HOME back as it was kept, at its own path."""
        put_back(self.copy, self.home)

    def discard(self) -> None:
        """Leave HOME as it was kept, and no copy."""
        self.restore()
        shutil.rmtree(self.copy)


def measure(side: str, command: list[str], extra: dict[str, str], home: Path, timeout: float) -> dict:
    """Run `lakehouse <command>` on `home` with `extra` in its environment; SystemExit when it fails."""
    os.sync()
    probe_s = cpu_probe()
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), **extra}
    code, seconds, usage, output = run_child_usage([LAKEHOUSE, *command], timeout, env)
    if code != 0:
        raise SystemExit(f"side {side} failed (exit {code}): lakehouse {' '.join(command)}\n{output[-3000:]}")
    return {
        "side": side,
        "seconds": seconds,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "probe_s": probe_s,
        "output": output[-2000:],  # what the run said: what it did, on the home as it was
    }


def summary(runs: list[dict]) -> dict:
    """Return each side's medians and the pairwise differences of B from A."""
    sides = {side: [r for r in runs if r["side"] == side] for side in ("A", "B")}
    figures = {}
    for side, taken in sides.items():
        walls = [r["seconds"] for r in taken]
        figures[side] = {
            "runs": len(taken),
            "wall_median_s": statistics.median(walls),
            "wall_min_s": min(walls),
            "wall_max_s": max(walls),
            "cpu_median_s": statistics.median(r["cpu_s"] for r in taken),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in taken),
        }
    differences = [b["seconds"] - a["seconds"] for a, b in zip(sides["A"], sides["B"], strict=True)]
    figures["pairwise"] = {
        "b_minus_a_median_s": statistics.median(differences),
        "b_faster": sum(1 for d in differences if d < 0),
        "pairs": len(differences),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Compare two ways of running one lakehouse command on one home, runs taken in turn.",
        epilog="Everything after -- is the lakehouse command (default: run --tags hourly).",
    )
    parser.add_argument("home", type=Path, help="the LAKEHOUSE_HOME to run on (left as it is found)")
    parser.add_argument("--pairs", type=int, default=8, help="runs of each side (default 8)")
    parser.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE", help="environment of side A")
    parser.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE", help="environment of side B")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one run may take (default 1800)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    argv = sys.argv[1:]
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    sides = {"A": environment(args.a_env, "--a-env"), "B": environment(args.b_env, "--b-env")}
    command = command or DEFAULT_COMMAND
    home = args.home.resolve()
    if not home.is_dir():
        raise SystemExit(f"{home} is not a directory: give the LAKEHOUSE_HOME to run on")

    pristine = Pristine(home)
    if pristine.keep():
        print(f"{pristine.copy} was left by a comparison that stopped: {home} is put back from it first")
    runs = []
    try:
        for number in range(args.pairs):
            for side in ("A", "B") if number % 2 == 0 else ("B", "A"):
                pristine.restore()
                runs.append(measure(side, command, sides[side], home, args.timeout))
                print(f"pair {number + 1}/{args.pairs}, {side}: {runs[-1]['seconds']:.2f} s", flush=True)
    finally:
        pristine.discard()

    figures = summary(runs)
    print(f"\nlakehouse {' '.join(command)} on {home}, {args.pairs} pairs taken in turn")
    for side, extra in sides.items():
        print(f"  {side}: " + (" ".join(f"{k}={v}" for k, v in extra.items()) or "(the environment as it is)"))
    print()
    print(f"| {'side':<4} | {'runs':>4} | {'wall, median':>12} | {'wall, range':>15} | {'CPU, median':>11} | "
          f"{'peak RSS':>9} |")  # fmt: skip
    print(f"| {'-' * 4} | {'-' * 4}:| {'-' * 12}:| {'-' * 15}:| {'-' * 11}:| {'-' * 9}:|")
    for side in ("A", "B"):
        f = figures[side]
        span = f"{f['wall_min_s']:.2f}-{f['wall_max_s']:.2f} s"
        print(f"| {side:<4} | {f['runs']:>4} | {f['wall_median_s']:>10.2f} s | {span:>15} | "
              f"{f['cpu_median_s']:>9.2f} s | {f['peak_rss_mb']:>6.0f} MB |")  # fmt: skip
    pairwise = figures["pairwise"]
    print(f"\nB - A, pair by pair: median {pairwise['b_minus_a_median_s']:+.2f} s; B faster in "
          f"{pairwise['b_faster']} of {pairwise['pairs']}")  # fmt: skip
    probes = [r["probe_s"] for r in runs]
    spread = max(probes) / min(probes)
    print(
        f"CPU probe before each run: {min(probes) * 1000:.0f}-{max(probes) * 1000:.0f} ms"
        + (f", the machine's speed varied {spread:.2f}x" if spread > 1.15 else f", steady (within {spread:.2f}x)")
    )
    if args.json:
        args.json.write_text(json.dumps({"command": command, "sides": sides, "runs": runs, **figures}, indent=2))


if __name__ == "__main__":
    main()
