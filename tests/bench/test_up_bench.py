"""bench/up_bench.py: runs the `lakehouse up` demo as a user types it and accounts for its time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_demo_runs_end_to_end_and_its_steps_account_for_its_time(tmp_path):
    out = tmp_path / "up.json"
    done = subprocess.run(
        [sys.executable, "bench/up_bench.py", "--events", "3000", "--in-process-bus", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["events"] == 3000 and figures["pubsub"] == "in-process"
    # every step `lakehouse up` runs, as it printed it
    assert list(figures["steps"]) == [
        "plan events",
        "generate events, land over HTTP, publish to Pub/Sub",
        "record file arrivals",
        "write the Pub/Sub raw tables",
        "run the Dataform graph on DuckDB",
        "write the reports",
    ]
    assert {"start_services", "generate", "land_http", "publish"} <= set(figures["ingest_seconds"])
    assert set(figures["run_groups"]) == {"assertions", "bronze, views, other", "gold", "silver + ledger"}
    # the steps fit inside the end-to-end wall time, and the table printed says what is left
    accounted = figures["ingest_seconds"]["start_services"] + sum(figures["steps"].values())
    assert 0 < accounted <= figures["seconds"]
    assert "| end to end " in done.stdout and "| the rest: " in done.stdout
    assert figures["peak_rss_mb"] > 50
