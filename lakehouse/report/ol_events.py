"""OpenLineage run events of a lakehouse run (a START and an end event per action), via a file transport."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    data_quality_assertions_dataset,
    error_message_run,
    job_type_job,
    parent_run,
    sql_job,
)
from openlineage.client.transport.file import FileConfig, FileTransport

from lakehouse.engine.graph import Graph
from lakehouse.report.failures import AssertionOutcome
from lakehouse.report.runs import Run as LakehouseRun

PRODUCER = "https://github.com/gcp-lakehouse-kit/lakehouse"
JOB_NAMESPACE = "lakehouse"
# OpenLineage's naming for BigQuery tables: namespace "bigquery", name "project.dataset.table".
DATASET_NAMESPACE = "bigquery"
RUN_JOB = "lakehouse.run"
_ENDS = {"success": RunState.COMPLETE, "failed": RunState.FAIL, "skipped": RunState.ABORT}


def run_uuid(run_id: str, action: str | None = None) -> str:
    """Return a stable UUID for a lakehouse run (or one action of it): the same run gives the same events."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"lakehouse-run:{run_id}:{action or ''}"))


def events(run: LakehouseRun, graph: Graph | None, found: list[AssertionOutcome]) -> list[RunEvent]:
    """Return the run's OpenLineage events: the run as a parent job, each executed action as a child.

    Action start times are the run's start plus the durations of the actions before it (the engine runs them
    one at a time, in the recorded order).
    """
    parent_id = run_uuid(run.run_id)
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=parent_id), job=parent_run.Job(namespace=JOB_NAMESPACE, name=RUN_JOB)
    )
    by_assertion = {o.name: o for o in found}
    out: list[RunEvent] = [
        RunEvent(
            eventType=RunState.START,
            eventTime=run.started_at.isoformat(),
            run=Run(runId=parent_id),
            job=Job(namespace=JOB_NAMESPACE, name=RUN_JOB),
            producer=PRODUCER,
        )
    ]
    clock = run.started_at
    for action in run.actions:
        if action.status not in _ENDS:
            continue
        compiled = graph.actions.get(action.name) if graph else None
        inputs = [
            InputDataset(namespace=DATASET_NAMESPACE, name=dep) for dep in (compiled.dependencies if compiled else ())
        ]
        outputs = []
        if action.type == "assertion":
            outcome = by_assertion.get(action.name)
            if outcome is not None:
                facet = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                    assertions=[
                        data_quality_assertions_dataset.Assertion(
                            assertion=outcome.kind,
                            success=outcome.status == "passed",
                            severity=outcome.severity,
                            name=outcome.short_name,
                            actual=None if outcome.failing_rows is None else str(outcome.failing_rows),
                            expected="0",
                        )
                    ]
                )
                checked = outcome.checks or [d.name for d in inputs]
                inputs = [
                    InputDataset(namespace=DATASET_NAMESPACE, name=name, inputFacets={"dataQualityAssertions": facet})
                    for name in checked
                ]
        else:
            outputs = [OutputDataset(namespace=DATASET_NAMESPACE, name=action.name)]
        job_facets = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="DATAFORM", jobType=action.type.upper()
            )
        }
        if compiled is not None and compiled.raw.get("query"):
            job_facets["sql"] = sql_job.SQLJobFacet(query=compiled.raw["query"].strip())
        job = Job(namespace=JOB_NAMESPACE, name=action.name, facets=job_facets)
        child_id = run_uuid(run.run_id, action.name)
        end_time = clock + timedelta(seconds=action.duration_s)
        out.append(
            RunEvent(
                eventType=RunState.START,
                eventTime=clock.isoformat(),
                run=Run(runId=child_id, facets={"parent": parent}),
                job=job,
                inputs=inputs,
                outputs=outputs,
                producer=PRODUCER,
            )
        )
        run_facets: dict = {"parent": parent}
        if action.status == "failed" and action.error:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=action.error, programmingLanguage="SQL"
            )
        out.append(
            RunEvent(
                eventType=_ENDS[action.status],
                eventTime=end_time.isoformat(),
                run=Run(runId=child_id, facets=run_facets),
                job=job,
                inputs=inputs,
                outputs=outputs,
                producer=PRODUCER,
            )
        )
        clock = end_time
    if run.crashed:
        end_state, end_time = RunState.ABORT, clock
    else:
        end_state = RunState.COMPLETE if run.status == "success" else RunState.FAIL
        end_time = run.finished_at or clock
    out.append(
        RunEvent(
            eventType=end_state,
            eventTime=end_time.isoformat(),
            run=Run(runId=parent_id),
            job=Job(namespace=JOB_NAMESPACE, name=RUN_JOB),
            producer=PRODUCER,
        )
    )
    return out


def emit(run: LakehouseRun, graph: Graph | None, found: list[AssertionOutcome], path: Path) -> int:
    """Write the run's events to `path` as JSON lines (openlineage-python's file transport); return how many.

    An earlier file at `path` is replaced, so reporting the same run twice never duplicates its events.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    client = OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True)))
    produced = events(run, graph, found)
    for event in produced:
        client.emit(event)
    return len(produced)
