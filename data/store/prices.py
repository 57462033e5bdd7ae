"""GPU prices in the store: save each fetch, read the latest per provider, fall back when a fetch fails.

Fallback order for a provider whose fetch failed: its last stored prices ("stale", with the reason),
else the bundled dated snapshot ("stale", source snapshot), else nothing ("failed").
CoreWeave has no API: its rows always come from the bundled dated table.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from data.paths import assets_dir
from data.store.database import new_fetch_id
from pricing.fetch import LIVE_PROVIDERS, fetch_live
from pricing.models import (
    FAILED,
    OK,
    PROVIDERS,
    SNAPSHOT,
    STALE,
    FetchResult,
    PriceRow,
    ProviderStatus,
)
from pricing.providers.coreweave import rows_from_table

STALE_AFTER = timedelta(hours=24)

_COLUMNS = (
    "provider, gpu_key, gpu_raw_name, approximate, gpu_count, usd_per_hour, usd_per_gpu_hour, pricing_type, "
    "region, instance_type, stat, offers, note, source, fetched_at"
)


def _utc(d: datetime | None) -> datetime | None:
    if d is None:
        return None
    return d.replace(tzinfo=timezone.utc) if d.tzinfo is None else d.astimezone(timezone.utc)


# -- bundled tables -------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _load_asset(name: str) -> dict:
    return json.loads((assets_dir() / "prices" / name).read_text())


def snapshot_rows(provider: str | None = None) -> list[PriceRow]:
    """The bundled dated snapshot (the article's prices), plus CoreWeave's dated table."""
    rows = rows_from_table(_load_asset("snapshot.json"), provider="snapshot").rows
    rows += coreweave_result().rows
    return [r for r in rows if provider is None or r.provider == provider]


def coreweave_result() -> FetchResult:
    return rows_from_table(_load_asset("coreweave.json"), provider="coreweave")


def snapshot_label(provider: str) -> str:
    table = _load_asset("coreweave.json" if provider == "coreweave" else "snapshot.json")
    return f"{table.get('source_label', 'snapshot')} (as of {table['as_of']})"


def article_reference() -> dict[str, Any]:
    return _load_asset("article_reference.json")


# -- writing ----------------------------------------------------------------------------------------
def save_fetch(store, results: Iterable[FetchResult], *, fetch_id: str | None = None) -> str:
    """Store one refresh: a status row per provider and every price row. Returns the fetch id."""
    fetch_id = fetch_id or new_fetch_id()
    with store.transaction() as con:
        for res in results:
            attempted = _utc(res.attempted_at) or datetime.now(timezone.utc)
            con.execute(
                "INSERT INTO price_fetches VALUES (?, ?, ?, ?, ?, ?, ?)",
                [fetch_id, res.provider, attempted, res.ok, res.source if res.ok else None,
                 res.reason or None, len(res.rows)],
            )
            if res.ok and res.rows:
                con.executemany(
                    f"INSERT INTO prices (fetch_id, {_COLUMNS}) VALUES ({', '.join(['?'] * 16)})",
                    [
                        [fetch_id, r.provider, r.gpu_key, r.gpu_raw_name, r.approximate, r.gpu_count,
                         r.usd_per_hour, r.usd_per_gpu_hour, r.pricing_type, r.region, r.instance_type,
                         r.stat, r.offers, r.note, r.source, _utc(r.fetched_at)]
                        for r in res.rows
                    ],
                )
    return fetch_id


async def refresh_async(
    store,
    providers: Iterable[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
    timeout: float | None = None,
) -> list[FetchResult]:
    """Fetch the live providers concurrently, add CoreWeave's table, store everything."""
    wanted = list(providers or PROVIDERS)
    now = now or datetime.now(timezone.utc)
    live = await fetch_live([p for p in wanted if p in LIVE_PROVIDERS], env=env, now=now, timeout=timeout)
    results = list(live.values())
    if "coreweave" in wanted:
        cw = coreweave_result()
        cw.attempted_at = now
        results.append(cw)
    # DuckDB work is blocking: keep it off the event loop the UI runs on.
    await asyncio.to_thread(save_fetch, store, results)
    return results


def refresh(store, providers: Iterable[str] | None = None, **kwargs: Any) -> list[FetchResult]:
    return asyncio.run(refresh_async(store, providers, **kwargs))


# -- reading ----------------------------------------------------------------------------------------
def _rows(store, sql: str, params: list[Any]) -> list[PriceRow]:
    out = []
    for d in store.query(sql, params):
        d.pop("usd_per_gpu_hour", None)
        d.pop("fetch_id", None)
        d["fetched_at"] = _utc(d["fetched_at"])
        out.append(PriceRow(**d))
    return out


def latest_stored(store, provider: str) -> list[PriceRow]:
    """Rows of the provider's most recent fetch that gave prices."""
    return _rows(
        store,
        f"""SELECT {_COLUMNS} FROM prices WHERE fetch_id = (
                SELECT fetch_id FROM price_fetches WHERE provider = ? AND ok AND rows > 0
                ORDER BY attempted_at DESC LIMIT 1) AND provider = ?
            ORDER BY gpu_key NULLS LAST, usd_per_gpu_hour""",
        [provider, provider],
    )


def last_attempt(store, provider: str) -> dict[str, Any] | None:
    rows = store.query(
        "SELECT attempted_at, ok, source, reason, rows FROM price_fetches WHERE provider = ? "
        "ORDER BY attempted_at DESC LIMIT 1",
        [provider],
    )
    if not rows:
        return None
    return {**rows[0], "attempted_at": _utc(rows[0]["attempted_at"])}


def history(store, gpu_key: str, provider: str | None = None) -> list[dict[str, Any]]:
    """Cheapest per-GPU price of each fetch over time, per provider and pricing type."""
    sql = """SELECT provider, pricing_type, fetched_at, min(usd_per_gpu_hour) AS usd_per_gpu_hour, source
             FROM prices WHERE gpu_key = ?"""
    params: list[Any] = [gpu_key]
    if provider:
        sql += " AND provider = ?"
        params.append(provider)
    sql += " GROUP BY provider, pricing_type, fetched_at, source ORDER BY fetched_at, provider"
    return store.query(sql, params)


@dataclass
class PriceBoard:
    """What the Prices screen and `tokentop prices` show: rows and one status per provider."""

    rows: list[PriceRow] = field(default_factory=list)
    statuses: dict[str, ProviderStatus] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def for_gpu(self, gpu_key: str | None) -> list[PriceRow]:
        return [r for r in self.rows if r.gpu_key == gpu_key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "providers": [s.to_dict() for s in self.statuses.values()],
            "prices": [r.to_dict() for r in self.rows],
        }


def price_board(store, *, now: datetime | None = None, providers: Iterable[str] | None = None) -> PriceBoard:
    """Current prices per provider with fallbacks applied, and each provider's status."""
    now = _utc(now) or datetime.now(timezone.utc)
    with store.reading():  # one open of the file for all the queries below
        return _price_board(store, now, providers)


def _price_board(store, now: datetime, providers: Iterable[str] | None) -> PriceBoard:
    board = PriceBoard(now=now)
    for provider in providers or PROVIDERS:
        attempt = last_attempt(store, provider)
        stored = latest_stored(store, provider)
        if provider == "coreweave" and not stored:
            cw = coreweave_result()
            stored, attempt = cw.rows, {"attempted_at": None, "ok": True, "reason": cw.reason, "rows": len(cw.rows)}
        status = ProviderStatus(provider, OK, attempted_at=attempt and attempt["attempted_at"])
        if attempt is None:
            status.state, status.reason = STALE, "not fetched yet"
        elif not attempt["ok"]:
            status.state, status.reason = STALE, attempt["reason"] or "fetch failed"
        else:
            status.reason = attempt["reason"] or ""
        rows = stored
        if not rows:
            rows = snapshot_rows(provider)
            if rows:
                status.state = STALE
                status.reason = "; ".join(
                    x for x in (status.reason, f"showing bundled snapshot ({snapshot_label(provider)})") if x
                )
        if not rows:
            status.state = FAILED
        else:
            status.source = rows[0].source
            status.as_of = max(r.fetched_at for r in rows)
            # One rule for every source (live, catalog, a dated table, the snapshot): prices older than
            # STALE_AFTER are stale, on every screen and in every command.
            if status.state == OK and now - status.as_of > STALE_AFTER:
                status.state = STALE
                old = f"prices are {age_text(status.as_of, now)} old"
                status.reason = "; ".join(x for x in (status.reason, old) if x)
        status.rows = len(rows)
        board.statuses[provider] = status
        board.rows.extend(rows)
    board.rows.sort(key=lambda r: (r.gpu_key is None, r.gpu_key or r.gpu_raw_name, r.usd_per_gpu_hour))
    return board


def refresh_summary(results: Iterable[FetchResult]) -> str:
    """What a refresh did, counted from its fetches (not from the statuses the board falls back to):
    'refresh: 4 of 4 live fetches failed (RunPod: ConnectError ...); CoreWeave: dated table (no API)'."""
    from pricing.models import provider_label

    results = list(results)
    live = [r for r in results if r.provider in LIVE_PROVIDERS]
    ok = [r for r in live if r.ok]
    failed = [r for r in live if not r.ok]
    if live and not ok:
        text = f"refresh failed: {len(failed)} of {len(live)} live fetches failed"
    else:
        text = f"refreshed: {len(ok)} of {len(live)} live fetches ok" + (f", {len(failed)} failed" if failed else "")
    if failed:
        text += " (" + "; ".join(f"{provider_label(r.provider)}: {r.reason or 'failed'}" for r in failed[:2])
        text += "; …)" if len(failed) > 2 else ")"
    if any(r.provider == "coreweave" for r in results):
        text += "; CoreWeave: dated table (no price API)"
    if failed:
        text += "; their last stored prices (or the bundled snapshot) are shown, marked stale"
    return text


def age_text(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 90 * 60:
        return f"{int(seconds // 60)} min"
    if seconds < 36 * 3600:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def source_age(row_or_status, now: datetime) -> str:
    """'live, 5 min' / 'catalog, 2 h' / 'snapshot 2024-01-01' — what the screens show per price."""
    source = row_or_status.source
    when = row_or_status.fetched_at if isinstance(row_or_status, PriceRow) else row_or_status.as_of
    if source == SNAPSHOT:
        return f"snapshot {when:%Y-%m-%d}" if when else "snapshot"
    return f"{source}, {age_text(when, now)} ago" if source else "—"
