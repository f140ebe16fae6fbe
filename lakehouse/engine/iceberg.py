"""Tables with Dataform's `iceberg` config, kept as real Apache Iceberg tables on local disk.

BigQuery stores such a table as a BigLake Iceberg table in GCS. Locally the table lives in a
pyiceberg SQLite catalog under LAKEHOUSE_HOME/iceberg; every run commits one snapshot. DuckDB sees
the table as a view over the current snapshot's Parquet data files, so it stays queryable from
the warehouse with no copy and no DuckDB extension.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError

from lakehouse import paths


def is_iceberg(table: dict) -> bool:
    """Return True when a compiled Dataform table is configured as an Iceberg table."""
    return (table.get("bigquery") or {}).get("tableFormat") == "ICEBERG"


def quoted(target: dict) -> str:
    """Return the DuckDB three-part name of a Dataform target."""
    return f'"{target["database"]}"."{target["schema"]}"."{target["name"]}"'


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
        self._catalog: SqlCatalog | None = None

    @property
    def catalog(self) -> SqlCatalog:
        if self._catalog is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._catalog = SqlCatalog(
                "lakehouse",
                uri=f"sqlite:///{self.root / 'catalog.db'}",
                warehouse=(self.root / "data").as_uri(),
            )
        return self._catalog

    @staticmethod
    def identifier(target: dict) -> tuple[str, str, str]:
        return (target["database"], target["schema"], target["name"])

    def load(self, target: dict):
        """Return the pyiceberg table for `target`, or None when it does not exist."""
        try:
            return self.catalog.load_table(self.identifier(target))
        except NoSuchTableError:
            return None

    def columns(self, target: dict) -> tuple[str, ...] | None:
        """Return the column names of the Iceberg table, or None when it does not exist."""
        table = self.load(target)
        return None if table is None else tuple(f.name for f in table.schema().fields)

    def data_files(self, target: dict) -> list[str]:
        table = self.load(target)
        if table is None:
            return []
        return [task.file.file_path.removeprefix("file://") for task in table.scan().plan_files()]

    def materialize(self, con: duckdb.DuckDBPyConnection, target: dict) -> None:
        """Replace the DuckDB view of `target` with a table holding the current snapshot's rows,
        so that Dataform's MERGE/INSERT statements can run against it."""
        name = quoted(target)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name}")

    def publish(self, con: duckdb.DuckDBPyConnection, target: dict, *, replace_schema: bool) -> Snapshot:
        """Commit the rows of DuckDB table `target` as a new Iceberg snapshot and point the DuckDB
        name at it (a view over the snapshot's files). Returns the new snapshot."""
        name = quoted(target)
        data = con.execute(f"SELECT * FROM {name}").to_arrow_table()
        # DuckDB's Arrow fields are all nullable; Iceberg then gets optional columns (as BigQuery).
        data = data.cast(pa.schema([f.with_nullable(True) for f in data.schema]))
        ident = self.identifier(target)
        self.catalog.create_namespace_if_not_exists(ident[:2])
        table = self.load(target)
        if table is not None and replace_schema:
            # A full rebuild may change the schema: evolve it (new columns added) and keep history.
            if [f.name for f in data.schema] != [f.name for f in table.schema().fields]:
                with table.update_schema() as update:
                    update.union_by_name(data.schema)
                table = self.load(target)
        if table is None:
            table = self.catalog.create_table(ident, schema=data.schema)
        self._replace_contents(table, data)
        table = self.load(target)
        files = tuple(self.data_files(target))
        self._point_view(con, target, files, data.schema)
        snapshot = table.current_snapshot()
        return Snapshot(snapshot.snapshot_id if snapshot else None, table.metadata_location, files, data.num_rows)

    @staticmethod
    def _replace_contents(table, data: pa.Table) -> None:
        """Commit `data` as the table's whole content in ONE overwrite snapshot.

        pyiceberg's Table.overwrite() commits a delete snapshot and then an append snapshot; one
        run should be one snapshot (one point to time-travel to), so the overwrite is produced
        directly: the current data files are deleted and the new ones added in the same commit.
        """
        from pyiceberg.io.pyarrow import _dataframe_to_data_files  # what Table.append uses to write files

        current = [task.file for task in table.scan().plan_files()]
        with table.transaction() as tx, tx.update_snapshot().overwrite() as overwrite:
            for data_file in current:
                overwrite.delete_data_file(data_file)
            if data.num_rows:
                for data_file in _dataframe_to_data_files(
                    table_metadata=tx.table_metadata, write_uuid=overwrite.commit_uuid, df=data, io=table.io
                ):
                    overwrite.append_data_file(data_file)

    def attach_view(self, con: duckdb.DuckDBPyConnection, target: dict) -> None:
        """(Re)create the DuckDB view over the current snapshot, e.g. after the warehouse was reset."""
        table = self.load(target)
        if table is None:
            return
        schema = table.schema().as_arrow()
        self._point_view(con, target, tuple(self.data_files(target)), schema)

    @staticmethod
    def _point_view(con: duckdb.DuckDBPyConnection, target: dict, files: tuple[str, ...], schema: pa.Schema) -> None:
        name = quoted(target)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{target["database"]}"."{target["schema"]}"')
        con.execute(f"DROP TABLE IF EXISTS {name}")
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([{listed}], union_by_name=true)")
        else:
            empty = pa.Table.from_batches([], schema=schema)
            con.register("_lakehouse_empty", empty)
            types = con.execute("DESCRIBE SELECT * FROM _lakehouse_empty").fetchall()
            con.unregister("_lakehouse_empty")
            cols = ", ".join(f'CAST(NULL AS {kind}) AS "{col}"' for col, kind, *_ in types)
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} WHERE false")
