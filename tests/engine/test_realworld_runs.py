"""Whole projects shaped like public Dataform repositories, run by the local engine on real DuckDB."""

from __future__ import annotations

import json

from lakehouse import paths
from lakehouse.engine.runner import run

NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_a_notebook_is_listed_as_skipped_with_why_and_the_rest_runs(make_project, lakehouse_home):
    project = make_project(
        {
            "definitions/report.ipynb": NOTEBOOK,
            "definitions/notebooks.js": 'notebook({ name: "weekly_report", filename: "report.ipynb" });\n',
            "definitions/orders.sqlx": 'config { type: "table" }\nselect 1 as order_id\n',
        }
    )

    record = run(project)

    by_name = {a.name: a for a in record.actions}
    notebook = by_name["test-local.silver.weekly_report"]
    assert (notebook.type, notebook.status, notebook.note) == ("notebook", "skipped", "not run locally")
    assert notebook.error == "a notebook runs on a Colab Enterprise runtime in Google Cloud; it is not run locally"
    assert by_name["test-local.silver.orders"].status == "success"
    assert record.status == "success"
    saved = json.loads((paths.runs_dir(lakehouse_home) / "latest.json").read_text())
    assert {a["name"]: a["status"] for a in saved["actions"]}["test-local.silver.weekly_report"] == "skipped"
