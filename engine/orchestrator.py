"""The run orchestrator: one service that starts, observes and stops every kind of run.

An interactive request, a suite and a load sweep are all *jobs*: each runs on its own driver thread,
against the session's one EngineHost and one GPU sampler, and is stopped the same way
(`Orchestrator.stop()`). A job produces one stored run (a load sweep: one per level). What happens
is told to subscribed sinks as typed events that carry the run and the request's identity:

    RunStarted → RequestStarted → ChunkArrived… → RequestFinished … → RunFinished   (per run)
    StopRequested (when someone stops the job)                 JobFinished           (per job)

`data/`'s recorder sink stores them, the app's watcher renders them; this module stores nothing and
knows no UI. Sinks run on the thread that emits: RunStarted/RequestFinished/RunFinished on the job's
driver thread (after the request's record is complete), chunks on the engine thread — so a chunk
sink must be cheap (an append under a lock), and only sinks that ask for chunks get them. A sink may
hand out a per-request chunk callable (`chunk_sink(run_id, job_id, index)`, bound when the request
starts) instead of receiving ChunkArrived events: the token path then costs one call.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Sequence, Union

from engine.engines.host import EngineHost, RequestHandle
from engine.load.driver import LevelOutcome, LiveLoad
from engine.load.patterns import LoadLevel
from engine.load.runner import LoadRunner, engine_tokens
from engine.measure.client_health import assess
from engine.measure.live import LiveMeter
from engine.measure.metrics import RequestMetrics, aggregate, json_safe, request_metrics
from engine.telemetry.environment import used_gpu_samples
from engine.telemetry.gpu import GpuSampler, summarise_gpu
from engine.telemetry.server import MetricsScraper
from engine.terminal_text import one_line
from engine.types import (
    BadRequestError,
    Chunk,
    EngineError,
    GenerationRequest,
    JobViewStatus,
    RequestRecord,
    RunStatus,
)
from engine.workloads.base import Workload, workload_key
from engine.workloads.suites import Suite

SCRAPE_INTERVAL_UNDER_LOAD_S = 5.0  # /metrics scrapes during load levels (see _run_load)

STOP_WAIT_S = 10.0  # how long stop() waits for a job to store what it has


def _planned_count(workload: Workload, num_prompts: int) -> int:
    """Requests a load level sends (follow-up turns included, dropped ones not): its progress total."""
    try:
        return int(workload.planned_count(num_prompts))
    except Exception:  # a workload that cannot say (never a failed level for it)
        return num_prompts


def _level_report(workload: Workload, num_prompts: int) -> dict[str, Any]:
    """The workload's word on one level (--num-prompts, the requests planned, its notes), stored with it."""
    report = getattr(workload, "level_report", None)
    return report(num_prompts) if report is not None else {}


