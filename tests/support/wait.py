"""Waiting on a condition, never on a fixed sleep (issue 22 step 7 replaced the ad-hoc loops): wait_for in a
Pilot test (the app keeps running while it waits), wait_until everywhere else (a plain polling loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def _said(what: str | Callable[[], object]) -> object:
    return what() if callable(what) else what


async def wait_for(pilot, predicate: Callable[[], object], timeout: float = 60.0,
                   what: str | Callable[[], object] = "the app", *, step: float = 0.05) -> None:
    """Let the app run (pilot.pause(step), seconds) until predicate() is truthy. Raises AssertionError
    ("timed out waiting for <what>") once `timeout` seconds of the running loop's clock have passed;
    `what` may be a function, called then, to describe what the app showed instead."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {_said(what)}")
        await pilot.pause(step)


def screen_picture(app) -> str:
    """The screen as drawn now, text and styles (what an SVG snapshot records), for comparing two frames."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(f"{segment.text}\0{segment.style}" for segment in strip) for strip in strips)


async def wait_steady(pilot, timeout: float = 30.0, *, frames: int = 3, step: float = 0.1) -> None:
    """Let the app run until the screen draws the same picture (screen_picture) `frames` times in a row,
    `step` seconds apart, with no animation scheduled: the charts and tables have laid out and drawn
    (what a snapshot waits for). Raises AssertionError once `timeout` seconds have passed."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    await pilot.wait_for_scheduled_animations()
    last, same = screen_picture(pilot.app), 1
    while same < frames:
        if loop.time() > end:
            raise AssertionError("timed out waiting for the screen to stop changing")
        await pilot.pause(step)
        await pilot.wait_for_scheduled_animations()
        picture = screen_picture(pilot.app)
        same = same + 1 if picture == last else 1
        last = picture


def wait_until(predicate: Callable[[], object], timeout: float = 30.0,
               what: str | Callable[[], object] = "the condition", *, step: float = 0.02, quiet: bool = False):
    """Call predicate() every `step` seconds (time.sleep; for tests without a running event loop: threads,
    processes, files, sockets, tmux panes) until it returns something truthy, and return that value. Once
    `timeout` seconds of time.monotonic() have passed (after one last try) it raises AssertionError ("timed
    out waiting for <what>"), or with quiet=True returns the last falsy value, for a caller that asserts
    with its own message. `what` may be a function, called at the timeout, as for wait_for."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            break
        time.sleep(step)
    if not value and not quiet:
        raise AssertionError(f"timed out waiting for {_said(what)}")
    return value


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    """A predicate for wait_until: a TCP connection to host:port succeeds (a server is listening)."""
    import socket

    try:
        socket.create_connection((host, port), timeout=0.2).close()
    except OSError:
        return False
    return True


def answers(url: str) -> bool:
    """A predicate for wait_until: GET `url` returns 200 (a server is up and answering)."""
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
