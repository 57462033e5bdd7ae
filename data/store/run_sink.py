"""The orchestrator's storing sink: every run it drives is written to the store as it goes.

A run row when it starts (an interactive request's when it ends: the prompt box's answer is stored
once, whole), each request as it finishes, its GPU/server samples and the status and summary at the
end. A crash keeps everything stored before it; a stop stores the run as aborted with every request
that finished (and the stopped request with what it streamed).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from data.store.database import Store
from data.store.recorder import RunRecorder
from data.store.telemetry_rows import add_gpu_samples, add_server_samples
from engine.orchestrator import RequestFinished, RunFinished, RunInfo, RunStarted
from engine.terminal_text import one_line


class RecorderSink:
    def __init__(self, store: Store, describe: Callable[[], dict[str, Any]],
                 environment: Callable[[], dict[str, Any]]):
        self.store = store
        self.describe = describe
        self.environment = environment
        self._recorders: dict[str, RunRecorder] = {}
        self._origin_set: set[str] = set()
        self._lock = threading.Lock()
        self.errors: list[str] = []  # what could not be stored (shown by whoever asks)

    def __call__(self, event: Any) -> None:
        try:
            if isinstance(event, RunStarted):
                if event.run.kind != "interactive":
                    self._recorder(event.run)
            elif isinstance(event, RequestFinished):
                recorder = self._recorders.get(event.run_id)
                if recorder is None:
                    return  # an interactive request: stored with its run, at RunFinished
                if event.origin_ns is not None and event.run_id not in self._origin_set:
                    recorder.set_origin(event.origin_ns)  # send offsets count from the level's start
                    self._origin_set.add(event.run_id)
                recorder.record(event.index, event.record, event.metrics)
            elif isinstance(event, RunFinished):
                self._finish(event)
        except Exception as exc:  # storing must not stop the measurement; say what failed
            self.errors.append(one_line(exc, 300, typed=True))

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
