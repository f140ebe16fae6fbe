"""`lakehouse up` and `lakehouse generate` as one sequence of named steps run while local services are up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ingest import audit, local, pubsub
from ingest.contracts import Contract, load_contracts
from ingest.generator import SourcePlan, known_fault_keys, plan

log = logging.getLogger(__name__)


@dataclass
class Options:
    """What to generate and how to land it."""

    events: int = 20_000
    seed: int = 42
    sources: tuple[str, ...] = ()
    fault_rates: dict[str, float] = field(default_factory=dict)
    batch_size: int = 1000
    pubsub_share: float = 0.2
    as_of: datetime | None = None
    span: timedelta = timedelta(hours=24)
    clean: bool = False
    prefer_emulator: bool = True


@dataclass
class UpContext:
    """State shared by the steps: settings, options, running services and what each step produced."""

    settings: local.Settings
    options: Options
    console: Console
    contracts: dict[str, Contract] = field(default_factory=dict)
    services: local.Services | None = None
    generated: dict[str, SourcePlan] = field(default_factory=dict)
    stats: local.IngestStats = field(default_factory=local.IngestStats)
    results: dict[str, Any] = field(default_factory=dict)


Step = tuple[str, Callable[[UpContext], None]]


def step_generate(ctx: UpContext) -> None:
    """Plan the events (all fault kinds at the contracts' rates unless overridden); the landing step
    draws them chunk by chunk, so memory does not grow with --events."""
    started = time.perf_counter()
    ctx.generated = plan(
        ctx.contracts,
        ctx.options.events,
        ctx.options.seed,
        as_of=ctx.options.as_of,
        span=ctx.options.span,
        sources=ctx.options.sources or None,
        fault_rates=ctx.options.fault_rates,
    )
    ctx.stats.seconds["plan"] = time.perf_counter() - started


def step_land(ctx: UpContext) -> None:
    """Draw the events and POST them in batches to the landing function (functions-framework),
    publishing the Pub/Sub share."""
    total = sum(source_plan.lines for source_plan in ctx.generated.values())
    with Progress(
        TextColumn("landing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=ctx.console,
        transient=True,
        disable=not ctx.console.is_terminal,
    ) as progress:
        task = progress.add_task("land", total=total)
        stats = local.land_generated(
            ctx.settings,
            ctx.services,
            ctx.generated,
            batch_size=ctx.options.batch_size,
            pubsub_share=ctx.options.pubsub_share,
            batch_time=ctx.options.as_of,
            progress=lambda n: progress.advance(task, n),
        )
    stats.seconds = {**ctx.stats.seconds, **stats.seconds}
    ctx.stats = stats


def step_audit(ctx: UpContext) -> None:
    """Record every landed object in ops.file_arrivals, as the GCS finalize handler does on GCP."""
    ctx.stats.arrivals_recorded = local.record_arrivals(ctx.settings, ctx.services, ctx.stats.objects)


def step_drain(ctx: UpContext) -> None:
    """Run the subscription writer: Pub/Sub messages into bronze.<source>_raw, acked after commit."""
    started = time.perf_counter()
    pubsub.ensure_raw_tables(ctx.settings.home, ctx.settings.project, ctx.contracts)
    result = local.drain_subscriptions(ctx.settings, ctx.services, list(ctx.generated))
    ctx.stats.raw_rows = result.written
    ctx.stats.raw_rows_already_written = result.already_written
    ctx.stats.pubsub_dead_lettered = result.dead_lettered
    ctx.stats.seconds["subscription_writer"] = time.perf_counter() - started


# What `lakehouse generate` does once the services run.
INGEST_STEPS: list[Step] = [
    ("plan events", step_generate),
    ("generate events, land over HTTP, publish to Pub/Sub", step_land),
    ("record file arrivals", step_audit),
    ("write the Pub/Sub raw tables", step_drain),
]


def step_run_graph(ctx: UpContext) -> None:
    """Run the Dataform graph (bronze -> silver -> gold and every assertion) on the local warehouse."""
    from lakehouse.engine.runner import RunError, run

    try:
        # The graph runs as of the time the events were generated for, so freshness is judged then.
        record = run(
            ctx.settings.project_dir, home_dir=ctx.settings.home, now=ctx.options.as_of, prepare=audit.local_finalize
        )
    except RunError as error:
        raise RuntimeError(f"the Dataform run could not start: {error}") from None
    ctx.results["run"] = record
    counts: dict[str, int] = {}
    for action in record.actions:
        counts[action.status] = counts.get(action.status, 0) + 1
    ctx.console.print(
        f"run {record.run_id}: {record.status} ("
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + ")",
        highlight=False,
    )
    for action in record.actions:
        if action.status in ("failed", "skipped"):
            label = "warn" if action.severity == "warn" else action.status
            ctx.console.print(f"  {label}: {action.error}", highlight=False, markup=False)


def step_report(ctx: UpContext) -> None:
    """Write the assertion report, scorecard, lineage and dashboard of the run, and say where."""
    from lakehouse.report import up_step

    up_step(ctx)


# What `lakehouse up` does: the ingest steps, then the Dataform run on the local warehouse and its
# reports. Each step takes the UpContext.
UP_STEPS: list[Step] = [
    *INGEST_STEPS,
    ("run the Dataform graph on DuckDB", step_run_graph),
    ("write the reports", step_report),
]


def check_options(contracts: dict[str, Contract], options: Options) -> None:
    """Raise ValueError naming an unknown source or fault before any service starts."""
    unknown = [name for name in options.sources if name not in contracts]
    if unknown:
        raise ValueError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(sorted(contracts))}")
    keys = known_fault_keys(contracts.values())
    bad = sorted(set(options.fault_rates) - keys)
    if bad:
        raise ValueError(f"unknown fault(s) {', '.join(bad)}; known: {', '.join(sorted(keys))}")


def run_steps(
    settings: local.Settings,
    options: Options,
    steps: list[Step],
    console: Console | None = None,
    *,
    with_pubsub: bool = True,
) -> UpContext:
    """Start the local services, run `steps` in order, and stop the services, even on error or Ctrl-C.

    Returns the context with every step's results. Raises what a step raises (ContractError,
    ValueError for bad options, ServiceError, WarehouseBusy) after stopping the services.
    """
    console = console or Console(stderr=True)
    ctx = UpContext(settings, options, console)
    ctx.contracts = load_contracts(settings.project_dir)
    check_options(ctx.contracts, options)
    if options.as_of is None:
        options.as_of = datetime.now(UTC).replace(microsecond=0)
    if options.clean:
        local.clean(settings)
    started = time.perf_counter()
    with local.local_services(settings, with_pubsub=with_pubsub, prefer_emulator=options.prefer_emulator) as services:
        ctx.services = services
        ctx.stats.seconds["start_services"] = time.perf_counter() - started
        console.print(f"services up: fake-gcs-server {services.gcs.url}, Pub/Sub: {services.pubsub_kind}", markup=False)
        for name, step in steps:
            step_started = time.perf_counter()
            step(ctx)
            console.print(f"[green]✓[/green] {name} ({time.perf_counter() - step_started:.1f} s)")
    return ctx
