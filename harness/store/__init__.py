"""Store: records on disk and back (JSON Lines, crash-safe; read through a Parquet cache with
DuckDB, only the columns asked for; pytest-benchmark files; TensorBoard).

Imports ``harness.core`` and below. See docs/architecture.md ("The results store").
"""
