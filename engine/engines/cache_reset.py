"""Emptying a server's prefix cache before a measured level, as each server asks for it.

* vLLM: `POST /reset_prefix_cache?reset_external=true`, served only with VLLM_SERVER_DEV_MODE=1
  (vllm/entrypoints/serve/dev/cache/api_router.py in 0.32). `reset_external=true` also empties the KV
  connector's tier (CPU offload, LMCache, ...). vLLM 0.32 answers 200 `{"success": false}` while blocks
  are still held (a request finishing, an offload transfer in flight): "callers may retry". Releases
  before the query flags answer 200 with no body and ignore the flag (FastAPI drops unknown query
  parameters), so the same request serves them.
* SGLang has no /reset_prefix_cache; `POST /flush_cache` empties its radix cache
  (python/sglang/srt/entrypoints/http_server.py: GET or POST; 200 "Cache flushed.", or 400 with a reason
  "when there are running or waiting requests").

Both busy answers are retried with a growing pause for up to RESET_WAIT_S. If the external tier still
cannot be emptied, the local cache alone is reset and the note says so. A server with neither route
says so: levels may then read earlier levels' cache."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import httpx

from engine.terminal_text import one_line

RESET_WAIT_S = 5.0  # how long a busy answer is retried (the orchestrator waits 10 s for the whole reset)
FIRST_PAUSE_S = 0.05
MAX_PAUSE_S = 0.5
_BUSY_HTTP = (429, 503)
_NO_ROUTE = (404, 405)
NEITHER_NOTE = ("the server has neither /reset_prefix_cache (vLLM serves it with VLLM_SERVER_DEV_MODE=1) "
                "nor /flush_cache (SGLang): levels may read earlier levels' prefix cache")


def _vllm_answer(resp: httpx.Response) -> str:
    """'ok', 'busy', 'unknown' (200 with no success flag: older vLLM), 'missing' or 'error'."""
    if resp.status_code in _NO_ROUTE:
        return "missing"
    if resp.status_code in _BUSY_HTTP:
        return "busy"
    if resp.status_code != 200:
        return "error"
    try:
        body: Any = resp.json()
    except ValueError:
        return "unknown"
    if isinstance(body, dict) and isinstance(body.get("success"), bool):
        return "ok" if body["success"] else "busy"
    return "unknown"


async def _retrying(ask: Callable[[], Awaitable[str]], wait_s: float) -> str:
    """Call `ask` until it answers anything but 'busy' or `wait_s` has passed; its last answer."""
    deadline = time.perf_counter() + wait_s
    pause = FIRST_PAUSE_S
    while True:
        answer = await ask()
        if answer != "busy" or time.perf_counter() + pause > deadline:
            return answer
        await asyncio.sleep(pause)
        pause = min(MAX_PAUSE_S, pause * 2)


async def reset_server_prefix_cache(client: httpx.AsyncClient, root: str, *, timeout_s: float,
                                    wait_s: float | None = None,
                                    reason: Callable[[BaseException], str] = str) -> tuple[bool, str]:
    """Empty the prefix cache of the server at `root` (its URL without /v1): (reset?, what happened).

    Never raises for what the server answers or a failed connection; `reason` turns an httpx error
    into words. `wait_s`: how long busy answers are retried (RESET_WAIT_S)."""
    wait_s = RESET_WAIT_S if wait_s is None else wait_s
    last: dict[str, httpx.Response] = {}

    def post(path: str) -> Callable[[], Awaitable[str]]:
        async def ask() -> str:
            resp = await client.post(root + path, timeout=timeout_s)
            if path == "/flush_cache" and resp.status_code == 405:  # SGLang's first releases: GET only
                resp = await client.get(root + path, timeout=timeout_s)
            last[path] = resp
            if path == "/flush_cache":
                if resp.status_code in _NO_ROUTE:
                    return "missing"
                if resp.status_code == 400 or resp.status_code in _BUSY_HTTP:
                    return "busy"
                return "ok" if resp.status_code == 200 else "error"
            return _vllm_answer(resp)
        return ask

    full = "/reset_prefix_cache?reset_external=true"
    try:
        answer = await _retrying(post(full), wait_s)
        if answer == "ok":
            return True, "prefix cache reset (local and external tiers: reset_external=true)"
        if answer == "unknown":
            return True, "prefix cache reset asked (the server's answer does not say whether it was)"
        if answer == "busy":
            # The connector's tier may be what cannot be emptied: the local cache alone, once.
            if await post("/reset_prefix_cache")() == "ok":
                return True, ("local prefix cache reset; the external (KV connector) tier could not be "
                              f"within {wait_s:g} s: levels may read it")
            return False, f"the server refused to reset its prefix cache for {wait_s:g} s (busy)"
        if answer == "error":
            return False, f"POST /reset_prefix_cache answered HTTP {last[full].status_code}"
        # No such route: SGLang's
        answer = await _retrying(post("/flush_cache"), wait_s)
    except httpx.HTTPError as exc:
        return False, f"resetting the prefix cache failed ({reason(exc)})"
    if answer == "ok":
        return True, "prefix cache flushed (SGLang's /flush_cache)"
    if answer == "missing":
        return False, NEITHER_NOTE
    resp = last["/flush_cache"]
    if answer == "busy":
        said = one_line(resp.text, 160)
        return False, (f"the server refused to flush its cache for {wait_s:g} s (HTTP {resp.status_code}"
                       + (f": {said})" if said else ")"))
    return False, f"POST /flush_cache answered HTTP {resp.status_code}"
