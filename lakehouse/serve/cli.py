"""`lakehouse serve`: the read-only gold API on the local warehouse or on BigQuery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from lakehouse import paths
from lakehouse.commands import console, fail, project_dir_option

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# What `--workers` processes build their app from: JSON {project_dir, backend, graph}, set by the parent.
WORKER_ENV = "LAKEHOUSE_SERVE_WORKER"


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


def worker_app():
    """Return the app of one `--workers` process, built from what the parent put in LAKEHOUSE_SERVE_WORKER.

    Raises KeyError when that variable is not set (not a worker of `lakehouse serve`).
    """
    spec = json.loads(os.environ[WORKER_ENV])
    return build_app(Path(spec["project_dir"]), spec["backend"], Path(spec["graph"]))[0]


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
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64),
    help="Server processes (one per core serves the most requests/s). Rate limits count per process.",
)  # fmt: skip
def serve_command(
    project_dir: Path, host: str, port: int, backend_name: str, graph_file: Path | None, workers: int
) -> None:
    """Serve the gold tables as a read-only REST API (docs at /docs, /health, /ready).

    Keys come from LAKEHOUSE_API_KEYS (`name:secret[:rate]`, comma-separated). Without keys the API
    is open and binds localhost only; on BigQuery keys are required.
    """
    import tempfile

    from lakehouse.engine.compile import CompileError, compile_project

    made_graph = workers > 1 and graph_file is None
    if made_graph:
        # compiled once here; each worker reads the graph instead of compiling again
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
            graph_file = Path(out.name)
        try:
            graph_file.write_text(json.dumps(compile_project(project_dir).graph))
            _serve(project_dir, host, port, backend_name, graph_file, workers)
        except CompileError as error:
            fail(str(error))
        finally:
            graph_file.unlink(missing_ok=True)
    else:
        _serve(project_dir, host, port, backend_name, graph_file, workers)


def _serve(project_dir: Path, host: str, port: int, backend_name: str, graph_file: Path | None, workers: int) -> None:
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
    console.print(
        f"serving gold from {backend_name} on {where} — {access}; docs at {where}/docs", highlight=False, markup=False
    )
    # httptools and uvloop (the serve extra): uvicorn's pure-Python h11 parser and asyncio loop would
    # cost every request more CPU than its query (bench/serve_bench.py).
    fast = {"log_level": "warning", "http": "httptools", "loop": "uvloop", "access_log": False}
    if workers == 1:
        uvicorn.run(app, host=host, port=port, **fast)
        return
    # The app built here only checked the configuration: the workers build their own.
    getattr(app.state.server.backend, "close", lambda: None)()
    spec = {"project_dir": str(project_dir.resolve()), "backend": backend_name, "graph": str(graph_file.resolve())}
    os.environ[WORKER_ENV] = json.dumps(spec)
    uvicorn.run("lakehouse.serve.cli:worker_app", factory=True, host=host, port=port, workers=workers, **fast)
