"""RunPod: GraphQL ``gpuTypes``; prices are USD per GPU-hour (secure and community cloud, spot)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import httpx

from engine.settings import settings
from engine.terminal_text import one_line
from pricing.gpus import canonical_gpu
from pricing.http import FetchError, number, request_json, require
from pricing.models import LIVE, ON_DEMAND, SPOT, FetchResult, PriceRow
from pricing.providers.common import base_url, bearer, parse_each, skipped_note

DEFAULT_URL = "https://api.runpod.io"
KEY_ENV = "RUNPOD_API_KEY"  # optional: the gpuTypes query works without one

QUERY = """query GpuTypes {
  gpuTypes {
    id displayName memoryInGb secureCloud communityCloud
    securePrice communityPrice secureSpotPrice communitySpotPrice
    lowestPrice(input: {gpuCount: 1}) { minimumBidPrice uninterruptablePrice stockStatus }
  }
}"""


async def fetch(client: httpx.AsyncClient, *, env: Mapping[str, str], now: datetime, timeout: float) -> FetchResult:
    url = base_url(settings(env).runpod_url, DEFAULT_URL) + "/graphql"
    data = await request_json(
        client, "POST", url, timeout=timeout, key_hint=KEY_ENV, json={"query": QUERY}, headers=bearer(env, KEY_ENV)
    )
    if isinstance(data, dict) and data.get("errors") and not (data.get("data") or {}).get("gpuTypes"):
        first = data["errors"][0] if isinstance(data["errors"], list) and data["errors"] else data["errors"]
        message = first.get("message") if isinstance(first, dict) else first
        raise FetchError(f"GraphQL error: {one_line(message, 100, join=True, ellipsis=True)}")
    gpu_types = require(data, "data.gpuTypes", list)
    if not gpu_types:
        raise FetchError("the API returned no GPU types")
    per_type, skipped, first_reason = parse_each(gpu_types, lambda item: _rows(item, now))
    rows = [row for type_rows in per_type for row in type_rows]
    if not rows:
        raise FetchError(f"no usable prices in {len(gpu_types)} GPU types ({first_reason or 'all unpriced'})")
    return FetchResult("runpod", rows, True, skipped_note(skipped, len(gpu_types), first_reason), LIVE, now)


def _rows(item: object, now: datetime) -> list[PriceRow]:
    gpu_id = require(item, "id", str)
    display = item.get("displayName") if isinstance(item.get("displayName"), str) else gpu_id
    memory = item.get("memoryInGb")
    memory = float(memory) if number(memory) else None
    match = canonical_gpu(gpu_id, memory)
    if match.key is None and display != gpu_id:
        match = canonical_gpu(display, memory)
    lowest = item.get("lowestPrice") if isinstance(item.get("lowestPrice"), dict) else {}
    offers = [
        ("secure cloud", ON_DEMAND, number(item.get("securePrice"))),
        ("community cloud", ON_DEMAND, number(item.get("communityPrice"))),
    ]
    spot = [p for p in (number(item.get("secureSpotPrice")), number(item.get("communitySpotPrice")),
                        number(lowest.get("minimumBidPrice"))) if p]
    if spot:
        offers.append(("lowest bid", SPOT, min(spot)))
    rows = [
        PriceRow(
            provider="runpod",
            gpu_key=match.key,
            gpu_raw_name=display,
            approximate=match.approximate,
            gpu_count=1,
            usd_per_hour=price,
            pricing_type=kind,
            source=LIVE,
            fetched_at=now,
            region=None,
            instance_type=gpu_id,
            note=note,
        )
        for note, kind, price in offers
        if price
    ]
    for key in ("securePrice", "communityPrice"):
        value = item.get(key)
        if value is not None and not isinstance(value, (int, float)):
            raise FetchError(f"field '{key}' is {type(value).__name__}, expected float")
    return rows
