"""Open the local DuckDB warehouse: one DuckDB file per BigQuery project, attached as a catalog."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb

from lakehouse import paths

LOCK_WAIT_SECONDS = 30.0
LOCK_WAIT_ENV = "LAKEHOUSE_LOCK_WAIT_SECONDS"


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse file for writing."""


def _is_lock_error(error: duckdb.Error) -> bool:
    text = str(error)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


def connect(
    home_dir: Path,
    projects: Iterable[str],
    *,
    read_only: bool = False,
    only_existing: bool = False,
    wait_seconds: float | None = None,
) -> duckdb.DuckDBPyConnection:
    """Return an in-memory DuckDB connection with each project's file attached as a catalog.

    A file held by another run is waited for up to `wait_seconds` (default
    $LAKEHOUSE_LOCK_WAIT_SECONDS or 30), then WarehouseBusy is raised naming the file: a second
    run never writes into a warehouse another run has open.
    With `only_existing`, projects without a file yet are skipped instead of created.
    """
    if wait_seconds is None:
        wait_seconds = float(os.environ.get(LOCK_WAIT_ENV, LOCK_WAIT_SECONDS))
    paths.warehouse_dir(home_dir).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    # The CLI shows its own progress per action; DuckDB's per-query bar would interleave with it.
    con.execute("SET enable_progress_bar = false")
    deadline = time.monotonic() + wait_seconds
    for project in dict.fromkeys(projects):
        path = paths.catalog_file(home_dir, project)
        if only_existing and not path.exists():
            continue
        mode = " (READ_ONLY)" if read_only and path.exists() else ""
        while True:
            try:
                con.execute(f"ATTACH '{path}' AS \"{project}\"{mode}")
                break
            except duckdb.Error as error:
                if not _is_lock_error(error):
                    con.close()
                    raise
                if time.monotonic() >= deadline:
                    con.close()
                    raise WarehouseBusy(
                        f"the warehouse file {path} is in use by another lakehouse process "
                        f"(waited {wait_seconds:.0f} s); retry when it has finished"
                    ) from error
                time.sleep(0.2)
    return con


@contextlib.contextmanager
def open_catalog(home_dir: Path, project: str, **kwargs) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield a connection with `project` attached and selected (USE), closed on exit."""
    con = connect(home_dir, [project], **kwargs)
    try:
        con.execute(f'USE "{project}"')
        yield con
    finally:
        con.close()
