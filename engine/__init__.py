"""Engines, workloads, metrics and telemetry. Never imports Textual or DuckDB."""
