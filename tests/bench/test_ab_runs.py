"""bench/ab_runs.py: two sides run in turn, each run on the home as it was, the home left as found."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")

pytestmark = pytest.mark.slow


def tree(home: Path) -> dict[str, str]:
    """Every file under `home` with a hash of its content."""
    return {
        str(path.relative_to(home)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(home.rglob("*"))
        if path.is_file()
    }


def ab_runs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/ab_runs.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture
def load(tmp_path):
    """A command that changes the home: the second load of one file into a table says it has it already."""
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b\n1,2\n")
    return ["load", "bronze.loaded", str(rows)]


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    made = subprocess.run([LAKEHOUSE, "generate", "--events", "60", "--seed", "1"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "LAKEHOUSE_HOME": str(home)})  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    return home


def test_each_side_runs_on_the_home_as_it_was_and_the_home_is_left_as_found(home, load, tmp_path):
    before = tree(home)
    out = tmp_path / "ab.json"

    done = ab_runs(str(home), "--pairs", "2", "--b-env", "LAKEHOUSE_THREADS=1", "--json", str(out), "--", *load)

    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    # in turn: A B, then B A
    assert [run["side"] for run in figures["runs"]] == ["A", "B", "B", "A"]
    assert figures["sides"] == {"A": {}, "B": {"LAKEHOUSE_THREADS": "1"}}
    assert figures["A"]["runs"] == figures["B"]["runs"] == 2 and figures["pairwise"]["pairs"] == 2
    walls = sorted(run["seconds"] for run in figures["runs"] if run["side"] == "B")
    assert figures["B"]["wall_median_s"] == pytest.approx(sum(walls) / 2)
    assert all(run["cpu_s"] > 0 and run["peak_rss_mb"] > 0 for run in figures["runs"])
    assert "B - A, pair by pair: median" in done.stdout and "B faster in" in done.stdout
    # every run loaded the file into a home without the table: each was put back before the next run
    said = [run["output"].strip() for run in figures["runs"]]
    assert said == ["lakehouse-dev.bronze.loaded: 1 rows"] * 4, said
    assert tree(home) == before
    assert not (tmp_path / "home.ab").exists()


def test_a_side_that_fails_is_named_and_the_home_is_still_left_as_found(home, load, tmp_path):
    before = tree(home)

    done = ab_runs(str(home), "--pairs", "1", "--b-env", "LAKEHOUSE_THREADS=many", "--", *load)

    assert done.returncode != 0
    assert "side B failed" in done.stderr and "LAKEHOUSE_THREADS" in done.stderr
    assert tree(home) == before and not (tmp_path / "home.ab").exists()


def test_a_stopped_comparisons_copy_puts_the_home_back_first(home, load, tmp_path):
    # what a comparison stopped between two runs leaves: the home as the last run left it, and the copy
    kept = tmp_path / "home.ab"
    subprocess.run(["cp", "-a", str(home), str(kept)], check=True)
    before = tree(home)
    (home / "left-by-a-run.txt").write_text("written by the run the comparison stopped after")

    done = ab_runs(str(home), "--pairs", "1", "--", *load)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "was left by a comparison that stopped" in done.stdout
    assert tree(home) == before and not kept.exists()


def test_an_environment_without_a_value_is_refused_naming_the_flag(home):
    done = ab_runs(str(home), "--a-env", "LAKEHOUSE_THREADS")

    assert done.returncode != 0
    assert "--a-env 'LAKEHOUSE_THREADS': give NAME=VALUE" in done.stderr
    assert not (home.parent / "home.ab").exists()
