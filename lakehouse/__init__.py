"""Local lakehouse kit: the embedded Dataform engine on DuckDB and the CLI around it."""
