"""Client processes: one load level's requests shared among N processes (`--client-processes N`).

One Python process can read only so many streamed tokens per second (benchmarks/RESULTS.md, "client
ceiling"); a box serving a model on 8 GPUs produces more. Each client process ("worker") runs its own copy
of the engine (the openai engine: its own connections, its own uvloop event loop on an EngineHost thread)
and drives its share of a level with the very driver the one-process path uses (engine.load.driver.drive). It
streams its finished RequestRecords back to the parent, where engine.load.runner.LoadRunner computes and the
orchestrator stores the level exactly as with one process: one run, one request row per request, vLLM's
metric definitions over every record.

The common clock: time.perf_counter_ns() is clock_gettime(CLOCK_MONOTONIC) on Linux
(`time.get_clock_info("perf_counter")`), one clock for every process of the machine, so the workers'
timestamps and the parent's level start lie on one time line. (macOS: mach_absolute_time, also
machine-wide; Windows' QueryPerformanceCounter too.) Once every worker holds its share ("armed"), the
parent sets the level's start START_AHEAD_S ahead on that clock and each worker sends each request at
start + its offset, as one process would.

How a level is shared out (`split_level`):
  * closed loop (--concurrency N): the requests dealt round robin in plan order; N users are the shared
    cap below, so the processes together keep N in flight;
  * a level whose cap (--concurrency N, --max-concurrency N) is below the process count P uses only N
    processes, P - N sit it out (as before issue 21): N users never need more than N processes, and one
    user on one process keeps its requests back to back with no hop through the machine-wide semaphore;
    a level on one process holds its cap on its own event loop (asyncio.Semaphore, as with one process);
  * a fixed schedule (--request-rate, a trace): the schedule, sorted by send time, dealt round robin, so
    together the processes send on exactly the one arrival process (a trace is in time order already:
    engine.workloads.traces sorts it once, so one process and N send on the same schedule);
  * --max-concurrency (and --concurrency's N users) is ONE cap shared by every process (`SharedCap`), not
    split among them: a request waits for a free slot of the whole level, so no process queues while
    another has a slot idle. The wait is on the client's own limit and stays out of the request's
    latency: `st` is taken after the slot is had, as with one process (engine.load.driver.drive; vLLM #54101);
  * conversations (--multi-turn): whole conversations, dealt by their first turns as above; a
    conversation's next turns are sent by the process that holds it, numbered on one counter shared by
    the processes, in the order sent (as one process numbers them).

Stopping: workers ignore SIGINT and SIGHUP (a terminal sends them to its whole foreground process group);
the parent, which handles them, cancels the level over the pipe, and each worker returns its in-flight
requests as aborted records. A worker whose parent is gone (its pipe closed; on Linux also
PR_SET_PDEATHSIG) stops and exits. A worker that dies is said in one line (LevelOutcome.client_errors,
shown as a client-health warning) and its requests that did not come back count as failed with error
kind "client". Workers are daemonic and EngineHost.shutdown reaps any child left: none outlives tokentop.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from engine.load.driver import LevelOutcome, LiveLoad, drive
from engine.measure.gc_heap import heap_frozen
from engine.terminal_text import one_line
from engine.types import BadRequestError, EngineError, RequestRecord

START_AHEAD_S = 0.05  # the level's common start, this far after the last worker said it is armed
READY_TIMEOUT_S = 60.0  # a worker's engine start (imports, GET /v1/models)
ARMED_TIMEOUT_S = 60.0  # a worker unpacking its share of a level
STOP_WAIT_S = 10.0  # after a cancel, how long the workers get to hand back their aborted requests
CLOSE_WAIT_S = 5.0
MAX_DEFAULT_PROCESSES = 8  # the default's cap (--client-processes N can ask for more)
DRAIN_S = 0.05  # a worker hands its finished records to the parent this often


def default_client_processes(cpu_count: int | None = None, load_1min: float | None = None) -> int:
    """One client process per 2 idle cores, at least 1 and at most MAX_DEFAULT_PROCESSES. Idle cores =
    os.cpu_count() minus the 1-minute load average (os.getloadavg: the runnable processes, a server on
    this machine included), rounded down. A 2-core box gets 1; a quiet 16-core box 8."""
    cores = os.cpu_count() if cpu_count is None else cpu_count
    if load_1min is None:
        try:
            load_1min = os.getloadavg()[0]
        except (OSError, AttributeError):  # Windows
            load_1min = 0.0
    idle = max(0, int((cores or 1) - load_1min))
    return max(1, min(MAX_DEFAULT_PROCESSES, idle // 2))


@dataclass
class Share:
    """One worker's part of a level: positions in the level's plan (ascending send time). The level's
    --max-concurrency is not split: every worker waits on the one SharedCap."""

    positions: list[int] = field(default_factory=list)


def split_level(level, offsets: Sequence[float], processes: int) -> list[Share]:
    """The level's requests dealt among `processes` workers (see the module docstring): sorted by send
    offset (ties in plan order) and dealt round robin over the first min(processes, cap) workers, the cap
    being the level's --max-concurrency (--concurrency's users; None: no cap, every worker). `level` is an
    engine.load.patterns.LoadLevel, `offsets` each planned request's send offset (s). Returns one Share per
    worker, each in ascending send time (the workers past the cap's get none); together they hold every
    position once."""
    p = max(1, int(processes))
    shares = [Share([]) for _ in range(p)]
    cap = level.max_concurrency
    used = min(p, max(1, int(cap))) if cap else p
    for j, i in enumerate(sorted(range(len(offsets)), key=lambda i: (offsets[i], i))):
        shares[j % used].positions.append(i)
    return shares


class SharedCap:
    """One --max-concurrency for every client process of a pool: a counting semaphore of the machine
    (multiprocessing, inherited by the spawned workers) holding the level's free slots, and per worker the
    slots it holds now (`held`, written by that worker only), so the slots of a worker that died are given
    back to the others. The parent `reset`s it before every level (no worker is driving then): it empties
    the semaphore and puts `cap` slots in, so nothing a dead worker kept outlives its level."""

    def __init__(self, ctx, processes: int):
        self.sem = ctx.Semaphore(0)
        self.held = ctx.Array("q", max(1, int(processes)), lock=False)

    def reset(self, cap: int | None) -> None:
        """The parent, between levels: `cap` free slots (None: no cap; nothing is taken then)."""
        while self.sem.acquire(False):
            pass
        for k in range(len(self.held)):
            self.held[k] = 0
        for _ in range(int(cap or 0)):
            self.sem.release()

    def forget(self, worker: int) -> int:
        """The parent, when `worker` died mid-level: its slots go back to the others. Returns how many."""
        n = max(0, int(self.held[worker]))
        self.held[worker] = 0
        for _ in range(n):
            self.sem.release()
        return n

    def acquire(self, worker: int, timeout: float | None) -> bool:
        """One slot for `worker`, waiting at most `timeout` s (a worker's gate thread: never on an event
        loop); timeout None: only if one is free now (sem_trywait: does not block, the loop may call it)."""
        if not (self.sem.acquire(False) if timeout is None else self.sem.acquire(True, timeout)):
            return False
        self.held[worker] += 1
        return True

    def release(self, worker: int) -> None:
        """A worker gives one slot back (does not block: callable on the event loop)."""
        self.held[worker] -= 1
        self.sem.release()


class CapGate:
    """A worker's side of the SharedCap, as engine.load.driver.drive uses a limiter: `await acquire()`, then
    `release()`. A slot free at once is taken on the loop (a non-blocking sem_trywait) when nobody of this
    process waits; otherwise waiters are served in the order they came (FIFO, as asyncio.Semaphore) by one
    thread of this process that blocks on the machine-wide semaphore, so the event loop never blocks; the
    slot is handed to the loop with call_soon_threadsafe. A waiter cancelled meanwhile gives its slot back."""

    POLL_S = 0.05  # how often the gate thread looks whether it was closed

    def __init__(self, cap: SharedCap, worker: int):
        self.cap = cap
        self.worker = worker
        self.loop: Any = None  # the waiting process's event loop, set with the thread
        self.waiters: collections.deque = collections.deque()  # futures, on the loop only
        self.wanted = 0  # slots asked for and not yet taken by the thread (under `cv`); a waiter that
        # left still counts: its slot is handed to the next waiter, or given back by _grant
        self.cv = threading.Condition()
        self.closed = False
        self.thread: threading.Thread | None = None

    async def acquire(self) -> None:
        import asyncio

        while self.waiters and self.waiters[0].done():
            self.waiters.popleft()  # left waiting (their slots, if any come, go to the next or back)
        if not self.waiters and self.cap.acquire(self.worker, None):
            return  # a slot was free and nobody of this process waits before us: no hand-over
        if self.thread is None:
            self.loop = asyncio.get_running_loop()
            self.thread = threading.Thread(target=self._serve, name="tokentop-cap-gate", daemon=True)
            self.thread.start()
        future = self.loop.create_future()
        self.waiters.append(future)
        with self.cv:
            self.wanted += 1
            self.cv.notify()
        try:
            await future
        except BaseException:
            # Left waiting (a stop): the slot the thread takes for it later goes to the next waiter or back.
            if future.done() and not future.cancelled():
                self.release()  # had the slot already: give it back
            else:
                future.cancel()
            raise

    def release(self) -> None:
        self.cap.release(self.worker)

    def _serve(self) -> None:
        while True:
            with self.cv:
                while not self.wanted and not self.closed:
                    self.cv.wait()
                if self.closed:
                    return
            if not self.cap.acquire(self.worker, self.POLL_S):
                continue
            with self.cv:
                if self.closed:
                    self.cap.release(self.worker)
                    return
                self.wanted -= 1
            try:
                self.loop.call_soon_threadsafe(self._grant)
            except RuntimeError:  # the loop is closed
                self.cap.release(self.worker)
                return

    def _grant(self) -> None:
        """On the loop: the slot to the first waiter still waiting (none left: back to the others)."""
        while self.waiters:
            future = self.waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self.cap.release(self.worker)

    def close(self) -> None:
        """Stop the gate thread (the share is done: nothing waits any more)."""
        with self.cv:
            self.closed = True
            self.cv.notify()
        if self.thread is not None:
            self.thread.join(self.POLL_S * 4 + 1.0)


# -- the parent's side --------------------------------------------------------------------------------
class _Worker:
    def __init__(self, index: int, process, conn):
        self.index = index
        self.process = process
        self.conn = conn
        self.alive = True
        self.pid = process.pid
        # this level:
        self.pending: set[int] = set()
        self.done: dict[str, Any] | None = None
        self.armed = False
        self.sent = 0
        self.in_flight = 0
        self.streamed = 0  # output tokens its requests in flight have streamed so far
        self.died_ns: int | None = None

    def send(self, message) -> bool:
        try:
            self.conn.send(message)
            return True
        except (OSError, ValueError):  # its end is closed: it died
            return False

    def exit_line(self) -> str:
        self.process.join(0.5)
        code = self.process.exitcode
        how = ("was killed by signal " + _signal_name(-code)) if code is not None and code < 0 else \
            (f"exited with code {code}" if code is not None else "stopped answering")
        return f"client process {self.index + 1} (pid {self.pid}) {how}"


class ClientPool:
    """N client processes for one load job (engine.load.runner.LoadRunner starts and closes it). Thread-safe for
    one level at a time."""

    def __init__(self, engine, processes: int):
        spec = engine.worker_spec()
        if spec is None:
            raise BadRequestError(f"--client-processes {processes} needs --engine openai: the {engine.name} engine "
                                  "runs inside this process only (use --client-processes 1)")
        self.engine_class = type(engine)
        self.spec = spec
        self.processes = int(processes)
        self.ctx = multiprocessing.get_context("spawn")  # never fork a process with threads and an event loop
        self.counter = self.ctx.Value("q", 0)  # the level's next follow-up index, shared by the workers
        self.cap = SharedCap(self.ctx, self.processes)  # the level's one --max-concurrency
        self.workers: list[_Worker] = []
        self._level_no = 0
        self._closed = False

    # -- life cycle -------------------------------------------------------------------------------
    def start(self, stop: threading.Event | None = None, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Start the processes and wait until each has started its engine. False when `stop` was set
        meanwhile (the processes are closed again); EngineError (one line) when one cannot start."""
        # Started with the terminal's signals blocked (the mask is inherited): a Ctrl-C while a process is
        # still importing stays pending until it ignores them, instead of killing it half-started.
        old_mask = _block(TERMINAL_SIGNALS)
        try:
            for k in range(self.processes):
                parent, child = self.ctx.Pipe(duplex=True)
                proc = self.ctx.Process(target=worker_main, args=(k, child, self.engine_class, self.spec,
                                                                  self.counter, self.cap),
                                        name=f"tokentop-client-{k + 1}", daemon=True)
                proc.start()
                child.close()
                self.workers.append(_Worker(k, proc, parent))
        finally:
            _restore(old_mask)
        waiting = {w.conn: w for w in self.workers}
        deadline = time.monotonic() + timeout_s
        try:
            while waiting:
                if stop is not None and stop.is_set():
                    self.close()
                    return False
                if time.monotonic() > deadline:
                    raise EngineError(f"{len(waiting)} client process(es) did not start within {timeout_s:g} s")
                for conn in multiprocessing.connection.wait(list(waiting), timeout=0.1):
                    w = waiting.pop(conn)
                    try:
                        message = conn.recv()  # type: ignore[union-attr,call-arg]  # wait() gives back our Connections
                    except (EOFError, OSError):
                        if stop is not None and stop.wait(0.5):  # stopped meanwhile: that is all it was
                            self.close()
                            return False
                        raise EngineError(f"{w.exit_line()} while starting") from None
                    if message[0] != "ready":
                        raise EngineError(f"client process {w.index + 1} could not start: {message[1]}")
        except BaseException:
            self.close()
            raise
        return True

    def close(self) -> None:
        """Ask every process to exit, then terminate and kill the ones that do not (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for w in self.workers:
            if w.alive:
                w.send(("close",))
        deadline = time.monotonic() + CLOSE_WAIT_S
        for w in self.workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(2.0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(1.0)
            w.alive = False
            try:
                w.conn.close()
            except OSError:
                pass

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    # -- one level --------------------------------------------------------------------------------
    def start_level(self, level, source, planned: Sequence, offsets: Sequence[float], done_q: collections.deque,
                    outcome, cancel: threading.Event, on_begin: Callable[[int], None] | None,
                    live) -> concurrent.futures.Future:
        """Share the level among the processes and drive it; returns a Future that resolves when every
        process has handed back its records (each appended to `done_q` as (index, record) as it arrives,
        as engine.load.driver.drive does). Fills the outcome's start, end, duration, per-process CPU use and loop
        lags. `cancel` stops the level (every process returns its in-flight requests as aborted)."""
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                self._level(level, source, planned, offsets, done_q, outcome, cancel, on_begin, live)
                future.set_result(None)
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name="tokentop-client-pool", daemon=True).start()
        return future

    def _level(self, level, source, planned, offsets, done_q, outcome, cancel, on_begin, live) -> None:
        self._level_no += 1
        no = self._level_no
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise EngineError("every client process has exited")
        shares = split_level(level, offsets, len(alive))
        with self.counter.get_lock():
            self.counter.value = len(planned)  # follow-ups are numbered after the first wave, as sent
        self.cap.reset(level.max_concurrency)  # no worker is driving: the previous level has ended
        # The machine-wide cap only where two or more processes share the level; one holds it on its own loop.
        shared = bool(level.max_concurrency) and sum(1 for share in shares if share.positions) > 1
        active: list[_Worker] = []
        for w, share in zip(alive, shares):
            w.pending, w.done, w.armed, w.sent, w.in_flight, w.streamed = set(), None, False, 0, 0, 0
            if not share.positions:
                continue
            part = source.share(share.positions)
            message = ("level", no, level, part, share.positions, [float(offsets[i]) for i in share.positions],
                       shared)
            w.pending = set(share.positions)
            if w.send(message):
                active.append(w)
            else:
                self._died(w, planned, done_q, outcome, live)
        outcome.client_processes = len(active)
        cpu0 = time.process_time()
        t0 = time.perf_counter_ns()
        # Every active worker unpacks its share and says it is armed; then the common start.
        deadline = time.monotonic() + ARMED_TIMEOUT_S
        while any(w.alive and not w.armed for w in active):
            if cancel.is_set() or time.monotonic() > deadline:
                break
            self._poll(active, no, planned, done_q, outcome, live)
        start_ns = time.perf_counter_ns() + int(START_AHEAD_S * 1e9)
        outcome.start_ns = start_ns
        first_ns = outcome.first_send_ns = start_ns + int(min(offsets) * 1e9) if len(offsets) else start_ns
        go = not cancel.is_set()
        if go and on_begin is not None:
            on_begin(start_ns)
        for w in active:
            if go and w.alive and not w.armed:  # not armed within ARMED_TIMEOUT_S: it is stuck
                w.process.kill()
                self._died(w, planned, done_q, outcome, live)
            elif w.alive and not w.send(("go", start_ns) if go else ("cancel",)):
                self._died(w, planned, done_q, outcome, live)
        cancelled = not go
        stop_deadline = None
        while any(w.alive and w.done is None for w in active):
            if cancel.is_set() and not cancelled:
                cancelled = True
                for w in active:
                    if w.alive and w.done is None:
                        w.send(("cancel",))
            if cancelled and stop_deadline is None:
                stop_deadline = time.monotonic() + STOP_WAIT_S
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                for w in active:  # did not hand back its requests in time
                    if w.alive and w.done is None:
                        w.process.kill()
                        self._died(w, planned, done_q, outcome, live)
                break
            self._poll(active, no, planned, done_q, outcome, live)
        ends = [w.done["end_ns"] for w in active if w.done and w.done.get("end_ns")]
        ends += [w.died_ns for w in active if w.died_ns]
        outcome.end_ns = max(ends) if ends else time.perf_counter_ns()
        outcome.duration_s = max(0, outcome.end_ns - first_ns) / 1e9 if go else 0.0
        outcome.client_cpu = [w.done["cpu"] for w in active if w.done and w.done.get("cpu")]
        outcome.loop_lags_s = [lag for w in active if w.done for lag in w.done.get("lags") or ()]
        wall = max(1e-9, (time.perf_counter_ns() - t0) / 1e9)
        outcome.parent_process_cores = max(0.0, time.process_time() - cpu0) / wall
        errors = [f"client process {w.index + 1}: {w.done['error']}" for w in active if w.done and w.done.get("error")]
        if errors:
            raise EngineError(errors[0])

    def _poll(self, active: list[_Worker], no: int, planned, done_q, outcome, live) -> None:
        """Wait up to DRAIN_S for the workers' messages and handle them (records, armed, done, deaths)."""
        by_conn = {w.conn: w for w in active if w.alive}
        by_sentinel = {w.process.sentinel: w for w in active if w.alive}
        if not by_conn:
            time.sleep(DRAIN_S)
            return
        for ready in multiprocessing.connection.wait([*by_conn, *by_sentinel], timeout=DRAIN_S):
            w = by_conn.get(ready) or by_sentinel.get(ready)
            if w is None or not w.alive:
                continue
            if ready in by_sentinel:
                # Its exit: read what it sent before it went, then count the rest as failed.
                self._read_all(w, no, planned, done_q, live)
                if w.done is None:
                    self._died(w, planned, done_q, outcome, live)
                continue
            self._read_all(w, no, planned, done_q, live, dead=lambda w=w: self._died(w, planned, done_q, outcome, live))  # type: ignore[misc]

    def _read_all(self, w: _Worker, no: int, planned, done_q, live, dead: Callable[[], None] | None = None) -> None:
        while w.alive:
            try:
                if not w.conn.poll():
                    return
                message = w.conn.recv()
            except (EOFError, OSError):
                if dead is not None and w.done is None:
                    dead()
                return
            kind = message[0]
            if len(message) > 1 and message[1] != no:
                continue  # a late message of an earlier level
            if kind == "records":
                _, _, batch, sent, in_flight, streamed = message
                self._records(w, batch, planned, done_q, live)
                w.sent, w.in_flight, w.streamed = sent, in_flight, streamed
                self._live_counts(live)
            elif kind == "armed":
                w.armed = True
            elif kind == "done":
                w.done = message[2]
                if w.done.get("cpu"):
                    w.done["cpu"]["worker"] = w.index + 1
                w.in_flight = w.streamed = 0
                self._live_counts(live)

    def _records(self, w: _Worker, batch, planned, done_q, live) -> None:
        n = len(planned)
        for index, record in batch:
            if record.request is None and index < n:  # sent without its request: the parent has it
                record.request = planned[index].request
            w.pending.discard(index)
            if record.aborted and not record.success:
                live.stopped += 1  # cut short by a stop: not a failure (engine.load.driver.drive)
            elif record.success:
                live.completed += 1
                live.output_tokens += record.output_tokens
                if record.chunk_ns:
                    live.recent_ttft_ms.append((record.chunk_ns[0] - record.st_ns) / 1e6)
            else:
                live.failed += 1
            done_q.append((index, record))

    def _live_counts(self, live) -> None:
        active = [w for w in self.workers if w.alive]
        live.sent = sum(w.sent for w in active)
        live.in_flight = sum(w.in_flight for w in active)
        live.remote_streamed = sum(w.streamed for w in active)  # the Load screen's progress by tokens

    def _died(self, w: _Worker, planned, done_q, outcome, live) -> None:
        """A worker gone mid-level: one line, and its requests that never came back as failed (kind client)."""
        if not w.alive:
            return
        w.alive = False
        w.died_ns = time.perf_counter_ns()
        self.cap.forget(w.index)  # the slots it held go back to the processes left
        line = w.exit_line()
        lost = sorted(w.pending)
        outcome.client_errors.append(f"{line} during the level: {len(lost)} of its requests did not come back "
                                     "and count as failed (error kind client)")
        for index in lost:
            record = RequestRecord(request=planned[index].request, success=False, error=f"{line}",
                                   error_kind="client")
            live.failed += 1
            done_q.append((index, record))
        w.pending = set()
        w.in_flight = 0
        self._live_counts(live)


# -- the worker's side -------------------------------------------------------------------------------
def worker_main(index: int, conn, engine_class, spec: dict[str, Any], counter, cap: SharedCap) -> None:
    """A client process: start the engine, then drive each share of a level the parent sends, until
    "close" or until the parent is gone. Runs in a spawned process (engine/ only: no store, no UI)."""
    for sig in TERMINAL_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)  # the parent stops us over the pipe
    _restore(set())  # the parent blocked them while starting us (a pending one is dropped by SIG_IGN)
    _die_with_parent()
    from engine.engines.host import EngineHost

    host = None
    try:
        engine = engine_class.from_worker_spec(spec)
        host = EngineHost(engine)
        host.start().result(timeout=READY_TIMEOUT_S)
        if spec.get("load_tokens"):
            engine.workload_tokens()  # a chat template for conversations on the completions API
    except BaseException as exc:
        _send(conn, ("error", one_line(exc, 300, typed=True)))
        if host is not None:
            host.shutdown(timeout=CLOSE_WAIT_S)
        return
    try:
        conn.send(("ready", os.getpid()))
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone
            if message[0] == "close":
                break
            if message[0] == "level" and not _drive_share(index, conn, host, counter, cap, *message[1:]):
                break
    finally:
        host.shutdown(timeout=CLOSE_WAIT_S)


