"""Lint the compiled SQL of every Dataform action with sqlfluff (BigQuery dialect, the project's .sqlfluff)."""

from __future__ import annotations

import logging
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lakehouse.commands import fail
from lakehouse.contract_compat import contract_problems
from lakehouse.engine.compile import CompileError, compile_project, parse_vars

log = logging.getLogger(__name__)

CONFIG_FILE = ".sqlfluff"
REGISTRY_FILE = Path("includes") / "sources.js"
CONTRACTS_DIR = Path("includes") / "contracts"
_NAMES = re.compile(r"^const NAMES = \[([^\]]*)\];", re.MULTILINE)


@dataclass(frozen=True)
class Unit:
    """One piece of SQL Dataform sends to BigQuery: an action's query, incremental query or operation."""

    action: str
    part: str
    file_name: str
    sql: str


@dataclass(frozen=True)
class Violation:
    """One sqlfluff finding, placed in the compiled SQL of an action."""

    action: str
    part: str
    file_name: str
    line: int
    position: int
    code: str
    description: str

    def __str__(self) -> str:
        return (
            f"{self.file_name}: {self.action} ({self.part}) L{self.line}:{self.position} "
            f"{self.code} {self.description}"
        )


def _name(target: dict) -> str:
    return ".".join(p for p in (target.get("schema"), target.get("name")) if p)


def units(graph: dict) -> list[Unit]:
    """Return the SQL units of a compiled graph: for each table its pre-operations, query, incremental
    query (when it differs) and post-operations; each operation query; each assertion query.

    Built-in assertions (those with a parentAction) are skipped: their SQL is Dataform's, not ours.
    """
    out: list[Unit] = []
    for table in graph.get("tables") or []:
        name, file_name = _name(table["target"]), table.get("fileName", "")
        parts = [("preOps", "\n;\n".join(table.get("preOps") or []))]
        parts.append(("query", table.get("query", "")))
        if table.get("incrementalQuery") and table["incrementalQuery"] != table.get("query"):
            parts.append(("incrementalPreOps", "\n;\n".join(table.get("incrementalPreOps") or [])))
            parts.append(("incrementalQuery", table["incrementalQuery"]))
        parts.append(("postOps", "\n;\n".join(table.get("postOps") or [])))
        out += [Unit(name, part, file_name, sql) for part, sql in parts if sql.strip()]
    for operation in graph.get("operations") or []:
        name, file_name = _name(operation["target"]), operation.get("fileName", "")
        for index, sql in enumerate(operation.get("queries") or []):
            if sql.strip():
                out.append(Unit(name, f"query {index + 1}", file_name, sql))
    for assertion in graph.get("assertions") or []:
        if assertion.get("parentAction"):
            continue
        out.append(Unit(_name(assertion["target"]), "query", assertion.get("fileName", ""), assertion["query"]))
    return out


def registry_problems(project_dir: Path) -> list[str]:
    """Return what is wrong between includes/sources.js and includes/contracts/*.json (empty: nothing).

    Dataform's compile sandbox cannot list a directory, so the source names are listed in
    includes/sources.js; a contract missing there would silently get no models. Projects without
    that registry have nothing to check.
    """
    registry = project_dir / REGISTRY_FILE
    if not registry.is_file():
        return []
    match = _NAMES.search(registry.read_text())
    if match is None:
        return [f"{REGISTRY_FILE}: no `const NAMES = [...];` line"]
    listed = set(re.findall(r'"([^"]*)"', match.group(1)))
    contracts = {path.stem for path in (project_dir / CONTRACTS_DIR).glob("*.json")}
    problems = [
        f"{CONTRACTS_DIR / (name + '.json')}: source {name!r} is not listed in {REGISTRY_FILE} NAMES; add it"
        for name in sorted(contracts - listed)
    ]
    problems += [
        f"{REGISTRY_FILE}: source {name!r} has no contract {CONTRACTS_DIR / (name + '.json')}"
        for name in sorted(listed - contracts)
    ]
    return problems


