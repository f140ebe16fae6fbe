"""CLI commands of the ingest side: generate, up, schedule, services."""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ingest import local
from ingest.contracts import ContractError
from ingest.up import INGEST_STEPS, UP_STEPS, Options, UpContext, run_steps

log = logging.getLogger(__name__)


def _fault_rates(values: tuple[str, ...]) -> dict[str, float]:
    rates = {}
    for value in values:
        key, sep, rate = value.partition("=")
        try:
            number = float(rate)
        except ValueError:
            number = -1.0
        if not sep or not key or not 0 <= number <= 1:
            raise click.BadParameter(
                f"{value!r}: expected FAULT=RATE with RATE between 0 and 1", param_hint="--fault-rate"
            )
        rates[key] = number
    return rates


def _as_of(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint="--as-of") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _summary(ctx: UpContext, console: Console) -> None:
    stats = ctx.stats
    table = Table(title="ingest", show_header=False)
    table.add_row("events generated", f"{stats.events:,}")
    table.add_row("lines (incl. redelivered copies)", f"{stats.lines:,}")
    table.add_row("HTTP batches", f"{stats.http_batches:,}")
    table.add_row("landed in bronze (GCS)", f"{stats.accepted:,}")
    for reason, count in sorted(stats.rejected.items()):
        table.add_row(f"dead-lettered: {reason}", f"{count:,}")
    table.add_row("objects created", f"{stats.objects_created:,}")
    table.add_row("file arrivals recorded", f"{stats.arrivals_recorded:,}")
    table.add_row(f"published to Pub/Sub ({ctx.services.pubsub_kind if ctx.services else '-'})", f"{stats.published:,}")
    table.add_row("raw table rows written", f"{stats.raw_rows:,}")
    table.add_row("raw rows already written (same record key)", f"{stats.raw_rows_already_written:,}")
    table.add_row("Pub/Sub dead-lettered (not UTF-8)", f"{stats.pubsub_dead_lettered:,}")
    for name, seconds in stats.seconds.items():
        table.add_row(f"seconds: {name}", f"{seconds:.2f}")
    console.print(table)
    home = ctx.settings.home
    console.print(f"landing files: {home / 'gcs' / ctx.settings.landing_bucket}", markup=False)
    console.print(f"warehouse: {home / 'warehouse' / (ctx.settings.project + '.duckdb')}", markup=False)


