"""Open the local DuckDB warehouse: one DuckDB file per BigQuery project, attached as a catalog."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb

from lakehouse import paths


class _Absent(importlib.abc.MetaPathFinder):
    """Answers an import of a module known not to be installed at once, as Python's own search would
    after looking through every path entry."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _answer_pandas_imports_at_once() -> None:
    """DuckDB's Python client imports pandas at every execute with parameters (to see whether a value
    is a DataFrame), and when pandas is not installed Python searches the import path again each time:
    0.46 ms a statement with the GIL held, measured (`con.execute("select ?", [1])`: 670 against 213
    µs), ~170 times in an hourly run. When it is not installed, a finder ahead of Python's answers that
    import with the same ModuleNotFoundError at once; an installed pandas is left alone. (Not
    `sys.modules["pandas"] = None`: Cython modules such as pyarrow's take that None as the module.)"""
    if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
        sys.meta_path.insert(0, _Absent("pandas"))


_answer_pandas_imports_at_once()

LOCK_WAIT_SECONDS = 30.0
LOCK_WAIT_ENV = "LAKEHOUSE_LOCK_WAIT_SECONDS"
MEMORY_LIMIT_ENV = "LAKEHOUSE_MEMORY_LIMIT"
THREADS_ENV = "LAKEHOUSE_THREADS"
# DuckDB's compression methods a warehouse connection does not use (its disabled_compression_methods),
# e.g. "fsst": a faster run for a larger file (docs/engine.md "Memory, threads and spilling").
COMPRESSION_ENV = "LAKEHOUSE_DISABLED_COMPRESSION"
_COMPRESSION = re.compile(r"^[A-Za-z_]+(,[A-Za-z_]+)*$")
# DuckDB's own default is 80% of RAM, which lets one run take the machine: cap it, and spill beyond.
# The process peaks about 1-1.5 GiB above the limit (what DuckDB allocates outside its buffer pool,
# Python, Arrow); with 2 GiB a ten-million-event run peaks near 3.2 GiB, in the time it took with
# 2.5 GiB, whose runs peaked up to 4.4 GiB (docs/engine.md).
MEMORY_SHARE = 0.25
MEMORY_CAP_BYTES = 2048 * 1024**2
MEMORY_FLOOR_BYTES = 256 * 1024**2
CHECKPOINT_FLOOR_BYTES = 16 * 1024**2  # DuckDB's default checkpoint_threshold
# a DuckDB size: KB, MB, ... count in 1000s, KiB, MiB, ... in 1024s
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)


