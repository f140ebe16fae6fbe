"""Where local state lives: LAKEHOUSE_HOME and the files under it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

HOME_ENV = "LAKEHOUSE_HOME"
DEFAULT_HOME_NAME = ".lakehouse"

# GCP project ids, and the public-data project names BigQuery accepts in three-part names.
_CATALOG_NAME = re.compile(r"^[a-z][a-z0-9\-]{0,62}[a-z0-9]$")


def default_project(project_dir: Path | str) -> str:
    """Return the project's workflow_settings.yaml defaultProject ("lakehouse-local" when it names none)."""
    import yaml

    settings_file = Path(project_dir) / "workflow_settings.yaml"
    try:
        settings = yaml.safe_load(settings_file.read_text()) if settings_file.is_file() else None
    except yaml.YAMLError:
        settings = None
    return str((settings or {}).get("defaultProject") or "lakehouse-local")


class StateError(click.ClickException):
    """Local state under LAKEHOUSE_HOME is unusable as it is; the message says what and what to do.

    A click exception so that every command prints it as one line and exits 1, never a traceback.
    """


GLOB_CHARACTERS = "*?[]"


def home(project_dir: Path | str) -> Path:
    """Return the local state directory: $LAKEHOUSE_HOME, else <project_dir>/.lakehouse.

    Raises StateError when that path exists and is not a directory, or holds a character DuckDB
    reads as a glob pattern (its files are read by patterns under it).
    """
    configured = os.environ.get(HOME_ENV)
    root = (Path(configured) if configured else Path(project_dir) / DEFAULT_HOME_NAME).resolve()
    source = f"{HOME_ENV}={configured}" if configured else f"the local state directory {root}"
    pattern = sorted(set(GLOB_CHARACTERS) & set(str(root)))
    if pattern:
        raise StateError(
            f"{source} holds {' '.join(repr(c) for c in pattern)}, which DuckDB reads as a glob pattern: the "
            f"landing files and Iceberg data under it would not be found; use a path without {GLOB_CHARACTERS}"
            + ("" if configured else f" (or set {HOME_ENV})")
        )
    if root.exists() and not root.is_dir():
        raise StateError(
            f"{source} is a file, not a directory; point {HOME_ENV} at a directory "
            f"(a new one is created), or move the file away if it is not yours to keep"
        )
    return root


def warehouse_dir(home_dir: Path) -> Path:
    """Return the directory holding one DuckDB file per BigQuery project (catalog)."""
    return home_dir / "warehouse"


def closed_state_file(home_dir: Path) -> Path:
    """Return the file recording the warehouse files as the last run that closed them left them."""
    return warehouse_dir(home_dir) / "closed-by-last-run.json"


def catalog_file(home_dir: Path, project: str) -> Path:
    """Return the DuckDB file that stands in for BigQuery project `project`.

    Raises ValueError for a name that is not a valid project id, so a crafted name can never
    escape the warehouse directory.
    """
    if not _CATALOG_NAME.match(project):
        raise ValueError(f"{project!r} is not a valid BigQuery project id")
    return warehouse_dir(home_dir) / f"{project}.duckdb"


def gcs_root(home_dir: Path) -> Path:
    """Return the directory that holds local GCS buckets as plain directories."""
    return home_dir / "gcs"


def gcs_object_path(home_dir: Path, bucket: str, name: str) -> Path:
    """Return where object gs://bucket/name is kept on local disk."""
    return gcs_root(home_dir) / bucket / name


def iceberg_dir(home_dir: Path) -> Path:
    """Return the Iceberg warehouse directory (SQLite catalog plus table data)."""
    return home_dir / "iceberg"


def runs_dir(home_dir: Path) -> Path:
    """Return the directory holding one JSON run record per run."""
    return home_dir / "runs"


def compile_cache_dir(home_dir: Path) -> Path:
    """Return the directory of cached compilation results, keyed by content hash."""
    return home_dir / "compile-cache"


def read_copy_dir(home_dir: Path) -> Path:
    """Return the directory of the read-only copies a run publishes after each commit (see warehouse.py)."""
    return home_dir / "warehouse-read"


def home_record(home_dir: Path) -> Path:
    """Return the file naming the absolute path the home's stored paths were last written for."""
    return home_dir / "home-path"


def write_cache_file(path: Path, data: bytes) -> None:
    """Write a cache file whole or not at all (temporary file and rename; a reader never sees half of
    it); a cache that cannot be written is skipped, since every cache here is an optimisation."""
    import threading

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError:
        pass
