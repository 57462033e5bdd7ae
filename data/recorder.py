"""Writing a run to the store as it progresses: a row when it starts, each request as it finishes,
the status and summary at the end. A crash keeps everything measured before it."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

from data.store import RequestRow, Store
from engine.metrics import RequestMetrics
from engine.types import RequestRecord


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def gpu_key_for(name: str | None, memory_mb: int | None = None) -> str | None:
    if not name:
        return None
    try:
        from pricing.gpus import canonical_gpu
    except ImportError:
        return None
    match = canonical_gpu(name, memory_mb / 1024 if memory_mb else None)
    return match.key


class RunRecorder:
    def __init__(self, store: Store):
        self.store = store
        self.run_id: str | None = None
        self._t0_ns: int | None = None
        self._lock = threading.Lock()
        self._count = 0

    def start(
        self,
        *,
        kind: str,
        engine_description: dict[str, Any],
        environment: dict[str, Any],
        suite: str | None = None,
        suite_json: Any = None,
        reps: int | None = None,
        label: str | None = None,
    ) -> str:
        for gpu in environment.get("gpus") or []:
            gpu.setdefault("key", gpu_key_for(gpu.get("name"), gpu.get("memory_mb")))
        self.run_id = self.store.start_run(
            kind=kind,
            engine=engine_description.get("engine", "?"),
            model=engine_description.get("model"),
            dtype=engine_description.get("dtype"),
            engine_args=engine_description.get("engine_args"),
            environment=environment,
            suite=suite,
            suite_json=suite_json,
            reps=reps,
            label=label,
        )
        return self.run_id

    def set_origin(self, t0_ns: int) -> None:
        """perf_counter_ns that send offsets count from (a load level's start); default: the
        first recorded request's send time."""
        with self._lock:
            self._t0_ns = t0_ns

    def record(self, index: int | None, record: RequestRecord, metrics: RequestMetrics) -> int:
        assert self.run_id, "start() first"
        with self._lock:
            if self._t0_ns is None:
                self._t0_ns = record.st_ns
            if index is None:
                index = self._count
            self._count = max(self._count, index + 1)
        req = record.request
        row = RequestRow(
            request_index=index,
            case_id=getattr(req, "case_id", None) or "request",
            rep=getattr(req, "rep", 0),
            sent_at=datetime.fromtimestamp(record.sent_wall or 0, tz=timezone.utc),
            send_offset_s=(record.st_ns - self._t0_ns) / 1e9 if self._t0_ns is not None else 0.0,
            prompt=getattr(req, "prompt", "") or "",
            input_tokens=record.input_tokens,
            output_tokens=metrics.output_tokens if metrics.success else record.output_tokens,
            target_tokens=getattr(req, "max_tokens", None),
            ttft_ms=_ms(metrics.ttft_s),
            e2el_ms=_ms(metrics.e2el_s),
            tpot_ms=_ms(metrics.tpot_s),
            tps=metrics.tps,
            success=metrics.success,
            finish_reason=record.finish_reason,
            error=record.error,
            output_text=record.text,
            chunk_t_ns=[t - record.st_ns for t in record.chunk_ns],
            chunk_tokens=list(record.chunk_tokens),
        )
        self.store.add_request(self.run_id, row)
        return index

    def finish(self, status: str, *, duration_s: float | None = None, summary: Any = None, error: str | None = None) -> None:
        if self.run_id:
            self.store.finish_run(self.run_id, status, duration_s=duration_s, summary=summary, error=error)
            # TOKENTOP_REMOTE: queue it for the remote (a background thread; never waits, never raises).
            from data.remote import run_finished

            run_finished(self.store, self.run_id)
