"""The Iceberg commits of a run's incremental writes, made by a process of its own.

Importing pyiceberg (with pyarrow, pydantic and SQLAlchemy) takes about a second of CPU; in the run's
own process that is Python holding the interpreter lock the actions' threads need between their
statements, and on two cores it made a 1M-event hourly run about a second slower. So a run that may
commit to an Iceberg table the catalog has forks this process when it starts, before it opens the
warehouse (the fork copies the modules already imported). Told that rows are on their way to the table
(`warm`: an action upstream of it committed rows), the process imports pyiceberg and opens the catalog
on a core of its own, outside the run's interpreter lock; a run that brings nothing never makes it
import anything. `lakehouse run` starts it earlier still (`start_early`), before it imports the
engine, when the warehouse changed since the last run closed it (new arrivals or messages recorded):
the process then imports at once, while the run imports its own modules and opens the warehouse, one
core busy (docs/engine.md). It then commits what the run hands it: the Iceberg table, the metadata
location the warehouse mirrors (the commit fails when the table moved on), the data files to delete,
and a Parquet file of the rows to add, which DuckDB wrote. The run records the rows committed in its
own transaction (IcebergStore.publish_changes); a commit this process cannot make is made by the run
itself. One JSON request a line, one JSON reply a line; the process ends when the run closes its pipe
or dies (its end of the pipe is then read), and a run that had nothing to commit stops it.

LAKEHOUSE_ICEBERG_COMMITTER: unset, the process is forked on Linux when the run's process runs no other
Python thread (fork without exec is unsafe elsewhere, or missing); `process` forks it wherever os.fork
exists; `inline` keeps every commit in the run's process.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

COMMITTER_ENV = "LAKEHOUSE_ICEBERG_COMMITTER"
MODES = ("process", "inline")


class IcebergCommitter:
    """The run's side: forks the process, sends it commits, closes it."""

    def __init__(self, pid: int, requests, replies, *, warmed: bool = False):
        self.pid = pid
        self._requests = requests
        self._replies = replies
        self._lock = threading.Lock()
        self._asked = False
        self._warmed = warmed
        self._closed = False
        self._closing = threading.Lock()  # not _lock: a close must not wait for a commit's reply
        self.failures: list[str] = []

    @classmethod
    def start(cls, home_dir: Path, *, warm: bool = False) -> IcebergCommitter | None:
        """Fork the committer process for the run on `home_dir` (with `warm`, it imports pyiceberg and
        opens the catalog at once); None where commits stay in the run's process (not Linux,
        LAKEHOUSE_ICEBERG_COMMITTER=inline, or the fork failed). Raises ValueError naming the variable
        when it is set to something else."""
        mode = os.environ.get(COMMITTER_ENV, "").strip().lower()
        if mode and mode not in MODES:
            raise ValueError(f"{COMMITTER_ENV}={mode!r} is not one of: {', '.join(MODES)}")
        if not mode:
            mode = "process" if sys.platform == "linux" and threading.active_count() == 1 else "inline"
        if mode == "inline" or not hasattr(os, "fork"):
            return None
        from_parent, to_child = os.pipe()  # (read end, write end)
        from_child, to_parent = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (to_child, from_parent, from_child, to_parent):
                os.close(fd)
            return None
        if pid == 0:  # the committer: never returns into the run's code
            code = 1
            try:
                os.close(to_child)
                os.close(from_child)
                _serve(home_dir, os.fdopen(from_parent, "r"), os.fdopen(to_parent, "w"), warm=warm)
                code = 0
            finally:
                os._exit(code)
        os.close(from_parent)
        os.close(to_parent)
        return cls(pid, os.fdopen(to_child, "w"), os.fdopen(from_child, "r"), warmed=warm)

    @classmethod
    def start_early(cls, home_dir: Path) -> IcebergCommitter | None:
        """Start a run's committer before the run imports the engine, warm, when the run is likely to
        commit: the Iceberg catalog lists a table and the warehouse changed since the last run closed
        it. None otherwise, or where `start` gives none (the run starts its own then, and reports a
        bad LAKEHOUSE_ICEBERG_COMMITTER). The caller hands it to the run (RunOptions.committer) and
        closes it afterwards, which ends it if the run did not use it."""
        from lakehouse import warehouse
        from lakehouse.engine.iceberg import IcebergStore

        if not warehouse.changed_since_last_run(home_dir) or not IcebergStore(home_dir).lists_tables():
            return None
        try:
            return cls.start(home_dir, warm=True)
        except ValueError:
            return None

    def warm(self) -> None:
        """Have the process import pyiceberg and open the catalog now: rows are on their way to a table."""
        with self._lock:
            if self._warmed:
                return
            self._warmed = True
            try:
                self._requests.write(json.dumps({"op": "warm"}) + "\n")
                self._requests.flush()
            except (OSError, ValueError):
                pass  # the commit finds it gone, and says so

    def commit(self, identifier: tuple[str, str, str], expected: str, rewritten: list[str], rows_file: str | None):
        """Return the reply of a commit (IcebergStore.commit_rows), or None when the process failed it
        or is gone (the reason is kept in `failures`)."""
        request = {"identifier": list(identifier), "expected": expected, "rewritten": rewritten, "rows_file": rows_file}
        with self._lock:
            self._asked = True
            try:
                self._requests.write(json.dumps(request) + "\n")
                self._requests.flush()
            except (OSError, ValueError) as error:
                self.failures.append(f"the Iceberg committer process is gone ({error})")
                return None
            try:
                line = self._replies.readline()
            except (OSError, ValueError) as error:
                self.failures.append(f"the Iceberg committer process is gone ({error})")
                return None
        if not line:
            self.failures.append("the Iceberg committer process ended before it replied")
            return None
        reply = json.loads(line)
        if "error" in reply:
            self.failures.append(reply["error"])
            return None
        return reply

    def close(self) -> None:
        """End the process: one never asked to commit is stopped at once; else its pipe is closed and it
        ends after the commit it is making (waited for up to a minute, then stopped). Closing again
        does nothing."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        for stream in (self._requests, self._replies):
            try:
                stream.close()
            except OSError:
                pass
        if not self._asked:
            _kill(self.pid)
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            return
        deadline = time.monotonic() + 60
        while True:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            if time.monotonic() > deadline:
                _kill(self.pid)
                deadline = float("inf")
            time.sleep(0.001)


def _open_quietly(store) -> None:
    """Import pyiceberg and open the catalog before the first commit; a failure is the commit's."""
    try:
        store.catalog  # noqa: B018 (opened for its side effect)
    except Exception:  # noqa: BLE001
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _serve(home_dir: Path, requests, replies, *, warm: bool = False) -> None:
    """The process: answer the run's requests until its pipe ends (`warm`: open the catalog first)."""
    # Ctrl-C reaches the whole process group: the run decides, a commit is never cut halfway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Nothing of the run's output is written twice or interleaved: what goes wrong goes in the replies.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from lakehouse.engine.iceberg import IcebergStore

    store = IcebergStore(home_dir)
    if warm:
        _open_quietly(store)
    for line in requests:
        request = json.loads(line)
        if request.get("op") == "warm":
            _open_quietly(store)
            continue
        try:
            reply = store.commit_rows(
                tuple(request["identifier"]), request["expected"], request["rewritten"], request["rows_file"]
            )
        except Exception as error:  # noqa: BLE001 (sent to the run, which commits in its own process then)
            reply = {"error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
