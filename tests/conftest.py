"""Shared fixtures. One real vLLM engine (and at most one real vLLM server) per test session."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def pytest_sessionfinish(session, exitstatus):
    session.config._tokentop_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process as `tokentop` ends its own (tui.cli.signals.exit_now): the report is printed,
    the shared engine and server are stopped, and what is left is the interpreter's teardown, where a
    daemon thread of vLLM, torch or DuckDB parked in C++ can abort the process after every test passed
    ("terminate called after throwing an instance of ''", seen once in CI after 640 passes)."""
    code = getattr(config, "_tokentop_exitstatus", None)
    if code is None or os.environ.get("TOKENTOP_TEST_FULL_TEARDOWN"):
        return
    from tui.cli.signals import exit_now

    exit_now(code)  # exit handlers (store writers' last flush, pushes in flight), flush, os._exit


@pytest.fixture(scope="session")
def embedded_model_path() -> str:
    from engine.engines.embedded_model import prepare

    return str(prepare())


@pytest.fixture(scope="session")
def engine_session(embedded_model_path, tmp_path_factory):
    """The embedded model on the in-process vLLM engine, started once for the whole session."""
    from data.jobs.session import Session
    from data.store.database import Store

    store = Store(tmp_path_factory.mktemp("engine-db") / "session.duckdb")
    session = Session(store, dict(engine="vllm", model=None))
    session.start_engine()
    yield session
    session.shutdown()
    store.close()


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "tokentop.duckdb"


@pytest.fixture
def store(db_path):
    from data.store.database import Store

    s = Store(db_path)
    yield s
    s.close()


@pytest.fixture
def session(engine_session, store):
    """A Session on the shared engine that records into this test's own database."""
    return engine_session.fork(store)


@pytest.fixture(scope="session")
def vllm_server(embedded_model_path):
    """A real vLLM OpenAI-compatible server on loopback (CPU build), started once."""
    from engine.engines.managed_server import ManagedVllmServer

    # Dev mode: its POST /reset_prefix_cache lets load levels start with the prefix cache empty.
    server = ManagedVllmServer(embedded_model_path, served_model_name="smollm2", env={"VLLM_SERVER_DEV_MODE": "1"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tokentop_cmd() -> list[str]:
    exe = VENV_BIN / "tokentop"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tui.cli"]


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    env = dict(os.environ)
    env["TOKENTOP_DATA_DIR"] = str(tmp_path / "data")
    env.pop("TOKENTOP_DB", None)
    return env


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC for the test (tables print local times): TZ set and tzset() on the way in and out."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
