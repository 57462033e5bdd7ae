"""No full garbage-collection pass walks the app's long-lived heap while tokens are timestamped
(engine.measure.gc_heap, the rule of vLLM's freeze_gc_heap): what an engine's start left is frozen
once it has started (as vLLM's server does), and the objects alive when a load level starts are frozen
for the level (as `vllm bench serve` does), unfrozen after it unless the heap was frozen before."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from engine.engines.base import Engine
from engine.engines.host import EngineHost
from engine.load import LoadLevel, LoadRunner
from engine.measure.gc_heap import heap_frozen
from engine.types import Chunk
from tests.support.prompts import PromptSource


class FreezeWatchingEngine(Engine):
    """Streams 4 one-token chunks 2 ms apart; notes, on the token path, how many objects a full GC
    pass would skip there (gc.get_freeze_count())."""

    name = "freeze-watch"

    def __init__(self):
        self.frozen_seen: list[int] = []

    async def start(self, progress) -> None:
        progress("ready")

    async def _generate(self, request, record, on_chunk) -> None:
        for _ in range(4):
            self.frozen_seen.append(gc.get_freeze_count())
            t = time.perf_counter_ns()
            record.chunk_ns.append(t)
            record.chunk_tokens.append(1)
            on_chunk(Chunk(t, "x", 1))
            await asyncio.sleep(0.002)
        record.reported_output_tokens = 4
        record.input_tokens = 8
        record.finish_reason = "length"

    async def close(self) -> None:
        pass

    def describe(self):
        return {"engine": "freeze-watch", "model": "none"}


@pytest.fixture
def watched_host():
    engine = FreezeWatchingEngine()
    host = EngineHost(engine)
    host.start().result(5)
    gc.unfreeze()  # the start's own freeze (its test is below): each test here starts from a heap not frozen
    yield host, engine
    host.shutdown()
    gc.unfreeze()


def test_what_an_engines_start_left_is_frozen_once_it_has_started():
    gc.unfreeze()
    start_up = [[i] for i in range(100_000)]  # an engine's imports and state (vLLM's, in the app)
    host = EngineHost(FreezeWatchingEngine())
    try:
        assert gc.get_freeze_count() == 0
        host.start().result(5)
        assert gc.get_freeze_count() >= len(start_up)
    finally:
        host.shutdown()
        gc.unfreeze()


def test_the_heap_alive_at_a_levels_start_is_skipped_by_gc_inside_the_level_and_collected_after(watched_host):
    host, engine = watched_host
    assert gc.get_freeze_count() == 0
    app_heap = [[i] for i in range(200_000)]  # the app's long-lived objects (vLLM's imports, in the app)
    workload = PromptSource(input_len=8, output_len=4)
    outcome = LoadRunner(host, workload, reset_prefix_cache=False).run_level(
        LoadLevel(max_concurrency=2, num_prompts=4))
    assert outcome.status == "completed" and len(outcome.records) == 4
    assert len(engine.frozen_seen) == 16
    assert min(engine.frozen_seen) >= len(app_heap)  # every chunk's timestamp: the heap frozen
    assert gc.get_freeze_count() == 0  # after the level, what it left can be collected again
    del app_heap


def test_a_freeze_made_by_someone_else_is_left_as_it_was():
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        with heap_frozen() as frozen:
            assert frozen >= before
        assert before > 0 and gc.get_freeze_count() > 0  # still frozen (a frozen object may be freed meanwhile)
    finally:
        gc.unfreeze()
