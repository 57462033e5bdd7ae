"""The real OpenAI-compatible client (engine.engines.openai_engine.OpenAIEngine) on its EngineHost against
a loopback server (tests/support/fake_openai.py's ScriptServer or ReplayServer: anything with a `url`),
and load levels started through data.jobs.load.start_load and stored as the app stores them: the set-up
the stream, field and server-timing tests shared (issue 22: written once here instead of three copies)."""

from __future__ import annotations

from types import SimpleNamespace

from data.store.database import Store
from data.store.run_sink import RecorderSink
from engine.engines.host import EngineHost
from engine.engines.openai_engine import OpenAIEngine
from engine.orchestrator import Orchestrator, RunFinished
from engine.types import GenerationRequest, RequestRecord


def openai_host(server, **engine_kwargs) -> EngineHost:
    """An EngineHost running OpenAIEngine(server.url, **engine_kwargs), started (waits up to 10 s for it);
    the caller shuts it down."""
    host = EngineHost(OpenAIEngine(server.url, **engine_kwargs))
    host.start().result(10)
    return host


def send_request(server, request: GenerationRequest, **engine_kwargs) -> RequestRecord:
    """Send `request` through a fresh openai_host(server) and return its finished record (waits up to
    30 s); the host is shut down after."""
    host = openai_host(server, **engine_kwargs)
    try:
        return host.submit(request).result(30)
    finally:
        host.shutdown()


def stored_orchestrator(host: EngineHost, store: Store) -> Orchestrator:
    """An Orchestrator on `host` whose runs a RecorderSink writes to `store`, as the app subscribes it."""
    orchestrator = Orchestrator(host)
    orchestrator.subscribe(RecorderSink(store, host.engine.describe, lambda: {}))
    return orchestrator


def stored_session(host: EngineHost, store: Store) -> SimpleNamespace:
    """What data.jobs.load.start_load needs from a data.jobs.session.Session: its `orchestrator`, a
    stored_orchestrator(host, store)."""
    return SimpleNamespace(orchestrator=stored_orchestrator(host, store))


def load_levels(server, store: Store, spec, **engine_kwargs) -> list[RunFinished]:
    """Run a data.jobs.load.LoadSpec through a stored_session on a fresh openai_host(server) and return
    each level's RunFinished event, in order; asserts the job ends within 60 s. The host is shut down
    after."""
    from data.jobs.load import start_load

    host = openai_host(server, **engine_kwargs)
    try:
        session = stored_session(host, store)
        finished: list[RunFinished] = []
        session.orchestrator.subscribe(lambda e: finished.append(e) if isinstance(e, RunFinished) else None)
        assert start_load(session, spec).wait(60)
        return finished
    finally:
        host.shutdown()