def new_run_id() -> str:
    """Same shape as the store's ids (time-sortable), chosen here so every event can name its run."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


# -- events ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunInfo:
    """One run as it will be stored: what it is, and what it is made of."""

    run_id: str
    job_id: str
    kind: str  # interactive | suite | load
    suite_name: str
    suite_json: Any = None
    reps: int | None = None
    total: int = 0  # planned requests
    level_index: int | None = None  # load: which level of the sweep
    level: LoadLevel | None = None
    # What the run's requests were (engine.workloads.base.Workload.identity): stored with the run, so
    # runs on different workloads are never averaged together.
    workload: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunStarted:
    run: RunInfo


@dataclass(frozen=True)
class RequestStarted:
    run_id: str
    job_id: str
    index: int
    total: int
    request: GenerationRequest
    t_ns: int  # perf_counter_ns just before it was handed to the engine
    # text -> tokens for chunks whose count is provisional (the engine's tokenizer once loaded), so a
    # live meter counts them the way the stored record will; None when there is none.
    count: Callable[[str], int] | None = None
    # The record the engine fills in (Engine.generate's `record`): its `st_ns` is the engine's own
    # `st`, which the live meter takes from the first token on, so a live TTFT equals the stored one.
    record: RequestRecord | None = None


@dataclass(frozen=True)
class ChunkArrived:
    run_id: str
    job_id: str
    index: int
    chunk: Chunk


@dataclass(frozen=True)
class RequestFinished:
    run_id: str
    job_id: str
    index: int
    record: RequestRecord
    metrics: RequestMetrics
    origin_ns: int | None = None  # load: the level's start, which send offsets count from


@dataclass(frozen=True)
class RunFinished:
    run: RunInfo
    status: RunStatus
    duration_s: float
    summary: dict[str, Any]
    error: str | None = None
    samples_origin_s: float = 0.0  # perf_counter seconds the stored sample times count from
    gpu_samples: tuple = ()
    server_samples: tuple = ()
    outcome: Any = None  # SuiteOutcome | LevelOutcome, for callers that print tables


@dataclass(frozen=True)
class StopRequested:
    job_id: str
    kind: str
    run_id: str | None  # the run being stopped (stored as aborted)


@dataclass(frozen=True)
class JobFinished:
    job_id: str
    kind: str
    status: RunStatus  # the first level that did not complete decides a load's
    runs: tuple[RunFinished, ...]
    stop_reason: str = ""
    error: str | None = None
    stopped: bool = False  # someone stopped it (a key, a signal, Ctrl-C)
    server_note: str | None = None


@dataclass(frozen=True)
class JobStarted:
    job: "Job"

    @property
    def job_id(self) -> str:
        return self.job.job_id


# Every event an Orchestrator emits (its sinks dispatch on the class).
Event = Union[
    JobStarted, RunStarted, RequestStarted, ChunkArrived, RequestFinished, RunFinished, StopRequested, JobFinished
]
Sink = Callable[[Event], None]


@dataclass
class SuiteOutcome:
    status: RunStatus
    records: list[RequestRecord] = field(default_factory=list)
    metrics: list[RequestMetrics] = field(default_factory=list)
    duration_s: float = 0.0
    error: str | None = None
    summary: dict = field(default_factory=dict)


# -- the one summary function --------------------------------------------------------------------
def run_summary(
    requests: Sequence[GenerationRequest],
    metrics: Sequence[RequestMetrics],
    records: Sequence[RequestRecord],
    *,
    gpu_samples: Sequence[Any] | None = None,
    gpu_note: str | None = None,
    level_result: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What every stored run's summary holds: per-case aggregates (vLLM names) and the overall
    figures — for a load level its vLLM-named result — plus GPU energy (J/token) and, for load,
    the server's counters.

    A load level's result (with its J/output token when the GPU gave one) is built once and stored
    as three separate dicts, cases[label], overall and load: changing one leaves the others alone."""
    if level_result is not None:
        tokens = int(level_result.get("total_output_tokens") or 0)
    else:
        tokens = sum(m.output_tokens for m in metrics if m.success)
    gpu = summarise_gpu(list(gpu_samples), tokens) if gpu_samples else {"note": gpu_note or "no GPU telemetry"}
    if level_result is not None:
        result = dict(level_result)
        if gpu_samples and gpu.get("j_per_output_token") is not None:
            result["j_per_output_token"] = gpu["j_per_output_token"]
        summary: dict[str, Any] = {
            "cases": {result.get("label", "load"): dict(result)}, "overall": dict(result), "load": dict(result)
        }
    else:
        summary = case_summary(requests, metrics, records)
    summary["gpu"] = gpu
    if server is not None:
        summary["server"] = server
    return summary


def case_summary(requests, metrics, records) -> dict[str, Any]:
    """Per-case aggregates (vLLM names, ms) keyed by case id, plus the overall figures.

    requests, metrics and records are parallel sequences (one entry per finished request).
    Returns {"cases": {case_id: aggregate + target_tokens + requests}, "overall": aggregate}."""
    by_case: dict[str, list[int]] = {}
    for i, req in enumerate(list(requests)[: len(metrics)]):
        by_case.setdefault(req.case_id, []).append(i)
    cases = {}
    overall: dict[str, Any] | None = None
    for case_id, idx in by_case.items():
        agg = aggregate([metrics[i] for i in idx], span_s([records[i] for i in idx]))
        if len(by_case) == 1 and len(idx) == len(metrics) == len(records):
            # One case holding every request (an interactive run, a one-case suite): the overall figures
            # are the same computation over the same requests, done once (a 300,000-token stream's ITLs
            # took ~50 ms per aggregate at the end of the run).
            overall = dict(agg)
        agg["target_tokens"] = requests[idx[0]].max_tokens
        agg["requests"] = len(idx)
        cases[case_id] = agg
    if overall is None:
        overall = aggregate(list(metrics), span_s(records)) if metrics else {}
    return {"cases": cases, "overall": overall}


