"""Lambda: ``/api/v1/instance-types`` needs ``LAMBDA_API_KEY``; ``price_cents_per_hour`` is US cents
per instance. Without a key we read SkyPilot's public Lambda catalog (CSV) instead."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from datetime import datetime

import httpx

from engine.settings import settings
from pricing.gpus import canonical_gpu
from pricing.http import FetchError, number, request_bytes, request_json, require
from pricing.models import CATALOG, LIVE, ON_DEMAND, FetchResult, PriceRow
from pricing.providers.common import base_url, bearer, parse_each, skipped_note

DEFAULT_URL = "https://cloud.lambda.ai"
KEY_ENV = "LAMBDA_API_KEY"
DEFAULT_CATALOG = (
    "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs/v8/lambda/vms.csv"
)


async def fetch(client: httpx.AsyncClient, *, env: Mapping[str, str], now: datetime, timeout: float) -> FetchResult:
    if not (env.get(KEY_ENV) or "").strip():
        result = await fetch_catalog(client, env=env, now=now, timeout=timeout)
        result.reason = "; ".join(x for x in (f"no {KEY_ENV}: public catalog", result.reason) if x)
        return result
    url = base_url(settings(env).lambda_url, DEFAULT_URL) + "/api/v1/instance-types"
    data = await request_json(client, "GET", url, timeout=timeout, key_hint=KEY_ENV, headers=bearer(env, KEY_ENV))
    types = require(data, "data", dict)
    if not types:
        raise FetchError("the API returned no instance types")
    rows, skipped, first = parse_each(types.items(), lambda pair: _row(*pair, now))
    if not rows:
        raise FetchError(f"no usable GPU instance types ({first or 'none with GPUs'})")
    return FetchResult("lambda", rows, True, skipped_note(skipped, len(types), first), LIVE, now)


def _row(name: str, entry: object, now: datetime) -> PriceRow | None:
    it = require(entry, "instance_type", dict)
    cents = require(it, "price_cents_per_hour", (int, float))
    gpus = it.get("specs", {}).get("gpus") if isinstance(it.get("specs"), dict) else None
    if not isinstance(gpus, int) or isinstance(gpus, bool):
        m = re.match(r"gpu_(\d+)x_", name)
        gpus = int(m.group(1)) if m else 0
    if gpus < 1:
        return None  # CPU instance
    if not number(cents):
        raise FetchError(f"{name}: price not positive")
    description = it.get("gpu_description") if isinstance(it.get("gpu_description"), str) else None
    match = canonical_gpu(description) if description else canonical_gpu(name)
    if match.key is None or match.approximate:
        by_name = canonical_gpu(name)
        if by_name.key and not by_name.approximate:
            match = by_name
    regions = entry.get("regions_with_capacity_available") if isinstance(entry, dict) else None
    names = ([r.get("name") for r in regions if isinstance(r, dict) and r.get("name")]
             if isinstance(regions, list) else [])
    return PriceRow(
        provider="lambda", gpu_key=match.key, gpu_raw_name=description or name, approximate=match.approximate,
        gpu_count=gpus, usd_per_hour=float(cents) / 100.0, pricing_type=ON_DEMAND, source=LIVE, fetched_at=now,
        region=",".join(names[:3]) + ("…" if len(names) > 3 else "") if names else None, instance_type=name,
        note=None if names else "no capacity right now",
    )


async def fetch_catalog(
    client: httpx.AsyncClient, *, env: Mapping[str, str], now: datetime, timeout: float
) -> FetchResult:
    url = (settings(env).lambda_catalog_url or "").strip() or DEFAULT_CATALOG
    body, content_type = await request_bytes(client, "GET", url, timeout=timeout)
    if body[:200].lstrip().startswith(b"<"):
        raise FetchError("catalog is not CSV (got HTML)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError("catalog is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    needed = {"InstanceType", "AcceleratorCount", "Price"}
    if not reader.fieldnames or not needed <= set(reader.fieldnames):
        raise FetchError(f"catalog columns missing: {', '.join(sorted(needed - set(reader.fieldnames or [])))}")
    best: dict[str, dict] = {}
    regions: dict[str, list[str]] = {}
    total = skipped = 0
    first = None
    for rec in reader:
        total += 1
        try:
            count = int(float(rec.get("AcceleratorCount") or 0))
            price = float(rec.get("Price") or "nan")
        except ValueError:
            skipped += 1
            first = first or f"bad number in row {total}"
            continue
        if count < 1:
            continue
        if not number(price):
            skipped += 1
            first = first or f"bad price in row {total}"
            continue
        name = rec["InstanceType"]
        regions.setdefault(name, []).append(rec.get("Region") or "")
        if name not in best or price < best[name]["price"]:
            mem = re.search(r"'SizeInMiB': (\d+)", rec.get("GpuInfo") or "")
            best[name] = {"price": price, "count": count, "mem": int(mem.group(1)) / 1024 if mem else None}
    if not best:
        raise FetchError(f"catalog has no GPU rows ({first or f'{total} rows read'})")
    rows = []
    for name, b in sorted(best.items()):
        match = canonical_gpu(name, b["mem"])
        rows.append(
            PriceRow(
                provider="lambda", gpu_key=match.key, gpu_raw_name=name, approximate=match.approximate,
                gpu_count=b["count"], usd_per_hour=b["price"], pricing_type=ON_DEMAND, source=CATALOG,
                fetched_at=now, region=f"{len(regions[name])} regions", instance_type=name,
                note="SkyPilot catalog",
            )
        )
    return FetchResult("lambda", rows, True, skipped_note(skipped, total, first), CATALOG, now)
