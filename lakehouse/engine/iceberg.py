"""Tables with Dataform's `iceberg` config, kept as real Apache Iceberg tables on local disk.

BigQuery stores such a table as a BigLake Iceberg table in GCS. Locally the table lives in a
pyiceberg SQLite catalog under LAKEHOUSE_HOME/iceberg; every run that changes it commits one snapshot.
The warehouse keeps a DuckDB table that mirrors the current snapshot (which snapshot it mirrors is
recorded in `_lakehouse.iceberg_mirror`, with each row's hash and data file in `_lakehouse.iceberg_rows`,
in the same transaction as the table), so a MERGE runs on it in place and a run commits to Iceberg
only the data files it changed, without reading the table back from Parquet.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from lakehouse import paths, warehouse

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog

# pyiceberg (SQLAlchemy, pyarrow) is imported where a table is opened, not with this module: a
# run whose Iceberg actions are all skipped as unchanged never pays for the import.

SQLITE_HEADER = b"SQLite format 3\x00"
# Catalog properties handed to HomeFileIO: where the catalog's recorded paths point (the home the
# catalog was created in) and where that directory is now.
LOGICAL_WAREHOUSE = "lakehouse.logical-warehouse"
PHYSICAL_WAREHOUSE = "lakehouse.physical-warehouse"
# Rows per Arrow chunk (and at most per data file) when a table is written whole: ~100 MB of Arrow
# for the silver tables of this kit.
PUBLISH_BATCH_ROWS = 250_000
_METADATA_VERSION = re.compile(r"^(\d+)-.*\.metadata\.json$")
# Snapshot retention, by Iceberg's own table properties (the names and defaults of the Java library's
# ExpireSnapshots, so any Iceberg tool can set them): snapshots older than the age go, the newest
# `min-snapshots-to-keep` and every branch or tag head stay. A table commits a snapshot a run, so
# without this its metadata file (rewritten whole at each commit) and its files grow with history.
MAX_SNAPSHOT_AGE = "history.expire.max-snapshot-age-ms"
MAX_SNAPSHOT_AGE_DEFAULT = 5 * 24 * 3600 * 1000
MIN_SNAPSHOTS = "history.expire.min-snapshots-to-keep"
MIN_SNAPSHOTS_DEFAULT = 1
# And by count (this engine's property; Iceberg has none): pyiceberg copies the whole metadata, every
# snapshot in it, a dozen times a commit, so a table committed every minute would keep 7,200 snapshots
# at the default age and take seconds a commit.
MAX_SNAPSHOTS = "lakehouse.history.max-snapshots"
MAX_SNAPSHOTS_DEFAULT = 100
# Set on every table: each commit deletes the metadata files that fall out of the metadata log
# (write.metadata.previous-versions-max, 100 by default) instead of keeping all of them.
TABLE_PROPERTIES = {"write.metadata.delete-after-commit.enabled": "true"}


# A table with this many data files is rewritten whole at its next incremental commit (compaction).
COMPACT_AT = 64
_NOT_COMMITTED = object()


def is_iceberg(table: dict) -> bool:
    """Return True when a compiled Dataform table is configured as an Iceberg table."""
    return (table.get("bigquery") or {}).get("tableFormat") == "ICEBERG"


def quoted(target: dict) -> str:
    """Return the DuckDB three-part name of a Dataform target."""
    return f'"{target["database"]}"."{target["schema"]}"."{target["name"]}"'


def _local_path(uri: str) -> str:
    from pyiceberg.io.pyarrow import PyArrowFileIO

    return PyArrowFileIO.parse_location(uri)[2]


def relocate(path: str, properties: dict) -> str:
    """Return where a path the catalog recorded (a file:// URI or a plain path) is on disk now.

    Iceberg metadata, manifest lists and manifests hold absolute paths under the home the catalog was
    created in; after LAKEHOUSE_HOME is moved or copied the same files are under the new home.
    """
    logical = properties.get(LOGICAL_WAREHOUSE)
    physical = properties.get(PHYSICAL_WAREHOUSE)
    local = _local_path(path)
    if logical and physical and logical != physical:
        if local == logical or local.startswith(logical.rstrip("/") + "/"):
            return physical.rstrip("/") + local[len(logical.rstrip("/")) :]
    return local


@dataclass(frozen=True)
class Snapshot:
    """The Iceberg state after a publish."""

    snapshot_id: int | None
    metadata_location: str
    data_files: tuple[str, ...]
    row_count: int


class IcebergStore:
    """The local Iceberg catalog: one namespace per (project, dataset)."""

    def __init__(self, home_dir: Path):
        self.root = paths.iceberg_dir(home_dir)
        self.catalog_file = self.root / "catalog.db"
        self.data_dir = self.root / "data"
        self._catalog: SqlCatalog | None = None
        self._opening = threading.Lock()
        self._warming: threading.Thread | None = None

    def warm(self) -> None:
        """Start importing pyiceberg and opening the catalog in the background (≈1 s of Python that
        would otherwise delay the first Iceberg write of a run); a later `catalog` waits for it."""
        if self._warming is None and self._catalog is None:

            def open_quietly() -> None:
                try:
                    self.catalog  # noqa: B018 (opened for its side effect)
                except Exception:  # noqa: BLE001 (the write that needs the catalog reports it)
                    return

            self._warming = threading.Thread(target=open_quietly, name="lakehouse-iceberg-warm", daemon=True)
            self._warming.start()

    @property
    def catalog(self) -> SqlCatalog:
        """The pyiceberg catalog, opened on first use.

        Raises paths.StateError when catalog.db is damaged, empty while tables exist, or unreadable:
        it is never replaced silently, since the snapshot history of every table lives in it. A missing
        catalog.db beside existing table metadata (moved aside as the error says) is rebuilt by
        re-registering each table at its newest metadata file, history included.
        """
        with self._opening:
            return self._open()

    def _open(self) -> SqlCatalog:
        if self._catalog is None:
            from pyiceberg.catalog.sql import SqlCatalog
            from sqlalchemy.exc import SQLAlchemyError

            from lakehouse.engine.iceberg_io import HomeFileIO

            self.root.mkdir(parents=True, exist_ok=True)
            tables = self._metadata_on_disk()
            self._check_catalog_file(tables)
            rebuild = not self.catalog_file.exists() and bool(tables)
            logical = self._logical_warehouse(tables)
            try:
                catalog = SqlCatalog(
                    "lakehouse",
                    uri=f"sqlite:///{self.catalog_file}",
                    warehouse=logical,
                    **{
                        "py-io-impl": f"{HomeFileIO.__module__}.{HomeFileIO.__qualname__}",
                        LOGICAL_WAREHOUSE: _local_path(logical),
                        PHYSICAL_WAREHOUSE: str(self.data_dir),
                    },
                )
                if rebuild:
                    self._register(catalog, tables, logical)
            except SQLAlchemyError as error:
                raise self._damaged(str(error).splitlines()[0]) from error
            self._catalog = catalog
        return self._catalog

    def _damaged(self, what: str) -> paths.StateError:
        return paths.StateError(
            f"the Iceberg catalog {self.catalog_file} {what}; it holds the snapshot history of the local "
            f"Iceberg tables, so it is not replaced. Restore it from a backup, or move it aside "
            f"(mv {self.catalog_file} {self.catalog_file}.broken): the next command re-registers every table "
            f"found under {self.data_dir} at its newest metadata file, history included"
        )

    def _check_catalog_file(self, tables: dict[tuple[str, str, str], Path]) -> None:
        if not self.catalog_file.exists():
            return
        try:
            with self.catalog_file.open("rb") as handle:
                header = handle.read(len(SQLITE_HEADER))
        except OSError as error:
            raise self._damaged(f"cannot be read ({error.strerror})") from error
        if not header and not tables:
            # Empty and no table ever committed (a crash while creating it): nothing to lose.
            self.catalog_file.unlink()
        elif not header:
            raise self._damaged(f"is empty while {len(tables)} Iceberg table(s) have metadata")
        elif header != SQLITE_HEADER:
            raise self._damaged("is not a SQLite database")

    def _metadata_on_disk(self) -> dict[tuple[str, str, str], Path]:
        """Return the newest metadata file of every table under data/<project.dataset>/<table>/."""
        found: dict[tuple[str, str, str], tuple[int, Path]] = {}
        for file in self.data_dir.glob("*/*/metadata/*.metadata.json") if self.data_dir.is_dir() else []:
            match = _METADATA_VERSION.match(file.name)
            namespace = file.parents[2].name
            if not match or "." not in namespace:
                continue
            project, dataset = namespace.split(".", 1)
            key = (project, dataset, file.parents[1].name)
            version = int(match.group(1))
            if key not in found or version > found[key][0]:
                found[key] = (version, file)
        return {key: file for key, (_, file) in sorted(found.items())}

    def _logical_warehouse(self, tables: dict[tuple[str, str, str], Path]) -> str:
        """Return the warehouse URI the catalog's paths were written under (this home's, for a new one)."""
        recorded = None
        if self.catalog_file.exists():
            try:
                with sqlite3.connect(f"file:{self.catalog_file}?mode=ro", uri=True) as con:
                    recorded = con.execute(
                        "select table_namespace, table_name, metadata_location from iceberg_tables limit 1"
                    ).fetchone()
            except sqlite3.Error:
                recorded = None  # a new or damaged catalog: SqlCatalog says which
            if recorded:
                namespace, name, location = recorded
                marker = f"/{namespace}/{name}/metadata/"
                if marker in location:
                    return location[: location.rindex(marker)]
        for key, file in tables.items():
            location = self._read_location(file)
            suffix = f"/{key[0]}.{key[1]}/{key[2]}"
            if location and location.endswith(suffix):
                return location[: -len(suffix)]
        return self.data_dir.as_uri()

    @staticmethod
    def _read_location(file: Path) -> str | None:
        try:
            return json.loads(file.read_text()).get("location")
        except (OSError, ValueError, AttributeError):
            return None

    def _register(self, catalog: SqlCatalog, tables: dict[tuple[str, str, str], Path], logical: str) -> None:
        physical = str(self.data_dir)
        for ident, file in tables.items():
            relative = os.path.relpath(file, physical)
            catalog.create_namespace_if_not_exists(ident[:2])
            catalog.register_table(ident, f"{logical.rstrip('/')}/{relative}")

    @staticmethod
    def identifier(target: dict) -> tuple[str, str, str]:
        return (target["database"], target["schema"], target["name"])

    def load(self, target: dict):
        """Return the pyiceberg table for `target`, or None when it does not exist.

        Raises paths.StateError when the catalog is damaged.
        """
        from pyiceberg.exceptions import NoSuchTableError
        from sqlalchemy.exc import SQLAlchemyError

        catalog = self.catalog
        try:
            return catalog.load_table(self.identifier(target))
        except NoSuchTableError:
            return None
        except SQLAlchemyError as error:
            raise self._damaged(str(error).splitlines()[0]) from error

    def columns(self, target: dict) -> tuple[str, ...] | None:
        """Return the column names of the Iceberg table, or None when it does not exist."""
        table = self.load(target)
        return None if table is None else tuple(f.name for f in table.schema().fields)

    def data_files(self, target: dict) -> list[str]:
        table = self.load(target)
        return [] if table is None else list(self._files(table))

    def _files(self, table) -> dict:
        """The data files of `table`'s current snapshot (pyiceberg DataFile), by their path on disk now."""
        return {relocate(task.file.file_path, self.catalog.properties): task.file for task in table.scan().plan_files()}

    def publish(self, con: duckdb.DuckDBPyConnection, target: dict, *, replace_schema: bool) -> Snapshot:
        """Commit the rows of DuckDB table `target` as a new Iceberg snapshot that replaces the table's
        content, and record that the warehouse table mirrors it. Returns the new snapshot."""
        name = quoted(target)
        import pyarrow as pa

        # Read and written PUBLISH_BATCH_ROWS at a time, so the Arrow copy of a large table never is
        # in memory whole beside DuckDB's own.
        reader = con.execute(f"SELECT * FROM {name}").to_arrow_reader(PUBLISH_BATCH_ROWS)
        # DuckDB's Arrow fields are all nullable; Iceberg then gets optional columns (as BigQuery).
        schema = pa.schema([f.with_nullable(True) for f in reader.schema])
        ident = self.identifier(target)
        self.catalog.create_namespace_if_not_exists(ident[:2])
        table = self.load(target)
        if table is not None and replace_schema:
            # A full rebuild may change the schema: evolve it (new columns added) and keep history.
            if [f.name for f in schema] != [f.name for f in table.schema().fields]:
                with table.update_schema() as update:
                    update.union_by_name(schema)
                table = self.load(target)
        if table is None:
            table = self.catalog.create_table(ident, schema=schema, properties=TABLE_PROPERTIES)
        retention = _retention(table)  # a bad setting stops the write before it commits anything
        chunks = (pa.Table.from_batches([batch]).cast(schema) for batch in reader)
        rows = self._replace_contents(table, chunks)
        self._expire_snapshots(table, retention)
        files = tuple(self._files(table))  # `table` is as committed
        # the rows' files are read back only when the next incremental write needs them
        self._record_mirror(con, target, table.metadata_location, forget_rows=True, files=files)
        snapshot = table.current_snapshot()
        return Snapshot(snapshot.snapshot_id if snapshot else None, table.metadata_location, files, rows)

    def publish_changes(
        self, con: duckdb.DuckDBPyConnection, target: dict, *, compact_at: int = COMPACT_AT, committer=None
    ):
        """Commit what an incremental write changed in DuckDB table `target` (same schema as the current
        snapshot, one row per unique key) as ONE snapshot that rewrites only the data files holding rows
        it changed or removed, and adds the new rows as new files. Rows are compared by a hash of the
        whole row against the hashes recorded for the snapshot the table mirrored before the write (read
        from the snapshot's Parquet files once when none are recorded). Returns the Snapshot, or None
        when no row differs.

        A table with `compact_at` data files or more, or whose rows are not all distinct, is rewritten
        whole (publish), which also compacts the small files appends leave.

        With a `committer` (IcebergCommitter) and the catalog where the warehouse mirrors it, the
        snapshot is committed by that process and this one never imports pyiceberg; a committer that
        fails leaves the commit to this process, which finds what differs again.
        """
        if committer is not None:
            snapshot = self._publish_changes_by(committer, con, target, compact_at)
            if snapshot is not _NOT_COMMITTED:
                return snapshot
        table = self.load(target)
        if table is None:
            return self.publish(con, target, replace_schema=False)
        retention = _retention(table)
        properties = self.catalog.properties
        current = self._files(table)
        if not current or len(current) >= compact_at:
            return self.publish(con, target, replace_schema=False)
        columns = con.execute(f"DESCRIBE {quoted(target)}").fetchall()
        self._recorded_rows(con, target, columns, current)
        try:
            rewritten = self._changed_files(con, target, columns)
            if rewritten is None:
                return self.publish(con, target, replace_schema=False)
            if not rewritten and not con.execute("SELECT count(*) FROM _lakehouse_iceberg_out").fetchone()[0]:
                return None
            rows = con.execute(self._rows_to_write(con, target)).to_arrow_table()
            added = _commit_rows(table, [current[file] for file in rewritten], rows, properties)
            self._expire_snapshots(table, retention)
            self._record_rows(con, target, columns, rewritten, added)
        finally:
            con.execute("DROP TABLE IF EXISTS _lakehouse_iceberg_new")
            con.execute("DROP TABLE IF EXISTS _lakehouse_iceberg_out")
        self._record_mirror(con, target, table.metadata_location, forget_rows=False)
        written = table.current_snapshot()
        # `table` is as committed: its files are the ones it had, less those rewritten, and those added
        # (not planned again from its manifests: up to 64 of them, ~0.1 s)
        files = tuple(file for file in current if file not in set(rewritten)) + tuple(added)
        count = con.execute(f"SELECT count(*) FROM {quoted(target)}").fetchone()[0]
        return Snapshot(written.snapshot_id if written else None, table.metadata_location, files, count)

    def _publish_changes_by(self, committer, con: duckdb.DuckDBPyConnection, target: dict, compact_at: int):
        """publish_changes through `committer`, when the catalog (read from its SQLite file) points where
        the warehouse mirrors: the recorded rows are then the snapshot's. Returns _NOT_COMMITTED when it
        does not apply or the committer fails."""
        listed = self._listed_tables()
        location = None if listed is None else listed.get(self.identifier(target))
        if location is None or location != _mirrored_location(con, target):
            return _NOT_COMMITTED
        state = _state_tables(con, target["database"])
        key = _mirror_key(target)
        current = [file for (file,) in con.execute(
            f"SELECT DISTINCT file FROM {state.rows} WHERE table_name = ? ORDER BY file", [key]
        ).fetchall()]  # fmt: skip
        # files recorded where they are no more (a home moved: LAKEHOUSE_HOME elsewhere) are found
        # again by this process, which reads the snapshot from the catalog
        if not current or len(current) >= compact_at or not all(os.path.exists(file) for file in current):
            return _NOT_COMMITTED
        columns = con.execute(f"DESCRIBE {quoted(target)}").fetchall()
        self._read_unread_rows(con, target, columns)
        staged = self.staging_dir / f"{committer.pid}-{uuid.uuid4().hex}.parquet"
        try:
            rewritten = self._changed_files(con, target, columns)
            if rewritten is None:
                return _NOT_COMMITTED
            new_rows = con.execute("SELECT count(*) FROM _lakehouse_iceberg_out").fetchone()[0]
            if not rewritten and not new_rows:
                return None
            if new_rows:
                staged.parent.mkdir(parents=True, exist_ok=True)
                con.execute(
                    f"COPY ({self._rows_to_write(con, target)}) TO '{warehouse.sql_text(str(staged))}' (FORMAT parquet)"
                )
            reply = committer.commit(self.identifier(target), location, rewritten, str(staged) if new_rows else None)
            if reply is None:
                return _NOT_COMMITTED
            added = reply["added"]
            self._record_rows(con, target, columns, rewritten, added)
        finally:
            con.execute("DROP TABLE IF EXISTS _lakehouse_iceberg_new")
            con.execute("DROP TABLE IF EXISTS _lakehouse_iceberg_out")
            staged.unlink(missing_ok=True)
        self._record_mirror(con, target, reply["metadata_location"], forget_rows=False)
        files = tuple(file for file in current if file not in set(rewritten)) + tuple(added)
        count = con.execute(f"SELECT count(*) FROM {quoted(target)}").fetchone()[0]
        return Snapshot(reply["snapshot_id"], reply["metadata_location"], files, count)

    def _changed_files(self, con: duckdb.DuckDBPyConnection, target: dict, columns: list) -> list[str] | None:
        """Compare the rows of `target` with those recorded for its snapshot: return the data files
        holding a row that changed or went (None when the table's rows are not all distinct), and leave
        in TEMP table _lakehouse_iceberg_out the rows to write (rowid r, hash h): the new ones and those
        still there in the files rewritten; _rows_to_write selects them. When the changes are rows a
        write only appended (stage_changes), they are those rows, and no other row is read."""
        if self._appended_rows(con, target, columns):
            return []
        state = _state_tables(con, target["database"])
        key = _mirror_key(target)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _lakehouse_iceberg_new AS SELECT rowid AS r, {_row_hash('t', columns)} AS h "
            f"FROM {quoted(target)} AS t"
        )
        distinct, total = con.execute("SELECT count(DISTINCT h), count(*) FROM _lakehouse_iceberg_new").fetchone()
        if distinct != total:
            return None
        rewritten = [
            file
            for (file,) in con.execute(
                f"SELECT DISTINCT file FROM {state.rows} WHERE table_name = ? "
                "AND h NOT IN (SELECT h FROM _lakehouse_iceberg_new) ORDER BY file",
                [key],
            ).fetchall()
        ]
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _lakehouse_iceberg_out AS SELECT r, h FROM _lakehouse_iceberg_new "
            f"WHERE h NOT IN (SELECT h FROM {state.rows} WHERE table_name = $1) "
            f"OR h IN (SELECT h FROM {state.rows} WHERE table_name = $1 "
            "AND file IN (SELECT unnest($2::VARCHAR[])))",
            [key, rewritten],
        )
        return rewritten

    def _appended_rows(self, con: duckdb.DuckDBPyConnection, target: dict, columns: list) -> bool:
        """When the changes pending on `target` are the rows one write appended, kept aside by
        stage_changes, leave their hashes in _lakehouse_iceberg_out (r NULL: read from the table kept
        aside) and return True; False when there are none, or when they do not account for the table
        (its rows are not the snapshot's recorded ones and these, all distinct)."""
        added = _added_table(target)
        if not _is_pending(con, target) or not _has_added_table(con, target):
            return False
        state = _state_tables(con, target["database"])
        key = _mirror_key(target)
        recorded, unread = con.execute(
            f"SELECT count(h), count(*) - count(h) FROM {state.rows} WHERE table_name = ?", [key]
        ).fetchone()
        total = con.execute(f"SELECT count(*) FROM {quoted(target)}").fetchone()[0]
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _lakehouse_iceberg_out AS SELECT NULL::BIGINT AS r, "
            f"{_row_hash('a', columns)} AS h FROM {added} AS a"
        )
        distinct, count = con.execute("SELECT count(DISTINCT h), count(*) FROM _lakehouse_iceberg_out").fetchone()
        clash = con.execute(
            f"SELECT count(*) FROM {state.rows} WHERE table_name = ? AND h IN (SELECT h FROM _lakehouse_iceberg_out)",
            [key],
        ).fetchone()[0]
        if unread or not count or total != recorded + count or distinct != count or clash:
            con.execute("DROP TABLE _lakehouse_iceberg_out")
            return False
        return True

    @staticmethod
    def _rows_to_write(con: duckdb.DuckDBPyConnection, target: dict) -> str:
        """Return the SELECT of the rows _changed_files left to write."""
        if con.execute("SELECT count(*) FROM _lakehouse_iceberg_out WHERE r IS NULL").fetchone()[0]:
            return f"SELECT * FROM {_added_table(target)}"
        return f"SELECT t.* FROM {quoted(target)} AS t WHERE t.rowid IN (SELECT r FROM _lakehouse_iceberg_out)"

    def _record_rows(
        self, con: duckdb.DuckDBPyConnection, target: dict, columns: list, rewritten: list[str], added: list[str]
    ) -> None:
        """Record the rows of the snapshot just committed: those of the `rewritten` files go, the rows
        of _lakehouse_iceberg_out are in the `added` ones."""
        state = _state_tables(con, target["database"])
        key = _mirror_key(target)
        con.execute(f"DELETE FROM {state.rows} WHERE table_name = ? AND file IN (SELECT unnest(?::VARCHAR[]))",
                    [key, rewritten])  # fmt: skip
        if len(added) == 1:
            con.execute(f"INSERT INTO {state.rows} SELECT ?, ?, h FROM _lakehouse_iceberg_out", [key, added[0]])
        elif added:
            self._read_rows(con, target, columns, added)

    def commit_rows(
        self, identifier: tuple[str, str, str], expected: str, rewritten: list[str], rows_file: str | None
    ) -> dict:
        """The committer's side of publish_changes: in ONE snapshot of the table at `identifier`, whose
        metadata must still be at `expected`, delete the data files `rewritten` and add the rows of the
        Parquet file `rows_file`; expire what its retention says. Returns the new metadata location,
        snapshot id and the data files added."""
        table = self.catalog.load_table(identifier)
        if table.metadata_location != expected:
            raise paths.StateError(f"the Iceberg table {'.'.join(identifier)} moved on from {expected}")
        retention = _retention(table)
        current = self._files(table) if rewritten else {}
        if rows_file is None:
            rows = None
        else:
            import pyarrow.parquet as pq

            rows = pq.read_table(rows_file)
        added = _commit_rows(table, [current[file] for file in rewritten], rows, self.catalog.properties)
        self._expire_snapshots(table, retention)
        written = table.current_snapshot()
        return {
            "metadata_location": table.metadata_location,
            "snapshot_id": written.snapshot_id if written else None,
            "added": added,
        }

    def stage_changes(
        self, con: duckdb.DuckDBPyConnection, target: dict, *, appended_after: int | None = None
    ) -> bool:
        """In the transaction of an incremental write that changed rows of DuckDB table `target`: mark
        the table as holding changes to commit, without opening the catalog (`publish_staged` commits
        them, as publish_changes finds them: a row whose hash the snapshot has not; a run stopped before
        it leaves the mark, and the next run's `reconcile` commits them). Returns whether it marked it:
        not when no rows are recorded for the snapshot the table mirrors (publish_changes then reads
        them from its files, in this transaction).

        The warehouse commits first and the snapshot follows, so the tables that read this one need not
        wait for the Iceberg commit (about a second of pyiceberg on a 1M-event run), nor for a comparison
        of every row's hash (the commit compares them anyway, in the background).

        `appended_after` (appended_after, called in this transaction) says the write only appended rows,
        those after that rowid: they are kept aside (_added_table) when the table held no changes
        before, and the commit takes them as they are instead of hashing every row of the table, so
        its cost follows the rows the write added, not the table's history."""
        state = _state_tables(con, target["database"])
        key = _mirror_key(target)
        recorded = con.execute(f"SELECT count(*) FROM {state.rows} WHERE table_name = ?", [key]).fetchone()[0]
        if not recorded or _mirrored_location(con, target) is None:
            return False
        added = _added_table(target)
        # rows kept aside are only the changes since the snapshot when nothing else was pending
        only_these = appended_after is not None and not _is_pending(con, target)
        con.execute(f"DROP TABLE IF EXISTS {added}")
        if only_these:
            con.execute(f"CREATE TABLE {added} AS SELECT * FROM {quoted(target)} WHERE rowid > ?", [appended_after])
        con.execute(f"DELETE FROM {state.pending} WHERE table_name = ?", [key])
        con.execute(f"INSERT INTO {state.pending} VALUES (?)", [key])
        return True

    @staticmethod
    def write_mark(con: duckdb.DuckDBPyConnection, target: dict) -> tuple[int, int] | None:
        """Before an incremental write, in its transaction: how many rows `target` has and its last
        rowid, for appended_after (None when the warehouse holds no table by that name)."""
        if _warehouse_kind(con, target) != "table":
            return None
        count, last = con.execute(f"SELECT count(*), max(rowid) FROM {quoted(target)}").fetchone()
        return count, -1 if last is None else last

    @staticmethod
    def appended_after(
        con: duckdb.DuckDBPyConnection, target: dict, mark: tuple[int, int] | None, counted: int
    ) -> int | None:
        """After an incremental write whose statements changed `counted` rows in all (each of them a
        counted INSERT, MERGE, UPDATE or DELETE: the caller's to know), in the same transaction as
        write_mark's `mark`: return the last rowid before the write when the write only appended rows
        to `target`, else None. Rows a transaction adds take rowids after every committed one and
        updated rows keep theirs, so: none of the rows before went, and the rows after are as many as
        the rows counted (an update, or a delete of an added row, counts without adding one)."""
        if mark is None:
            return None
        count, last = mark
        kept, added = con.execute(
            f"SELECT count(*) FILTER (WHERE rowid <= $1), count(*) FILTER (WHERE rowid > $1) FROM {quoted(target)}",
            [last],
        ).fetchone()
        return last if kept == count and added == counted else None

    def publish_staged(self, con: duckdb.DuckDBPyConnection, target: dict, committer=None) -> Snapshot | None:
        """Commit the changes `stage_changes` marked on `target` as one snapshot and clear the mark, in
        one warehouse transaction on `con`; returns the snapshot (None when no row differs any more).
        With a `committer`, as publish_changes says."""
        with warehouse.transaction(con):
            snapshot = self.publish_changes(con, target, committer=committer)
            _clear_pending(con, target)
        return snapshot

    def _recorded_rows(self, con: duckdb.DuckDBPyConnection, target: dict, columns: list, current: dict) -> None:
        """Make `_lakehouse.iceberg_rows` hold the hash and data file of every row of the current snapshot:
        kept when it lists exactly the snapshot's files, else read again from them."""
        state = _state_tables(con, target["database"])
        key = _mirror_key(target)
        recorded = {file for (file,) in con.execute(
            f"SELECT DISTINCT file FROM {state.rows} WHERE table_name = ?", [key]
        ).fetchall()}  # fmt: skip
        if recorded != set(current):
            con.execute(f"DELETE FROM {state.rows} WHERE table_name = ?", [key])
            self._read_rows(con, target, columns, list(current))
        else:
            self._read_unread_rows(con, target, columns)

    def _read_unread_rows(self, con: duckdb.DuckDBPyConnection, target: dict, columns: list) -> None:
        """Replace the marks of the data files whose rows were not read (a whole snapshot's files, see
        _record_mirror) by the hash of each of their rows."""
        state = _state_tables(con, target["database"])
        key = _mirror_key(target)
        unread = [file for (file,) in con.execute(
            f"SELECT file FROM {state.rows} WHERE table_name = ? AND h IS NULL", [key]
        ).fetchall()]  # fmt: skip
        if unread:
            con.execute(f"DELETE FROM {state.rows} WHERE table_name = ? AND h IS NULL", [key])
            self._read_rows(con, target, columns, unread)

    @staticmethod
    def _read_rows(con: duckdb.DuckDBPyConnection, target: dict, columns: list, files: list[str]) -> None:
        state = _state_tables(con, target["database"])
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        # hashed with the warehouse table's types, as the rows it is compared with
        con.execute(
            f"INSERT INTO {state.rows} SELECT ?, filename, {_row_hash('o', columns, cast=True)} "
            f"FROM read_parquet([{listed}], filename = true, union_by_name = true) AS o",
            [_mirror_key(target)],
        )

    @staticmethod
    def _record_mirror(
        con: duckdb.DuckDBPyConnection, target: dict, location: str, *, forget_rows: bool, files: Iterable[str] = ()
    ) -> None:
        """Record that `target` mirrors the snapshot at `location`; with `forget_rows`, the snapshot's
        data `files` are recorded with their rows not read (a hash of NULL), read when a write needs them."""
        state = _state_tables(con, target["database"])
        key = _mirror_key(target)
        con.execute(f"DROP TABLE IF EXISTS {_added_table(target)}")  # changes since the snapshot mirrored before
        con.execute(f"DELETE FROM {state.mirror} WHERE table_name = ?", [key])
        con.execute(f"INSERT INTO {state.mirror} VALUES (?, ?)", [key, location])
        if forget_rows:
            con.execute(f"DELETE FROM {state.rows} WHERE table_name = ?", [key])
            files = list(files)
            if files:
                con.execute(f"INSERT INTO {state.rows} SELECT ?, unnest(?::VARCHAR[]), NULL", [key, files])

    @staticmethod
    def _expire_snapshots(table, retention: tuple[int, int, int]) -> None:
        """Expire the snapshots of `table` past its `retention` (_retention: the age in ms, how many to
        keep at least, how many at most) and delete the files no snapshot left references; call right
        after a commit, with `table` as committed.

        Done in batches, when the oldest snapshot to go is a quarter of the age past it, or a quarter
        more snapshots than the most are kept: a table committed every hour then expires about once
        a day, and a run pays for reading the manifests only then. The files are found by listing
        the table's folders (an Iceberg data file, manifest or manifest list that nothing reachable
        from a kept snapshot names), so those of a commit that was killed, or of an expiry killed
        before its deletes, go at the next expiry too. No other writer shares a table's folders: a
        run holds the warehouse, and one table is committed by one action at a time.
        """
        from pyiceberg.table.update.snapshot import ExpireSnapshots

        metadata = table.metadata
        props = table.properties
        max_age, keep, most = retention
        now = int(time.time() * 1000)
        heads = {ref.snapshot_id for ref in metadata.refs.values()}
        by_age = sorted(metadata.snapshots, key=lambda snapshot: snapshot.timestamp_ms)
        beyond = len(by_age) - max(most, keep)  # how many of the oldest are over the count
        expired = [
            s
            for index, s in enumerate(by_age[:-keep])
            if s.snapshot_id not in heads and (s.timestamp_ms < now - max_age or index < beyond)
        ]
        too_old = [s for s in expired if s.timestamp_ms < now - max_age]
        overdue = bool(too_old) and too_old[0].timestamp_ms < now - max_age - max_age // 4
        if not expired or not (overdue or beyond > most // 4):
            return
        with table.transaction() as tx:
            missing = {k: v for k, v in TABLE_PROPERTIES.items() if props.get(k) is None}
            if missing:
                tx.set_properties(missing)
            ExpireSnapshots(tx).by_ids([s.snapshot_id for s in expired]).commit()
        _delete_unreferenced(table)

    @staticmethod
    def _replace_contents(table, chunks: Iterable[pa.Table]) -> int:
        """Commit the rows of `chunks` as the table's whole content in ONE overwrite snapshot; return
        how many rows it holds.

        pyiceberg's Table.overwrite() commits a delete snapshot and then an append snapshot; one
        run should be one snapshot (one point to time-travel to), so the overwrite is produced
        directly: the current data files are deleted and the new ones added in the same commit.
        """
        from pyiceberg.io.pyarrow import _dataframe_to_data_files  # what Table.append uses to write files

        current = [task.file for task in table.scan().plan_files()]
        rows = 0
        counter = itertools.count(0)  # one numbering for the files of every chunk: names stay unique
        with table.transaction() as tx, tx.update_snapshot().overwrite() as overwrite:
            for data_file in current:
                overwrite.delete_data_file(data_file)
            for chunk in chunks:
                rows += chunk.num_rows
                if chunk.num_rows:
                    for data_file in _dataframe_to_data_files(
                        table_metadata=tx.table_metadata,
                        write_uuid=overwrite.commit_uuid,
                        df=chunk,
                        io=table.io,
                        counter=counter,
                    ):
                        overwrite.append_data_file(data_file)
        return rows

    def load_mirror(self, con: duckdb.DuckDBPyConnection, target: dict) -> None:
        """(Re)create the warehouse table of `target` from the current snapshot's data files and record
        that it mirrors that snapshot (the row hashes are read again when next needed)."""
        table = self.load(target)
        if table is None:
            return
        name = quoted(target)
        files = self.data_files(target)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{target["database"]}"."{target["schema"]}"')
        if _warehouse_kind(con, target) == "view":
            con.execute(f"DROP VIEW {name}")
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM read_parquet([{listed}], union_by_name=true)")
        else:
            import pyarrow as pa

            con.register("_lakehouse_empty", pa.Table.from_batches([], schema=table.schema().as_arrow()))
            try:
                con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _lakehouse_empty")
            finally:
                con.unregister("_lakehouse_empty")
        self._record_mirror(con, target, table.metadata_location, forget_rows=True, files=files)

    def reconcile(self, con: duckdb.DuckDBPyConnection, targets: list[dict]) -> list[str]:
        """Make the warehouse mirror the catalog for each Iceberg target before a run decides, from the
        warehouse state, which tables it merges into; returns the names repaired.

        A run killed between an Iceberg commit and the warehouse commit leaves the catalog a snapshot
        ahead of the warehouse (or the table in the catalog and not in the warehouse): the warehouse
        table is loaded again from the current snapshot. Its records are taken again by the next run,
        since the intake ledger was not written either, and merge by key into what is already there.
        A table in the warehouse and not in the catalog (a catalog that lost it; no crash leaves this,
        the catalog commits first) is committed to the catalog as it is, so the next run merges into it
        instead of rebuilding it from one batch. A warehouse from before the mirror (a view over the
        snapshot's files) is turned into the mirror table.
        """
        repaired = []
        listed = self._listed_tables()
        for target in targets:
            kind = _warehouse_kind(con, target)
            mirrored = _mirrored_location(con, target) if kind == "table" else None
            if kind == "table" and _is_pending(con, target):
                table = self.load(target)
                if table is not None and mirrored == table.metadata_location:
                    # a run stopped between its warehouse commit and the snapshot of that write: commit it
                    self.publish_staged(con, target)
                    repaired.append(quoted(target))
                    continue
            if listed is not None:
                location = listed.get(self.identifier(target))
                if location is None and kind is None:
                    continue
                if location is not None and kind == "table" and mirrored == location:
                    continue  # in step (read without opening pyiceberg, which a skipped run never needs)
            table = self.load(target)
            if table is None and kind is None:
                continue
            if table is not None and kind == "table" and mirrored == table.metadata_location:
                continue
            with warehouse.transaction(con):
                if kind == "table":
                    _clear_pending(con, target)  # what the mirror holds is now what the catalog holds
                if table is not None:
                    self.load_mirror(con, target)
                else:
                    name = quoted(target)
                    if kind == "view":
                        # a view over files the catalog no longer lists: keep its rows as a table
                        con.execute(f"CREATE OR REPLACE TEMP TABLE _lakehouse_iceberg_orphan AS SELECT * FROM {name}")
                        con.execute(f"DROP VIEW {name}")
                        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _lakehouse_iceberg_orphan")
                        con.execute("DROP TABLE _lakehouse_iceberg_orphan")
                    self.publish(con, target, replace_schema=True)
            repaired.append(quoted(target))
        return repaired

    @property
    def staging_dir(self) -> Path:
        """Where a run's rows wait, as Parquet, for the committer process to commit them."""
        return self.root / "staging"

    def clear_staging(self) -> None:
        """Remove what a run killed while it handed rows to its committer left in staging_dir (call with
        the warehouse held: no other run is handing any)."""
        for path in self.staging_dir.glob("*.parquet"):
            path.unlink(missing_ok=True)

    def lists_tables(self) -> bool:
        """Return whether the catalog holds a table (read from its SQLite file, without pyiceberg)."""
        return bool(self._listed_tables())

    def _listed_tables(self) -> dict[tuple[str, str, str], str] | None:
        """Return the current metadata location of every table the catalog lists, read from its SQLite
        file; None when it cannot be read that way (missing, damaged: opening it through pyiceberg says
        what is wrong)."""
        if not self.catalog_file.is_file():
            return None
        try:
            with sqlite3.connect(f"file:{self.catalog_file}?mode=ro", uri=True) as con:
                rows = con.execute(
                    "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables"
                ).fetchall()
        except sqlite3.Error:
            return None
        return {(*namespace.split(".", 1), name): location for namespace, name, location in rows if "." in namespace}


@dataclass(frozen=True)
class _StateTables:
    mirror: str
    rows: str
    pending: str


def _state_tables(con: duckdb.DuckDBPyConnection, database: str) -> _StateTables:
    """Return the names of the mirror's state tables in warehouse `database`, creating them if needed:
    the snapshot each table mirrors, the hash and data file of each row of that snapshot, and the
    tables whose warehouse rows are ahead of their snapshot (stage_changes)."""
    schema = f'"{database}"."_lakehouse"'
    tables = _StateTables(f"{schema}.iceberg_mirror", f"{schema}.iceberg_rows", f"{schema}.iceberg_pending")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {tables.mirror} (table_name VARCHAR, metadata_location VARCHAR)")
    con.execute(f"CREATE TABLE IF NOT EXISTS {tables.rows} (table_name VARCHAR, file VARCHAR, h UBIGINT)")
    con.execute(f"CREATE TABLE IF NOT EXISTS {tables.pending} (table_name VARCHAR)")
    return tables


def _is_pending(con: duckdb.DuckDBPyConnection, target: dict) -> bool:
    """Return whether `target`'s warehouse rows hold changes not committed to its snapshot yet."""
    return _state_value(con, target, "iceberg_pending", "table_name") is not None


def _clear_pending(con: duckdb.DuckDBPyConnection, target: dict) -> None:
    state = _state_tables(con, target["database"])
    con.execute(f"DELETE FROM {state.pending} WHERE table_name = ?", [_mirror_key(target)])
    con.execute(f"DROP TABLE IF EXISTS {_added_table(target)}")


def _added_table(target: dict, *, quote: bool = True) -> str:
    """Return the name of the table in `target`'s warehouse schema _lakehouse holding the rows one
    write appended to `target` since its snapshot, while they wait for their commit (stage_changes);
    without `quote`, the table's bare name."""
    name = "iceberg_added_" + hashlib.sha256(_mirror_key(target).encode()).hexdigest()[:16]
    return f'"{target["database"]}"."_lakehouse"."{name}"' if quote else name


def _has_added_table(con: duckdb.DuckDBPyConnection, target: dict) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = '_lakehouse' "
        "AND table_name = ?",
        [target["database"], _added_table(target, quote=False)],
    ).fetchone()[0])  # fmt: skip