def case_aggregates(view: "JobView", case_id: str) -> dict[str, Any]:
    """One case's aggregates over the requests of a job view that have finished so far."""
    idx = sorted(i for i in view.records if view.records[i].request.case_id == case_id)
    if not idx:
        return {}
    requests = [view.records[i].request for i in idx]
    summary = case_summary(requests, [view.metrics[i] for i in idx], [view.records[i] for i in idx])
    agg = summary["cases"].get(case_id, {})
    if agg.get("completed"):
        agg["mean_output_tokens"] = agg.get("total_output_tokens", 0) / agg["completed"]
    return agg


def span_s(records: Sequence[RequestRecord]) -> float:
    """Benchmark duration as vLLM measures it: first send to last arrival."""
    starts = [r.st_ns for r in records if r.st_ns]
    ends = [r.chunk_ns[-1] for r in records if r.chunk_ns]
    if not starts or not ends:
        return 0.0
    return (max(ends) - min(starts)) / 1e9


# -- jobs -----------------------------------------------------------------------------------------
class Job:
    """A running interactive request, suite or load sweep. `stop()` ends it; what finished is kept."""

    _ids = itertools.count(1)

    def __init__(self, kind: str, stop_event: threading.Event | None = None):
        self.job_id = f"job-{next(self._ids)}"
        self.kind = kind
        self.stop_event = stop_event or threading.Event()
        self.done = threading.Event()
        self.result: JobFinished | None = None
        self.current_run_id: str | None = None
        self.run_ids: list[str] = []
        self.live = LiveLoad()  # load counters the UI polls
        self.interrupted = False  # stopped by someone (key, signal), not by finishing
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set() and self.running

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def __repr__(self) -> str:
        return f"Job({self.job_id}, {self.kind}, running={self.running})"


class BusyError(EngineError):
    """Another job holds the engine: one measured run at a time."""


