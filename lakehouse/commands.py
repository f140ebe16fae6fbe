"""The engine's CLI commands: compile, run, test, query, load."""

from __future__ import annotations

import gc
import json
import re
import sys
import unicodedata
from datetime import UTC
from pathlib import Path

import click
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from lakehouse import paths, warehouse
from lakehouse.engine.compile import CompileError, compile_project, parse_vars

console = Console()
errors = Console(stderr=True)

# Python's cyclic collector, at its default thresholds (700, 10, 10), scanned the objects of a run (the
# compiled project, the modules of sqlglot, pyiceberg and pydantic) about 400 times in an hourly run on
# a million events: 0.3 s with the GIL held, every action thread stopped meanwhile. A run makes few
# cycles (its rows live in DuckDB, not in Python objects), so it collects the youngest generation every
# 100,000 allocations instead of 700, and the oldest every 20 million. Not for `generate`: faker's
# objects do make cycles (its peak memory went from 0.3 to 0.55 GB at a million events).
RUN_COLLECTOR_THRESHOLDS = (100_000, 20, 10)

project_dir_option = click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Any Dataform v3 project directory.",
)
vars_option = click.option(
    "--vars", "vars_text", metavar="A=1,B=2", help="Compilation vars, as the Dataform CLI takes them."
)