PUBLISHED = "published.json"
REQUEST = "requested"  # a reader's ask for a read copy: the time it asked
_LOCK_HOLDER = re.compile(r"\(PID (\d+)\)")


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse file for writing."""


class WarehouseSettingsError(WarehouseBusy, ValueError):
    """$LAKEHOUSE_MEMORY_LIMIT, $LAKEHOUSE_THREADS or $LAKEHOUSE_DISABLED_COMPRESSION is not a valid value.

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
    of the machine's memory between 256 MiB and 2 GiB; threads is $LAKEHOUSE_THREADS, else the CPUs
    this process may use; work beyond the limit spills to <home>/tmp/duckdb-spill. checkpoint_threshold
    (the write-ahead log's size at which a commit checkpoints) is 1/32 of the memory limit: what
    the log holds is kept in memory until a checkpoint, and a run makes its own checkpoint at its end
    (docs/engine.md, "Atomic actions, skipped dependents"). Raises WarehouseSettingsError naming the
    variable when one is not a valid value.
    """
    memory = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    given = _MEMORY.match(memory)
    if memory and not given:
        raise WarehouseSettingsError(
            f"{MEMORY_LIMIT_ENV}={memory!r} is not a memory size; use a number and a unit, e.g. 2GiB or 512MB"
        )
    if given:
        number, unit = float(given.group(1)), given.group(2).upper()
        limit = int(number * (1 if unit == "B" else (1024 if "I" in unit else 1000) ** ("KMGT".index(unit[0]) + 1)))
    else:
        limit = max(MEMORY_FLOOR_BYTES, min(MEMORY_CAP_BYTES, int(_machine_memory_bytes() * MEMORY_SHARE)))
        memory = f"{limit // 1024**2}MiB"
    threads_text = os.environ.get(THREADS_ENV, "").strip()
    if threads_text and not (threads_text.isdigit() and int(threads_text) > 0):
        raise WarehouseSettingsError(f"{THREADS_ENV}={threads_text!r} is not a positive whole number")
    threads = int(threads_text) if threads_text else _machine_threads()
    return {
        "memory_limit": memory,
        "threads": threads,
        "temp_directory": str(spill_dir(home_dir)),
        "checkpoint_threshold": f"{max(CHECKPOINT_FLOOR_BYTES, limit // 32)}B",
    }


def _disable_compression(con: duckdb.DuckDBPyConnection) -> None:
    """Set DuckDB's disabled_compression_methods from $LAKEHOUSE_DISABLED_COMPRESSION (comma-separated
    method names, e.g. fsst); raises WarehouseSettingsError naming the variable when DuckDB refuses it.
    Set on the connection: the same option given to duckdb.connect is not applied (DuckDB 1.5)."""
    methods = os.environ.get(COMPRESSION_ENV, "").replace(" ", "")
    if not methods:
        return
    reason = "use method names separated by commas, e.g. fsst or fsst,dictionary"
    if _COMPRESSION.match(methods):
        try:
            con.execute(f"SET disabled_compression_methods = '{methods}'")
            return
        except duckdb.Error as error:  # a name DuckDB does not know: its message lists the ones it does
            reason = str(error).strip().splitlines()[0]
    con.close()
    raise WarehouseSettingsError(f"{COMPRESSION_ENV}={methods!r} is not a list of DuckDB compression methods: {reason}")


def run_threads() -> int | None:
    """Return the DuckDB threads a run shares among the actions it runs at once (the CPUs this process
    may use), or None when $LAKEHOUSE_THREADS sets them for every statement."""
    return None if os.environ.get(THREADS_ENV, "").strip() else _machine_threads()


def spill_dir(home_dir: Path) -> Path:
    """Return where DuckDB writes what does not fit in its memory limit."""
    return home_dir / "tmp" / "duckdb-spill"


def unreadable(path: Path, error: duckdb.Error) -> paths.StateError:
    """Return the error that names a warehouse file DuckDB cannot read, and how to rebuild it."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return paths.StateError(
        f"the warehouse file {path} cannot be opened ({reason}). If it is damaged (cut short, overwritten), "
        f"it cannot be repaired in place: move it aside (mv {path} {path}.broken) and rebuild it with "
        f"`lakehouse run --full-refresh` (tables filled with `lakehouse load` must be loaded again; Iceberg "
        f"tables keep their history)"
    )


