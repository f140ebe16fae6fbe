"""Engine test fixtures: the showcase project compiled by the pinned CLI, and the CLI's own builder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "node_modules" / "@dataform" / "cli"
CORE = REPO / "node_modules" / "@dataform" / "core"
SHOWCASE = REPO / "tests" / "fixtures" / "projects" / "showcase"
HARNESS = Path(__file__).resolve().parent / "golden" / "harness.js"


def compile_dataform(project_dir: Path, work_dir: Path) -> dict:
    """Return the `dataform compile --json` graph of a copy of project_dir made under work_dir.

    The copy gets its own node_modules/@dataform/core (copied, not linked: the compiler's sandbox refuses
    modules that resolve outside the project) and TMPDIR points into work_dir, since the CLI leaks a temp
    directory per compile. The graph is returned even when it has compilation errors.
    """
    copy = work_dir / project_dir.name
    shutil.copytree(project_dir, copy, ignore=shutil.ignore_patterns("node_modules", ".lakehouse"))
    shutil.copytree(CORE, copy / "node_modules" / "@dataform" / "core")
    tmp = work_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    result = subprocess.run(
        [str(REPO / "node_modules" / ".bin" / "dataform"), "compile", str(copy), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp)},
        timeout=120,
    )
    if not result.stdout.strip():
        raise RuntimeError(f"dataform compile printed no graph (exit {result.returncode}): {result.stderr}")
    return json.loads(result.stdout)


def run_golden(cases: list[dict]) -> dict:
    """Return the pinned CLI's execution tasks for each case (see tests/engine/golden/harness.js)."""
    result = subprocess.run(
        ["node", str(HARNESS), str(CLI)],
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"golden harness failed: {result.stderr}")
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def dataform_compile():
    """Return compile_dataform: (project dir, work dir) in, compiled graph out."""
    return compile_dataform


@pytest.fixture(scope="session")
def cli_golden():
    """Return run_golden: cases in, the pinned CLI's rendered tasks out."""
    return run_golden


@pytest.fixture(scope="session")
def showcase_graph(tmp_path_factory) -> dict:
    """Return the showcase fixture project compiled by the pinned Dataform CLI."""
    graph = compile_dataform(SHOWCASE, tmp_path_factory.mktemp("showcase"))
    assert graph["graphErrors"] == {}, graph["graphErrors"]
    return graph
