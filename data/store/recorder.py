"""Writing a run to the store as it progresses: a row when it starts, each request as it finishes,
the status and summary at the end. A crash keeps everything already flushed.

A measurement never waits on the database: start(), record() and the end of a run hand their rows to
the store's background writer (one thread per Store, see StoreWriter), which writes whatever has
queued up in one short transaction. While another process holds the database, rows stay buffered and
are written when it frees the file; finish() waits (at most LOCK_WAIT_S) for the run's rows and says
what could not be written yet.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import duckdb

from data.store.database import (
    LOCK_WAIT_S,
    DatabaseLocked,
    RequestRow,
    Store,
    StoreError,
    insert_requests,
    insert_run,
    run_row_params,
    update_finished_run,
)
from engine.measure.metrics import RequestMetrics
from engine.terminal_text import one_line
from engine.types import RequestRecord

# One try of the background writer waits this long for another process's lock, then the writer
# pauses (RETRY_PAUSE_S) and tries again, for as long as the process lives.
WRITE_ATTEMPT_S = 0.5
RETRY_PAUSE_S = 0.05
# After each batch the writer stays away from the file at least as long as it held it (within these
# bounds), so a busy load run never keeps other processes (`tokentop runs`, another app) locked out;
# rows arriving meanwhile just make the next batch bigger.
MIN_GAP_S = 0.02
MAX_GAP_S = 0.25
# A write waits this long for others to join its batch (a flush, or the run's end, writes at once).
# Each transaction opens the file (~16 ms of CPU here): at concurrency 1 a write per request landed on
# the next request's prefill, on the CPU the server shares, and read TTFT ~3-5 % above `vllm bench
# serve`'s (benchmarks/RESULTS.md, fidelity). Batched, the cost falls on no request in particular.
COALESCE_S = 1.0
START_WRITE_WAIT_S = 1.0


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


def fidelity_fields(record: RequestRecord, metrics: RequestMetrics) -> dict[str, Any]:
    """The reasoning split and the client's own lateness, as RequestRow fields. TTFO equals TTFT
    when the response carried no reasoning (schema 004). Schema 006: how the tokens were counted,
    TTFC, asked/got, failure kind, schedule-to-finish."""
    ttfo = metrics.ttfo_s if metrics.reasoning_tokens is not None else metrics.ttft_s
    return dict(
        ttfo_ms=_ms(ttfo),
        reasoning_tokens=record.reasoning_tokens,
        answer_tokens=record.answer_tokens,
        chunk_reasoning_tokens=(list(record.chunk_reasoning_tokens)
                                if record.chunk_reasoning_tokens is not None else None),
        send_lag_ms=_send_lag_ms(record),
        queue_wait_ms=record.queue_wait_ns / 1e6 if record.queue_wait_ns is not None else None,
        # schema 006
        token_count_source=record.token_count_source,
        ttfc_ms=_ms(metrics.ttfc_s),
        first_chunk_empty=metrics.first_chunk_empty if record.chunk_ns else None,
        asked_tokens=metrics.asked_tokens,
        stopped_early=metrics.stopped_early if metrics.success else None,
        error_kind=None if metrics.success else (record.error_kind or metrics.error_kind),
        http_status=None if metrics.success else record.http_status,
        schedule_to_finish_ms=_ms(metrics.schedule_to_finish_s),
    )


def workload_fields(record: RequestRecord) -> dict[str, Any]:
    """A request's place in its workload (schema 007) as RequestRow fields."""
    req = record.request
    return dict(
        conversation_id=getattr(req, "conversation_id", None),
        turn_index=getattr(req, "turn", None),
        target_input_tokens=getattr(req, "input_len", None),
        cached_tokens=record.cached_tokens,
        prompt_form=record.prompt_form,
    )


def server_timing_fields(record: RequestRecord) -> dict[str, Any]:
    """The server's own timing of the request (schema 011; engine.measure.server_timing.ServerTiming) as
    RequestRow fields, all None when the server sent none."""
    t = record.server_timing
    if t is None:
        return {}
    return dict(
        server_ttft_ms=t.time_to_first_token_ms,
        server_queue_time_ms=t.queue_time_ms,
        server_generation_time_ms=t.generation_time_ms,
        server_mean_itl_ms=t.mean_itl_ms,
        server_tokens_per_second=t.tokens_per_second,
        server_timing_source=t.source,
        spec_acceptance_rate=t.draft_acceptance_rate,
        spec_acceptance_length=t.mean_acceptance_length,
        spec_accepted_tokens=t.num_accepted_draft_tokens,
        spec_draft_tokens=t.num_draft_tokens,
        spec_steps=t.num_spec_steps,
    )


