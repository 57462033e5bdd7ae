"""Price rows and per-provider fetch status, as every fetcher returns them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

PROVIDERS: tuple[str, ...] = ("runpod", "vastai", "lambda", "vultr", "coreweave")
PROVIDER_LABELS = {
    "runpod": "RunPod",
    "vastai": "Vast.ai",
    "lambda": "Lambda",
    "vultr": "Vultr",
    "coreweave": "CoreWeave",
}

ON_DEMAND = "on-demand"
SPOT = "spot"

LIVE = "live"  # the provider's own API, just now
CATALOG = "catalog"  # a public catalog (SkyPilot's) when the API needs a key we do not have
SNAPSHOT = "snapshot"  # a table bundled with tokentop, dated

OK = "ok"
STALE = "stale"
FAILED = "failed"


def provider_label(provider: str) -> str:
    return PROVIDER_LABELS.get(provider, provider)


@dataclass
class PriceRow:
    provider: str
    gpu_key: str | None  # canonical key; None = unmatched name (kept, shown as unmatched)
    gpu_raw_name: str
    approximate: bool
    gpu_count: int
    usd_per_hour: float  # the whole instance
    pricing_type: str  # on-demand | spot
    source: str  # live | catalog | snapshot
    fetched_at: datetime
    region: str | None = None
    instance_type: str | None = None
    stat: str | None = None  # marketplaces: "min" or "median" of `offers` offers; None for list prices
    offers: int | None = None
    note: str | None = None  # e.g. "secure cloud", "article, 2024"

    @property
    def usd_per_gpu_hour(self) -> float:
        return self.usd_per_hour / max(1, self.gpu_count)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["usd_per_gpu_hour"] = self.usd_per_gpu_hour
        d["fetched_at"] = self.fetched_at.isoformat()
        return d


@dataclass
class ProviderStatus:
    provider: str
    state: str  # ok | stale | failed
    reason: str = ""  # one line, empty when all went well
    source: str | None = None  # source of the rows shown for this provider
    rows: int = 0
    attempted_at: datetime | None = None  # when we last tried the provider
    as_of: datetime | None = None  # when the rows shown were fetched (or the snapshot's date)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("attempted_at", "as_of"):
            d[k] = d[k].isoformat() if d[k] else None
        return d


@dataclass
class FetchResult:
    provider: str
    rows: list[PriceRow] = field(default_factory=list)
    ok: bool = True
    reason: str = ""  # why it failed, or what was skipped when it partly worked
    source: str = LIVE
    attempted_at: datetime | None = None
