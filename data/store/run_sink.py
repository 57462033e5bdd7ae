"""The orchestrator's storing sink: every run it drives is written to the store as it goes.

A run row when it starts (an interactive request's when it ends: the prompt box's answer is stored
once, whole), its requests, its GPU/server samples and the status and summary at the end. A stop
stores the run as aborted with every request that finished (and the stopped request with what it
streamed).

The requests of a run (a load level, a suite) are held in memory while it runs and written when it
ends, or when the oldest held has waited HOLD_MAX_S (a long run still reaches the file every minute).
Opening, writing and closing the database file mid-level stamped tokens late: on one CPU vLLM server,
prefix_repetition at concurrency 1, 6 levels of 16 requests each way, interleaved, 13 of 96 requests
had their first chunk stamped 60-532 ms after the server's own first token while the rows were written
during the level, none of 96 (at most 14 ms) while they were held (benchmarks/RESULTS.md, issue 21). A
crash loses the requests of the run in progress, at most HOLD_MAX_S of them; everything before it is
stored. Another process sees the run (listed as running) from its start and its requests at its end.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from data.store.database import Store
from data.store.recorder import RunRecorder
from data.store.telemetry_rows import add_gpu_samples, add_server_samples
from engine.orchestrator import RequestFinished, RunFinished, RunInfo, RunStarted
from engine.terminal_text import one_line

HOLD_MAX_S = 60.0  # a run's finished requests wait at most this long in memory before they are written


class RecorderSink:
    """The orchestrator's sink that stores every run (see the module docstring for when rows are written).
    Called with the orchestrator's events on whichever thread emits them; never raises (what could not
    be stored is kept in `errors`, one line each)."""

    def __init__(self, store: Store, describe: Callable[[], dict[str, Any]],
                 environment: Callable[[], dict[str, Any]]):
        self.store = store
        self.describe = describe
        self.environment = environment
        self._recorders: dict[str, RunRecorder] = {}
        self._origin_set: set[str] = set()
        self._held: dict[str, tuple[float, list[RequestFinished]]] = {}  # run_id -> (first held at, events)
        self._lock = threading.Lock()
        self.errors: list[str] = []  # what could not be stored (shown by whoever asks)

    def __call__(self, event: Any) -> None:
        try:
            if isinstance(event, RunStarted):
                if event.run.kind != "interactive":
                    self._recorder(event.run)
            elif isinstance(event, RequestFinished):
                if event.run_id not in self._recorders:
                    return  # an interactive request: stored with its run, at RunFinished
                now = time.monotonic()
                with self._lock:
                    since, held = self._held.setdefault(event.run_id, (now, []))
                    held.append(event)
                    due = now - since >= HOLD_MAX_S
                if due:
                    self._write_held(event.run_id)
            elif isinstance(event, RunFinished):
                self._write_held(event.run.run_id)
                self._finish(event)
        except Exception as exc:  # storing must not stop the measurement; say what failed
            self.errors.append(one_line(exc, 300, typed=True))

    def _write_held(self, run_id: str) -> None:
        """Hand the run's held requests to its recorder (which queues them for the store's writer)."""
        with self._lock:
            _, held = self._held.pop(run_id, (0.0, []))
        recorder = self._recorders.get(run_id)
        if recorder is None:
            return
        for event in held:
            if event.origin_ns is not None and run_id not in self._origin_set:
                recorder.set_origin(event.origin_ns)  # send offsets count from the level's start
                self._origin_set.add(run_id)
            recorder.record(event.index, event.record, event.metrics)

    def _recorder(self, run: RunInfo) -> RunRecorder:
        with self._lock:
            recorder = self._recorders.get(run.run_id)
            if recorder is not None:
                return recorder
            recorder = RunRecorder(self.store)
            desc = dict(self.describe())
            model_path = desc.get("model")  # the engine's own (a path), before the label replaces it
            label = desc.get("model_label")
            if label and label != "(served model)":
                desc["model"] = label
            env = dict(self.environment())
            env["model_path"] = model_path
            env["model_reason"] = desc.get("model_reason")
            recorder.start(kind=run.kind, engine_description=desc, environment=env, suite=run.suite_name,
                           suite_json=run.suite_json, reps=run.reps, label=label, run_id=run.run_id,
                           workload=run.workload)
            self._recorders[run.run_id] = recorder
            return recorder

    def _finish(self, event: RunFinished) -> None:
        run = event.run
        recorder = self._recorders.get(run.run_id)
        if recorder is None:
            recorder = self._recorder(run)
            outcome = event.outcome
            pairs = zip(getattr(outcome, "records", []), getattr(outcome, "metrics", []))
            for index, (record, metrics) in enumerate(pairs):
                recorder.record(index, record, metrics)
        if event.gpu_samples:
            add_gpu_samples(self.store, run.run_id, list(event.gpu_samples), event.samples_origin_s)
        if event.server_samples:
            add_server_samples(self.store, run.run_id, list(event.server_samples), event.samples_origin_s)
        recorder.finish(event.status, duration_s=event.duration_s, summary=event.summary, error=event.error)
        with self._lock:
            self._recorders.pop(run.run_id, None)
            self._origin_set.discard(run.run_id)
