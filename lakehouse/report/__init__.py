"""Reports after a run: assertion failures, history, scorecard, lineage, OpenLineage and the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lakehouse import paths


def reports_dir(home_dir: Path, run_id: str) -> Path:
    """Return the default folder of one run's reports: <home>/reports/<run_id>."""
    return home_dir / "reports" / file_name(run_id)


def file_name(run_id: str) -> str:
    """`run_id` as one file name: a run record or trigger report is input, and an id such as
    `../../x` or `/tmp/x` must not write outside the reports folder (a GCP invocation name holds `/`)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id).lstrip(".")
    return name or "run"


def publish_all(
    project_dir: Path | str,
    home: Path | None = None,
    *,
    run_id: str | None = None,
    out_dir: Path | None = None,
) -> dict[str, Path]:
    """Write every report of a run (latest when run_id is None) and return {kind: path}.

    Kinds: markdown, html, junit, scorecard, quality, lineage, openlineage, dashboard. Raises
    lakehouse.report.runs.ReportInputError when there is no run to report on, and
    lakehouse.warehouse.WarehouseBusy when another process holds the warehouse.
    """
    return publish(project_dir, home, run_id=run_id, out_dir=out_dir)[0]


def publish(
    project_dir: Path | str,
    home: Path | None = None,
    *,
    run_id: str | None = None,
    out_dir: Path | None = None,
    trigger_report: Path | None = None,
) -> tuple[dict[str, Path], list[str]]:
    """Write every report of a run as publish_all does; return ({kind: path}, summary lines for a person).

    With `trigger_report`, the run is the one in that `lakehouse trigger --json` file (local or GCP).
    Raises as publish_all.
    """
    from lakehouse.report import dashboard, junit, ol_events, quality, render
    from lakehouse.report.build import build
    from lakehouse.report.context import open_context

    project_dir = Path(project_dir).resolve()
    home = Path(home) if home else paths.home(project_dir)
    with open_context(project_dir, home, run_id, trigger_report) as ctx:
        report = build(ctx)
        folder = Path(out_dir) if out_dir else reports_dir(home, ctx.run.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        written = {
            "markdown": folder / "report.md",
            "html": folder / "report.html",
            "junit": folder / "junit.xml",
            "scorecard": folder / "scorecard.json",
            "quality": folder / "quality.json",
            "lineage": folder / "lineage.json",
            "openlineage": folder / "openlineage" / f"{file_name(ctx.run.run_id)}.jsonl",
            "dashboard": folder / "dashboard.html",
        }
        written["markdown"].write_text(render.markdown(report))
        written["html"].write_text(render.html(report))
        junit.write(
            junit.build(ctx.run, report.outcomes, report.failed_actions, report.quality), written["junit"]
        )
        quality.write(report.quality, ctx, written["quality"])
        written["scorecard"].write_text(json.dumps(report.scorecard.to_json(), indent=2, default=str))
        written["lineage"].write_text(json.dumps(report.lineage.to_json(), indent=2))
        ol_events.emit(ctx.run, ctx.graph, report.outcomes, written["openlineage"])
        written["dashboard"].write_text(dashboard.html(dashboard.collect(ctx), report.scorecard, report.quality))
        summary = [f"run {ctx.run.run_id}: {report.headline()}", *report.notes]
        summary += [f"incoming {render.source_line(s)}" for s in report.quality.sources]
        if not report.quality.measured:
            summary += report.quality.notes
        if report.scorecard.overall is not None:
            summary.append(
                f"pipeline health (assertions on the tables) {report.scorecard.overall:.1f}/100 "
                f"(Dataplex-style {report.scorecard.dataplex():.1f}); this is not the quality of the incoming data"
            )
    return written, summary


def up_step(ctx) -> None:
    """The `lakehouse up` step that writes every report of the latest run and prints where they are.

    `ctx` is ingest.up.UpContext (settings.project_dir, settings.home, console, results); the paths go to
    ctx.results["reports"]. When there is no run yet, it says so and writes nothing (never raises for that).
    """
    from lakehouse.report.runs import ReportInputError

    try:
        written, summary = publish(ctx.settings.project_dir, ctx.settings.home)
    except ReportInputError as error:
        ctx.console.print(f"no report: {error}", highlight=False, markup=False)
        return
    ctx.results["reports"] = written
    for line in summary:
        ctx.console.print(line, highlight=False, markup=False)
    for kind, path in written.items():
        ctx.console.print(f"  {kind:<12} {path}", highlight=False, markup=False, soft_wrap=True)
