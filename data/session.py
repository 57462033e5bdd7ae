"""A measuring session: an engine on its thread, and runs recorded to the store as they go.

Used by `tokentop bench` and by the app, so both store runs the same way.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from data.recorder import RunRecorder
from data.store import Store
from data.telemetry import add_gpu_samples
from engine import environment
from engine.base import ChunkSink
from engine.factory import EngineChoice, make_engine
from engine.host import EngineHost
from engine.metrics import RequestMetrics, request_metrics
from engine.runner import StartSink, SuiteOutcome, SuiteRunner
from engine.suites import Suite
from engine.telemetry import GpuSampler, summarise_gpu
from engine.types import GenerationRequest, RequestRecord


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
        # NVML telemetry sampled during every run and stored with it (no GPU: `gpu.note` says why).
        self.gpu = GpuSampler()

    def fork(self, store: Store) -> "Session":
        """The same running engine, recording into another store (tests share one engine)."""
        other = Session(store, self.engine_options, self.log)
        other.choice, other.host, other.environment = self.choice, self.host, self.environment
        other.owns_host = False
        other.gpu = self.gpu
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

    # -- runs -------------------------------------------------------------------
    def new_recorder(self, kind: str, suite: Suite | None = None, reps: int | None = None, label: str | None = None) -> RunRecorder:
        recorder = RunRecorder(self.store)
        desc = self.describe()
        label = desc.get("model_label")
        if label and label != "(served model)":
            desc["model"] = label
        env = dict(self.environment)
        env["model_path"] = self.choice.engine.describe().get("model") if self.choice else None
        env["model_reason"] = desc.get("model_reason")
        recorder.start(
            kind=kind,
            engine_description=desc,
            environment=env,
            suite=suite.name if suite else kind,
            suite_json=suite.to_json() if suite else None,
            reps=reps,
            label=label,
        )
        return recorder

    def run_suite(
        self,
        suite: Suite,
        reps: int | None = None,
        *,
        on_start: StartSink | None = None,
        on_record: Callable[[int, RequestRecord, RequestMetrics], None] | None = None,
        on_chunk: ChunkSink | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[str, SuiteOutcome, SuiteRunner]:
        assert self.host is not None, "start_engine() first"
        reps = reps or suite.reps
        recorder = self.new_recorder("suite", suite, reps)

        def _record(index: int, record: RequestRecord, metrics: RequestMetrics) -> None:
            recorder.record(index, record, metrics)  # stored before anyone is told: a crash keeps it
            if on_record:
                on_record(index, record, metrics)

        runner = SuiteRunner(self.host, suite, reps, on_record=_record, on_start=on_start, on_chunk=on_chunk, stop=stop)
        t_begin = time.perf_counter()
        try:
            outcome = runner.run()
        except KeyboardInterrupt:
            recorder.finish("aborted", error="interrupted")
            raise
        except BaseException as exc:
            recorder.finish("failed", error=f"{type(exc).__name__}: {exc}"[:300])
            raise
        tokens = sum(m.output_tokens for m in outcome.metrics if m.success)
        self._attach_gpu(recorder.run_id, outcome.summary, t_begin, tokens)
        recorder.finish(outcome.status, duration_s=outcome.duration_s, summary=outcome.summary, error=outcome.error)
        return recorder.run_id or "", outcome, runner

    def _attach_gpu(self, run_id: str | None, summary: dict, t_begin: float, tokens: int) -> None:
        """Store the run's GPU samples and add energy/utilisation figures (J/token) to its summary."""
        if not self.gpu.available or not run_id:
            summary["gpu"] = {"note": self.gpu.note or "no GPU telemetry"}
            return
        self.gpu.sample_once()  # one sample at the end, so even a short run has its own reading
        samples = self.gpu.snapshot(since=t_begin, until=time.perf_counter())
        samples = environment.used_gpu_samples(samples, self.environment)
        add_gpu_samples(self.store, run_id, samples, t_begin)
        summary["gpu"] = summarise_gpu(samples, tokens)

    def generate_interactive(self, request: GenerationRequest, on_chunk: ChunkSink | None = None):
        """One request from the prompt box; every one is stored as an 'interactive' run."""
        assert self.host is not None
        return self.host.submit(request, on_chunk)

    def store_interactive(self, record: RequestRecord) -> str:
        metrics = request_metrics(record)
        recorder = self.new_recorder("interactive")
        recorder.record(0, record, metrics)
        status = "completed" if metrics.success else ("aborted" if record.aborted else "failed")
        from engine.runner import summarise

        summary = summarise([record.request], [metrics], [record])
        if record.st_ns:
            self._attach_gpu(recorder.run_id, summary, record.st_ns / 1e9, metrics.output_tokens if metrics.success else 0)
        recorder.finish(status, duration_s=metrics.e2el_s, summary=summary, error=record.error)
        return recorder.run_id or ""

    def shutdown(self) -> None:
        if self.owns_host:
            self.gpu.stop()
        if self.host is not None and self.owns_host:
            self.host.shutdown()
        self.host = None