def sql_text(value: str) -> str:
    """Return `value` for use inside a single-quoted SQL string literal."""
    return value.replace("'", "''")


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
    run never writes into a warehouse another run has open. A `read_only` connection does not wait
    for a run to finish: it asks the run for a copy of its last commit and reads that (see
    publish_read_copy), waiting up to `wait_seconds` for it (then taking an older copy the run made).
    With `only_existing`, projects without a file yet are skipped instead of created.
    Memory, threads and the spill directory are set by resource_settings (its WarehouseSettingsError
    included). Raises paths.StateError when a file cannot be opened (damaged, not a DuckDB file).
    """
    if wait_seconds is None:
        wait_seconds = float(os.environ.get(LOCK_WAIT_ENV, LOCK_WAIT_SECONDS))
    resources = resource_settings(home_dir)
    try:
        paths.warehouse_dir(home_dir).mkdir(parents=True, exist_ok=True)
        spill_dir(home_dir).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise paths.StateError(
            f"cannot create the warehouse directory {paths.warehouse_dir(home_dir)} ({error.strerror}); "
            f"point {paths.HOME_ENV} at a directory you can write"
        ) from error
    rebase(home_dir)
    try:
        con = duckdb.connect(":memory:", config={name: str(value) for name, value in resources.items()})
    except duckdb.Error as error:
        # A size DuckDB parses but cannot work in (e.g. 100B) fails here, not at the first query.
        raise WarehouseSettingsError(
            f"DuckDB cannot start with memory_limit={resources['memory_limit']} and threads={resources['threads']} "
            f"(from {MEMORY_LIMIT_ENV} / {THREADS_ENV}): {error}"
        ) from None
    con.execute("SET TimeZone = 'UTC'")
    _disable_compression(con)
    # The CLI shows its own progress per action; DuckDB's per-query bar would interleave with it.
    con.execute("SET enable_progress_bar = false")
    deadline = time.monotonic() + wait_seconds
    asked = 0.0
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
                    raise unreadable(path, error) from error
                copy = None
                if read_only:
                    # ask the run for a copy of its last commit, and take one published since
                    asked = asked or request_read_copy(home_dir)
                    copy = _published_copy(home_dir, project, error, since=asked)
                    if copy is None and time.monotonic() >= deadline:
                        copy = _published_copy(home_dir, project, error)  # an older one, if the run made one
                if copy is not None:
                    con.execute(f"ATTACH '{sql_text(str(copy))}' AS \"{project}\" (READ_ONLY)")
                    break
                if time.monotonic() >= deadline:
                    con.close()
                    raise WarehouseBusy(
                        f"the warehouse file {path} is in use by another lakehouse process "
                        f"(waited {wait_seconds:.0f} s); retry when it has finished"
                    ) from error
                time.sleep(0.1)
    return con


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run the block in one transaction on `con`: committed at its end, rolled back if it raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def open_catalog(home_dir: Path, project: str, **kwargs) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield a connection with `project` attached and selected (USE), closed on exit."""
    con = connect(home_dir, [project], **kwargs)
    try:
        con.execute(f'USE "{project}"')
        yield con
    finally:
        con.close()