def fail(message: str, code: int = 1) -> None:
    """Print `message` as an error and exit with `code` (no traceback); brackets in it are printed as
    they are (a SQL or BigQuery message may hold `[...]`), not read as markup."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    sys.exit(code)


def _vars(vars_text: str | None) -> dict[str, str]:
    try:
        return parse_vars(vars_text)
    except ValueError as error:
        fail(str(error), 2)
        raise


@click.command("compile")
@project_dir_option
@vars_option
@click.option("--json", "as_json", is_flag=True, help="Print the compiled graph as JSON.")
@click.option("--no-cache", is_flag=True, help="Compile even when the definitions are unchanged.")
def compile_command(project_dir: Path, vars_text: str | None, as_json: bool, no_cache: bool) -> None:
    """Compile the project with the pinned Dataform CLI (offline).

    Unchanged definitions are served from a cache keyed by their content. Compilation errors are
    printed as `file: message` and exit 1.
    """
    try:
        compiled = compile_project(project_dir, vars=_vars(vars_text) or None, use_cache=not no_cache)
    except CompileError as error:
        for file, message in error.errors:
            errors.print(f"{file}: {message}", highlight=False, markup=False)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(compiled.graph, indent=2))
        return
    graph = compiled.graph
    counts = {
        kind: len(graph.get(kind) or []) for kind in ("tables", "operations", "assertions", "declarations", "tests")
    }
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    cached = " (cached)" if compiled.cached else ""
    console.print(f"compiled {project_dir}: {summary}{cached}", highlight=False, markup=False)


def _short(name: str, default_project: str) -> str:
    return name.removeprefix(default_project + ".")


def _print_summary(record, default_project: str = "") -> None:
    styles = {"success": "green", "failed": "red", "skipped": "yellow", "planned": "cyan", "disabled": "dim"}
    problems = []
    kept = [a for a in record.actions if a.unchanged and a.status == "success"]
    rows = []
    for a in record.actions:
        if a.unchanged and a.status == "success":
            continue  # counted below: listing a hundred unchanged actions hides the ones that ran
        status = a.status
        if a.type == "assertion" and a.status == "failed" and a.severity == "warn":
            status = "warn"
        if record.dry_run:
            status = "will run" if a.status == "planned" else "won't run"
        rows.append((
            _short(a.name, default_project),
            a.type,
            status,
            f"{a.duration_s:.2f}",
            "" if a.rows_affected is None else f"{a.rows_affected:,}",
            "" if a.failing_rows is None else f"{a.failing_rows:,}",
            styles.get(a.status, "white"),
        ))  # fmt: skip
        if a.error:
            problems.append((a, status))
    table = Table(title=f"run {record.run_id}" + (" (dry run)" if record.dry_run else ""), title_justify="left")
    # Each column's width is given, measured here on the plain text: rich measuring every cell itself took
    # longer than the rest of the run's reporting (0.25 s alone and up to 1 s beside the closing checkpoint,
    # for the 126 rows of an hourly run).
    headers = ("action", "type", "status", "s", "rows", "failing")
    widths = [max([cell_len(header), *(cell_len(row[index]) for row in rows)]) for index, header in enumerate(headers)]
    # the action column takes what the others and the borders (3 a column, and 1) leave; its names fold
    room = console.width - sum(widths[1:]) - 3 * len(headers) - 1
    widths[0] = max(min(widths[0], room), min(widths[0], 24))
    table.add_column(headers[0], overflow="fold", width=widths[0])
    for header, width in zip(headers[1:], widths[1:], strict=True):
        justify = "right" if header in ("s", "rows", "failing") else "left"
        table.add_column(header, justify=justify, no_wrap=True, width=width)
    for name, type_, status, seconds, affected, failing, style in rows:
        # a name is text, not markup
        table.add_row(Text(name), type_, Text(status, style=style), seconds, affected, failing)
    console.print(table)
    if kept:
        console.print(
            f"{len(kept)} action(s) unchanged since their last run were not re-run and kept their result "
            "(`lakehouse run --rerun-unchanged` runs them)",
            highlight=False,
        )
    for a, status in problems:
        # one piece of text, wrapped as one: a name or an error is text, not markup
        line = Text.assemble((status, styles.get(a.status, "white")), f" {_short(a.name, default_project)}: ", a.error)
        console.print(line, highlight=False)
    counts: dict[str, int] = {}
    for a in record.actions:
        counts[a.status] = counts.get(a.status, 0) + 1
    console.print(
        f"[bold]{record.status}[/]: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
        highlight=False,
    )


@click.command("run")
@project_dir_option
@vars_option
@click.option("--tags", multiple=True, help="Run actions with any of these tags (repeatable or comma-separated).")
@click.option(
    "--actions",
    multiple=True,
    help="Run these actions: project.dataset.name or a bare name (repeatable or comma-separated).",
)
@click.option("--include-deps", is_flag=True, help="Also run the dependencies of the selected actions.")
@click.option("--include-dependents", is_flag=True, help="Also run the dependents of the selected actions.")
@click.option("--full-refresh", is_flag=True, help="Rebuild incremental tables from scratch (unless protected).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Bind every statement on an empty in-memory copy of the warehouse's tables; the warehouse is untouched.",
)
@click.option("--show-sql", is_flag=True, help="With --dry-run: print the DuckDB statements of each action.")
@click.option(
    "--now",
    "now",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    help="Run as of this UTC time: what CURRENT_TIMESTAMP() returns (default: the real clock).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Actions run at once when independent (default: one per core); each stays one transaction.",
)
@click.option(
    "--rerun-unchanged",
    is_flag=True,
    help="Also run actions whose statements and inputs have not changed since they last ran "
    "(by default they are skipped and keep their result; docs/engine.md).",
)
def run_command(
    project_dir,
    vars_text,
    tags,
    actions,
    include_deps,
    include_dependents,
    full_refresh,
    dry_run,
    show_sql,
    now,
    concurrency,
    rerun_unchanged,
):
    """Run the compiled graph on the local DuckDB warehouse, in dependency order.

    Each action is atomic: a failed action leaves its previous table intact, its dependents are
    skipped, independent actions still run. Exits 0 only if every action succeeded and no
    error-severity assertion failed. Writes a run record to LAKEHOUSE_HOME/runs/ and to the
    warehouse table ops.action_runs.
    """
    gc.set_threshold(*RUN_COLLECTOR_THRESHOLDS)
    committer = None
    if not dry_run and not full_refresh:
        from lakehouse.engine.iceberg_committer import IcebergCommitter

        # before the engine's modules are imported: the committer imports pyiceberg meanwhile
        committer = IcebergCommitter.start_early(paths.home(project_dir))
        if committer is not None:
            click.get_current_context().call_on_close(committer.close)  # ends it however the command ends
    from ingest.audit import local_finalize
    from lakehouse.engine.runner import RunError, RunOptions, run

    split = lambda values: tuple(v.strip() for value in values for v in value.split(",") if v.strip())  # noqa: E731
    for option, values in (("--tags", tags), ("--actions", actions)):
        if values and not split(values):  # `--actions "$EMPTY"` must not run the whole graph
            fail(f"{option} was given but names nothing; leave it out to run every action", 2)
    options = RunOptions(
        tags=split(tags),
        actions=split(actions),
        include_deps=include_deps,
        include_dependents=include_dependents,
        full_refresh=full_refresh,
        vars=_vars(vars_text),
        dry_run=dry_run,
        now=now.replace(tzinfo=UTC) if now else None,
        concurrency=concurrency or 0,
        skip_unchanged=not rerun_unchanged,
        prepare=local_finalize,
        committer=committer,
    )

    def report(record) -> None:
        progress.stop()
        _print_summary(record, paths.default_project(project_dir))
        if show_sql:
            for a in record.actions:
                console.rule(a.name)
                for statement in a.statements:
                    console.print(statement + ";", markup=False, highlight=False)
        if not dry_run:
            console.print(
                f"run record: {paths.runs_dir(paths.home(project_dir)) / (record.run_id + '.json')}",
                highlight=False,
                markup=False,
            )

    options.on_finished = report  # printed while DuckDB writes its checkpoint; run calls it once it finished
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),  # an action name is text
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        # a bar nobody sees (a log file, cron) would still be drawn ten times a second, holding the GIL
        disable=not errors.is_terminal,
    )
    with progress:
        task = progress.add_task("compiling", total=None)

        def on_progress(name, result, done, total):
            progress.update(task, description=name, completed=done, total=total)

        try:
            record = run(project_dir, options=options, on_progress=on_progress)
        except RunError as error:
            progress.stop()
            fail(str(error))
        except KeyboardInterrupt:
            progress.stop()
            fail("interrupted: the action in progress was rolled back; finished actions are kept", 130)
    sys.exit(0 if record.status == "success" else 1)


@click.command("test")
@project_dir_option
@vars_option
def test_command(project_dir: Path, vars_text: str | None) -> None:
    """Run the project's Dataform unit tests (type: "test") locally.

    Each testQuery is compared with its expectedOutputQuery as the Dataform CLI compares them:
    row count, column names, then row by row in order.
    """
    from lakehouse.engine import functions
    from lakehouse.engine.unit_tests import run_tests

    try:
        compiled = compile_project(project_dir, vars=_vars(vars_text) or None)
    except CompileError as error:
        fail(f"compilation failed:\n{error}")
    default_project = compiled.graph.get("projectConfig", {}).get("defaultDatabase") or "lakehouse-local"
    try:
        con = warehouse.connect(paths.home(project_dir), [default_project])
    except warehouse.WarehouseBusy as error:
        fail(str(error))
    try:
        functions.register_functions(con)
        results = run_tests(compiled.graph, con)
    finally:
        con.close()
    if not results:
        console.print('no Dataform unit tests (type: "test") in this project')
        return
    for r in results:
        mark = ("passed", "green") if r.successful else ("failed", "red")
        console.print(Text.assemble(mark, f" {r.name} ({r.file_name})"), highlight=False)
        for message in r.messages:
            console.print(f"    {message}", markup=False, highlight=False)
    failed = sum(not r.successful for r in results)
    console.print(f"{len(results) - failed} passed, {failed} failed", highlight=False, markup=False)
    sys.exit(1 if failed else 0)


# SQL may begin with a `--` comment: click must not read it as an option.
@click.command("query", context_settings={"ignore_unknown_options": True})
@click.argument("sql")
@project_dir_option
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def query_command(sql: str, project_dir: Path, fmt: str) -> None:
    """Run BigQuery SQL (one statement or a script) on the local warehouse.

    SQL is translated exactly as model SQL is. `-` reads the SQL from standard input.
    """
    import duckdb

    from lakehouse.engine import functions, query, scripts, unchanged
    from lakehouse.engine.runner import gcs_resolver

    if sql == "-":
        sql = sys.stdin.read()
    import sqlglot

    try:
        tokens = [t for t in sqlglot.tokenize(sql, read="bigquery") if t.token_type.name != "SEMICOLON"]
    except sqlglot.errors.TokenError:
        tokens = None  # not empty: the translation below names what it cannot read
    if tokens == []:
        fail("no SQL to run: the query is empty or only comments", 2)
    default_project = paths.default_project(project_dir)
    home_dir = paths.home(project_dir)
    scripts.set_cache_dir(home_dir / "translate-cache")
    try:
        projects = query.projects_to_attach(home_dir, [sql], default_project)
    except (scripts.UnsupportedConstruct, scripts.TranslationError) as error:
        fail(str(error))
    try:
        con = _query_connection(home_dir, projects)
    except (warehouse.WarehouseBusy, ValueError) as error:
        fail(str(error))
    try:
        functions.register_functions(con)
        con.execute(f'USE "{default_project}"')
        result = query.execute(con, sql, default_project=default_project, gcs_resolver=gcs_resolver(home_dir))
        if not unchanged.reads_only(sql):
            # A write the runner did not make: the next run re-runs every action rather than trust
            # what it recorded.
            unchanged.forget(con)
    except scripts.UnsupportedConstruct as error:
        fail(f"{error.construct} is not supported locally. {error.hint}")
    except (scripts.TranslationError, duckdb.Error, OSError) as error:
        message = str(error).strip().splitlines()[0]
        if warehouse.reading_copy(con, home_dir) and "read-only" in message:
            fail(
                "a run holds the warehouse, so this query reads the copy of its last commit and cannot write; "
                f"run it again when the run has finished ({message})"
            )
        missing = (
            query.missing_tables(con, [sql], default_project)
            if isinstance(error, duckdb.Error) and query.names_a_missing_relation(error)
            else []
        )
        fail(query.missing_table_message(missing) if missing else message)
    finally:
        con.close()
    if fmt == "json":
        click.echo(query.to_json(result))
    elif fmt == "csv":
        click.echo(query.to_csv(result), nl=False)
    else:
        table = Table()
        for column in result.columns:
            table.add_column(column)
        for row in result.rows:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        console.print(table)


def _query_connection(home_dir: Path, projects: list[str]):
    """Return a connection for `lakehouse query`: the warehouse itself when it is free (or held briefly
    by another writer), else, while a run holds it, the copy of its last committed state (read-only).

    Raises warehouse.WarehouseBusy as warehouse.connect does.
    """
    try:
        return warehouse.connect(home_dir, projects, wait_seconds=0)
    except warehouse.WarehouseBusy:
        con = warehouse.connect(home_dir, projects, read_only=True)
    copied = warehouse.reading_copy(con, home_dir)
    if copied:
        errors.print(
            f"note: a run holds the warehouse; reading {', '.join(copied)} as of the run's last committed "
            "action (read-only)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    return con


# What BigQuery takes in a table name: Unicode letters, marks, numbers, connectors (_), dashes and spaces.
_TABLE_NAME_CATEGORIES = {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Zs"}


# The files `lakehouse load` appended, per table: in each project's catalog, beside the runner's state.
_LOADED_FILES = "loaded_files"


# A CSV is read as `bq load` reads one by default: comma-separated, '"' quotes, every line with the same
# fields. DuckDB's sniffer would otherwise take lines that do not fit for a preamble to skip, or read
# every line as one column, without a word.
_CSV_LOAD_OPTIONS = ", delim = ',', quote = '\"', escape = '\"', skip = 0, strict_mode = true, null_padding = false"
_CSV_LINE_ERROR = re.compile(r"CSV Error on Line: (\d+).*?Expected Number of Columns: (\d+) Found: (\d+)", re.DOTALL)
_CSV_OTHER_ERROR = re.compile(r"CSV Error on Line: (\d+)\n(?:Original Line:[^\n]*\n)?([^\n]+)")


def _csv_problem(error: str, files: tuple[Path, ...]) -> str | None:
    """Return what is wrong with which line of which CSV file, from DuckDB's error or a read of the files
    (when DuckDB could not even detect the header and types), or None."""
    import csv

    from lakehouse.engine.query import FAILED_FILE

    named = FAILED_FILE.search(error)
    line = _CSV_LINE_ERROR.search(error)
    if line:
        where = f"{named.group(1).strip()} line {line.group(1)}" if named else f"line {line.group(1)}"
        return (
            f"{where} has {line.group(3)} field(s) where the file has {line.group(2)}; "
            "every line of a CSV needs the same fields"
        )
    other = _CSV_OTHER_ERROR.search(error)
    if other:
        where = f"{named.group(1).strip()} line {other.group(1)}" if named else f"line {other.group(1)}"
        return f"{where}: {other.group(2).strip()}"
    if "sniffing file" not in error:
        return None
    for file in files:
        try:
            text = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as problem:
            return f"{file} is not UTF-8 (byte {problem.start}); a CSV is read as UTF-8, as bq load reads one"
        except OSError as problem:
            return f"{file} cannot be read ({problem.strerror})"
        try:
            reader = csv.reader(text.splitlines(keepends=True))
            rows, started = [], 1
            for row in reader:
                rows.append((started, reader.line_num, row))
                started = reader.line_num + 1
            if rows and rows[-1][1] > rows[-1][0] and text.count('"') % 2:
                # an odd number of quotes: the last row ran from its opening quote to the end of the file
                return f"{file} line {rows[-1][0]}: a quoted field is not closed before the end of the file"
            first = rows[0][2] if rows else None
            for line_num, _, row in rows[1:]:
                if row and first is not None and len(row) != len(first):  # DuckDB skips empty lines
                    return (
                        f"{file} line {line_num} has {len(row)} field(s) where line 1 has {len(first)}; "
                        "every line of a CSV needs the same fields"
                    )
        except csv.Error as problem:
            return f"{file} line {reader.line_num}: {problem}"
    return None


@click.command("load")
@click.argument("table")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@project_dir_option
@click.option("--replace", is_flag=True, help="Replace the table instead of appending to it.")
def load_command(table: str, files: tuple[Path, ...], project_dir: Path, replace: bool) -> None:
    """Load local data (CSV, JSONL or Parquet) into a warehouse table, as `bq load` would.

    TABLE is `dataset.table` (default project) or `project.dataset.table`, e.g. a public-data
    source: `lakehouse load bigquery-public-data.samples.shakespeare shakespeare.csv`.
    """
    import duckdb

    from lakehouse.engine import unchanged

    parts = table.replace("`", "").split(".")
    if len(parts) == 2:
        parts.insert(0, paths.default_project(project_dir))
    if len(parts) != 3 or not all(parts):
        fail(f"{table!r} is not dataset.table or project.dataset.table", 2)
    project, dataset, name = parts
    if not re.fullmatch(r"\w+", dataset, re.ASCII):
        fail(f"{dataset!r} is not a BigQuery dataset name: letters, digits and underscores only", 2)
    if not all(unicodedata.category(char) in _TABLE_NAME_CATEGORIES for char in name):
        fail(f"{name!r} is not a BigQuery table name: letters, marks, digits, underscores, dashes and spaces only", 2)
    readers = {
        ".csv": "read_csv",
        ".jsonl": "read_json",
        ".json": "read_json",
        ".ndjson": "read_json",
        ".parquet": "read_parquet",
    }
    suffixes = {f.suffix.lower() for f in files}
    if len(suffixes) != 1 or next(iter(suffixes)) not in readers:
        got = ", ".join(f"{f} ({f.suffix or 'no extension'})" for f in files if f.suffix.lower() not in readers)
        got = got or f"{', '.join(sorted(suffixes))} together"
        fail(f"files must all be one kind of {', '.join(sorted(readers))}; got {got}", 2)
    reader = readers[suffixes.pop()]
    try:
        con = warehouse.connect(paths.home(project_dir), [project])
    except (warehouse.WarehouseBusy, ValueError) as error:
        fail(str(error))
    quoted = f'"{project}"."{dataset}"."{name}"'
    ledger = f'"{project}"."_lakehouse"."{_LOADED_FILES}"'
    # A file is known by its path, size and modification time: loading it again appends nothing, so
    # a load killed after its commit and run again does not double the table.
    stats = {f: f.resolve().stat() for f in files}
    prints = {f: (str(f.resolve()), stats[f].st_size, stats[f].st_mtime_ns) for f in files}
    skipped: list[Path] = []
    try:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{project}"."{dataset}"')
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{project}"."_lakehouse"')
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {ledger} (dataset_name VARCHAR, table_name VARCHAR, path VARCHAR, "
            "size BIGINT, mtime_ns BIGINT, loaded_at TIMESTAMPTZ)"
        )
        con.execute("BEGIN TRANSACTION")
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ?",
            [project, dataset, name],
        ).fetchone()[0]
        if replace or not exists:
            con.execute(f"DELETE FROM {ledger} WHERE dataset_name = ? AND table_name = ?", [dataset, name])
        else:
            loaded = set(
                con.execute(
                    f"SELECT path, size, mtime_ns FROM {ledger} WHERE dataset_name = ? AND table_name = ?",
                    [dataset, name],
                ).fetchall()
            )
            skipped = [f for f in files if prints[f] in loaded]
            files = tuple(f for f in files if prints[f] not in loaded)
        listed = ", ".join("'" + str(f.resolve()).replace("'", "''") + "'" for f in files)
        options = _CSV_LOAD_OPTIONS if reader == "read_csv" else ""
        if replace or not exists:
            con.execute(f"CREATE OR REPLACE TABLE {quoted} AS SELECT * FROM {reader}([{listed}]{options})")
        elif files:
            con.execute(f"INSERT INTO {quoted} BY NAME SELECT * FROM {reader}([{listed}]{options})")
        if files:
            con.executemany(
                f"INSERT INTO {ledger} VALUES (?, ?, ?, ?, ?, now())", [[dataset, name, *prints[f]] for f in files]
            )
        count = con.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
        if files:
            unchanged.forget(con)  # what the runner recorded about tables may no longer hold
        con.execute("COMMIT")
    except duckdb.Error as error:
        reason = (_csv_problem(str(error), files) if reader == "read_csv" else None) or str(error).splitlines()[0]
        fail(f"could not load {', '.join(map(str, files))} into {project}.{dataset}.{name}: {reason}")
    finally:
        con.close()
    if skipped:
        console.print(
            f"skipped, already loaded into {project}.{dataset}.{name} with the same size and modification time: "
            f"{', '.join(map(str, skipped))} (--replace loads the table again from the files given)",
            highlight=False,
            markup=False,
        )
    console.print(f"{project}.{dataset}.{name}: {count} rows", highlight=False, markup=False)