def _send_lag_ms(record: RequestRecord) -> float | None:
    """Actual send (st) - scheduled send, less the intended wait on the concurrency limit."""
    if record.scheduled_ns is None or not record.st_ns:
        return None
    return max(0, record.st_ns - record.scheduled_ns - (record.queue_wait_ns or 0)) / 1e6
@dataclass
class _Write:
    seq: int
    run_id: str
    what: str  # "run", "request", "finish": for messages
    apply: Callable[[duckdb.DuckDBPyConnection], None] | None
    request: RequestRow | None = None  # requests are written together, in one statement per batch
    submitted: float = 0.0  # time.monotonic() when queued


class StoreWriter:
    """The background writer of one Store: a queue of writes, flushed in order, a batch per transaction."""

    def __init__(self, store: Store):
        self.store = store
        self._cond = threading.Condition()
        self._pending: deque[_Write] = deque()
        self._seq = 0
        self._done_seq = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None  # why the last try failed (another process holds the lock)
        self.failures: dict[str, list[str]] = {}  # run_id -> writes the database refused (not lock waits)
        self.written = 0
        self.batches = 0
        self._flushing = 0  # callers waiting in flush(): the batch goes now

    def submit(self, run_id: str, what: str, apply: Callable[[duckdb.DuckDBPyConnection], None] | None,
               request: RequestRow | None = None) -> int:
        with self._cond:
            if self._closed:
                raise StoreError(f"the store {self.store.path} is closed: run {run_id} cannot be written")
            self._seq += 1
            was_idle = not self._pending
            self._pending.append(_Write(self._seq, run_id, what, apply, request, time.monotonic()))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tokentop-store-writer", daemon=True)
                self._thread.start()
            if was_idle:  # the writer sleeps until there is work; later writes join the batch it gathers
                self._cond.notify_all()  # (a wake-up per request would take the GIL from the engine loop)
            return self._seq

    def flush(self, timeout: float = LOCK_WAIT_S) -> int:
        """Wait until everything submitted so far is written (or refused), at most `timeout` seconds.
        Returns how many writes are still waiting."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._seq
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._done_seq < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
            return sum(1 for w in self._pending if w.seq <= target)

    def pending(self, run_id: str | None = None) -> list[_Write]:
        with self._cond:
            return [w for w in self._pending if run_id is None or w.run_id == run_id]

    def close(self, timeout: float = LOCK_WAIT_S) -> int:
        """Flush (bounded) and stop the thread. Returns how many writes were left unwritten."""
        left = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return left

    def join(self, timeout: float) -> bool:
        """After close(): wait up to `timeout` seconds for the thread to end (it ends after its current
        try, a locked database included). True when no thread is left."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    # -- the thread ----------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._pending:  # let the writes of the next moment join this batch
                    due = self._pending[0].submitted + COALESCE_S
                    while not self._closed and not self._flushing and (left := due - time.monotonic()) > 0:
                        self._cond.wait(left)
                if self._closed and (not self._pending or self._done_seq >= self._seq):
                    return
                if self._closed and self.last_error:
                    return  # closed while the database is still locked: give up what is left
                batch = list(self._pending)
            began = time.monotonic()
            try:
                with self.store.transaction(wait_s=WRITE_ATTEMPT_S) as con:
                    began = time.monotonic()  # the lock is ours from here
                    _apply(con, batch)
            except DatabaseLocked as exc:
                self._tried(str(exc))
                time.sleep(RETRY_PAUSE_S)
                continue
            except Exception:
                self._one_by_one(batch)  # one bad write must not keep the others out
                continue
            self._written(batch)
            self._give_way(min(max(time.monotonic() - began, MIN_GAP_S), MAX_GAP_S))

    def _give_way(self, seconds: float) -> None:
        with self._cond:
            if not self._closed:
                self._cond.wait_for(lambda: self._closed, timeout=seconds)

    def _one_by_one(self, batch: list[_Write]) -> None:
        for write in batch:
            try:
                with self.store.transaction(wait_s=WRITE_ATTEMPT_S) as con:
                    _apply(con, [write])
            except DatabaseLocked as exc:
                self._tried(str(exc))
                time.sleep(RETRY_PAUSE_S)
                return
            except Exception as exc:  # refused by the database: reported by finish()
                reason = f"{write.what}: {one_line(exc, typed=True)}"
                with self._cond:
                    self.failures.setdefault(write.run_id, []).append(reason)
                self._written([write], ok=False)
                continue
            self._written([write])

    def _tried(self, error: str) -> None:
        with self._cond:
            self.last_error = error
            self._cond.notify_all()

    def _written(self, batch: list[_Write], ok: bool = True) -> None:
        with self._cond:
            for _ in batch:
                self._pending.popleft()
            self._done_seq = batch[-1].seq
            if ok:
                self.written += len(batch)
                self.batches += 1
                self.last_error = None
            self._cond.notify_all()


