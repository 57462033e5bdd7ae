"""Vultr: public plan list (``type=vcg``); ``gpu_vram_gb`` is the plan's total VRAM, ``hourly_cost``
is per instance. Fractional-GPU plans (a slice of one card) are skipped."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import httpx

from pricing.gpus import GPUS, canonical_gpu
from pricing.http import FetchError, number, request_json, require
from pricing.models import LIVE, ON_DEMAND, FetchResult, PriceRow
from pricing.providers.common import base_url, skipped_note

DEFAULT_URL = "https://api.vultr.com"
URL_ENV = "TOKENTOP_VULTR_URL"


async def fetch(client: httpx.AsyncClient, *, env: Mapping[str, str], now: datetime, timeout: float) -> FetchResult:
    url = base_url(env, URL_ENV, DEFAULT_URL) + "/v2/plans"
    data = await request_json(client, "GET", url, timeout=timeout, params={"type": "vcg", "per_page": 500})
    plans = require(data, "plans", list)
    if not plans:
        raise FetchError("the API returned no GPU plans")
    rows, skipped, fractional, first = [], 0, 0, None
    for plan in plans:
        try:
            row = _row(plan, now)
        except FetchError as exc:
            skipped += 1
            first = first or str(exc)
            continue
        if row is None:
            fractional += 1
        else:
            rows.append(row)
    if not rows:
        raise FetchError(f"no whole-GPU plans among {len(plans)} ({first or f'{fractional} fractional'})")
    return FetchResult("vultr", rows, True, skipped_note(skipped, len(plans), first), LIVE, now)


def _row(plan: object, now: datetime) -> PriceRow | None:
    plan_id = require(plan, "id", str)
    gpu_type = require(plan, "gpu_type", str)
    vram = require(plan, "gpu_vram_gb", (int, float))
    price = require(plan, "hourly_cost", (int, float))
    if not number(price) or not number(vram):
        raise FetchError(f"plan {plan_id}: price or VRAM not positive")
    match = canonical_gpu(gpu_type.replace("_", " "))
    # A100 40 vs 80 is not in the name: try each size the family has and keep the one that divides.
    per_gpu = None
    approximate = match.approximate
    key = match.key
    if key is not None:
        family = key.rsplit("-", 1)[0]
        sizes = sorted({spec.memory_gb for k, spec in GPUS.items() if k.rsplit("-", 1)[0] == family}, reverse=True)
        for size in sizes:
            if vram >= size * 0.95 and abs(vram / size - round(vram / size)) < 0.05:
                per_gpu = size
                break
        if per_gpu is None:
            return None  # fractional: less than one card's memory
        key = f"{family}-{per_gpu}"
        if key not in GPUS:
            key = match.key
        count = max(1, round(vram / per_gpu))
    else:
        count = 1  # unknown card: we cannot tell the count from the VRAM; show it unmatched
        approximate = True
    locations = plan.get("locations") if isinstance(plan.get("locations"), list) else []
    region = ",".join(str(x) for x in locations[:4] if x) + ("…" if len(locations) > 4 else "")
    return PriceRow(
        provider="vultr", gpu_key=key, gpu_raw_name=gpu_type, approximate=approximate, gpu_count=count,
        usd_per_hour=float(price), pricing_type=ON_DEMAND, source=LIVE, fetched_at=now,
        region=region or None, instance_type=plan_id,
    )
