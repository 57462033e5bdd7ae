"""Keep the garbage collector's full passes out of a level's timestamps.

A full collection (generation 2) walks every object the collector tracks while it holds the GIL. With
vLLM and its imports in the process (the embedded engine, or vLLM's benchmark modules, which
benchmarks/harness_vs_vllm_bench.py ran in tokentop's process until it gave them a worker process of
their own) that is about 675,000 objects and 0.4–0.7 s on a 2-core box
(measured: 0.9 ms bare, 23 ms with tokentop's load path imported, 724 ms with vLLM's benchmark
modules too). While it runs, the loop that timestamps tokens stands still, so chunks that arrived
during the pause are stamped together when it ends.

`vllm bench serve` calls vllm.utils.gc_utils.freeze_gc_heap() right before its benchmark ("Avoid GC
processing 'static' data - reduce pause times"): gc.collect() of generations 0, 1 and 2, then
gc.freeze(), which moves every object alive into a permanent generation that later collections skip.
vLLM's own server calls it once its engine has started. tokentop does both: once an engine has
started (engine.engines.host.EngineHost.start: the app's Live and Suite runs, `tokentop bench`), and
before each load level's clock starts, in every process that timestamps tokens (the parent and each
client process of engine.load.pool). A level unfreezes the heap when it ends only if it was not
frozen before it (a bare LoadRunner, as in tests): what a level leaves behind stays collectable.
Frozen objects are still freed by reference counting; only cycles among them wait.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


def freeze_heap() -> int:
    """vLLM's freeze_gc_heap (vllm/utils/gc_utils.py): collect generations 0, 1 and 2, then
    gc.freeze(). Returns how many objects are frozen now (gc.get_freeze_count()). Never raises."""
    gc.collect(0)
    gc.collect(1)
    gc.collect(2)
    gc.freeze()
    return gc.get_freeze_count()


@contextmanager
def heap_frozen() -> Iterator[int]:
    """freeze_heap() on entry (yields the objects frozen), gc.unfreeze() on exit when the heap was not
    frozen before entry (a freeze made by someone else is left as it was)."""
    frozen_before = gc.get_freeze_count()
    count = freeze_heap()
    try:
        yield count
    finally:
        if not frozen_before:
            gc.unfreeze()
