"""Benchmark `lakehouse serve` on a local warehouse: lookup p99, one-day page p99, sustained requests/s.

    .venv/bin/python bench/serve_bench.py [--events 50000] [--requests 500] [--seconds 10] [--threads 4] [--home DIR]

Builds the warehouse with the real pipeline (generate, then run the graph), starts `lakehouse serve`
on localhost and drives it with keep-alive HTTP clients in this process (so client and server share
the machine's cores). Every phase is bounded in count and in time. With --home the warehouse is kept
there and built only when it has no run yet, so a large one is built once and measured many times.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
PROJECT = "lakehouse-dev"
AS_OF = "2026-01-10T00:00:00Z"


def cli(home: Path, *args: str) -> None:
    subprocess.run([LAKEHOUSE, *args], cwd=REPO, env={**os.environ, "LAKEHOUSE_HOME": str(home)},
                   check=True, capture_output=True, text=True)  # fmt: skip


def build(home: Path, events: int) -> float:
    """Generate `events` events over 3 days and run the graph; return the seconds it took."""
    started = time.perf_counter()
    cli(home, "generate", "--events", str(events), "--seed", "11", "--as-of", AS_OF, "--span-hours", "72",
        "--batch-size", "5000", "--in-process-bus")  # fmt: skip
    cli(home, "run", "--now", AS_OF)
    return time.perf_counter() - started


def facts(home: Path) -> tuple[list[str], str, str, int, int]:
    """Return customer ids, the busiest partitioned table and day, its rows that day, and orders."""
    from lakehouse import warehouse

    con = warehouse.connect(home, [PROJECT], read_only=True)
    try:
        con.execute(f'USE "{PROJECT}"')
        ids = [r[0] for r in con.execute("select customer_id from gold.customer_360").fetchall()]
        busiest = []
        for table, column in (("daily_product_summary", "sales_date"), ("ad_attribution", "order_date")):
            day, n = con.execute(
                f"select {column}, count(*) from gold.{table} group by 1 order by 2 desc limit 1"
            ).fetchone()
            busiest.append((n, table, f"{column}={day.isoformat()}"))
        orders = con.execute("select count(*) from silver.orders").fetchone()[0]
    finally:
        con.close()
    n, table, day = max(busiest)
    return ids, table, day, n, orders


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(conn: http.client.HTTPConnection, path: str) -> float:
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status}")
    return time.perf_counter() - started


def latencies(port: int, paths: list[str], seconds: float) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    deadline = time.monotonic() + seconds
    out = []
    for path in paths:
        if time.monotonic() > deadline:
            break
        out.append(get(conn, path))
    conn.close()
    return out


def sustained(port: int, paths: list[str], threads: int, seconds: float, limit: int) -> tuple[int, float]:
    """Return (requests done, seconds) for `threads` keep-alive clients until `seconds` or `limit` requests."""
    done, lock = [0], threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        i = offset
        while time.monotonic() < deadline:
            with lock:
                if done[0] >= limit:
                    break
                done[0] += 1
            get(conn, paths[i % len(paths)])
            i += threads
        conn.close()

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return done[0], time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds process `pid` and its children (--workers) have used
    (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return float("nan")
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] * 1000 if len(values) >= 2 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--requests", type=int, default=500, help="Requests per latency phase.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Time bound of each phase.")
    parser.add_argument("--threads", type=int, default=4, help="Clients of the sustained phase.")
    parser.add_argument("--workers", type=int, default=1, help="lakehouse serve --workers.")
    parser.add_argument("--home", type=Path, help="Keep the warehouse here; build it only if it has no run yet.")
    args = parser.parse_args()
    console = Console(width=160)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        home = args.home or Path(tmp)
        built = args.home is not None and any((home / "runs").glob("*.json"))
        build_s = float("nan") if built else build(home, args.events)
        ids, table, day, day_rows, orders = facts(home)
        port = free_port()
        server = subprocess.Popen(
            [LAKEHOUSE, "serve", "--port", str(port), "--workers", str(args.workers)], cwd=REPO,
            env={**os.environ, "LAKEHOUSE_HOME": str(home)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    latencies(port, ["/health"], 5)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit(f"lakehouse serve did not start: {server.stderr.read().decode()}") from None
                    time.sleep(0.2)
            rng = random.Random(5)
            lookups = [f"/v1/customer_360/{rng.choice(ids)}" for _ in range(args.requests)]
            latencies(port, lookups[:50], args.seconds)  # warm-up
            # Server CPU per request does not depend on what else the machine runs; wall times do.
            cpu = [cpu_seconds(server.pid)]
            lookup = latencies(port, lookups, args.seconds)
            cpu.append(cpu_seconds(server.pid))
            page_path = f"/v1/{table}?{day}&limit=1000"
            page = latencies(port, [page_path] * args.requests, args.seconds)
            cpu.append(cpu_seconds(server.pid))
            count, seconds = sustained(port, lookups, args.threads, args.seconds, args.requests * 20)
            cpu.append(cpu_seconds(server.pid))
        finally:
            server.terminate()
            server.wait(timeout=30)
    made = f"built in {build_s:.0f} s" if build_s == build_s else f"warehouse of {home}"
    title = f"lakehouse serve --workers {args.workers}, {orders:,} orders in silver, {made}"
    result = Table(title=title)
    per_request = [(cpu[i + 1] - cpu[i]) * 1000 / max(n, 1) for i, n in enumerate((len(lookup), len(page), count))]
    for column in ("measure", "requests", "p50 ms", "p99 ms", "server CPU ms/request", "target"):
        result.add_column(column, justify="left" if column == "measure" else "right")
    result.add_row("point lookup customer_360", str(len(lookup)), f"{statistics.median(lookup) * 1000:.1f}",
                   f"{p99(lookup):.1f}", f"{per_request[0]:.1f}", "p99 ≤ 20 ms")  # fmt: skip
    result.add_row(f"one-day page {table} ({min(day_rows, 1000)} rows)", str(len(page)),
                   f"{statistics.median(page) * 1000:.1f}", f"{p99(page):.1f}", f"{per_request[1]:.1f}",
                   "p99 ≤ 100 ms")  # fmt: skip
    result.add_row(f"sustained lookups, {args.threads} clients", str(count), "", "", f"{per_request[2]:.1f}",
                   f"{count / seconds:.0f} req/s (target ≥ 300)")  # fmt: skip
    console.print(result)
    console.print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", highlight=False)


if __name__ == "__main__":
    main()
