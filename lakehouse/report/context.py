"""What every report part reads: the run, its history, the compiled graph and a read-only warehouse."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from lakehouse import paths, warehouse
from lakehouse.engine.compile import CompileError, compile_project
from lakehouse.engine.graph import Graph
from lakehouse.report.runs import (
    History,
    ReportInputError,
    Run,
    all_runs,
    json_runs,
    run_from_trigger,
    select_run,
)

log = logging.getLogger(__name__)


@dataclass
class Context:
    """The inputs of one report; `notes` collects plain statements about missing inputs."""

    project_dir: Path
    home_dir: Path
    project: str | None
    graph: Graph | None
    con: duckdb.DuckDBPyConnection | None
    runs: list[Run]
    run: Run
    history: History
    notes: list[str] = field(default_factory=list)
    samples: dict[str, list[dict]] = field(default_factory=dict)  # failing rows a trigger report carries

    def query(self, sql: str, params: list | None = None) -> tuple[list[str], list[tuple]]:
        """Return (column names, rows) of `sql` on the warehouse; raises duckdb.Error unchanged."""
        if self.con is None:
            raise duckdb.CatalogException("the local warehouse is empty (no DuckDB file under the home)")
        cursor = self.con.execute(sql, params or [])
        return [d[0] for d in cursor.description or []], cursor.fetchall()

    def table_exists(self, project: str, dataset: str, name: str) -> bool:
        """Return whether "<project>"."<dataset>"."<name>" is a table or view in the warehouse."""
        if self.con is None:
            return False
        return bool(
            self.con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? "
                "AND table_name = ?",
                [project, dataset, name],
            ).fetchone()[0]
        )


def split_name(readable: str) -> tuple[str, str, str]:
    """Return (project, dataset, name) of a readable "project.dataset.name" action name.

    Raises ValueError when the name has fewer than three parts.
    """
    parts = readable.rsplit(".", 2)
    if len(parts) != 3:
        raise ValueError(f"{readable!r} is not a project.dataset.name target")
    return parts[0], parts[1], parts[2]


def quoted(readable: str) -> str:
    """Return the DuckDB three-part quoted name of a readable target name."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in split_name(readable))


def open_warehouse(home_dir: Path) -> duckdb.DuckDBPyConnection | None:
    """Return a read-only connection with every local project file attached, or None when there is none.

    Raises lakehouse.warehouse.WarehouseBusy when a run holds a file for longer than the lock wait.
    """
    folder = paths.warehouse_dir(home_dir)
    projects = sorted(p.stem for p in folder.glob("*.duckdb")) if folder.is_dir() else []
    if not projects:
        return None
    con = warehouse.connect(home_dir, projects, read_only=True, only_existing=True)
    with contextlib.suppress(ImportError, duckdb.Error):
        from lakehouse.engine import functions

        # Assertion views may call the engine's BigQuery macros; they live per connection.
        functions.register_functions(con)
    return con


def load_graph(project_dir: Path, home_dir: Path) -> tuple[Graph | None, str | None]:
    """Return (compiled graph, None), or (None, why) when the project does not compile here."""
    try:
        compiled = compile_project(project_dir, home_dir=home_dir)
    except CompileError as error:
        return (
            None,
            f"the project at {project_dir} does not compile ({error}); file and lineage details are limited",
        )
    return Graph.from_compiled(compiled.graph), None


def _project_of(graph: Graph | None, runs: list[Run], home_dir: Path) -> str | None:
    if graph is not None and graph.project_config.get("defaultDatabase"):
        return graph.project_config["defaultDatabase"]
    for run in reversed(runs):
        for action in run.actions:
            with contextlib.suppress(ValueError):
                return split_name(action.name)[0]
    folder = paths.warehouse_dir(home_dir)
    files = sorted(folder.glob("*.duckdb")) if folder.is_dir() else []
    return files[0].stem if len(files) == 1 else None


@contextlib.contextmanager
def open_context(
    project_dir: Path | str,
    home_dir: Path | None = None,
    run_id: str | None = None,
    trigger_report: Path | None = None,
) -> Iterator[Context]:
    """Yield the Context of the run `run_id` (latest when None), or of a `lakehouse trigger --json` report
    file; closes the warehouse on exit.

    Raises ReportInputError when there is no run to report on or the trigger report is unreadable,
    WarehouseBusy when the warehouse is locked.
    """
    project_dir = Path(project_dir).resolve()
    home_dir = Path(home_dir) if home_dir else paths.home(project_dir)
    if trigger_report is not None:
        with _trigger_context(project_dir, home_dir, Path(trigger_report)) as ctx:
            yield ctx
        return
    notes: list[str] = []
    con = open_warehouse(home_dir)
    if con is None and not json_runs(home_dir):
        select_run([], run_id, home_dir)  # raises: nothing to report on, and no need to compile to say so
    graph, why = load_graph(project_dir, home_dir)
    if why:
        notes.append(why)
    try:
        if con is None:
            notes.append(f"the local warehouse under {home_dir} is empty: no table, view or sample can be read")
        project = _project_of(graph, [], home_dir)
        runs = all_runs(home_dir, con, project)
        if project is None:
            project = _project_of(graph, runs, home_dir)
            runs = all_runs(home_dir, con, project)
        run = select_run(runs, run_id, home_dir)
        yield Context(
            project_dir=project_dir,
            home_dir=home_dir,
            project=project,
            graph=graph,
            con=con,
            runs=runs,
            run=run,
            history=History.upto(runs, run),
            notes=notes,
        )
    finally:
        if con is not None:
            con.close()


@contextlib.contextmanager
def _trigger_context(project_dir: Path, home_dir: Path, path: Path) -> Iterator[Context]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ReportInputError(f"{path}: cannot read the trigger report: {error}") from error
    run, samples, compilation_errors = run_from_trigger(data)
    notes = [f"{path}: compilation error: {e}" for e in compilation_errors]
    graph, why = load_graph(project_dir, home_dir)
    if why:
        notes.append(why)
    target = data.get("target", "?")
    con = open_warehouse(home_dir) if target == "local" else None
    notes.append(
        f"run {run.run_id} comes from a {target} trigger report ({path}); its history lives in that "
        "target's ops.action_runs table, so only this run is shown"
    )
    if data.get("status") == "timeout":
        notes.append(f"the trigger gave up waiting for run {run.run_id} (timeout): it may still be running")
    try:
        yield Context(
            project_dir=project_dir,
            home_dir=home_dir,
            project=_project_of(graph, [run], home_dir),
            graph=graph,
            con=con,
            runs=[run],
            run=run,
            history=History.upto([run], run),
            notes=notes,
            samples=samples,
        )
    finally:
        if con is not None:
            con.close()
