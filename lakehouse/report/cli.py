"""The `lakehouse report` command: write a run's assertion report, scorecard, lineage and dashboard."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from lakehouse.commands import fail

console = Console()


@click.command("report")
@click.option("--run", "run_id", metavar="RUN_ID", help="The run to report on (default: the latest run).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write into (default: LAKEHOUSE_HOME/reports/<run id>).",
)
@click.option(
    "--trigger-report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Report on the run in this `lakehouse trigger --json` output (local or GCP) instead.",
)
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The Dataform project the run came from (for files, lineage and the gold tables).",
)
def report_command(run_id: str | None, out_dir: Path | None, trigger_report: Path | None, project_dir: Path) -> None:
    """Write the assertion failure report of a run, with history, scorecard, lineage and the gold dashboard.

    Every failed assertion is listed with its severity, failing row count, a sample of the failing rows,
    the SQLX file that defines it and how long it has been failing. Written as report.md, report.html,
    junit.xml (with junit.xsd beside it), scorecard.json, lineage.json, OpenLineage events
    (openlineage/<run id>.jsonl) and dashboard.html. With --trigger-report, the run is the one a
    `lakehouse trigger --json` printed (local or GCP; its failing-row samples are used). Exits 1 when
    there is no run to report on.
    """
    from lakehouse.report import publish
    from lakehouse.report.runs import ReportInputError
    from lakehouse.warehouse import WarehouseBusy

    if not project_dir.is_dir():
        fail(f"--project-dir {project_dir} is not a directory", 2)
    try:
        written, summary = publish(project_dir, run_id=run_id, out_dir=out_dir, trigger_report=trigger_report)
    except (ReportInputError, WarehouseBusy) as error:
        fail(str(error))
    for line in summary:
        console.print(line, highlight=False, markup=False)
    for kind, path in written.items():
        console.print(f"  {kind:<12} {path}", highlight=False, markup=False, soft_wrap=True)
