"""The `lakehouse` command line: one entry point, subcommands imported only when used."""

from __future__ import annotations

import atexit
import importlib
import os
import sys

import click

# numpy (imported by pyarrow for Iceberg, by DuckDB for Python UDFs, by the event generator) starts
# OpenBLAS with a thread per core that spins after the import: ~0.1 s of CPU in every process, taken
# from the actions on a small machine. Nothing here multiplies matrices; a value already set is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# name -> "module:attribute". Commands are imported lazily so `lakehouse --help` stays fast and
# a broken optional part (say, deploy clients) never stops the engine commands from working.
COMMANDS: dict[str, str] = {
    "compile": "lakehouse.commands:compile_command",
    "run": "lakehouse.commands:run_command",
    "test": "lakehouse.commands:test_command",
    "query": "lakehouse.commands:query_command",
    "load": "lakehouse.commands:load_command",
    "deploy": "deploy.cli:deploy_group",
    "trigger": "deploy.cli:trigger_command",
    "generate": "ingest.cli:generate_command",
    "up": "ingest.cli:up_command",
    "schedule": "ingest.cli:schedule_command",
    "services": "ingest.cli:services_command",
    "report": "lakehouse.report.cli:report_command",
    "lint": "lakehouse.lint:lint_command",
    "serve": "lakehouse.serve.cli:serve_command",
    "export": "lakehouse.export:export_command",
    "contract": "lakehouse.contract_diff:contract_group",
}

HELP: dict[str, str] = {
    "compile": "Compile the Dataform project with the pinned Dataform CLI.",
    "run": "Run the compiled graph on the local DuckDB warehouse.",
    "test": "Run the project's Dataform unit tests locally.",
    "query": "Run BigQuery SQL on the local warehouse.",
    "load": "Load CSV/JSONL/Parquet files into a local warehouse table.",
    "deploy": "Plan, apply or destroy the GCP deployment of an environment config.",
    "trigger": "Run the Dataform workflow (local or GCP) and report assertions.",
    "generate": "Generate synthetic events with faults and land them locally.",
    "up": "The local demo: services up, generate, land, publish, run the graph, report, stop cleanly.",
    "schedule": "Run the generator on the shared cron schedule (config/schedules.yaml).",
    "services": "Keep fake-gcs-server and the Pub/Sub emulator running until Ctrl-C.",
    "report": "Assertion report, scorecard, lineage and dashboard of a run.",
    "lint": "Lint the compiled SQL of every action with sqlfluff (house style in .sqlfluff).",
    "serve": "Serve the gold tables as a read-only REST API (local DuckDB or BigQuery).",
    "export": "Export a table to gs://bucket/prefix as Parquet, CSV or JSONL, one folder per date.",
    "contract": "Source contracts: `contract diff` prints the change that accepts the drift arriving.",
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in other modules and load on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gcp-lakehouse-kit")
def main() -> None:
    """A BigQuery + Dataform lakehouse that also runs on your laptop.

    The same SQLX is compiled by the real Dataform compiler and, locally, executed on DuckDB.
    Local state lives in LAKEHOUSE_HOME (default: .lakehouse/ under the project directory).
    """


_exit_code: int | None = None  # what `entry` exits with, once main has returned or exited


def entry() -> None:
    """The `lakehouse` console script: `main`, then exit without tearing the interpreter down.

    Freeing what a run imported (DuckDB, sqlglot, pyiceberg, Arrow) object by object takes about 0.3 s,
    about 7% of an hourly run on a million events, for memory the operating system takes back at once.
    Everything a normal exit does first still happens, in its order: threads are joined, then the
    atexit handlers run (this one, registered first, runs last), then output is flushed.
    """
    global _exit_code
    atexit.register(_exit_without_teardown)
    try:
        main()
        _exit_code = 0
    except SystemExit as stop:
        _exit_code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        raise


def _exit_without_teardown() -> None:
    if _exit_code is None:  # an exception escaped main: Python reports it and exits as it does
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (`| head`), or a stream closed
            pass
    os._exit(_exit_code)
