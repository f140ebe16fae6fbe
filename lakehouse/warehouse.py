"""Open the local DuckDB warehouse: one DuckDB file per BigQuery project, attached as a catalog."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb

from lakehouse import paths

LOCK_WAIT_SECONDS = 30.0
LOCK_WAIT_ENV = "LAKEHOUSE_LOCK_WAIT_SECONDS"
MEMORY_LIMIT_ENV = "LAKEHOUSE_MEMORY_LIMIT"
THREADS_ENV = "LAKEHOUSE_THREADS"
# DuckDB's own default is 80% of RAM, which lets one run take the machine: cap it, and spill beyond.
MEMORY_SHARE = 0.25
MEMORY_CAP_BYTES = 3 * 1024**3
MEMORY_FLOOR_BYTES = 256 * 1024**2
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse file for writing."""


class WarehouseSettingsError(WarehouseBusy, ValueError):
    """$LAKEHOUSE_MEMORY_LIMIT or $LAKEHOUSE_THREADS is not a valid value.

    A kind of WarehouseBusy (the warehouse cannot be opened) so that every command that reports a busy
    warehouse as one clear message reports this one the same way.
    """


def _is_lock_error(error: duckdb.Error) -> bool:
    text = str(error)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


def _machine_memory_bytes() -> int:
    """Return the RAM this process may use: physical memory, or a smaller cgroup (container) limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _machine_threads() -> int:
    """Return how many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def resource_settings(home_dir: Path) -> dict[str, str | int]:
    """Return DuckDB's memory_limit, threads and temp_directory for connections under `home_dir`.

    memory_limit is $LAKEHOUSE_MEMORY_LIMIT (a DuckDB size such as "2GiB" or "512MB"), else a quarter
    of the machine's memory between 256 MiB and 3 GiB; threads is $LAKEHOUSE_THREADS, else the CPUs
    this process may use; work beyond the limit spills to <home>/tmp/duckdb-spill. Raises
    WarehouseSettingsError naming the variable when one is not a valid value.
    """
    memory = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if memory and not _MEMORY.match(memory):
        raise WarehouseSettingsError(
            f"{MEMORY_LIMIT_ENV}={memory!r} is not a memory size; use a number and a unit, e.g. 2GiB or 512MB"
        )
    if not memory:
        share = int(_machine_memory_bytes() * MEMORY_SHARE)
        memory = f"{max(MEMORY_FLOOR_BYTES, min(MEMORY_CAP_BYTES, share)) // 1024**2}MiB"
    threads_text = os.environ.get(THREADS_ENV, "").strip()
    if threads_text and not (threads_text.isdigit() and int(threads_text) > 0):
        raise WarehouseSettingsError(f"{THREADS_ENV}={threads_text!r} is not a positive whole number")
    threads = int(threads_text) if threads_text else _machine_threads()
    return {"memory_limit": memory, "threads": threads, "temp_directory": str(spill_dir(home_dir))}


def spill_dir(home_dir: Path) -> Path:
    """Return where DuckDB writes what does not fit in its memory limit."""
    return home_dir / "tmp" / "duckdb-spill"


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
    Memory, threads and the spill directory are set by resource_settings (its WarehouseSettingsError
    included).
    """
    if wait_seconds is None:
        wait_seconds = float(os.environ.get(LOCK_WAIT_ENV, LOCK_WAIT_SECONDS))
    resources = resource_settings(home_dir)
    paths.warehouse_dir(home_dir).mkdir(parents=True, exist_ok=True)
    spill_dir(home_dir).mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(":memory:", config={name: str(value) for name, value in resources.items()})
    except duckdb.Error as error:
        # A size DuckDB parses but cannot work in (e.g. 100B) fails here, not at the first query.
        raise WarehouseSettingsError(
            f"DuckDB cannot start with memory_limit={resources['memory_limit']} and threads={resources['threads']} "
            f"(from {MEMORY_LIMIT_ENV} / {THREADS_ENV}): {error}"
        ) from None
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
