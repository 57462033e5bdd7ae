"""Vultr: public plan list (``type=vcg``); ``gpu_vram_gb`` is the plan's total VRAM, ``hourly_cost``
is per instance (USD/h).

Vultr's ``vcg`` plans are whole cards and slices of one card: the A100 plans are an 80 GB card
(``vcg-a100-12c-120g-80vram``), two of them (``...-160vram``), and 4-40 GB slices of that card
(``vcg-a100-6c-60g-40vram``: half the card's VRAM, vCPUs and memory). Which a plan is, is decided
from what the plans say, not from which memory sizes a GPU family comes in:

  * the card: the largest single-card memory of the plan's GPU family (pricing.gpus), and the plan
    of exactly that VRAM (the full card's plan) when the list has one;
  * a plan whose VRAM is a whole number of cards is that many whole cards;
  * a plan with less VRAM than a card (or a fraction of cards) whose vCPUs and memory are no more
    than the full card's plan (its id ``<vCPU>c-<RAM>g-<VRAM>vram`` says the same) is a slice:
    skipped as fractional, and counted in the provider's note. It is never keyed as a smaller
    whole GPU (a 40 GB slice is not an A100-40);
  * only when no full card's plan exists to compare with, or the plan has more vCPUs or memory
    than the full card's plan (so it is not a share of it), is a plan whose VRAM is a whole number
    of a smaller card of the family keyed as that card (approximate).

A plan of a GPU the catalogue does not know is listed unmatched (no key, one GPU assumed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx

from engine.settings import settings
from engine.terminal_text import one_line
from pricing.gpus import GPUS, canonical_gpu
from pricing.http import FetchError, number, request_json, require
from pricing.models import LIVE, ON_DEMAND, FetchResult, PriceRow
from pricing.providers.common import base_url, parse_each, skipped_note

DEFAULT_URL = "https://api.vultr.com"
_ID_SHAPE = re.compile(r"(?P<cpu>\d+)c-(?P<ram>\d+(?:\.\d+)?)g-(?P<vram>\d+(?:\.\d+)?)vram", re.IGNORECASE)
_TOLERANCE = 0.05  # a plan's VRAM within 5 % of a whole number of cards (the API rounds GB)


@dataclass(frozen=True)
class _Plan:
    raw: dict
    plan_id: str
    gpu_type: str
    vram_gb: float
    price: float
    vcpus: float | None
    ram_gb: float | None
    key: str | None  # canonical key of the family's match (pricing.gpus), None when unknown
    approximate: bool

    @property
    def family(self) -> str | None:
        return self.key.rsplit("-", 1)[0] if self.key else None


async def fetch(client: httpx.AsyncClient, *, env: Mapping[str, str], now: datetime, timeout: float) -> FetchResult:
    url = base_url(settings(env).vultr_url, DEFAULT_URL) + "/v2/plans"
    data = await request_json(client, "GET", url, timeout=timeout, params={"type": "vcg", "per_page": 500})
    plans = require(data, "plans", list)
    if not plans:
        raise FetchError("the API returned no GPU plans")
    parsed, skipped, first = parse_each(plans, _parse)
    rows, fractional = [], []
    for plan in parsed:
        row = _row(plan, parsed, now)
        if row is None:
            fractional.append(plan.plan_id)
        else:
            rows.append(row)
    if not rows:
        raise FetchError(f"no whole-GPU plans among {len(plans)} ({first or f'{len(fractional)} fractional'})")
    notes = [n for n in (skipped_note(skipped, len(plans), first), fractional_note(fractional)) if n]
    return FetchResult("vultr", rows, True, "; ".join(notes), LIVE, now)


def fractional_note(plan_ids: list[str]) -> str:
    """"4 fractional-GPU plans skipped (slices of one card: vcg-a100-1c-6g-4vram, ...)"."""
    if not plan_ids:
        return ""
    shown = ", ".join(plan_ids[:3]) + (", …" if len(plan_ids) > 3 else "")
    return one_line(f"{len(plan_ids)} fractional-GPU plan(s) skipped (slices of one card: {shown})", 140, join=True,
                    ellipsis=True)


def _parse(plan: object) -> _Plan:
    plan_id = require(plan, "id", str)
    gpu_type = require(plan, "gpu_type", str)
    vram = require(plan, "gpu_vram_gb", (int, float))
    price = require(plan, "hourly_cost", (int, float))
    if not number(price) or not number(vram):
        raise FetchError(f"plan {plan_id}: price or VRAM not positive")
    shape = _ID_SHAPE.search(plan_id)
    vcpus = plan.get("vcpu_count") if isinstance(plan.get("vcpu_count"), (int, float)) else None
    if not vcpus and shape:
        vcpus = float(shape["cpu"])
    ram_mb = plan.get("ram") if isinstance(plan.get("ram"), (int, float)) else None
    ram_gb = ram_mb / 1024 if ram_mb else (float(shape["ram"]) if shape else None)
    match = canonical_gpu(gpu_type.replace("_", " "))
    return _Plan(plan, plan_id, gpu_type, float(vram), float(price), vcpus or None, ram_gb, match.key,
                 match.approximate)


def _family_sizes(family: str) -> list[int]:
    return sorted({spec.memory_gb for k, spec in GPUS.items() if k.rsplit("-", 1)[0] == family}, reverse=True)


def _cards(vram: float, size: float) -> int | None:
    """How many whole cards of `size` GB `vram` is, or None when it is not a whole number of them."""
    k = vram / size
    return round(k) if k >= 1 - _TOLERANCE and abs(k - round(k)) < _TOLERANCE else None


def _share_of(plan: _Plan, card_plan: _Plan) -> bool:
    """The plan has no more vCPUs and memory than the full card's plan (a slice of that card)."""
    for mine, theirs in ((plan.vcpus, card_plan.vcpus), (plan.ram_gb, card_plan.ram_gb)):
        if mine is not None and theirs is not None and mine > theirs * (1 + _TOLERANCE):
            return False
    return True


def _row(plan: _Plan, plans: list[_Plan], now: datetime) -> PriceRow | None:
    """The plan's price row, or None for a slice of a card (fractional)."""
    key, count, approximate = plan.key, 1, plan.approximate
    if plan.family is not None:
        sizes = _family_sizes(plan.family)
        full = sizes[0]
        count = _cards(plan.vram_gb, full)
        if count is not None:
            key = f"{plan.family}-{full}"
        else:
            card_plan = next((p for p in plans if p.gpu_type == plan.gpu_type and _cards(p.vram_gb, full) == 1), None)
            if card_plan is not None and _share_of(plan, card_plan):
                return None  # less than the card, and a share of the card's plan: a slice
            smaller = next(((s, n) for s in sizes[1:] if (n := _cards(plan.vram_gb, s))), None)
            if smaller is None:
                return None  # no whole number of any card of the family: a slice
            (size, count), approximate = smaller, True
            key = f"{plan.family}-{size}"
        if key not in GPUS:
            key = plan.key
    else:
        approximate = True  # unknown card: we cannot tell the count from the VRAM; show it unmatched
    locations = plan.raw.get("locations") if isinstance(plan.raw.get("locations"), list) else []
    region = ",".join(str(x) for x in locations[:4] if x) + ("…" if len(locations) > 4 else "")
    return PriceRow(
        provider="vultr", gpu_key=key, gpu_raw_name=plan.gpu_type, approximate=approximate, gpu_count=count,
        usd_per_hour=plan.price, pricing_type=ON_DEMAND, source=LIVE, fetched_at=now,
        region=region or None, instance_type=plan.plan_id,
    )
