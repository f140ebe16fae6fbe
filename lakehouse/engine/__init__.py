"""The embedded lakehouse engine: compile with the real Dataform CLI, run the graph on DuckDB."""