class Orchestrator:
    """Starts, observes and stops every run on one EngineHost. Thread-safe."""

    def __init__(self, host: EngineHost, *, gpu: GpuSampler | None = None,
                 server_sampler_factory: Callable[[], tuple[Any, str | None]] | None = None,
                 environment: Callable[[], dict[str, Any]] | None = None):
        self.host = host
        self.gpu = gpu  # one sampler per session, shared by every run (assignable: tests swap it)
        # The session's environment: which GPUs the engine uses (idle neighbours add no energy).
        self.environment = environment or (lambda: {})
        self.server_sampler_factory = server_sampler_factory
        self._sinks: list[tuple[Sink, bool]] = []
        self._lock = threading.RLock()
        self._current: Job | None = None
        self._closed = False

    # -- sinks -----------------------------------------------------------------------------
    def subscribe(self, sink: Sink, *, chunks: bool = False) -> Callable[[], None]:
        """Add a sink; returns the function that removes it. Sinks are told in subscription order
        (subscribe the recorder first: a run is stored before anyone renders it)."""
        entry = (sink, chunks)
        with self._lock:
            self._sinks = [*self._sinks, entry]

        def unsubscribe() -> None:
            with self._lock:
                self._sinks = [e for e in self._sinks if e is not entry]

        return unsubscribe

    def emit(self, event: Event) -> None:
        chunk = isinstance(event, ChunkArrived)
        for sink, wants_chunks in self._sinks:  # a copy-on-write list: no lock on the token path
            if chunk and not wants_chunks:
                continue
            try:
                sink(event)
            except Exception:  # a sink's bug must not stop a measurement
                pass

    # -- state ------------------------------------------------------------------------------
    @property
    def current(self) -> Job | None:
        """The running job, if any."""
        job = self._current
        return job if job is not None and job.running else None

    # -- starting ---------------------------------------------------------------------------
    def start_interactive(self, request: GenerationRequest) -> Job:
        job = self._new_job("interactive")
        info = RunInfo(new_run_id(), job.job_id, "interactive", "interactive", total=1,
                       workload=named_workload("interactive", "interactive"))
        return self._launch(job, lambda: self._run_sequence(job, info, [request]))

    def start_suite(self, suite: Suite, reps: int | None = None, *, stop_event: threading.Event | None = None) -> Job:
        reps = reps or suite.reps
        job = self._new_job("suite", stop_event)

        def body() -> JobFinished:
            try:  # a dataset suite samples its file here, on the job's thread (with the engine's tokenizer)
                requests = suite.requests(reps, tokens=self._tokens() if suite.dataset is not None else None)
            except BadRequestError as exc:
                return JobFinished(job.job_id, job.kind, "failed", (), error=str(exc))
            info = RunInfo(new_run_id(), job.job_id, "suite", suite.name, suite.to_json(), reps, total=len(requests),
                           workload=suite.workload_identity())
            return self._run_sequence(job, info, requests)

        return self._launch(job, body)

    def _tokens(self):
        return engine_tokens(self.host.engine)

    def start_load(
        self,
        levels: Sequence[LoadLevel],
        prompts: Workload,
        *,
        settings: Callable[[int, LoadLevel], dict[str, Any]],
        slo_ms: dict[str, float] | None = None,
        auto_stop: bool = False,
        seed: int = 0,
        server_sampler: Any = None,
        stop_event: threading.Event | None = None,
        live: LiveLoad | None = None,
        num_warmups: int = 0,
        client_processes: int = 1,
    ) -> Job:
        """A load sweep: every level is its own stored run (kind "load"); `settings(i, level)` is
        the level's stored suite_json; `prompts` the workload its requests come from (prepared here,
        with the engine's tokenizer, before the first level). `client_processes` > 1 shares every level's
        requests among that many client processes (engine.load.pool; the openai engine only), started
        before the first level and stopped when the job ends."""
        job = self._new_job("load", stop_event)
        if live is not None:
            job.live = live
        return self._launch(job, lambda: self._run_load(job, list(levels), prompts, settings, dict(slo_ms or {}),
                                                       auto_stop, seed, server_sampler, num_warmups,
                                                       client_processes))

    def _new_job(self, kind: str, stop_event: threading.Event | None = None) -> Job:
        with self._lock:
            if self._closed or self.host.closed:
                raise EngineError("the engine has been shut down; no more runs can start")
            current = self.current
            if current is not None:
                raise BusyError(f"a {current.kind} run is still running: stop it first")
            job = Job(kind, stop_event)
            self._current = job
            return job

    def _launch(self, job: Job, body: Callable[[], JobFinished]) -> Job:
        def target() -> None:
            result: JobFinished | None = None
            try:
                result = body()
            except BaseException as exc:  # a bug must still end the job (and be told)
                result = JobFinished(job.job_id, job.kind, "failed", (), error=one_line(exc, 300, typed=True))
            finally:
                job.result = result
                if result is not None:
                    self.emit(result)
                job.done.set()

        self.emit(JobStarted(job))  # before any of its events: watchers know the job first
        job._thread = threading.Thread(target=target, name=f"tokentop-{job.kind}", daemon=True)
        job._thread.start()
        return job

    # -- stopping -------------------------------------------------------------------------------
    def stop(self, wait: float | None = STOP_WAIT_S) -> Job | None:
        """Stop the running job (in-flight requests are cancelled and kept as aborted) and wait up
        to `wait` seconds for it to be stored. Returns the job, or None when nothing ran."""
        job = self.current
        if job is None:
            return None
        if not job.stop_event.is_set():
            job.interrupted = True
            job.stop_event.set()
            self.emit(StopRequested(job.job_id, job.kind, job.current_run_id))
        if wait:
            job.wait(wait)
        return job

    def close(self, wait: float = STOP_WAIT_S) -> None:
        """Stop what runs and refuse new jobs (before the engine shuts down)."""
        with self._lock:
            self._closed = True
        self.stop(wait)

    # -- running a job to its end (the CLI's blocking helpers) ------------------------------
    def run_to_end(self, start: Callable[[], Job], handlers: dict[type, Callable[[Any], Any]] | None = None, *,
                   slice_s: float = 0.1) -> Job:
        """Run one job to its end on the calling thread: subscribe, `start()` the job (start_suite,
        start_load, ...: it returns the Job), hand each of that job's events to the handler of its type
        (`handlers[type(event)]`; events of other types and other jobs are ignored), wait until the job
        has ended and been told to every sink, unsubscribe. The job is known by its id: the first
        JobStarted after subscribing is its (one job at a time: a second is refused with BusyError).
        A ChunkArrived handler subscribes for chunks. Ctrl-C (KeyboardInterrupt) while waiting stops the
        job — what finished is stored — and the wait goes on until it is stored. Returns the job
        (`job.result`: its JobFinished); what `start()` raises (BusyError, EngineError) is raised, with
        the sink already removed."""
        handlers = dict(handlers or {})
        job_id: list[str] = []

        def sink(event: Event) -> None:
            if isinstance(event, JobStarted):
                if not job_id:  # one job at a time: the first one after subscribing is ours
                    job_id.append(event.job_id)
                return
            handler = handlers.get(type(event))
            if handler is None or not job_id:
                return
            if getattr(event, "job_id", getattr(getattr(event, "run", None), "job_id", None)) == job_id[0]:
                handler(event)

        unsubscribe = self.subscribe(sink, chunks=ChunkArrived in handlers)
        try:
            job = start()
            while True:
                try:
                    if job.wait(slice_s):
                        break
                except KeyboardInterrupt:
                    self.stop(wait=None)
        finally:
            unsubscribe()
        return job

    # -- drivers -------------------------------------------------------------------------------
    def _begin_run(self, job: Job, info: RunInfo) -> None:
        job.current_run_id = info.run_id
        job.run_ids.append(info.run_id)
        self.emit(RunStarted(info))

    def _gpu_window(self, since: float) -> tuple[tuple, str | None]:
        gpu = self.gpu
        if gpu is None or not gpu.available:
            return (), (gpu.note if gpu is not None else None) or "no GPU telemetry"
        gpu.sample_once()  # one sample at the end, so even a short run has its own reading
        samples = gpu.snapshot(since=since, until=time.perf_counter())
        return tuple(used_gpu_samples(samples, self.environment())), None

    def _client_health(self, records: Sequence[RequestRecord], since_s: float) -> dict[str, Any]:
        """The client's self-check over a run (engine.measure.client_health): the engine loop's lag while it
        ran, send lag and tokens per chunk. Store writes it to runs.client_health with the summary."""
        lag_probe = getattr(self.host, "loop_lag", None)
        lags = lag_probe.window(since_s, time.perf_counter()) if lag_probe is not None else []
        return assess(records, lags)

    def _run_sequence(self, job: Job, info: RunInfo, requests: list[GenerationRequest]) -> JobFinished:
        """Requests one after another (batch 1): a suite, or one interactive request."""
        self._begin_run(job, info)
        outcome = SuiteOutcome(status="completed")
        can_reset = True
        t_begin = time.perf_counter()
        try:
            for index, request in enumerate(requests):
                if job.stop_event.is_set():
                    outcome.status = "aborted"
                    break
                if info.kind == "suite" and can_reset:
                    # An honest repetition: never served from the last one's cache. An engine that cannot
                    # reset (a server outside vLLM's dev mode) is not asked again in this run.
                    can_reset = self._reset_prefix_cache()[0]
                record = RequestRecord(request=request)
                self.emit(RequestStarted(info.run_id, job.job_id, index, len(requests), request, time.perf_counter_ns(),
                                         self.host.engine.live_counter(), record))
                handle = self.host.submit(request, self._chunk_sink(info.run_id, job.job_id, index), record)
                record = self._wait(job, handle)
                metrics = request_metrics(record)
                outcome.records.append(record)
                outcome.metrics.append(metrics)
                self.emit(RequestFinished(info.run_id, job.job_id, index, record, metrics))
                if record.aborted or job.stop_event.is_set():
                    outcome.status = "aborted"
                    break
                if not record.success and not self.host.engine.healthy():
                    outcome.status = "failed"
                    outcome.error = f"the engine stopped: {record.error}"
                    break
        except BaseException as exc:
            outcome.status = "failed"
            outcome.error = one_line(exc, 300, typed=True)
        finally:
            outcome.duration_s = time.perf_counter() - t_begin
            if outcome.status == "completed" and not any(m.success for m in outcome.metrics):
                outcome.status = "failed"
                outcome.error = outcome.error or (outcome.records[0].error if outcome.records else "no request ran")
            metrics_for_summary = outcome.metrics
            if info.kind == "interactive":
                # One request is the whole run: a stopped one is summarised by what it streamed.
                metrics_for_summary = [replace(m, success=True) if m.ttft_s is not None else m for m in outcome.metrics]
                if outcome.metrics and outcome.metrics[0].e2el_s:
                    outcome.duration_s = outcome.metrics[0].e2el_s
            samples, note = self._gpu_window(t_begin)
            outcome.summary = json_safe(run_summary(requests, metrics_for_summary, outcome.records,
                                                    gpu_samples=samples, gpu_note=note))
            outcome.summary["client_health"] = json_safe(self._client_health(outcome.records, t_begin))
            if info.kind == "interactive" and outcome.status == "aborted":
                outcome.summary["partial"] = True
            finished = RunFinished(info, outcome.status, outcome.duration_s, outcome.summary, outcome.error,
                                   samples_origin_s=t_begin, gpu_samples=samples, outcome=outcome)
            self.emit(finished)
        return JobFinished(job.job_id, job.kind, outcome.status, (finished,), error=outcome.error,
                           stopped=job.interrupted)

    def _reset_prefix_cache(self) -> tuple[bool, str]:
        """The engine's prefix cache emptied (engine.engines.base.Engine.reset_prefix_cache), on its loop."""
        try:
            return self.host.call(self.host.engine.reset_prefix_cache()).result(timeout=10)
        except Exception as exc:
            return False, one_line(exc, 300, typed=True)

    def _chunk_sink(self, run_id: str, job_id: str, index: int) -> Callable[[Chunk], None] | None:
        """The one request's chunk callback, bound once (the token path pays a call, not a lookup).
        A sink with `chunk_sink(run_id, job_id, index)` gives its own per-request callable (the
        watcher: that request's LiveMeter.feed); others get ChunkArrived events."""
        targets: list[Callable[[Chunk], None]] = []
        for sink, wants_chunks in self._sinks:
            if not wants_chunks:
                continue
            factory = getattr(sink, "chunk_sink", None)
            if factory is not None:
                target = factory(run_id, job_id, index)
                if target is not None:
                    targets.append(target)
            else:
                targets.append(functools.partial(_chunk_event, sink, run_id, job_id, index))
        if not targets:
            return None
        if len(targets) == 1:
            return targets[0]

        def fan_out(chunk: Chunk) -> None:
            for target in targets:
                target(chunk)

        return fan_out

    @staticmethod
    def _wait(job: Job, handle: RequestHandle) -> RequestRecord:
        """The request's record; on stop the request is cancelled and its partial record kept."""
        while True:
            try:
                return handle.result(timeout=0.1)
            except TimeoutError:
                if job.stop_event.is_set():
                    break
            except Exception as exc:  # the host refused it or the engine raised
                return RequestRecord(request=handle.request, error=one_line(exc, 300, typed=True))
        handle.cancel()
        try:
            record = handle.result(timeout=5)
        except Exception:
            record = RequestRecord(request=handle.request, error="aborted")
        record.success = False
        record.aborted = True
        record.error = record.error or "aborted"
        return record

    def _run_load(self, job: Job, levels: list[LoadLevel], prompts: Workload,
                  settings: Callable[[int, LoadLevel], dict[str, Any]], slo_ms: dict[str, float],
                  auto_stop: bool, seed: int, server_sampler: Any, num_warmups: int = 0,
                  client_processes: int = 1) -> JobFinished:
        runner = LoadRunner(self.host, prompts, slo_ms=slo_ms, seed=seed, stop=job.stop_event, live=job.live,
                            num_warmups=num_warmups, client_processes=client_processes)
        try:
            runner.prepare(max((lv.num_prompts for lv in levels), default=None))
            runner.start_clients()  # before the first level: a process's start-up is in no level
        except (BadRequestError, EngineError) as exc:  # cannot run with this engine: one line, no level
            runner.close()
            return JobFinished(job.job_id, job.kind, "failed", (), error=str(exc), stopped=job.interrupted)
        identity = prompts.to_json()
        gpu = self.gpu
        own_server = server_sampler is None
        server, server_note = (server_sampler, None)
        if own_server and self.server_sampler_factory is not None:
            server, server_note = self.server_sampler_factory()
            if isinstance(server, MetricsScraper):
                # Scraping a server's /metrics costs the server itself (vLLM renders ~57 KB on the event
                # loop that streams every client's tokens: 17-30 ms here). Counters stay exact (a scrape
                # brackets each level); gauges are sampled sparsely, so measuring does not move what is measured.
                server.interval_s = SCRAPE_INTERVAL_UNDER_LOAD_S
            if server is not None:
                server.start()
        finished: list[RunFinished] = []

        def level_runner(index: int, level: LoadLevel) -> LevelOutcome:
            info = RunInfo(new_run_id(), job.job_id, "load", "load", settings(index, level), None,
                           total=_planned_count(prompts, level.num_prompts), level_index=index, level=level,
                           workload=identity)
            self._begin_run(job, info)
            origin: list[int] = []
            runner.on_record = lambda i, record, metrics: self.emit(
                RequestFinished(info.run_id, job.job_id, i, record, metrics, origin[0] if origin else None))
            t_begin = time.perf_counter()

            def ready() -> None:  # after the warm-ups and the cache reset: the baseline for the level's counters
                nonlocal t_begin
                _bracket(gpu, server)
                t_begin = time.perf_counter()

            try:
                outcome = runner.run_level(level, index, on_begin=origin.append, on_ready=ready)
            except BaseException as exc:
                outcome = LevelOutcome(level=level, status="failed", error=one_line(exc, 300, typed=True))
            _bracket(gpu, server)  # and one just after it
            t0 = outcome.start_ns / 1e9 if outcome.start_ns else t_begin
            t1 = outcome.end_s if outcome.start_ns else t0 + outcome.duration_s
            gpu_rows = (tuple(used_gpu_samples(gpu.snapshot(since=t_begin, until=time.perf_counter()),
                                               self.environment()))
                        if gpu is not None and gpu.available else ())
            server_rows = (tuple(server.snapshot(since=t_begin - 0.1, until=time.perf_counter()))
                           if server is not None else ())
            server_summary = None
            if server is not None:
                from engine.telemetry.server import summarise_server

                # The last sample before the level and the first after it bracket its counters.
                samples = server.snapshot()
                before = [s for s in samples if s.t_s <= t0]
                during = [s for s in samples if t0 < s.t_s <= t1]
                after = [s for s in samples if s.t_s > t1]
                window = before[-1:] + during + after[-1:]
                server_summary = summarise_server(window) if window else {"note": server.note}
            level_gpu = [s for s in gpu_rows if t0 <= getattr(s, "t_s", t0) <= t1] if gpu_rows else []
            summary = json_safe(run_summary(
                [], [], [], gpu_samples=level_gpu, level_result=outcome.result.to_dict() if outcome.result else {},
                gpu_note=(gpu.note if gpu is not None else None) or "no GPU telemetry", server=server_summary))
            summary["client_health"] = json_safe(outcome.client_health)
            hit_rate = (server_summary or {}).get("prefix_hit_rate")
            if hit_rate is None:
                hit_rate = outcome.result.request_prefix_hit_rate if outcome.result is not None else None
            # The KV connector's (offload) tier apart: a level it served must not read as cold (issue 21)
            external = (server_summary or {}).get("external_prefix_hit_rate")
            beside = {"prefix_cache_hit_rate": hit_rate}  # beside the level's throughput (not in cases)
            if external is not None:
                beside["prefix_cache_external_hit_rate"] = external
            for key in ("overall", "load"):
                if isinstance(summary.get(key), dict):
                    summary[key] = {**summary[key], **beside}
            summary["workload"] = json_safe({"label": identity.get("label"), "key": identity.get("key"),
                                             **prompts.report(), **_level_report(prompts, level.num_prompts)})
            done = RunFinished(info, outcome.status, outcome.duration_s, summary, outcome.error,
                               samples_origin_s=t0, gpu_samples=gpu_rows, server_samples=server_rows,
                               outcome=outcome)
            finished.append(done)
            self.emit(done)
            return outcome

        status: RunStatus = "completed"
        reason, error = "", None
        try:
            _, reason = runner.run_levels(levels, auto_stop=auto_stop, level_runner=level_runner)
        except BaseException as exc:
            status, error = "failed", one_line(exc, 300, typed=True)
        finally:
            runner.close()  # the client processes, if any: none outlives the job
            if server is not None and own_server:
                server.stop()
        if job.stop_event.is_set():
            at = finished[-1].run.level.label if finished and finished[-1].run.level is not None else None
            status, reason = "aborted", f"stopped by you{f' during {at}' if at else ''}; what finished is stored"
        elif finished and status == "completed":
            status = next((f.status for f in finished if f.status != "completed"), "completed")
        return JobFinished(job.job_id, job.kind, status, tuple(finished), stop_reason=reason, error=error,
                           stopped=job.interrupted,
                           server_note=server_note or (server.note if server is not None else None))


