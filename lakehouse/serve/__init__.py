"""A read-only REST API over the gold tables, described by their Dataform configs."""
