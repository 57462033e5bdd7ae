"""EngineHost: an engine on its own thread with its own event loop.

Timestamps are taken on this thread as tokens arrive; consumers (the CLI, the Textual app)
only receive finished records and cheap chunk callbacks, so rendering never delays a token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import sys
import threading
from typing import AbstractSet, Any, Awaitable, TypeVar

from engine.engines.base import ChunkSink, Engine, ProgressSink
from engine.measure.client_health import LoopLagProbe
from engine.measure.gc_heap import freeze_heap
from engine.types import EngineError, GenerationRequest, RequestRecord

T = TypeVar("T")


class EngineClosedError(EngineError):
    """Work handed to an EngineHost after shutdown(): refused at once, never left unresolved."""

    def __init__(self) -> None:
        super().__init__("the engine has been shut down; no more requests can run")


class RequestHandle:
    """A request in flight: wait for its record, or cancel it (the partial record is kept)."""

    def __init__(self, host: "EngineHost", request: GenerationRequest):
        self.request = request
        self.future: concurrent.futures.Future[RequestRecord] = concurrent.futures.Future()
        self._host = host
        self._task: asyncio.Task | None = None

    def cancel(self) -> None:
        task = self._task
        if task is not None and not task.done():
            self._host.loop.call_soon_threadsafe(task.cancel)

    def result(self, timeout: float | None = None) -> RequestRecord:
        """The finished record, its token counts settled on this (the caller's) thread: a tokenizer
        never runs on the engine loop (engine.measure.token_counts)."""
        record = self.future.result(timeout)
        self._host.engine.settle(record)
        return record

    def done(self) -> bool:
        return self.future.done()


# While another Python thread (storing, telemetry, the UI) holds the GIL, a chunk that has arrived
# waits for it up to the switch interval (5 ms by default) before this loop can timestamp it. 0.5 ms
# bounds that wait well under the timer jitter of a busy machine; the cost is more frequent switches.
GIL_SWITCH_INTERVAL_S = 0.0005


class EngineHost:
    def __init__(self, engine: Engine):
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.engine = engine
        self.loop = engine.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=f"tokentop-{engine.name}", daemon=True)
        self._thread.start()
        self._handles: set[RequestHandle] = set()
        self._closed = False
        self.started = False
        # Child processes alive before this engine existed belong to someone else (another host in
        # the same process): shutdown reaps only the ones this engine started.
        self._children_before = {c.pid for c in _active_children()}
        # The client's self-check: how late this loop wakes up, sampled for the host's whole life
        # (runs take their window of it: engine.measure.client_health).
        self.loop_lag = LoopLagProbe()
        self.loop_lag.start(self.loop)

    def _run_loop(self) -> None:
        # The engine's child processes are spawned from this thread and inherit its signal mask:
        # with SIGHUP blocked here, a hang-up (SSH drop, tmux kill) reaches only our process,
        # which stops and stores the run and then shuts the engine down in order.
        if hasattr(signal, "pthread_sigmask") and hasattr(signal, "SIGHUP"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def closed(self) -> bool:
        return self._closed

    def call(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the engine loop (used by load generators and telemetry)."""
        if self._closed or not self._thread.is_alive():
            close = getattr(coro, "close", None)
            if close:
                close()  # never awaited: say so quietly instead of a RuntimeWarning
            future: concurrent.futures.Future[T] = concurrent.futures.Future()
            future.set_exception(EngineClosedError())
            return future
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def start(self, progress: ProgressSink | None = None) -> concurrent.futures.Future[None]:
        async def _start() -> None:
            await self.engine.start(progress or (lambda _m: None))
            # What start-up left (vLLM and its imports: ~675,000 objects, a 0.4-0.7 s full GC pass here)
            # is frozen, as vLLM's server does after its start (freeze_gc_heap): no full pass walks it
            # while tokens are timestamped (engine.measure.gc_heap).
            freeze_heap()
            self.started = True

        return self.call(_start())

    def submit(self, request: GenerationRequest, on_chunk: ChunkSink | None = None,
               record: RequestRecord | None = None) -> RequestHandle:
        """Run `request` on the engine loop; `record` is passed on to Engine.generate."""
        handle = RequestHandle(self, request)
        if self._closed or not self._thread.is_alive():
            handle.future.set_exception(EngineClosedError())
            return handle
        self._handles.add(handle)

        def _create() -> None:
            async def _run() -> None:
                try:
                    done = await (self.engine.generate(request, on_chunk) if record is None
                                  else self.engine.generate(request, on_chunk, record=record))
                    handle.future.set_result(done)
                except BaseException as exc:  # never leave a waiter hanging
                    if not handle.future.done():
                        handle.future.set_exception(exc)
                finally:
                    self._handles.discard(handle)

            handle._task = self.loop.create_task(_run())

        self.loop.call_soon_threadsafe(_create)
        return handle

    def cancel_all(self) -> None:
        for handle in list(self._handles):
            handle.cancel()

    def shutdown(self, timeout: float = 15.0) -> None:
        """Cancel requests, close the engine (its child processes), stop the loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.cancel_all()
        self.loop_lag.stop(self.loop)
        # Every process this engine started, grandchildren too (vLLM's engine process starts workers):
        # whatever of them outlives the engine's close is killed below, so nothing is left behind.
        started = descendants_of({c.pid for c in _active_children()} - self._children_before)
        if self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self.engine.close(), self.loop).result(timeout)
            except (Exception, concurrent.futures.TimeoutError):
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        _kill(started)
        _reap_children(exclude=self._children_before)
        # A request whose task never got to run (the loop stopped first) is resolved, not left hanging.
        for handle in list(self._handles):
            if not handle.future.done():
                handle.future.set_exception(EngineClosedError())
        self._handles.clear()

    def __enter__(self) -> "EngineHost":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()



def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every process (Linux /proc; empty elsewhere)."""
    table: dict[int, tuple[int, int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ... starttime ...": comm may hold spaces and parentheses, so split
        # after the last ")"; ppid is then field 1 and starttime field 19.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 19:
            table[int(entry)] = (int(fields[1]), int(fields[19]))
    return table


def descendants_of(pids: set[int]) -> dict[int, int]:
    """`pids` and every live process below them (children, their children, ...): pid -> start time."""
    table = _proc_table()
    out = {pid: table[pid][1] for pid in pids if pid in table}
    grew = True
    while grew:
        grew = False
        for child, (parent, started) in table.items():
            if parent in out and child not in out:
                out[child] = started
                grew = True
    return out


def _kill(procs: dict[int, int]) -> None:
    """SIGKILL what is still alive of `procs` (pid -> start time: a pid reused since is left alone)."""
    table = _proc_table()
    for pid, started in procs.items():
        if table.get(pid, (0, None))[1] != started:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _active_children() -> list:
    import multiprocessing

    return multiprocessing.active_children()


def _reap_children(grace_s: float = 3.0, exclude: AbstractSet[int] = frozenset()) -> None:
    """Engine processes that outlived the engine's own close (it timed out, or a hang-up cut it short)
    are terminated, then killed: quitting leaves no process behind, and the interpreter's exit does not
    wait for them for ever. Children in `exclude` (alive before this engine started) are left alone."""
    children = [c for c in _active_children() if c.pid not in exclude]
    for child in children:
        child.terminate()
    for child in children:
        child.join(grace_s)
        if child.is_alive():
            child.kill()
            child.join(1.0)
