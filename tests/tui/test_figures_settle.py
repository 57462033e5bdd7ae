"""Figures that keep telling the truth once a run ends (issue 24): Suite's "tok/s now" falls to 0 like
Live's; the Load screen's live line drops "in flight" and the ETA after a stop; Live's TTFT gauge shows
the engine's own timestamps from the first token, so it never changes when the run is stored."""

from __future__ import annotations

import asyncio
import threading
import time

from engine.engines.base import Engine
from engine.engines.host import EngineHost
from engine.load import LiveLoad, LoadLevel
from engine.measure.metrics import request_metrics
from engine.orchestrator import (
    ChunkArrived,
    Job,
    JobFinished,
    JobStarted,
    Orchestrator,
    RequestFinished,
    RequestStarted,
    RunFinished,
    RunInfo,
    RunStarted,
    RunWatcher,
)
from engine.types import Chunk, GenerationRequest, RequestRecord
from tests.support.wait import wait_for
from tests.tui.test_keys import fixed, make_app  # noqa: F401  (fixed: the fixture)
from tui.widgets.gauges import GaugePanel

MS = 1_000_000


def screen_lines(app) -> list[str]:
    """The screen as a terminal shows it."""
    update = app.screen._compositor.render_update(full=True)
    return ["".join(segment.text for segment in strip) for strip in update.strips]


def row(app, label: str) -> str:
    """The text after `label` on the screen line that has it."""
    return next((line.split(label, 1)[1] for line in screen_lines(app) if label in line), "")


def streamed_record(request: GenerationRequest, st_ns: int, n: int, gap_ns: int) -> RequestRecord:
    record = RequestRecord(request=request, st_ns=st_ns, sent_wall=time.time())
    record.chunk_ns = [st_ns + 50 * MS + i * gap_ns for i in range(n)]
    record.chunk_tokens = [1] * n
    record.text = "w " * n
    record.reported_output_tokens = n
    record.finish_reason = "length"
    record.success = True
    return record


async def test_suite_tok_s_now_falls_to_zero_after_the_suite_is_stopped(fixed):
    """The suite stops mid-stream (its tokens were arriving at ~100 tok/s): within the 1 s window its
    "tok/s now" must read 0 (–), as Live's does, not stay at its last value."""
    app = make_app(fixed, "suite")
    async with app.run_test(size=(80, 24)) as pilot:
        suite = app.screen
        job, watcher = Job("suite"), RunWatcher()
        app.runs.watcher = watcher
        info = RunInfo("20261206-120000-abcdef", job.job_id, "suite", "seed", total=2)
        watcher(JobStarted(job))
        watcher(RunStarted(info))
        request = GenerationRequest("p", 64, case_id=suite.suite.cases[0].id)
        now = time.perf_counter_ns()
        st = now - 400 * MS  # streaming for 0.35 s, the last token just now
        watcher(RequestStarted(info.run_id, job.job_id, 0, 2, request, st))
        record = streamed_record(request, st, 36, 10 * MS)
        record.chunk_ns = [t - (record.chunk_ns[-1] - now) for t in record.chunk_ns]
        for t in record.chunk_ns:
            watcher(ChunkArrived(info.run_id, job.job_id, 0, Chunk(t, "w ", 1)))
        suite.ticker.resume()
        gauges = suite.query_one(GaugePanel)
        await wait_for(pilot, lambda: gauges.last.tps_now > 50, what="tok/s now while streaming", timeout=20.0)
        await pilot.pause()
        assert float(row(app, "tok/s now").split()[0]) > 50
        # stopped: the request is kept (aborted), the run stored as aborted
        record.aborted, record.success = True, False
        watcher(RequestFinished(info.run_id, job.job_id, 0, record, request_metrics(record)))
        finished = RunFinished(info, "aborted", 0.4, {})
        watcher(finished)
        watcher(JobFinished(job.job_id, "suite", "aborted", (finished,), stopped=True))
        await wait_for(pilot, lambda: suite._final_shown, what="the suite's end", timeout=20.0)
        await wait_for(pilot, lambda: gauges.last.tps_now == 0, 5, "tok/s now to fall to 0")
        await pilot.pause()
        assert row(app, "tok/s now").split()[:1] == ["–"], screen_lines(app)
        await wait_for(pilot, lambda: not suite.ticker._active.is_set(), 5, "the ticker to stop once nothing moves")


