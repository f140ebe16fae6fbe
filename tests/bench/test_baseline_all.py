"""bench/baseline_all.sql does the engine's work: after a full run on the same landed files its silver,
quarantine, duplicates and gold tables hold the engine's rows, exactly."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lakehouse import warehouse

REPO = Path(__file__).resolve().parents[2]
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
sys.path.insert(0, str(REPO / "bench"))
_spec = importlib.util.spec_from_file_location("bench_incremental", REPO / "bench" / "incremental_bench.py")
incremental_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(incremental_bench)

pytestmark = pytest.mark.slow


def lakehouse(home: Path, *args: str) -> None:
    done = subprocess.run(
        [LAKEHOUSE, *args], cwd=REPO, env={**os.environ, "LAKEHOUSE_HOME": str(home)},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"lakehouse {' '.join(args)} exited {done.returncode}:\n{done.stderr}"


def test_the_all_sources_baseline_gives_the_engine_rows_of_every_table(tmp_path):
    home = tmp_path / "home"
    lakehouse(
        home, "generate", "--events", "20000", "--seed", "3", "--batch-size", "1000", "--pubsub-share", "0",
        "--as-of", "2026-03-01T12:00:00Z", "--in-process-bus",
    )  # fmt: skip
    lakehouse(home, "run", "--now", "2026-03-01T13:00:00Z")
    record = json.loads((home / "runs" / "latest.json").read_text())
    settings = yaml.safe_load((REPO / "workflow_settings.yaml").read_text())
    project = settings["defaultProject"]

    # the engine's side of the bench's comparison: the tables and ledgers of every source and gold table
    short = sorted(name.rsplit(".", 1)[-1] for name in incremental_bench.all_sources_actions(record))
    kinds = ("", "_batch", "_quarantine", "_duplicates", "_intake")
    assert short == sorted([f"{s}{k}" for s in incremental_bench.SOURCES for k in kinds] + list(incremental_bench.GOLD))
    assert len(incremental_bench.SOURCES) == 5 and len(incremental_bench.GOLD) == 8

    con = warehouse.connect(home, [project])
    con.execute(f'USE "{project}"')
    con.execute("create schema baseline")
    salt = con.execute("select salt from keys.pii_salt").fetchone()[0]
    script = incremental_bench.baseline_script(home, settings["vars"]["landing_bucket"])
    con.execute(script.replace("{pii_salt}", salt))
    figures = incremental_bench.compare_with_engine(con, project)
    con.close()

    assert len(figures) == 3 * 5 + 8
    for table, (engine_rows, baseline_rows, only_baseline, only_engine) in figures.items():
        # every table holds rows, so equal counts and empty differences say something
        assert engine_rows > 0, table
        assert (baseline_rows, only_baseline, only_engine) == (engine_rows, 0, 0), table
