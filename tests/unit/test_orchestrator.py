"""The run orchestrator on a small scripted engine (no vLLM): events name their run and request,
a stop stores what finished, a stopped request keeps what it streamed, a shut-down host refuses work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from data.store.run_sink import RecorderSink
from engine.engines.base import Engine
from engine.engines.host import EngineClosedError, EngineHost
from engine.orchestrator import (
    BusyError,
    ChunkArrived,
    JobFinished,
    Orchestrator,
    RequestFinished,
    RequestStarted,
    RunFinished,
    RunStarted,
    RunWatcher,
    StopRequested,
)
from engine.types import Chunk, GenerationRequest
from engine.workloads.suites import parse_suite


class ScriptedEngine(Engine):
    """Streams `max_tokens` one-token chunks, `gap_s` apart, after `ttft_s`."""

    name = "scripted"

    def __init__(self, ttft_s: float = 0.01, gap_s: float = 0.005):
        self.ttft_s, self.gap_s = ttft_s, gap_s

    async def start(self, progress) -> None:
        progress("ready")

    async def _generate(self, request, record, on_chunk) -> None:
        await asyncio.sleep(self.ttft_s)  # deliberate: the scripted engine's pace is what the tests measure
        for i in range(request.max_tokens):
            t = time.perf_counter_ns()
            record.chunk_ns.append(t)
            record.chunk_tokens.append(1)
            record.text += f"w{i} "
            on_chunk(Chunk(t, f"w{i} ", 1))
            await asyncio.sleep(self.gap_s)  # deliberate, as above
        record.reported_output_tokens = request.max_tokens
        record.finish_reason = "length"

    async def close(self) -> None:
        self.closed = True

    def describe(self):
        return {"engine": "scripted", "model": "scripted-model"}


@pytest.fixture
def host():
    h = EngineHost(ScriptedEngine())
    h.start().result(5)
    yield h
    h.shutdown()


def suite_of(n: int, tokens: int):
    return parse_suite({"name": "t", "reps": n, "cases": [{"id": "a", "prompt": "p", "output_tokens": tokens}]})


def test_suite_events_carry_run_and_request_identity(host):
    orch = Orchestrator(host)
    events = []
    orch.subscribe(events.append, chunks=True)
    job = orch.start_suite(suite_of(3, 5))
    assert job.wait(30)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "JobStarted" and kinds[1] == "RunStarted" and kinds[-2:] == ["RunFinished", "JobFinished"]
    run_id = events[1].run.run_id
    per_request: dict[int, list] = {}
    current = None
    for e in events:
        if isinstance(e, RequestStarted):
            current = e.index
        if isinstance(e, (RequestStarted, ChunkArrived, RequestFinished)):
            assert e.run_id == run_id
            assert e.index == current  # a chunk always belongs to the request that was started last
            per_request.setdefault(e.index, []).append(e)
    assert sorted(per_request) == [0, 1, 2]
    for events_of_one in per_request.values():
        assert sum(isinstance(e, ChunkArrived) for e in events_of_one) == 5
    assert job.result.status == "completed"


def test_one_run_at_a_time(host):
    orch = Orchestrator(host)
    job = orch.start_suite(suite_of(20, 20))
    with pytest.raises(BusyError):
        orch.start_interactive(GenerationRequest("x", 4))
    orch.stop()
    assert job.result.status == "aborted"


def test_stop_stores_the_suite_as_aborted_with_finished_requests(host, store):
    orch = Orchestrator(host)
    sink = RecorderSink(store, host.engine.describe, lambda: {"hostname": "h", "device": "CPU"})
    orch.subscribe(sink)
    seen = []
    two_done = threading.Event()

    def watch(e):
        seen.append(e)
        if isinstance(e, RequestFinished) and e.index == 1:
            two_done.set()

    orch.subscribe(watch)
    job = orch.start_suite(suite_of(50, 30))
    assert two_done.wait(30)
    assert orch.stop(wait=10) is job and not job.running
    assert any(isinstance(e, StopRequested) for e in seen)
    assert job.result.status == "aborted" and job.result.stopped
    (run,) = store.list_runs()
    assert run["status"] == "aborted" and run["kind"] == "suite" and run["run_id"] == job.run_ids[0]
    rows = store.get_requests(run["run_id"])
    finished = [r for r in rows if r["success"]]
    assert len(finished) >= 2 and all(r["output_tokens"] == 30 for r in finished)
    assert len(rows) < 50 and not sink.errors


def test_stopped_interactive_request_keeps_ttft_tokens_and_tps(host, store):
    orch = Orchestrator(host)
    orch.subscribe(RecorderSink(store, host.engine.describe, lambda: {}))
    got = threading.Event()
    orch.subscribe(lambda e: got.set() if isinstance(e, ChunkArrived) and e.chunk.text.startswith("w3") else None,
                   chunks=True)
    job = orch.start_interactive(GenerationRequest("story", 10_000))
    assert got.wait(10)
    orch.stop(wait=10)
    (listed,) = store.list_runs()
    run = store.get_run(listed["run_id"])
    assert run["kind"] == "interactive" and run["status"] == "aborted"
    (req,) = store.get_requests(run["run_id"])
    assert not req["success"] and 4 <= req["output_tokens"] < 10_000
    assert req["ttft_ms"] > 0 and req["tps"] > 0 and req["tpot_ms"] > 0
    assert run["summary"]["partial"] and run["summary"]["overall"]["mean_ttft_ms"] == pytest.approx(req["ttft_ms"])
    assert job.result.status == "aborted"


def test_watcher_gives_every_request_its_own_meter(host):
    orch = Orchestrator(host)
    watcher = RunWatcher()
    orch.subscribe(watcher, chunks=True)
    job = orch.start_suite(suite_of(3, 6))
    assert job.wait(30)
    view = watcher.view("suite")
    assert view.result.status == "completed" and len(view.records) == 3
    for i in range(3):
        snap = view.meters[i].snapshot()
        m = view.metrics[i]
        assert snap.done and snap.tokens == 6
        assert snap.ttft_s == pytest.approx(m.ttft_s, rel=1e-9) and snap.elapsed_s == pytest.approx(m.e2el_s, rel=1e-9)


def test_host_refuses_work_after_shutdown():
    host = EngineHost(ScriptedEngine())
    host.start().result(5)
    host.shutdown()
    assert host.engine.closed  # the engine itself was closed (its processes, connections)
    handle = host.submit(GenerationRequest("late", 3))
    with pytest.raises(EngineClosedError):
        handle.result(timeout=1)  # resolved at once, never left hanging
    with pytest.raises(EngineClosedError):
        host.call(asyncio.sleep(0)).result(timeout=1)
    orch = Orchestrator(host)
    with pytest.raises(Exception, match="shut down"):
        orch.start_suite(suite_of(1, 1))


def test_load_levels_are_runs_and_stop_keeps_finished(host, store):
    from data.jobs.load import LoadSpec, start_load
    from engine.load import LoadLevel
    from tests.support.openai_client import stored_session
    from tests.support.prompts import PromptSource

    session = stored_session(host, store)
    spec = LoadSpec(levels=[LoadLevel(max_concurrency=1, num_prompts=3), LoadLevel(max_concurrency=2, num_prompts=400)],
                    prompts=PromptSource(input_len=4, output_len=10))
    events = []
    level_two_going = threading.Event()

    def watch(e):
        events.append(e)
        finished_in_two = [x for x in events if isinstance(x, RequestFinished) and x.record.success
                           and x.run_id == (events_run_ids() or [None, None])[-1] and len(events_run_ids()) == 2]
        if len(finished_in_two) >= 2:
            level_two_going.set()

    def events_run_ids():
        return [x.run.run_id for x in events if isinstance(x, RunStarted)]

    session.orchestrator.subscribe(watch)
    start_load(session, spec)
    assert level_two_going.wait(120)
    session.orchestrator.stop(wait=30)
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert [f.status for f in finished] == ["completed", "aborted"]
    assert isinstance(events[-1], JobFinished) and events[-1].status == "aborted"
    runs = {r["run_id"]: r for r in store.list_runs()}
    assert runs[finished[0].run.run_id]["status"] == "completed"
    assert runs[finished[1].run.run_id]["status"] == "aborted"
    assert len([r for r in store.get_requests(finished[1].run.run_id) if r["success"]]) >= 2
    assert [type(e) for e in events if isinstance(e, RunStarted)] == [RunStarted, RunStarted]
