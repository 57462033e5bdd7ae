"""The interface every engine implements, and the timing wrapper they all share."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from typing import Any, Callable

from engine.terminal_text import one_line
from engine.types import Chunk, GenerationRequest, RequestRecord

ChunkSink = Callable[[Chunk], None]
ProgressSink = Callable[[str], None]


class Engine(ABC):
    """An async engine. All methods run on the EngineHost's event loop thread."""

    name: str = "engine"

    @abstractmethod
    async def start(self, progress: ProgressSink) -> None:
        """Load/connect; report human-readable steps through `progress`."""

    @abstractmethod
    async def _generate(self, request: GenerationRequest, record: RequestRecord, on_chunk: ChunkSink) -> None:
        """Stream one request. Append to record.chunk_ns/chunk_tokens with perf_counter_ns taken
        as each piece arrives, call on_chunk for each, and fill counts and finish_reason."""

    @abstractmethod
    async def close(self) -> None:
        """Release everything (child processes, connections). Safe to call twice."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Model, dtype, engine arguments: what a stored run needs to be reproducible."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the EngineHost runs this engine on (asyncio's own unless an engine knows better)."""
        return asyncio.new_event_loop()

    def worker_spec(self) -> dict[str, Any] | None:
        """What a client process needs to build its own copy of this started engine
        (`type(self).from_worker_spec(spec)`, engine.load.pool), picklable; None when the engine can
        only run in this process (the in-process vLLM engine)."""
        return None

    @classmethod
    def from_worker_spec(cls, spec: dict[str, Any]) -> "Engine":
        """An unstarted engine from worker_spec() (in a client process)."""
        raise NotImplementedError(f"the {cls.name} engine runs in one process only")

    def healthy(self) -> bool:
        """False once the engine cannot serve any more (its process died)."""
        return True

    async def reset_prefix_cache(self) -> tuple[bool, str]:
        """Empty the engine's prefix cache before a measured level. Returns (reset, a plain line saying
        what happened or why it could not be done). Runs on the engine loop."""
        return False, f"the {self.name} engine cannot reset its prefix cache"

    def workload_tokens(self):
        """The model's tokenizer for workloads (engine.workloads.tokens.Tokens), or None. Called from a
        driver thread, never the engine loop (it may load a tokenizer from disk)."""
        return None

    def settle(self, record: RequestRecord) -> None:
        """Finish counting a record's tokens off the token path (engine.measure.token_counts): called on the
        thread that receives the finished record, never on the engine loop. Idempotent; the base
        engine's counts are final already."""

    def live_counter(self):
        """A `text -> tokens` function a live meter may use on the UI thread for chunks whose count
        is provisional (Chunk.exact False), or None."""
        return None

    async def generate(self, request: GenerationRequest, on_chunk: ChunkSink | None = None,
                       record: RequestRecord | None = None) -> RequestRecord:
        """Run one request and time it exactly as `vllm bench serve` does: `st` just before sending.
        `record`: an empty record made by the caller (filled in and returned), so a live meter can read
        the engine's own `st` from the first token on (engine.measure.live); one is made otherwise."""
        if record is None:
            record = RequestRecord(request=request)
        sink = on_chunk or NO_SINK
        record.sent_wall = time.time()
        record.st_ns = time.perf_counter_ns()
        try:
            await self._generate(request, record, sink)
            if record.error is None:
                # Like vLLM's bench: a request that never produced a chunk has no TTFT and fails.
                record.success = bool(record.chunk_ns)
                if not record.success:
                    record.error = "no output chunk was received"
                    record.error_kind = "no output"
        except asyncio.CancelledError:
            record.aborted = True
            record.success = False
            record.error = "aborted"
            record.error_kind = "aborted"
            # The record (with the chunks that did arrive) is returned, not lost with the task.
        except Exception as exc:  # a request failure is data, not a crash
            record.success = False
            record.error = one_line(exc, 500, typed=True)
            record.error_kind = record.error_kind or error_kind_of(exc)
        if record.error is not None and record.error_kind is None:
            record.error_kind = "other"
        return record


def _ignore(_: Chunk) -> None:
    return None


# The sink `generate` passes when the caller gave none: an engine may skip building Chunk objects then.
NO_SINK: ChunkSink = _ignore


def error_kind_of(exc: BaseException) -> str:
    """"timeout" or "connection" for the transport errors of any client (by class name, so engine/
    needs no HTTP library here), else "other"."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, TimeoutError) or any("Timeout" in n for n in names):
        return "timeout"
    if isinstance(exc, ConnectionError) or names & {"TransportError", "NetworkError", "ConnectError", "ReadError",
                                                     "WriteError", "RemoteProtocolError", "ProtocolError",
                                                     "ClientConnectionError", "ServerDisconnectedError"}:
        return "connection"
    return "other"
