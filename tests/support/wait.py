"""Waiting on a condition in a Pilot test, never on a fixed sleep: the one wait-for-predicate loop the
TUI and engine tests share (issue 22 step 7 replaced six copies)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_for(pilot, predicate: Callable[[], object], timeout: float = 60.0, what: str = "the app", *,
                   step: float = 0.05) -> None:
    """Let the app run (pilot.pause(step), seconds) until predicate() is truthy. Raises AssertionError
    ("timed out waiting for <what>") once `timeout` seconds of the running loop's clock have passed."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(step)
