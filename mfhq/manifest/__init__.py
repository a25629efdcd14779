"""Schemas, atomic Parquet I/O and DuckDB views over a run."""
