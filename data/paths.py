"""Where tokentop keeps its files (platformdirs), overridable by environment variables."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from engine.settings import settings

APP = "tokentop"


def data_dir() -> Path:
    return Path(settings().data_dir or platformdirs.user_data_dir(APP))


def default_db_path() -> Path:
    env = settings().db
    return Path(env) if env else data_dir() / "tokentop.duckdb"


def assets_dir() -> Path:
    return Path(__file__).resolve().parent / "assets"


def bundled_suite_path(name: str) -> Path | None:
    path = assets_dir() / "suites" / f"{name}.toml"
    return path if path.is_file() else None


def bundled_suite_names() -> list[str]:
    return sorted(p.stem for p in (assets_dir() / "suites").glob("*.toml"))


def resolve_suite(name_or_path: str):
    """'seed' (or another bundled name) or a TOML file."""
    from engine.workloads.suites import load_suite

    bundled = bundled_suite_path(name_or_path)
    return load_suite(bundled if bundled is not None else name_or_path)
