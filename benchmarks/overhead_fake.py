"""SyntheticOverheadEngine: NOT a model. A fake engine that streams one-token chunks at a fixed,
very high rate, used ONLY by benchmarks/ui_overhead.py and benchmarks/tick_profile.py (it lives beside
them, outside the package) to measure how many streamed tokens per second the UI path (LiveMeter +
Live screen timer) absorbs. Never used for any reported TPS/TTFT.

Each chunk is two characters, a letter and a space, like model output in that it does not repeat
with a short period: the text pane's last 20,000 characters differ from one frame to the next, as
they do with a model (a stream of one repeated "x " made every frame's pane text the same)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from engine.engines.base import ChunkSink, Engine
from engine.types import Chunk, GenerationRequest, RequestRecord


class SyntheticOverheadEngine(Engine):
    name = "synthetic-overhead"

    def __init__(self, rate_tok_s: float = 50_000, batch: int = 100):
        self.rate = rate_tok_s
        self.batch = batch
        letters = random.Random(24)
        # a prime period, so no window of the pane's 20,000 characters lines up with it
        self.texts = [f"{letters.choice('abcdefghijklmnopqrstuvwxyz')} " for _ in range(9_973)]

    async def start(self, progress) -> None:
        progress("synthetic overhead source (not a model)")

    async def _generate(self, request: GenerationRequest, record: RequestRecord, on_chunk: ChunkSink) -> None:
        period_ns = 1e9 / self.rate
        t0 = time.perf_counter_ns()
        texts, period = self.texts, len(self.texts)
        for i in range(request.max_tokens):
            now = time.perf_counter_ns()
            record.chunk_ns.append(now)
            record.chunk_tokens.append(1)
            on_chunk(Chunk(now, texts[i % period], 1))
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