_LINTER = None


def _lint_one(args: tuple[str, Unit]) -> list[Violation]:
    global _LINTER
    config_dir, unit = args
    if _LINTER is None:
        from sqlfluff.core import FluffConfig, Linter

        _LINTER = Linter(config=FluffConfig.from_path(config_dir))
    # Dataform's templates leave blank lines around the SQL; lint the statement, not the padding.
    result = _LINTER.lint_string(unit.sql.strip() + "\n")
    return [
        Violation(
            unit.action,
            unit.part,
            unit.file_name,
            v.line_no,
            v.line_pos,
            v.rule_code(),
            v.desc(),
        )
        for v in result.get_violations()
    ]


def lint_graph(
    graph: dict, config_dir: Path, *, workers: int | None = None, progress=None
) -> tuple[list[Unit], list[Violation]]:
    """Return the units linted and every violation found, in unit order.

    `config_dir` holds the .sqlfluff to use. Work is spread over `workers` processes (default: the
    CPUs); `progress(n)` is called as units finish.
    """
    todo = units(graph)
    workers = workers or min(len(todo), os.cpu_count() or 1) or 1
    jobs = [(str(config_dir), unit) for unit in todo]
    found: list[Violation] = []
    if workers == 1:
        for job in jobs:
            found += _lint_one(job)
            if progress:
                progress(1)
        return todo, found
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(_lint_one, jobs, chunksize=1):
            found += result
            if progress:
                progress(1)
    return todo, found


@click.command("lint")
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The Dataform project whose compiled SQL to lint.",
)
@click.option("--vars", "vars_text", metavar="A=1,B=2", help="Compilation vars, as the Dataform CLI takes them.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes to lint with (default: CPUs).")
@click.option(
    "--base",
    metavar="REV|PATH",
    default=None,
    help="What to compare the contracts with: a git revision, a contract file or a directory of them (default: HEAD).",
)
def lint_command(project_dir: Path, vars_text: str | None, workers: int | None, base: str | None) -> None:
    """Lint the compiled SQL of every action with sqlfluff (dialect bigquery).

    Compiles the project with the pinned Dataform CLI, then lints each table's pre-operations,
    query and incremental query, each operation and each assertion, with the rules in the
    project's .sqlfluff. Built-in assertions (uniqueKey, nonNull, rowConditions) are Dataform's SQL
    and are skipped. Also checks that includes/sources.js lists exactly the contracts in
    includes/contracts/, and refuses contract changes that would drop data (a removed field, a
    narrowed type, a removed accepted value...) against --base: the contracts as committed at HEAD
    unless told otherwise. Prints one line per problem and exits 1 if there is any.
    """
    console = Console(stderr=True)
    problems = registry_problems(project_dir)
    try:
        problems += contract_problems(project_dir, base)
    except ValueError as error:
        fail(str(error), 2)
    for problem in problems:
        click.echo(problem)
    config = project_dir / CONFIG_FILE
    if not config.is_file():
        fail(f"{config} not found: the lint rules live there", 2)
    try:
        graph = compile_project(project_dir, vars=parse_vars(vars_text) or None).graph
    except ValueError as error:
        fail(str(error), 2)
    except CompileError as error:
        for file, message in error.errors:
            console.print(f"{file}: {message}", highlight=False, markup=False)
        sys.exit(1)
    total = len(units(graph))
    with Progress(
        TextColumn("linting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("lint", total=total)
        linted, found = lint_graph(graph, project_dir, workers=workers, progress=lambda n: bar.advance(task, n))
    for violation in found:
        click.echo(str(violation))
    actions = len({unit.action for unit in linted})
    summary = f"{len(linted)} SQL units of {actions} actions, {len(found)} violations"
    if problems:
        summary += f", {len(problems)} source registry or contract problems"
    console.print(("[red]" if found or problems else "[green]") + summary, highlight=False)
    sys.exit(1 if found or problems else 0)
