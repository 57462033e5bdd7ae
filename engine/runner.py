"""Running a suite at batch 1: one request at a time, as the article did.

The runner is synchronous and meant for a worker thread (the app) or the main thread (the CLI):
it waits on the engine thread's futures in short slices so Ctrl-C and stop requests are seen
within a fraction of a second.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

from engine.base import ChunkSink
from engine.host import EngineHost
from engine.metrics import RequestMetrics, aggregate, request_metrics
from engine.suites import Suite
from engine.types import GenerationRequest, RequestRecord

RecordSink = Callable[[int, RequestRecord, RequestMetrics], None]
StartSink = Callable[[int, int, GenerationRequest], None]


@dataclass
class SuiteOutcome:
    status: str  # completed | failed | aborted
    records: list[RequestRecord] = field(default_factory=list)
    metrics: list[RequestMetrics] = field(default_factory=list)
    duration_s: float = 0.0
    error: str | None = None
    summary: dict = field(default_factory=dict)


def summarise(requests: list[GenerationRequest], metrics: list[RequestMetrics], records: list[RequestRecord]) -> dict:
    """Per-case aggregates (vLLM names) plus the overall figures."""
    by_case: dict[str, list[int]] = defaultdict(list)
    for i, req in enumerate(requests[: len(metrics)]):
        by_case[req.case_id].append(i)
    cases = {case_id: _case_aggregate(requests, metrics, records, idx) for case_id, idx in by_case.items()}
    overall = aggregate(metrics, _span_s(records)) if metrics else {}
    return {"cases": cases, "overall": overall}


def case_summary(requests: list[GenerationRequest], metrics: list[RequestMetrics], records: list[RequestRecord],
                 case_id: str) -> dict:
    """One case's aggregates so far (what the Suite table shows after each request); computed where the
    requests run, never on the UI thread."""
    idx = [i for i, req in enumerate(requests[: len(metrics)]) if req.case_id == case_id]
    return _case_aggregate(requests, metrics, records, idx) if idx else {}


def _case_aggregate(requests, metrics, records, idx: list[int]) -> dict:
    agg = aggregate([metrics[i] for i in idx], _span_s([records[i] for i in idx]))
    agg["target_tokens"] = requests[idx[0]].max_tokens
    agg["requests"] = len(idx)
    if agg.get("completed"):
        agg["mean_output_tokens"] = agg.get("total_output_tokens", 0) / agg["completed"]
    return agg


def _span_s(records: list[RequestRecord]) -> float:
    """Benchmark duration as vLLM measures it: first send to last arrival."""
    starts = [r.st_ns for r in records if r.st_ns]
    ends = [r.chunk_ns[-1] for r in records if r.chunk_ns]
    if not starts or not ends:
        return 0.0
    return (max(ends) - min(starts)) / 1e9


class SuiteRunner:
    def __init__(
        self,
        host: EngineHost,
        suite: Suite,
        reps: int | None = None,
        *,
        on_record: RecordSink | None = None,
        on_start: StartSink | None = None,
        on_chunk: ChunkSink | None = None,
        stop: threading.Event | None = None,
    ):
        self.host = host
        self.suite = suite
        self.requests = suite.requests(reps)
        self.on_record = on_record or (lambda *_: None)
        self.on_start = on_start or (lambda *_: None)
        self.on_chunk = on_chunk
        self.stop_event = stop or threading.Event()
        self.interrupted = False

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> SuiteOutcome:
        outcome = SuiteOutcome(status="completed")
        t0 = time.perf_counter()
        try:
            for index, request in enumerate(self.requests):
                if self.stop_event.is_set():
                    outcome.status = "aborted"
                    break
                self.on_start(index, len(self.requests), request)
                handle = self.host.submit(request, self.on_chunk)
                record = self._wait(handle)
                if record is None:  # stopped mid-request: keep the partial record as aborted
                    handle.cancel()
                    record = _partial(handle)
                    outcome.status = "aborted"
                m = request_metrics(record)
                outcome.records.append(record)
                outcome.metrics.append(m)
                self.on_record(index, record, m)
                if outcome.status == "aborted" or self.stop_event.is_set():
                    outcome.status = "aborted"
                    break
                if not record.success and not self.host.engine.healthy():
                    outcome.status = "failed"
                    outcome.error = f"the engine stopped: {record.error}"
                    break
        finally:
            outcome.duration_s = time.perf_counter() - t0
            done = [m for m in outcome.metrics if m.success]
            if outcome.status == "completed" and not done:
                outcome.status = "failed"
                outcome.error = outcome.error or (outcome.records[0].error if outcome.records else "no request ran")
            outcome.summary = summarise(self.requests, outcome.metrics, outcome.records)
        return outcome

    def _wait(self, handle) -> RequestRecord | None:
        while True:
            try:
                return handle.result(timeout=0.1)
            except TimeoutError:
                if self.stop_event.is_set():
                    return None
            except KeyboardInterrupt:
                # Ctrl-C is a stop: the caller still gets (and stores) everything measured so far.
                self.interrupted = True
                self.stop_event.set()
                return None


def _partial(handle) -> RequestRecord:
    try:
        record = handle.result(timeout=5)
    except Exception:
        record = RequestRecord(request=handle.request, error="aborted", aborted=True)
    record.success = False
    record.aborted = True
    record.error = record.error or "aborted"
    return record