def attached_files(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """Return (name, path) of each warehouse file the connection has attached for writing."""
    return con.execute(
        "SELECT database_name, path FROM duckdb_databases() WHERE NOT internal AND NOT readonly AND path IS NOT NULL"
    ).fetchall()


def _files_state(home_dir: Path) -> dict[str, list[int]]:
    """Size and modification time of every warehouse file and its write-ahead log (not ctime, which a
    copied or restored home always changes)."""
    return _file_stamps(sorted(paths.warehouse_dir(home_dir).glob("*.duckdb")), ctime=False)


def record_closed_state(home_dir: Path) -> None:
    """Record the warehouse files as a run that has just closed them leaves them (changed_since_last_run)."""
    paths.write_cache_file(paths.closed_state_file(home_dir), json.dumps(_files_state(home_dir)).encode())


def changed_since_last_run(home_dir: Path) -> bool:
    """Return whether a warehouse file changed since the last run closed it: new arrivals or messages
    recorded, a load, anything another command wrote (or no run recorded its state yet). A guess for
    what a run is likely to do, never for what it does: the run itself reads what is new."""
    try:
        recorded = json.loads(paths.closed_state_file(home_dir).read_text())
    except (OSError, ValueError):
        return True
    return recorded != _files_state(home_dir)


def checkpoint(con: duckdb.DuckDBPyConnection) -> None:
    """Write the committed state of each attached warehouse file into the file (DuckDB's CHECKPOINT).

    Raises duckdb.Error when another connection has a write transaction open; readers do not stop it,
    and a commit that comes while it runs waits for it."""
    for name, _ in attached_files(con):
        con.execute('CHECKPOINT "{}"'.format(name.replace('"', '""')))


def publish_read_copy(con: duckdb.DuckDBPyConnection, home_dir: Path) -> list[Path]:
    """Publish every project file attached for writing on `con`, as committed now, to a new folder under
    warehouse-read/; return the files copied.

    DuckDB does not let one process open a file while another writes it, so a run calls this when a
    reader asked for it (request_read_copy), between actions: a read-only connect() that finds the file
    held by that run reads the published copy, i.e. the state of the run's last committed action. Call
    it between transactions. The committed state is
    the file plus its write-ahead log, so both are copied (no checkpoint is forced); a file unchanged
    since the last publish is hard-linked from it, not copied. Each publish is a new folder named in
    published.json, replaced in one rename, so a reader never sees a file and a log of different moments.
    """
    folder = paths.read_copy_dir(home_dir)
    folder.mkdir(parents=True, exist_ok=True)
    warehouse_dir = paths.warehouse_dir(home_dir)
    previous = _manifest(folder)
    before = folder / str(previous.get("folder")) if previous.get("folder") else None
    rows = attached_files(con)
    if before is not None and before.is_dir() and previous.get("files") == _stamps(rows, warehouse_dir):
        # Nothing was written since the last publish: the copy stands; only its owner changes.
        _write_manifest(folder, {**previous, "pid": os.getpid(), "published_at": time.time()})
        return []
    target = folder / f"{time.time_ns()}-{os.getpid()}"
    target.mkdir()
    published, stamps, written = [], {}, []
    for name, path in rows:
        source = Path(path)
        if source.parent != warehouse_dir:
            continue
        published.append(name)
        stat = source.stat()
        stamps[source.name] = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
        unchanged = before is not None and (previous.get("stamps") or {}).get(source.name) == stamps[source.name]
        if unchanged and (before / source.name).is_file():
            os.link(before / source.name, target / source.name)
        else:
            _copy_from_another_process(source, target / source.name)
            written.append(target / source.name)
        log_file = source.with_name(source.name + ".wal")
        if log_file.exists():
            # DuckDB locks the database file only, so the log is copied in this process (no fork per
            # commit) and the lock stays (test_reads_during_a_run_see_its_last_commit relies on it).
            shutil.copy2(log_file, target / log_file.name)
            written.append(target / log_file.name)
    _write_manifest(
        folder,
        {
            "pid": os.getpid(),
            "published_at": time.time(),
            "projects": sorted(published),
            "folder": target.name,
            "stamps": stamps,
            "files": _stamps(rows, warehouse_dir),
        },
    )
    # Readers that opened an older folder keep reading it (removing open files is safe on POSIX).
    for old in folder.iterdir():
        if old.is_dir() and old.name not in (target.name, before.name if before else None):
            shutil.rmtree(old, ignore_errors=True)
    return written


def _stamps(rows: list[tuple[str, str]], warehouse_dir: Path) -> dict[str, list[int]]:
    """Return size and times of each attached warehouse file and its write-ahead log."""
    return _file_stamps([Path(path) for _, path in rows if Path(path).parent == warehouse_dir])


def _file_stamps(files: Iterable[Path], *, ctime: bool = True) -> dict[str, list[int]]:
    """Return {name: [size, mtime_ns(, ctime_ns)]} of each file and its write-ahead log that exist."""
    stamps = {}
    for source in files:
        for file in (source, source.with_name(source.name + ".wal")):
            try:
                stat = file.stat()
            except OSError:
                continue
            stamps[file.name] = [stat.st_size, stat.st_mtime_ns] + ([stat.st_ctime_ns] if ctime else [])
    return stamps


def _write_manifest(folder: Path, manifest: dict) -> None:
    partial = folder / f".{PUBLISHED}.{os.getpid()}.tmp"
    partial.write_text(json.dumps(manifest))
    os.replace(partial, folder / PUBLISHED)


def _manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / PUBLISHED).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _copy_from_another_process(source: Path, target: Path) -> None:
    """Copy `source`, which this process has open in DuckDB, with its modification time.

    DuckDB's file lock is a POSIX record lock on the database file (not its .wal), which belongs to the
    process and is released when the process closes ANY descriptor of the file: copying it from Python
    here would silently unlock the warehouse under the run. `cp` opens and closes the file in its own
    process.
    """
    done = subprocess.run(["cp", "-p", str(source), str(target)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"could not copy {source} to {target}: {done.stderr.strip()}")


def request_read_copy(home_dir: Path) -> float:
    """Ask the run holding the warehouse to publish a read copy; return the time asked (time.time())."""
    folder = paths.read_copy_dir(home_dir)
    folder.mkdir(parents=True, exist_ok=True)
    asked = time.time()
    partial = folder / f".{REQUEST}.{os.getpid()}.tmp"
    partial.write_text(repr(asked))
    os.replace(partial, folder / REQUEST)
    return asked


def read_copy_requested(home_dir: Path) -> float:
    """Return when a reader last asked for a read copy (0.0 if never)."""
    try:
        return float((paths.read_copy_dir(home_dir) / REQUEST).read_text())
    except (OSError, ValueError):
        return 0.0


def _published_copy(home_dir: Path, project: str, error: duckdb.Error, since: float = 0.0) -> Path | None:
    """Return the read copy of `project` when the process holding its file is the run that published
    it (so the copy is a state that run committed), published at `since` or later; else None."""
    holder = _LOCK_HOLDER.search(str(error))
    manifest = _manifest(paths.read_copy_dir(home_dir))
    if holder is None or manifest.get("pid") != int(holder.group(1)) or project not in (manifest.get("projects") or []):
        return None
    if float(manifest.get("published_at") or 0.0) < since:
        return None
    copy = paths.read_copy_dir(home_dir) / str(manifest.get("folder")) / f"{project}.duckdb"
    return copy if copy.is_file() else None


def reading_copy(con: duckdb.DuckDBPyConnection, home_dir: Path) -> list[str]:
    """Return the projects `con` reads from a run's published copy rather than from the warehouse."""
    folder = paths.read_copy_dir(home_dir)
    rows = con.execute("SELECT database_name, path FROM duckdb_databases() WHERE path IS NOT NULL").fetchall()
    return sorted(name for name, path in rows if Path(path).parent.parent == folder)


def rebase(home_dir: Path) -> None:
    """Point the warehouse's views at this home when the home was moved or copied here.

    Views over files (Iceberg tables, external tables over local GCS) hold absolute paths; after a
    move they would read nothing, after a copy they would read the old home. The home records where
    its paths were written (paths.home_record); when that differs from where it is now, every view
    naming the old home is re-created naming this one. Raises paths.StateError for a damaged file.
    """
    record = paths.home_record(home_dir)
    try:
        previous = record.read_text().strip() or None
    except OSError:
        previous = None
    current = str(home_dir)
    if previous == current:
        return
    if previous is not None:
        for file in sorted(paths.warehouse_dir(home_dir).glob("*.duckdb")):
            if not _rebase_file(file, previous, current):
                return  # held by another process: the record stays old, the next connect retries
        # Read copies are only read while the run that published them holds the warehouse; a moved
        # home has no such run, and its copies name the old home: the next run publishes new ones.
        shutil.rmtree(paths.read_copy_dir(home_dir), ignore_errors=True)
    partial = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    # A home on a read-only disk can still be read: rebasing is repeated (it is idempotent) next time.
    with contextlib.suppress(OSError):
        partial.write_text(current + "\n")
        os.replace(partial, record)


def _rebase_file(file: Path, previous: str, current: str) -> bool:
    old, new = f"'{sql_text(previous)}/", f"'{sql_text(current)}/"
    con = duckdb.connect(":memory:")
    try:
        try:
            con.execute(f"ATTACH '{sql_text(str(file))}' AS \"{file.stem}\"")
        except duckdb.Error as error:
            if _is_lock_error(error):
                return False
            raise unreadable(file, error) from error
        views = con.execute(
            "SELECT sql FROM duckdb_views() WHERE database_name = ? AND NOT internal AND contains(sql, ?)",
            [file.stem, old],
        ).fetchall()
        if views:
            con.execute(f'USE "{file.stem}"')
            con.execute("BEGIN TRANSACTION")
            for (sql,) in views:
                con.execute(re.sub(r"^CREATE VIEW ", "CREATE OR REPLACE VIEW ", sql).replace(old, new))
            con.execute("COMMIT")
        return True
    finally:
        con.close()
