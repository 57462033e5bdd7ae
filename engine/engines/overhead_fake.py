"""SyntheticOverheadEngine: NOT a model. A fake engine that streams one-token chunks at a fixed,
very high rate, used ONLY by benchmarks/ui_overhead.py to measure how many streamed tokens per
second the UI path (LiveMeter + Live screen timer) absorbs. Never used for any reported TPS/TTFT."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine.engines.base import ChunkSink, Engine
from engine.types import Chunk, GenerationRequest, RequestRecord


class SyntheticOverheadEngine(Engine):
    name = "synthetic-overhead"

    def __init__(self, rate_tok_s: float = 50_000, batch: int = 100):
        self.rate = rate_tok_s
        self.batch = batch

    async def start(self, progress) -> None:
        progress("synthetic overhead source (not a model)")

    async def _generate(self, request: GenerationRequest, record: RequestRecord, on_chunk: ChunkSink) -> None:
        period_ns = 1e9 / self.rate
        t0 = time.perf_counter_ns()
        for i in range(request.max_tokens):
            now = time.perf_counter_ns()
            record.chunk_ns.append(now)
            record.chunk_tokens.append(1)
            on_chunk(Chunk(now, "x ", 1))
            if i % self.batch == self.batch - 1:
                ahead = (t0 + (i + 1) * period_ns - time.perf_counter_ns()) / 1e9
                await asyncio.sleep(max(0.0, ahead))
        record.reported_output_tokens = request.max_tokens
        record.finish_reason = "length"
        record.token_count_source = "engine"
        record.first_content_ns = record.chunk_ns[0] if record.chunk_ns else None

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "model": "none (synthetic)", "dtype": None, "engine_args": {}}
