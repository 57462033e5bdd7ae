"""The store: the DuckDB schema and its migrations (database.py, migrations/), the run recorder and
the orchestrator's sink that feeds it (recorder.py, run_sink.py), telemetry rows (telemetry_rows.py) and
stored GPU prices (prices.py). Imports neither data.jobs, data.travel nor data.analysis (import-linter
contract in pyproject.toml)."""
