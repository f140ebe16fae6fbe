"""Shared fixtures: throwaway Dataform projects that compile with the pinned CLI, and LAKEHOUSE_HOME."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "node_modules" / "@dataform" / "core"


def write_project(root: Path, files: dict[str, str], *, project: str = "test-local", vars: dict | None = None) -> Path:
    """Create a Dataform v3 project at `root` with the given definitions and return it.

    The pinned @dataform/core is copied (not linked: the compiler's sandbox refuses modules that
    resolve outside the project).
    """
    root.mkdir(parents=True, exist_ok=True)
    settings = {
        "defaultProject": project,
        "defaultLocation": "US",
        "defaultDataset": "silver",
        "defaultAssertionDataset": "assertions",
    }
    if vars:
        settings["vars"] = vars
    (root / "workflow_settings.yaml").write_text(json.dumps(settings))
    (root / "package.json").write_text(json.dumps({"dependencies": {"@dataform/core": "3.0.62"}}))
    if not (root / "node_modules" / "@dataform" / "core").exists():
        shutil.copytree(CORE, root / "node_modules" / "@dataform" / "core")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture
def lakehouse_home(tmp_path, monkeypatch) -> Path:
    """Point LAKEHOUSE_HOME at a fresh directory for the test."""
    home = tmp_path / "home"
    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    return home


@pytest.fixture
def make_project(tmp_path, lakehouse_home):
    """Return a function that writes a project (files by relative path) and returns its directory."""

    def make(files: dict[str, str], **kwargs) -> Path:
        return write_project(tmp_path / "project", files, **kwargs)

    return make


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory) -> Iterator:
    """The Google Pub/Sub emulator, started once for the whole session (ingest and deploy tests share it);
    tests using it skip, saying why, when it is not installed or does not start."""
    from ingest.services import PubSubEmulator, ServiceError

    emulator = PubSubEmulator.find(tmp_path_factory.mktemp("pubsub-logs"))
    if emulator is None:
        pytest.skip("the Google Pub/Sub emulator (gcloud pubsub-emulator component + java) is not installed")
    try:
        emulator.start()
    except ServiceError as error:
        pytest.skip(f"the Pub/Sub emulator did not start: {error}")
    try:
        yield emulator
    finally:
        emulator.stop()