async def test_load_live_line_drops_in_flight_and_eta_after_a_stop(fixed, monkeypatch):
    from tui.screens.load import LoadScreen

    app = make_app(fixed, "live")
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(LoadScreen(None))
        await pilot.pause()
        load = app.screen
        job, watcher = Job("load"), RunWatcher()
        job.live = LiveLoad()
        job.live.reset("concurrency 1", 0)
        job.live.sent, job.live.in_flight, job.live.completed, job.live.output_tokens = 3, 1, 2, 200
        app.runs.watcher = watcher
        level = LoadLevel(max_concurrency=1, num_prompts=5)
        info = RunInfo("20261206-120000-lvl001", job.job_id, "load", "load", total=5, level_index=0, level=level)
        watcher(JobStarted(job))
        watcher(RunStarted(info))
        def live_line() -> str:
            return str(load.query_one("#load-live").visual)

        await wait_for(pilot, lambda: "in flight 1" in live_line() and "ETA" in live_line(), what="the running level's line", timeout=20.0)
        # a stop: the in-flight request is cut short (kept as stopped), the level stored as aborted
        job.live.in_flight, job.live.stopped = 1, 1  # the counters as the stop left them
        finished = RunFinished(info, "aborted", 1.0, {"overall": {}})
        watcher(finished)
        watcher(JobFinished(job.job_id, "load", "aborted", (finished,), stopped=True))
        await wait_for(pilot, lambda: load._final_shown, what="the load's end", timeout=20.0)
        await pilot.pause()
        text = live_line()
        assert "in flight 0" in text and "ETA" not in text, text
        assert "done 2" in text and "stopped 1" in text  # what finished stays readable


class GatedEngine(Engine):
    """One token, then waits for the test to look at the gauges, then the rest. Its loop is 60 ms late
    to take a request (a busy engine loop: what made the live TTFT differ from the stored one)."""

    name = "gated"

    def __init__(self):
        self.gate = threading.Event()

    async def start(self, progress) -> None:
        progress("ready")

    def live_counter(self):
        time.sleep(0.06)  # deliberate (the busy loop): between RequestStarted's timestamp and the hand-over
        return None

    async def _generate(self, request, record, on_chunk) -> None:
        await asyncio.sleep(0.02)  # deliberate: the engine's pace (its TTFT), the behaviour under test
        for i in range(request.max_tokens):
            t = time.perf_counter_ns()
            record.chunk_ns.append(t)
            record.chunk_tokens.append(1)
            record.text += "w "
            on_chunk(Chunk(t, "w ", 1))
            if i == 0:
                await asyncio.to_thread(self.gate.wait, 10)
            await asyncio.sleep(0.002)  # deliberate: the gap between its tokens
        record.reported_output_tokens = request.max_tokens
        record.finish_reason = "length"

    async def close(self) -> None:
        pass

    def describe(self):
        return {"engine": "gated", "model": "gated-model"}


class OrchestratorSession:
    """What the app needs from a session: a real orchestrator on a real engine host."""

    device = "CPU"
    gpu = None

    def __init__(self, store, host):
        self.store = store
        self.host = host
        self.orchestrator = Orchestrator(host)

    def describe(self):
        return {"engine": "gated", "model_label": "gated-model"}

    def shutdown(self):
        pass


async def test_live_ttft_is_the_engines_from_the_first_token_and_never_changes(fixed):
    engine = GatedEngine()
    host = EngineHost(engine)
    host.start().result(5)
    try:
        session = OrchestratorSession(fixed, host)
        app = make_app(fixed, "live", session=session)
        async with app.run_test(size=(80, 24)) as pilot:
            live = app.screen
            await pilot.press(*"hi", "enter")
            gauges = live.query_one(GaugePanel)
            await wait_for(pilot, lambda: gauges.last.tokens >= 1, what="the first token on the gauges", timeout=20.0)
            streaming = gauges.last.ttft_s
            engine.gate.set()
            view = app.runs.view("interactive")
            await wait_for(pilot, lambda: view.result is not None and gauges.last.done, what="the end", timeout=20.0)
            stored = view.metrics[0].ttft_s  # what the recorder stores (request_metrics of the record)
            assert streaming == gauges.last.ttft_s == stored, (streaming, gauges.last.ttft_s, stored)
            await pilot.pause()
            assert row(app, "TTFT").split()[:2] == [f"{stored * 1000:.0f}", "ms"], screen_lines(app)
    finally:
        host.shutdown()