def _settings() -> local.Settings:
    try:
        return local.Settings.load(Path.cwd())
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def _run(settings: local.Settings, options: Options, steps, with_pubsub: bool) -> UpContext:
    from ingest.services import ServiceError
    from lakehouse.warehouse import WarehouseBusy

    console = Console(stderr=True)
    try:
        ctx = run_steps(settings, options, steps, console, with_pubsub=with_pubsub)
    except (ContractError, ValueError, ServiceError, WarehouseBusy, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    _summary(ctx, Console())
    return ctx


class _FiniteRange(click.FloatRange):
    """A FloatRange that refuses nan and inf, which compare false with both bounds and so pass it."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


# Seeds feed numpy's SeedSequence and faker: non-negative, and kept to INT64 where they are recorded.
SEED = click.IntRange(0, 2**63 - 1)

_common = [
    click.option(
        "--seed",
        type=SEED,
        default=42,
        show_default=True,
        help="Random seed: same seed and --as-of, same events.",
    ),
    click.option("--source", "sources", multiple=True, metavar="NAME", help="Only these sources (repeatable)."),
    click.option(
        "--fault-rate",
        "fault_rates",
        multiple=True,
        metavar="FAULT=RATE",
        help="Override a fault rate by fault name (quantity_negative), kind (null) or 'all' (repeatable).",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(1, 100_000),
        default=1000,
        show_default=True,
        help="Events per HTTP batch (one landing object per source and batch).",
    ),
    click.option("--as-of", default=None, metavar="ISO-TIME", help="End of the event-time window (default: now)."),
    click.option(
        "--span-hours",
        type=_FiniteRange(0.01, 24 * 365),
        default=24.0,
        show_default=True,
        help="Length of the event-time window before --as-of.",
    ),
    click.option("--clean", is_flag=True, help="Empty the local landing/dead-letter buckets and raw tables first."),
    click.option("--in-process-bus", is_flag=True, help="Use the in-process Pub/Sub bus even if the emulator exists."),
]


def _with_common(function):
    for option in reversed(_common):
        function = option(function)
    return function


def _options(events, seed, sources, fault_rates, batch_size, as_of, span_hours, clean, in_process_bus, pubsub_share):
    return Options(
        events=events,
        seed=seed,
        sources=tuple(sources),
        fault_rates=_fault_rates(fault_rates),
        batch_size=batch_size,
        pubsub_share=pubsub_share,
        as_of=_as_of(as_of),
        span=timedelta(hours=span_hours),
        clean=clean,
        prefer_emulator=not in_process_bus,
    )


@click.command("generate")
@click.option(
    "--events",
    type=click.IntRange(0, 50_000_000),
    default=10_000,
    show_default=True,
    help="How many events to generate, split over the sources by their contract share.",
)
@_with_common
@click.option(
    "--pubsub-share",
    type=_FiniteRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of each source's events published to Pub/Sub instead of POSTed over HTTP.",
)
def generate_command(
    events, seed, sources, fault_rates, batch_size, as_of, span_hours, clean, in_process_bus, pubsub_share
):
    """Generate synthetic e-commerce events with faults and land them locally.

    Starts fake-gcs-server (and Pub/Sub when --pubsub-share > 0), POSTs the events in batches to the
    landing function, records the file arrivals, writes the Pub/Sub raw tables, and stops everything.
    """
    options = _options(
        events, seed, sources, fault_rates, batch_size, as_of, span_hours, clean, in_process_bus, pubsub_share
    )
    _run(_settings(), options, INGEST_STEPS, with_pubsub=pubsub_share > 0)


@click.command("up")
@click.option(
    "--events",
    type=click.IntRange(0, 50_000_000),
    default=20_000,
    show_default=True,
    help="How many events the demo generates.",
)
@_with_common
@click.option(
    "--pubsub-share",
    type=_FiniteRange(0, 1),
    default=0.2,
    show_default=True,
    help="Share of each source's events sent through Pub/Sub.",
)
@click.option(
    "--schedule",
    "keep_scheduling",
    is_flag=True,
    help="Afterwards keep generating on the shared cron schedule (config/schedules.yaml) until Ctrl-C.",
)
def up_command(
    events,
    seed,
    sources,
    fault_rates,
    batch_size,
    as_of,
    span_hours,
    clean,
    in_process_bus,
    pubsub_share,
    keep_scheduling,
):
    """The local demo: start the services, generate, land, publish, write the raw tables, run the Dataform
    graph on DuckDB (bronze -> silver -> gold, assertions), write the reports, and stop cleanly.

    Exits 1 when an action failed or an error-severity assertion has failing rows.
    """
    settings = _settings()
    options = _options(
        events, seed, sources, fault_rates, batch_size, as_of, span_hours, clean, in_process_bus, pubsub_share
    )
    ctx = _run(settings, options, UP_STEPS, with_pubsub=True)
    record = ctx.results.get("run")
    if record is not None and record.status != "success":
        raise click.ClickException(
            f"run {record.run_id} failed: an action failed or an error-severity assertion has failing rows"
        )
    if keep_scheduling:
        _schedule(settings, "generate", None, seed, in_process_bus)


def _schedule(settings: local.Settings, name: str, ticks: int | None, seed: int, in_process_bus: bool) -> None:
    from ingest.schedule import load_schedules, next_fire, run_schedule
    from ingest.up import step_audit, step_drain, step_generate, step_land

    try:
        schedules = load_schedules(settings.project_dir)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if name not in schedules:
        raise click.ClickException(f"no schedule {name!r} in config/schedules.yaml; known: {', '.join(schedules)}")
    schedule = schedules[name]
    console = Console(stderr=True)
    console.print(
        f"schedule {name}: {schedule.cron} (UTC), {schedule.events} events a tick; Ctrl-C stops", markup=False
    )

    def tick_steps(ctx: UpContext) -> None:
        def tick(fire: datetime) -> None:
            ctx.options.as_of = fire
            # Events of a tick cover the interval since the previous tick; each tick has its own seed.
            ctx.options.span = next_fire(schedule.cron, fire) - fire
            ctx.options.seed = seed + int(fire.timestamp() // 60)
            for step in (step_generate, step_land, step_audit, step_drain):
                step(ctx)
            console.print(
                f"{fire:%Y-%m-%d %H:%M} UTC: {ctx.stats.accepted} landed, {sum(ctx.stats.rejected.values())} "
                f"dead-lettered, {ctx.stats.raw_rows} raw rows"
            )

        run_schedule(schedule, tick, ticks=ticks)

    options = Options(
        events=schedule.events,
        seed=seed,
        batch_size=schedule.batch_size,
        pubsub_share=schedule.pubsub_share,
        span=timedelta(minutes=2),
        prefer_emulator=not in_process_bus,
    )

    try:
        run_steps(settings, options, [("scheduled generation", tick_steps)], console)
    except KeyboardInterrupt:
        console.print("stopped")


@click.command("schedule")
@click.option("--name", default="generate", show_default=True, help="Schedule in config/schedules.yaml.")
@click.option(
    "--ticks",
    type=click.IntRange(1),
    default=None,
    help="Stop after this many ticks (default: run until Ctrl-C).",
)
@click.option("--seed", type=SEED, default=42, show_default=True, help="Base seed; each tick adds its minute.")
@click.option("--in-process-bus", is_flag=True, help="Use the in-process Pub/Sub bus even if the emulator exists.")
def schedule_command(name, ticks, seed, in_process_bus):
    """Run the generator on the shared cron schedule (config/schedules.yaml), as Cloud Scheduler does."""
    _schedule(_settings(), name, ticks, seed, in_process_bus)


@click.command("services")
def services_command():
    """Start fake-gcs-server and the Pub/Sub emulator and keep them up until Ctrl-C (for development)."""
    from ingest.services import ServiceError

    settings = _settings()
    try:
        with local.local_services(settings) as services:
            click.echo(f"export STORAGE_EMULATOR_HOST={services.gcs.url}")
            if services.emulator is not None:
                click.echo(f"export PUBSUB_EMULATOR_HOST={services.emulator.host_port}")
            else:
                click.echo("# Pub/Sub emulator not installed: only the in-process bus is available")
            click.echo(f"# objects under {services.gcs.root}; Ctrl-C stops")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                click.echo("stopping")
    except ServiceError as error:
        raise click.ClickException(str(error)) from None
