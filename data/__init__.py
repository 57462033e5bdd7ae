"""DuckDB store and bundled assets. Never imports Textual."""