def _retention(table) -> tuple[int, int, int]:
    """Return the snapshot retention `table` sets (max age in ms, snapshots kept at least, at most);
    raises paths.StateError naming the property when one is not a whole number."""
    return (
        _whole_number(table, MAX_SNAPSHOT_AGE, MAX_SNAPSHOT_AGE_DEFAULT),
        max(1, _whole_number(table, MIN_SNAPSHOTS, MIN_SNAPSHOTS_DEFAULT)),
        max(1, _whole_number(table, MAX_SNAPSHOTS, MAX_SNAPSHOTS_DEFAULT)),
    )


def _whole_number(table, key: str, default: int) -> int:
    value = table.properties.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise paths.StateError(
            f"the Iceberg table {'.'.join(table.name())} has the property {key}={value!r}, which is not a whole "
            f"number; set it to one (or remove it: the default is {default})"
        ) from None


def _commit_rows(table, deleted: list, rows: pa.Table | None, properties: dict) -> list[str]:
    """Commit ONE snapshot of `table` that deletes the DataFiles `deleted` and adds `rows` as new data
    files (an overwrite when it deletes, else an append); return the added files' paths on disk."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    added: list[str] = []
    if rows is not None:
        # DuckDB's Arrow fields are all nullable; Iceberg has optional columns (as BigQuery).
        rows = rows.cast(pa.schema([f.with_nullable(True) for f in rows.schema]))
    with table.transaction() as tx:
        producer = tx.update_snapshot().overwrite() if deleted else tx.update_snapshot().fast_append()
        with producer as snapshot:
            for data_file in deleted:
                snapshot.delete_data_file(data_file)
            if rows is not None and rows.num_rows:
                for data_file in _dataframe_to_data_files(
                    table_metadata=tx.table_metadata, write_uuid=snapshot.commit_uuid, df=rows, io=table.io
                ):
                    snapshot.append_data_file(data_file)
                    added.append(relocate(data_file.file_path, properties))
    return added


def _delete_unreferenced(table) -> int:
    """Delete the files in `table`'s data and metadata folders that neither its current metadata nor a
    snapshot it keeps needs (a data file no kept snapshot holds, a manifest or manifest list none
    reads, a metadata file outside the metadata log); returns how many. Only data files, manifests and
    metadata files are considered, by their suffix."""
    properties = table.io.properties
    metadata = table.metadata
    kept = {relocate(table.metadata_location, properties)}
    kept.update(relocate(entry.metadata_file, properties) for entry in metadata.metadata_log)
    read: set[str] = set()
    for snapshot in metadata.snapshots:
        kept.add(relocate(snapshot.manifest_list, properties))
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in read:
                continue
            read.add(manifest.manifest_path)
            kept.add(relocate(manifest.manifest_path, properties))
            # a file a manifest lists as deleted is in no snapshot that reads that manifest
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                kept.add(relocate(entry.data_file.file_path, properties))
    root = Path(relocate(table.location(), properties))
    on_disk = [
        path
        for folder, suffixes in (("data", (".parquet",)), ("metadata", (".avro", ".metadata.json")))
        if (root / folder).is_dir()
        for path in (root / folder).rglob("*")
        if path.name.endswith(suffixes) and path.is_file()
    ]
    if not {relocate(table.metadata_location, properties)} <= {str(path) for path in on_disk}:
        return 0  # the recorded paths do not map onto these folders: delete nothing
    unneeded = [path for path in on_disk if str(path) not in kept]
    for path in unneeded:
        path.unlink(missing_ok=True)
    return len(unneeded)


def _mirror_key(target: dict) -> str:
    return f"{target['schema']}.{target['name']}"


def _row_hash(alias: str, columns: list, *, cast: bool = False) -> str:
    """Return SQL hashing a whole row; `cast` reads each column as the warehouse table types it."""
    fields = [f'CAST({alias}."{name}" AS {kind})' if cast else f'{alias}."{name}"' for name, kind, *_ in columns]
    return f"hash(struct_pack({', '.join(fields)}))"


def _warehouse_kind(con: duckdb.DuckDBPyConnection, target: dict) -> str | None:
    """Return 'table', 'view' or None for what the warehouse holds under `target`'s name."""
    found = con.execute(
        "SELECT 'table' FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ? "
        "UNION ALL SELECT 'view' FROM duckdb_views() WHERE database_name = ? AND schema_name = ? AND view_name = ?",
        [target["database"], target["schema"], target["name"]] * 2,
    ).fetchone()
    return found[0] if found else None


def _mirrored_location(con: duckdb.DuckDBPyConnection, target: dict) -> str | None:
    """Return the metadata location the warehouse table of `target` was recorded to mirror, if any."""
    return _state_value(con, target, "iceberg_mirror", "metadata_location")


def _state_value(con: duckdb.DuckDBPyConnection, target: dict, table: str, column: str):
    """Return `column` of `target`'s row in the state table _lakehouse.`table`; None when the table or
    the row is missing (read without creating the state tables, as _state_tables would)."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = '_lakehouse' "
        "AND table_name = ?",
        [target["database"], table],
    ).fetchone()[0]
    if not found:
        return None
    row = con.execute(
        f'SELECT {column} FROM "{target["database"]}"._lakehouse.{table} WHERE table_name = ?', [_mirror_key(target)]
    ).fetchone()
    return row[0] if row else None