def named_workload(kind: str, label: str, **params: Any) -> dict[str, Any]:
    """The identity of a run whose requests are not a Workload's (an interactive prompt)."""
    ident: dict[str, Any] = {"kind": kind, "params": params, "label": label}
    ident["key"] = workload_key(ident)
    return ident


def _chunk_event(sink: Sink, run_id: str, job_id: str, index: int, chunk: Chunk) -> None:
    try:
        sink(ChunkArrived(run_id, job_id, index, chunk))
    except Exception:  # a sink's bug must not stop a measurement
        pass


def _bracket(gpu: GpuSampler | None, server: Any) -> None:
    if gpu is not None and gpu.available:
        gpu.sample_once()
    if server is not None:
        server.sample_once()


# -- a sink that keeps what a screen renders --------------------------------------------------------
@dataclass
class JobView:
    """What a screen needs to render a job, running or finished (updated from any thread)."""

    job: Job
    kind: str
    run_id: str | None = None
    total: int = 0
    requests: dict[int, GenerationRequest] = field(default_factory=dict)
    meters: dict[int, LiveMeter] = field(default_factory=dict)  # one per request: gauges never mix two
    current_index: int | None = None
    records: dict[int, RequestRecord] = field(default_factory=dict)
    metrics: dict[int, RequestMetrics] = field(default_factory=dict)
    # Each case's aggregates so far (what the Suite table shows), computed where events arrive,
    # never on the UI thread.
    case_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    levels: list[RunInfo] = field(default_factory=list)  # load: levels started
    runs: list[RunFinished] = field(default_factory=list)  # stored runs (a load: one per level)
    stopping: bool = False
    result: JobFinished | None = None

    @property
    def running(self) -> bool:
        return self.result is None

    @property
    def status(self) -> JobViewStatus:
        if self.result is not None:
            return self.result.status
        return "stopping" if self.stopping else "running"