def _drive_share(index: int, conn, host, counter, cap: SharedCap, no: int, level, source, positions, offsets,
                 capped: bool) -> bool:
    """One level's share, with the heap frozen before "armed" (engine.load.gc_heap: no full GC pass
    inside the level, as in the parent)."""
    with heap_frozen():
        return _drive_frozen_share(index, conn, host, counter, cap, no, level, source, positions, offsets, capped)


def _drive_frozen_share(index: int, conn, host, counter, cap: SharedCap, no: int, level, source, positions,
                        offsets, capped: bool) -> bool:
    """One level's share: armed, wait for "go", drive (under the level's shared cap when `capped`, else
    under the level's --max-concurrency on this process's loop: the one process of the level), hand back
    records every DRAIN_S, then "done". False when the parent is gone."""
    planned = source.initial()
    engine = host.engine
    outcome = LevelOutcome(level=level, status="completed")
    live = LiveLoad()
    done_q: collections.deque = collections.deque()
    cancel = threading.Event()
    try:
        conn.send(("armed", no))
        message = conn.recv()
    except (EOFError, OSError):
        return False
    if message[0] != "go":
        return _send(conn, ("done", no, {"end_ns": 0, "cpu": None, "lags": [], "error": None}))
    start_ns = message[1]
    initial = set(positions)

    def next_index() -> int:
        with counter.get_lock():
            value = counter.value
            counter.value = value + 1
        return value

    gate = CapGate(cap, index) if capped else None
    own_cap = None if capped else level.max_concurrency
    future = host.call(drive(engine, live, source, planned, offsets, own_cap, done_q, outcome, cancel,
                             indexes=positions, next_index=next_index, start_ns=start_ns, limiter=gate))
    parent_gone = False
    reported_streamed = 0
    while True:
        finished = future.done()  # looked at before draining: nothing is left behind
        batch = []
        while done_q:
            i, record = done_q.popleft()
            engine.settle(record)  # a tokenizer's counts, here: never on the loop
            if i in initial:
                record.request = None  # the parent has it: not sent back
            batch.append((i, record))
        streamed = live.streamed_tokens()  # told while it moves: the parent's progress counts tokens
        if (batch or finished or streamed != reported_streamed) and not parent_gone:
            parent_gone = not _send(conn, ("records", no, batch, live.sent, live.in_flight, streamed))
            reported_streamed = streamed
        if finished:
            break
        if parent_gone:
            cancel.set()
            concurrent.futures.wait([future], timeout=DRAIN_S)
            continue
        try:
            if conn.poll(DRAIN_S):
                if conn.recv()[0] == "cancel":
                    cancel.set()
        except (EOFError, OSError):
            parent_gone = True
            cancel.set()
    error = None
    try:
        future.result()
    except BaseException as exc:
        error = one_line(exc, 300, typed=True)
    if gate is not None:
        gate.close()
    if parent_gone:
        return False
    cpu = dict(outcome.client_cpu[0]) if outcome.client_cpu else None
    lags = host.loop_lag.window(start_ns / 1e9, (outcome.end_ns or time.perf_counter_ns()) / 1e9)
    return _send(conn, ("done", no, {"end_ns": outcome.end_ns, "cpu": cpu, "lags": lags, "error": error}))


TERMINAL_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGHUP", None)) if s is not None)


def _block(signals) -> set | None:
    """Block `signals` in the calling thread; returns the mask to restore (None where there are no masks)."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, set(signals))


def _restore(mask: set | None) -> None:
    """Set the calling thread's mask back (`set()`: nothing blocked)."""
    if mask is not None and hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _send(conn, message) -> bool:
    try:
        conn.send(message)
        return True
    except (OSError, ValueError):
        return False


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the thread that started it exits (the parent killed with -9)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # not Linux: the closed pipe still ends the process
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
