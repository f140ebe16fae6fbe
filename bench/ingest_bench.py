"""Benchmark the ingest path: generator events/s, landing events/s per core, Pub/Sub messages/s locally."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ingest import pubsub
from ingest.contracts import load_contracts
from ingest.generator import batches, build_pools, generate
from ingest.landing import LandingConfig, land, route
from ingest.services import FakeGcs, PubSubEmulator, environment
from ingest.storage import GcsStore

REPO = Path(__file__).resolve().parents[1]
AS_OF = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _timed(action):
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_generator(contracts, events: int) -> list[tuple[str, str, str]]:
    build_pools(1)
    out, wall, cpu = _timed(lambda: generate(contracts, events, 1, as_of=AS_OF))
    lines = sum(len(e.lines) for e in out.values())
    return [
        ("generator", f"{events:,} events ({lines:,} lines), all faults", f"{events / wall:,.0f} events/s"),
        ("generator", "per CPU second", f"{events / cpu:,.0f} events/s"),
    ]


def bench_landing(contracts, events: int, batch_size: int, root: Path) -> list[tuple[str, str, str]]:
    generated = generate(contracts, events, 2, as_of=AS_OF)
    bodies = [
        (source, b"\n".join(chunk))
        for source, made in generated.items()
        for chunk in batches(made.lines, batch_size)
    ]
    lines = sum(len(e.lines) for e in generated.values())
    server = FakeGcs(root / "gcs", root / "logs")
    server.start()
    rows = []
    try:
        with environment(STORAGE_EMULATOR_HOST=server.url):
            store = GcsStore()
            config = LandingConfig("bench-landing", "bench-dead", frozenset(contracts), "none")
            store.ensure_buckets(config.landing_bucket, config.dead_letter_bucket)

            def validate_only():
                for source, body in bodies:
                    route(body, source, config)

            _, wall, cpu = _timed(validate_only)
            rows.append(("landing", "validate + route only", f"{lines / cpu:,.0f} events/s per core"))

            def full():
                for source, body in bodies:
                    land(route(body, source, config), store, config, AS_OF)

            _, wall, cpu = _timed(full)
            rows.append(("landing", f"validate + route + write, batches of {batch_size}",
                         f"{lines / cpu:,.0f} events/s per core"))
            rows.append(("landing", "  same, wall clock (fake-gcs-server on the other core)",
                         f"{lines / wall:,.0f} events/s"))

            import functions_framework

            with environment(LANDING_BUCKET="bench-landing-http", DEAD_LETTER_BUCKET="bench-dead-http",
                             LANDING_AUTH_MODE="none", LAKEHOUSE_PROJECT_DIR=str(REPO)):
                store.ensure_buckets("bench-landing-http", "bench-dead-http")
                client = functions_framework.create_app("land_http", str(REPO / "ingest" / "main.py")).test_client()

                def over_http():
                    for source, body in bodies:
                        response = client.post(f"/?source={source}", data=body)
                        assert response.status_code == 200, response.data

                _, wall, cpu = _timed(over_http)
            rows.append(("landing", f"through functions-framework (HTTP handler), batches of {batch_size}",
                         f"{lines / cpu:,.0f} events/s per core"))
    finally:
        server.stop()
    return rows


def bench_pubsub(messages: int, home: Path, use_emulator: bool) -> list[tuple[str, str, str]]:
    lines = [f'{{"source":"orders","event_id":"e{i}","order_id":"ORD-{i:012d}"}}'.encode() for i in range(messages)]
    rows = []
    emulator = PubSubEmulator.find(home / "logs") if use_emulator else None
    buses = [("in-process bus", lambda: pubsub.InProcessBus("bench-local"))]
    if emulator is not None:
        emulator.start()
        buses.append(("Google emulator", lambda: pubsub.EmulatorBus("bench-local", emulator.host_port)))
    try:
        for index, (name, make) in enumerate(buses):
            bus = make()
            sub_home = home / f"wh{index}"
            pubsub.ensure_topology(bus, ["orders"])
            _, wall, _ = _timed(lambda bus=bus: pubsub.publish_events(bus, "orders", lines))
            rows.append(("pubsub", f"{name}: publish {messages:,}", f"{messages / wall:,.0f} msg/s"))
            result, wall, _ = _timed(
                lambda bus=bus, sub_home=sub_home: pubsub.drain_to_warehouse(bus, "orders", sub_home, "bench-local")
            )
            rows.append(("pubsub", f"{name}: subscription writer → bronze.orders_raw",
                         f"{result.written / wall:,.0f} msg/s"))
            bus.close()
    finally:
        if emulator is not None:
            emulator.stop()
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generator-events", type=int, default=1_000_000)
    parser.add_argument("--landing-events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--pubsub-messages", type=int, default=20_000)
    parser.add_argument("--no-emulator", action="store_true", help="Only the in-process bus for Pub/Sub.")
    args = parser.parse_args()
    contracts = load_contracts(REPO)
    table = Table(title=f"ingest benchmark ({os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
    for column in ("part", "what", "rate"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_generator(contracts, args.generator_events)
        for index, size in enumerate(args.batch_size):
            rows += bench_landing(contracts, args.landing_events, size, Path(tmp) / f"landing{index}")
        rows += bench_pubsub(args.pubsub_messages, Path(tmp), not args.no_emulator)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