class RunWatcher:
    """A sink that keeps, for each kind, the latest job's view: per-request LiveMeters (fed with
    the chunks of *that* request only), finished requests and runs. `on_event(event)` is called
    after each non-chunk event (e.g. to wake a UI thread)."""

    KEEP_METERS = 8

    def __init__(self, window_s: float = 1.0, bucket_s: float = 0.25,
                 on_event: Callable[[Event], None] | None = None):
        self.window_s, self.bucket_s = window_s, bucket_s
        self.on_event = on_event
        self.views: dict[str, JobView] = {}
        self._by_job: dict[str, JobView] = {}
        self._lock = threading.Lock()
        self.version = 0  # bumped on every non-chunk event: screens redraw when it moves

    def watch(self, job: Job) -> JobView:
        """The job's view (made on JobStarted)."""
        with self._lock:
            view = self._by_job.get(job.job_id)
            if view is None:
                view = JobView(job=job, kind=job.kind)
                self._by_job[job.job_id] = view
                self.views[job.kind] = view
            return view

    def view(self, kind: str) -> JobView | None:
        return self.views.get(kind)

    def chunk_sink(self, run_id: str, job_id: str, index: int) -> Callable[[Chunk], None] | None:
        """That request's own meter: its chunks can only ever reach its gauges."""
        view = self._by_job.get(job_id)
        meter = view.meters.get(index) if view is not None else None
        return meter.feed if meter is not None else None

    def __call__(self, event: Event) -> None:
        if isinstance(event, ChunkArrived):
            view = self._by_job.get(event.job_id)
            meter = view.meters.get(event.index) if view is not None else None
            if meter is not None:
                meter.feed(event.chunk)
            return
        if isinstance(event, JobStarted):
            self.watch(event.job)
        job_id = getattr(event, "job_id", None) or getattr(getattr(event, "run", None), "job_id", None)
        view = self._by_job.get(job_id)  # type: ignore[arg-type]  # None finds no view
        if view is None:
            return
        with self._lock:
            if isinstance(event, RunStarted):
                view.run_id = event.run.run_id
                view.total = event.run.total
                if event.run.kind == "load":
                    view.levels.append(event.run)
            elif isinstance(event, RequestStarted):
                meter = LiveMeter(window_s=self.window_s, bucket_s=self.bucket_s, count=event.count)
                meter.begin(st_ns=event.t_ns, record=event.record)
                view.meters[event.index] = meter
                view.requests[event.index] = event.request
                view.total = event.total
                view.current_index = event.index
                for old in [i for i in view.meters if i < event.index - self.KEEP_METERS]:
                    del view.meters[old]
            elif isinstance(event, RequestFinished):
                view.records[event.index] = event.record
                view.metrics[event.index] = event.metrics
                if view.kind == "suite":
                    case_id = event.record.request.case_id
                    view.case_summaries[case_id] = case_aggregates(view, case_id)
                meter = view.meters.get(event.index)
                if meter is not None:  # the record's final counts: the last gauges equal what is stored
                    meter.finish(record=event.record)
            elif isinstance(event, RunFinished):
                view.runs.append(event)
            elif isinstance(event, StopRequested):
                view.stopping = True
            elif isinstance(event, JobFinished):
                view.result = event
            self.version += 1
        if self.on_event is not None:
            self.on_event(event)
