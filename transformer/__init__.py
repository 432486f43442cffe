"""The transformer service: watches landed snapshots and runs dbt on DuckDB for each."""
