"""bench/incremental_bench.py: its rounds run each measured run again on the home as it was before it."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_each_round_reruns_the_same_work_and_the_table_gives_the_medians(tmp_path):
    home, out = tmp_path / "home", tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "bench/incremental_bench.py", "--events", "3000", "--hours", "1", "--repeat", "2",
         "--home", str(home), "--keep", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["repeat"] == 2 and len(figures["full_round"]) == 2
    runs = {item["step"]: item for item in figures["steps"] if "rounds" in item}
    assert sorted(runs) == sorted([
        "run: first (full)", "run: +1% new data", "run: no new data", "run: no new data, again",
        "run: +1% new data, hourly workflow (--tags hourly)",
    ])  # fmt: skip
    rows = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| run")]
    table = {cells[1].strip(): cells[2:-1] for cells in rows}
    for name, item in runs.items():
        (second,) = item["rounds"]
        # the home was put back before each run: the second round ran the same actions as the first
        ran = sum(1 for a in item["record"]["actions"] if not (a.get("note") or "").startswith("unchanged since run"))
        assert second["actions_run"] == ran, name
        wall, ratio = (cell.strip() for cell in table[name][:2])
        assert wall == f"{statistics.median([item['seconds'], second['seconds']]):.1f} s"
        ratios = [item["seconds"] / figures["full_round"][0], second["seconds"] / figures["full_round"][1]]
        assert ratio == f"{statistics.median(ratios):.3f}x"
    # in the second round too, the runs with no new data followed the +1% run: the second of them skipped more
    again = runs["run: no new data, again"]
    assert again["rounds"][0]["actions_run"] < runs["run: no new data"]["rounds"][0]["actions_run"]
    assert re.search(r"runs: median of 2 rounds", done.stdout)
    assert re.search(r"^DuckDB: memory limit \S+, \d+ threads", done.stdout, re.MULTILINE)
    assert not (tmp_path / "home.rounds").exists() and (home / "runs" / "latest.json").exists()