def _apply(con: duckdb.DuckDBPyConnection, batch: list[_Write]) -> None:
    """The writes in order; each run of consecutive requests goes in as one insert."""
    requests: list[tuple[str, RequestRow]] = []
    for write in batch:
        if write.request is not None:
            requests.append((write.run_id, write.request))
            continue
        insert_requests(con, requests)
        requests = []
        write.apply(con)
    insert_requests(con, requests)


_writers: "weakref.WeakSet[StoreWriter]" = weakref.WeakSet()
_writers_lock = threading.Lock()


def writer_for(store: Store) -> StoreWriter:
    """The Store's background writer (created on first use; Store.close() flushes it)."""
    with _writers_lock:
        writer = getattr(store, "_writer", None)
        if writer is None or writer._closed:  # a Store used again after close() gets a new writer
            writer = store._writer = StoreWriter(store)
            store._on_close.append(writer.close)
            _writers.add(writer)
        return writer


@atexit.register
def _flush_at_exit() -> None:
    # A process that ends without finish()/close() still writes what it buffered (bounded wait), and
    # each writer's thread is out of DuckDB before the interpreter tears down: a daemon thread inside a
    # DuckDB call then is ended mid-C++ and aborts the whole process.
    writers = list(_writers)
    for writer in writers:
        writer.close()
    for writer in writers:
        writer.join(WRITE_ATTEMPT_S + RETRY_PAUSE_S + 1.0)


class RunRecorder:
    def __init__(self, store: Store):
        self.store = store
        self.writer = writer_for(store)
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
        run_id: str | None = None,
        workload: dict[str, Any] | None = None,
    ) -> str:
        for gpu in (environment.get("gpus") or []) + (environment.get("gpus_used") or []):
            gpu.setdefault("key", gpu_key_for(gpu.get("name"), gpu.get("memory_mb")))
        run_id, params = run_row_params(
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
            run_id=run_id,
            workload=workload,
        )
        self.run_id = run_id
        self.writer.submit(run_id, "run", lambda con: insert_run(con, params))
        # Written now, before the run's first request is sent (so the write lands on no request's
        # prefill), and listed as running everywhere from its start. Bounded: a file another process
        # holds delays the start by at most START_WRITE_WAIT_S, then the row follows when it frees.
        self.writer.flush(START_WRITE_WAIT_S)
        return run_id

    def set_origin(self, t0_ns: int) -> None:
        """perf_counter_ns that send offsets count from (a load level's start); default: the
        first recorded request's send time."""
        with self._lock:
            self._t0_ns = t0_ns

    def record(self, index: int | None, record: RequestRecord, metrics: RequestMetrics) -> int:
        """Queue the finished request for the background writer; returns at once."""
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
            **fidelity_fields(record, metrics),
            **workload_fields(record),
            **server_timing_fields(record),
        )
        run_id = self.run_id
        self.writer.submit(run_id, "request", None, row)
        return index

    def flush(self, timeout: float = LOCK_WAIT_S) -> None:
        """Wait (at most `timeout`) until this run's rows are in the database; StoreError says what is not."""
        self.writer.flush(timeout)
        if self.run_id:
            self._report(self.run_id, timeout)

    def finish(self, status: str, *, duration_s: float | None = None, summary: Any = None,
               error: str | None = None) -> None:
        """Queue the run's end (status, duration, summary) and wait, at most LOCK_WAIT_S, until everything of
        the run is written. Rows not written by then stay buffered (written when the database frees up) and a
        StoreError says how many and who holds the database."""
        if not self.run_id:
            return
        run_id = self.run_id
        self.writer.submit(
            run_id, "finish",
            lambda con: update_finished_run(con, run_id, status, duration_s=duration_s, summary=summary, error=error),
        )
        self.flush()
        # TOKENTOP_REMOTE: queue the stored run for the remote (a background thread; never waits, never raises).
        from data.travel.remote import run_finished

        run_finished(self.store, run_id)

    def _report(self, run_id: str, waited: float) -> None:
        waiting = self.writer.pending(run_id)
        refused = self.writer.failures.pop(run_id, [])
        if waiting:
            requests = sum(1 for w in waiting if w.what == "request")
            reason = self.writer.last_error or f"the database was busy for {waited:g} s"
            status = " and its status" if any(w.what == "finish" for w in waiting) else ""
            raise StoreError(
                f"run {run_id}: {requests} request(s){status} "
                f"not stored yet, kept in memory until the database is free ({reason})"
            )
        if refused:
            raise StoreError(f"run {run_id}: {len(refused)} write(s) refused by the database, first: {refused[0]}")
