"""The Load screen's progress and ETA count tokens as they stream (issue 24): at concurrency 1 a long
request used to move the count only when it ended, and the ETA jumped 0:53 -> 1:22 -> 1:54 during one
request. engine.measure.progress.LevelProgress adds the tokens the requests in flight have streamed
(engine.load.driver.LiveLoad.streamed_tokens) to the requests that ended."""

from __future__ import annotations

import asyncio

from engine.load.driver import LiveLoad, _send
from engine.measure.progress import LevelProgress
from engine.types import GenerationRequest


def test_eta_is_steady_while_one_long_request_streams():
    """Three 600-token requests one after another at 10 tok/s: 180 s in all. Sampled every 5 s, the ETA
    is the time really left (±1 s) from the first tokens on, never a jump when a request ends."""
    progress = LevelProgress([600, 600, 600], t0=0.0)
    for t in range(5, 180, 5):
        tokens = 10 * t
        ended, streaming = divmod(tokens, 600)
        progress.update(ended, streaming)
        assert progress.unit == "tokens"
        assert progress.progress == tokens, t
        eta = progress.eta_s(now=float(t))
        assert eta is not None and abs(eta - (180 - t)) <= 1.0, (t, eta)


def test_progress_never_goes_back_while_the_counters_catch_up():
    """A request that ended leaves the streaming count a moment before the ended count takes it: what
    was shown is kept, then the count goes on from there."""
    progress = LevelProgress([100, 100], t0=0.0)
    progress.update(0, 90)
    assert progress.progress == 90
    progress.update(0, 0)  # the request ended; `ended` not yet counted
    assert progress.progress == 90
    progress.update(1, 5)
    assert progress.progress == 105


def test_unknown_lengths_count_requests_and_ignore_streamed_tokens():
    progress = LevelProgress([None, None, None, None], t0=0.0)
    progress.update(1, 500)
    assert progress.unit == "requests" and progress.progress == 1
    assert progress.text(now=10.0) == "1/4 req · ETA 0:30"


class _SlowEngine:
    """Streams `tokens` chunks of one token into the caller's record, one per `step()`."""

    def __init__(self):
        self.step = asyncio.Event()
        self.sent = 0

    async def generate(self, request, on_chunk=None, record=None):
        for _ in range(request.max_tokens):
            await self.step.wait()
            self.step.clear()
            record.chunk_ns.append(self.sent)
            record.chunk_tokens.append(1)
            self.sent += 1
        record.success = True
        return record


def test_live_load_counts_the_tokens_of_the_request_in_flight():
    """The driver's send hands the engine a record the live counters can read while it streams."""

    async def main():
        engine, live = _SlowEngine(), LiveLoad()
        task = asyncio.create_task(_send(engine, GenerationRequest(prompt="x", max_tokens=3), live))
        seen = []
        for _ in range(3):
            await asyncio.sleep(0)
            engine.step.set()
            while engine.step.is_set():
                await asyncio.sleep(0)
            seen.append(live.streamed_tokens())
        record = await task
        return seen, record, live

    seen, record, live = asyncio.run(main())
    assert seen[:2] == [1, 2]
    assert record.chunk_tokens == [1, 1, 1]
    assert live.streamed_tokens() == 0 and live.in_flight == 0  # it ended: no longer in flight
