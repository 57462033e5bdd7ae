"""CoreWeave publishes no pricing API: tokentop ships a dated table (data/assets/prices/coreweave.json)."""

from __future__ import annotations

from datetime import datetime, timezone

from pricing.gpus import canonical_gpu
from pricing.http import FetchError, number, require
from pricing.models import ON_DEMAND, SNAPSHOT, FetchResult, PriceRow


def parse_date(value: str) -> datetime:
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        raise FetchError(f"bad date {value!r}") from None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def rows_from_table(table: dict, provider: str = "coreweave") -> FetchResult:
    """Rows of a dated table: {"as_of": "2024-06-01", "source": "...", "rows": [{gpu, gpu_count, usd_per_hour,...}]}"""
    as_of = parse_date(require(table, "as_of", str))
    source_note = table.get("source_label") or table.get("source") or "bundled table"
    rows = []
    for entry in require(table, "rows", list):
        name = require(entry, "gpu", str)
        price = number(require(entry, "usd_per_hour", (int, float)))
        if not price:
            continue
        match = canonical_gpu(name, entry.get("memory_gb"))
        rows.append(
            PriceRow(
                provider=entry.get("provider", provider), gpu_key=entry.get("gpu_key") or match.key,
                gpu_raw_name=name, approximate=bool(entry.get("approximate", match.approximate)),
                gpu_count=int(entry.get("gpu_count", 1)), usd_per_hour=price,
                pricing_type=entry.get("pricing_type", ON_DEMAND), source=SNAPSHOT,
                fetched_at=parse_date(entry["as_of"]) if entry.get("as_of") else as_of,
                region=entry.get("region"), instance_type=entry.get("instance_type"),
                note=entry.get("note") or source_note,
            )
        )
    return FetchResult(provider, rows, True, f"no pricing API: {source_note}", SNAPSHOT, as_of)
