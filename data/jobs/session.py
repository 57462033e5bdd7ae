"""A measuring session: an engine on its thread, the run orchestrator on it, and every run it drives
recorded to the store as it goes (data/store/run_sink.py subscribes first, so a run is stored before
anyone renders it).

Used by `tokentop bench`/`load` and by the app, so all store runs the same way.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from data.store.database import Store
from data.store.run_sink import RecorderSink
from engine.engines.base import ChunkSink
from engine.engines.factory import EngineChoice, make_engine
from engine.engines.host import EngineHost
from engine.measure.metrics import RequestMetrics
from engine.orchestrator import (
    ChunkArrived,
    Job,
    Orchestrator,
    RequestFinished,
    RequestStarted,
    SuiteOutcome,
)
from engine.telemetry import environment
from engine.telemetry.gpu import GpuSampler
from engine.types import GenerationRequest, RequestRecord
from engine.workloads.suites import Suite

StartSink = Callable[[int, int, GenerationRequest], None]


class Session:
    def __init__(self, store: Store, engine_options: dict[str, Any], log: Callable[[str], None] = lambda _m: None):
        self.store = store
        self.engine_options = engine_options
        self.log = log
        self.choice: EngineChoice | None = None
        self.host: EngineHost | None = None
        self.environment: dict[str, Any] = {}
        self.where: dict[str, Any] = {}
        self.owns_host = True
        self.orchestrator: Orchestrator | None = None
        self.recorder_sink: RecorderSink | None = None
        # NVML telemetry sampled during every run and stored with it (no GPU: `gpu.note` says why).
        self._gpu = GpuSampler()

    @property
    def gpu(self) -> GpuSampler:
        return self._gpu

    @gpu.setter
    def gpu(self, sampler: GpuSampler) -> None:
        self._gpu = sampler
        if self.orchestrator is not None:
            self.orchestrator.gpu = sampler

    def fork(self, store: Store) -> "Session":
        """The same running engine, recording into another store (tests share one engine)."""
        other = Session(store, self.engine_options, self.log)
        other.choice, other.host, other.environment = self.choice, self.host, self.environment
        other.owns_host = False
        other._gpu = self._gpu
        other._attach()
        return other

    # -- engine -----------------------------------------------------------------
    def start_engine(self, progress: Callable[[str], None] | None = None, poll: float = 0.1) -> None:
        """Blocking. Raises engine.types.EngineError / BadRequestError with a one-line message."""
        progress = progress or self.log
        options = dict(self.engine_options)
        self.where = options.pop("where", None) or {}  # --provider / --price-per-hour: not the engine's
        self.choice = make_engine(**options, log=progress)
        progress(self.choice.reason)
        self.host = EngineHost(self.choice.engine)
        future = self.host.start(progress)
        while True:
            try:
                future.result(timeout=poll)
                break
            except TimeoutError:
                continue
        self.environment = environment.collect(
            self.describe(), where=self.where,
            tensor_parallel=options.get("tensor_parallel_size"),
            pipeline_parallel=options.get("pipeline_parallel_size"),
        )
        self.gpu.start()
        self._attach()

    def _attach(self) -> None:
        from engine.telemetry.server import sampler_for_engine

        assert self.host is not None
        host = self.host
        self.orchestrator = Orchestrator(host, gpu=self._gpu,
                                         server_sampler_factory=lambda: sampler_for_engine(host.engine),
                                         environment=lambda: self.environment)
        self.recorder_sink = RecorderSink(self.store, self.describe, lambda: self.environment)
        self.orchestrator.subscribe(self.recorder_sink)

    def describe(self) -> dict[str, Any]:
        if self.choice is None:
            return {}
        desc = dict(self.choice.engine.describe())
        desc["model_label"] = self.choice.model_label
        desc["model_reason"] = self.choice.reason
        return desc

    @property
    def device(self) -> str:
        return self.environment.get("device", "?")

    # -- runs (blocking helpers for the CLI and scripts; the app uses the orchestrator directly) --
    def run_suite(
        self,
        suite: Suite,
        reps: int | None = None,
        *,
        on_start: StartSink | None = None,
        on_record: Callable[[int, RequestRecord, RequestMetrics], None] | None = None,
        on_chunk: ChunkSink | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[str, SuiteOutcome, Job]:
        """Run a suite to its end (or until `stop` is set, or Ctrl-C): returns (run id, outcome,
        job); `job.interrupted` says it was stopped. Stored as it goes."""
        assert self.orchestrator is not None, "start_engine() first"
        handlers: dict[type, Callable[[Any], Any]] = {}
        if on_chunk:
            handlers[ChunkArrived] = lambda event: on_chunk(event.chunk)
        if on_start:
            handlers[RequestStarted] = lambda event: on_start(event.index, event.total, event.request)
        if on_record:
            handlers[RequestFinished] = lambda event: on_record(event.index, event.record, event.metrics)
        orchestrator = self.orchestrator
        job = orchestrator.run_to_end(lambda: orchestrator.start_suite(suite, reps, stop_event=stop), handlers)
        result = job.result
        run = result.runs[0] if result and result.runs else None
        outcome = run.outcome if run is not None else SuiteOutcome("failed", error=result.error if result else "no run")
        if stop is not None and stop.is_set():
            job.interrupted = True
        return (run.run.run_id if run else ""), outcome, job

    def start_interactive(self, request: GenerationRequest) -> Job:
        """One request from the prompt box; stored as an 'interactive' run when it ends."""
        assert self.orchestrator is not None, "start_engine() first"
        return self.orchestrator.start_interactive(request)

    def stop_runs(self, wait: float = 10.0) -> Job | None:
        """Stop whatever runs; it is stored as aborted with every request that finished."""
        if self.orchestrator is None:
            return None
        return self.orchestrator.stop(wait)

    def shutdown(self) -> None:
        """Stop and store what runs, then (if this session owns it) the engine."""
        if self.orchestrator is not None:
            if self.owns_host:
                self.orchestrator.close()
            else:
                self.orchestrator.stop()
        if self.owns_host:
            self.gpu.stop()
        if self.host is not None and self.owns_host:
            self.host.shutdown()
        self.host = None
