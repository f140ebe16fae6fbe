"""`lakehouse serve`: the read-only gold API on the local warehouse or on BigQuery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from lakehouse import paths
from lakehouse.commands import console, fail, project_dir_option

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def build_app(project_dir: Path, backend_name: str, graph_file: Path | None, environ=os.environ):
    """Return (the FastAPI app, the key names) for `project_dir`'s gold tables.

    Raises ValueError (keys, catalog), CompileError, or WarehouseBusy, each with a message to print.
    """
    from lakehouse.engine.compile import compile_project
    from lakehouse.serve.app import create_app, keys_from_env
    from lakehouse.serve.backends import BigQueryBackend, DuckDBBackend
    from lakehouse.serve.catalog import gold_tables

    graph = json.loads(graph_file.read_text()) if graph_file else compile_project(project_dir).graph
    tables = gold_tables(graph, environ.get("LAKEHOUSE_GOLD_DATASET", "gold"))
    keys = keys_from_env(environ)
    if backend_name == "bigquery":
        project = environ.get("LAKEHOUSE_GCP_PROJECT") or paths.default_project(project_dir)
        backend = BigQueryBackend(project, environ.get("LAKEHOUSE_BIGQUERY_LOCATION"))
    else:
        projects = sorted({t.project for t in tables.values()}) or [paths.default_project(project_dir)]
        backend = DuckDBBackend(paths.home(project_dir), projects)
    return create_app(tables, backend, keys, require_keys=backend_name == "bigquery"), [k.name for k in keys]


@click.command("serve")
@project_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to bind.")
@click.option(
    "--backend", "backend_name", type=click.Choice(["duckdb", "bigquery"]), default="duckdb", show_default=True,
    help="duckdb: the local warehouse, read-only. bigquery: gold in BigQuery (as on Cloud Run).",
)  # fmt: skip
@click.option(
    "--graph", "graph_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A compiled graph (lakehouse compile --json) instead of compiling: how the container runs.",
)  # fmt: skip
def serve_command(project_dir: Path, host: str, port: int, backend_name: str, graph_file: Path | None) -> None:
    """Serve the gold tables as a read-only REST API (docs at /docs, /health, /ready).

    Keys come from LAKEHOUSE_API_KEYS (`name:secret[:rate]`, comma-separated). Without keys the API
    is open and binds localhost only; on BigQuery keys are required.
    """
    import uvicorn

    from lakehouse import warehouse
    from lakehouse.engine.compile import CompileError

    try:
        app, key_names = build_app(project_dir, backend_name, graph_file)
    except (ValueError, CompileError, warehouse.WarehouseBusy) as error:
        fail(str(error))
    if not key_names and host not in LOCAL_HOSTS:
        fail(f"no API keys configured (LAKEHOUSE_API_KEYS): refusing to bind {host}; without keys the API "
             "binds localhost only")  # fmt: skip
    access = f"keys required ({', '.join(key_names)})" if key_names else "OPEN on localhost: no API keys configured"
    where = f"http://{host}:{port}"
    console.print(f"serving gold from {backend_name} on {where} — {access}; docs at {where}/docs", highlight=False)
    # httptools and uvloop (the serve extra): uvicorn's pure-Python h11 parser and asyncio loop would
    # cost every request more CPU than its query (bench/serve_bench.py).
    uvicorn.run(app, host=host, port=port, log_level="warning", http="httptools", loop="uvloop", access_log=False)
