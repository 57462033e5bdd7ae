"""Fetch every provider at once (asyncio.gather), each with its own timeout; one failure never stops
the others. CoreWeave has no API and is not fetched here (its dated table lives with the data package).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

import httpx

from engine.terminal_text import one_line
from pricing.http import FetchError
from pricing.models import FetchResult
from pricing.providers import lambdalabs, runpod, vastai, vultr

FETCHERS = {
    "runpod": runpod.fetch,
    "vastai": vastai.fetch,
    "lambda": lambdalabs.fetch,
    "vultr": vultr.fetch,
}
LIVE_PROVIDERS: tuple[str, ...] = tuple(FETCHERS)

# Per-provider timeouts in seconds (Vast's search returns thousands of offers).
TIMEOUTS = {"runpod": 10.0, "vastai": 20.0, "lambda": 10.0, "vultr": 10.0}


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def fetch_one(
    provider: str,
    client: httpx.AsyncClient,
    *,
    env: Mapping[str, str],
    now: datetime,
    timeout: float | None = None,
) -> FetchResult:
    fetcher = FETCHERS[provider]
    t = timeout if timeout is not None else TIMEOUTS.get(provider, 10.0)
    try:
        # The outer wait_for is a backstop for a server that trickles bytes forever.
        return await asyncio.wait_for(fetcher(client, env=env, now=now, timeout=t), timeout=t * 3)
    except FetchError as exc:
        return FetchResult(provider, [], False, one_line(exc, 140, join=True, ellipsis=True), attempted_at=now)
    except asyncio.TimeoutError:
        return FetchResult(provider, [], False, f"timed out after {t * 3:g} s", attempted_at=now)
    except Exception as exc:  # a parser bug must not take the other providers down
        reason = one_line(f"unexpected {type(exc).__name__}: {exc}", 140, join=True, ellipsis=True)
        return FetchResult(provider, [], False, reason, attempted_at=now)


async def fetch_live(
    providers: Iterable[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
    timeout: float | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, FetchResult]:
    """Fetch the live providers concurrently; returns one FetchResult per provider, in order."""
    wanted = [p for p in (providers or LIVE_PROVIDERS) if p in FETCHERS]
    env = os.environ if env is None else env
    now = now or _now()
    headers = {"User-Agent": "tokentop", "Accept": "application/json"}
    async with httpx.AsyncClient(headers=headers, follow_redirects=True, transport=transport) as client:
        results = await asyncio.gather(
            *(fetch_one(p, client, env=env, now=now, timeout=timeout) for p in wanted)
        )
    return dict(zip(wanted, results))
