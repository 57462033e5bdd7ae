"""Vast.ai: a marketplace. We search offers (on-demand and interruptible) and report, per GPU model
and count, the cheapest and the median offer ($/h for the whole offer)."""

from __future__ import annotations

import asyncio
import statistics
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime

import httpx

from engine.settings import settings
from pricing.gpus import canonical_gpu
from pricing.http import FetchError, number, request_json, require
from pricing.models import LIVE, ON_DEMAND, SPOT, FetchResult, PriceRow
from pricing.providers.common import base_url, bearer, skipped_note

DEFAULT_URL = "https://console.vast.ai"
KEY_ENV = "VASTAI_API_KEY"  # optional
MAX_BYTES = 24 * 1024 * 1024  # a few thousand offers of ~3 kB each
LIMIT = 3000


def search_body(kind: str) -> dict:
    return {
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "num_gpus": {"gte": 1},
        "type": kind,  # on-demand | bid
        "order": [["dph_total", "asc"]],
        "limit": LIMIT,
    }


async def _search(client, url, kind, env, timeout):
    data = await request_json(
        client, "POST", url, timeout=timeout, max_bytes=MAX_BYTES, key_hint=KEY_ENV,
        json=search_body(kind), headers=bearer(env, KEY_ENV),
    )
    return require(data, "offers", list)


async def fetch(client: httpx.AsyncClient, *, env: Mapping[str, str], now: datetime, timeout: float) -> FetchResult:
    url = base_url(settings(env).vastai_url, DEFAULT_URL) + "/api/v0/bundles/"
    results = await asyncio.gather(
        _search(client, url, "on-demand", env, timeout), _search(client, url, "bid", env, timeout),
        return_exceptions=True,
    )
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, FetchError):
            raise r
    if all(isinstance(r, FetchError) for r in results):
        raise results[0]
    notes = []
    rows: list[PriceRow] = []
    for kind, result in zip((ON_DEMAND, SPOT), results):
        if isinstance(result, FetchError):
            notes.append(f"{'interruptible' if kind == SPOT else 'on-demand'} search failed: {result}")
            continue
        if not result:
            notes.append(f"no {'interruptible' if kind == SPOT else 'on-demand'} offers")
            continue
        kind_rows, skipped, first = summarise(result, kind, now)
        rows.extend(kind_rows)
        if skipped:
            notes.append(skipped_note(skipped, len(result), first))
    if not rows:
        raise FetchError("; ".join(notes) or "no offers")
    return FetchResult("vastai", rows, True, "; ".join(notes), LIVE, now)


def summarise(offers: list, kind: str, now: datetime) -> tuple[list[PriceRow], int, str | None]:
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    memory: dict[tuple[str, int], float | None] = {}
    skipped, first = 0, None
    for offer in offers:
        try:
            name = require(offer, "gpu_name", str)
            count = require(offer, "num_gpus", int)
            price = require(offer, "dph_total", (int, float))
            if kind == SPOT and number(offer.get("min_bid")):
                price = offer["min_bid"]  # what an interruptible instance starts at
            if count < 1 or not number(price):
                raise FetchError("num_gpus or price not positive")
            ram_mb = offer.get("gpu_ram")
            groups[(name, count)].append(float(price))
            memory.setdefault((name, count), float(ram_mb) / 1024 if number(ram_mb) else None)
        except FetchError as exc:
            skipped += 1
            first = first or str(exc)
    rows = []
    for (name, count), prices in sorted(groups.items()):
        match = canonical_gpu(name, memory[(name, count)])
        for stat, value in (("min", min(prices)), ("median", statistics.median(prices))):
            rows.append(
                PriceRow(
                    provider="vastai", gpu_key=match.key, gpu_raw_name=name, approximate=match.approximate,
                    gpu_count=count, usd_per_hour=round(value, 4), pricing_type=kind, source=LIVE, fetched_at=now,
                    region=None, instance_type=None, stat=stat, offers=len(prices),
                    note="interruptible" if kind == SPOT else None,
                )
            )
    return rows, skipped, first
