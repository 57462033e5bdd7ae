"""Shared helpers for the provider modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from engine.terminal_text import one_line
from pricing.http import FetchError

Item = TypeVar("Item")
Parsed = TypeVar("Parsed")


def base_url(value: str | None, default: str) -> str:
    """The provider's base URL: `value`, its ``TOKENTOP_<PROVIDER>_URL`` setting (engine.settings), when set
    (proxies, mirrors, tests), else `default`; no trailing slash."""
    value = (value or "").strip()
    return (value or default).rstrip("/")


def bearer(env: Mapping[str, str], var: str) -> dict[str, str]:
    """Authorization header from an env var. The key goes into the request only: never stored or shown."""
    key = (env.get(var) or "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def parse_each(items: Iterable[Item], parse: Callable[[Item], Parsed | None]) -> tuple[list[Parsed], int, str | None]:
    """parse(item) for each of a provider's entries, keeping what is not None; an entry whose parse raises
    FetchError is skipped. Returns (kept, how many were skipped, the first skip's reason or None), the
    last two as skipped_note takes them."""
    kept: list[Parsed] = []
    skipped, first_reason = 0, None
    for item in items:
        try:
            parsed = parse(item)
        except FetchError as exc:
            skipped += 1
            first_reason = first_reason or str(exc)
            continue
        if parsed is not None:
            kept.append(parsed)
    return kept, skipped, first_reason


def skipped_note(skipped: int, total: int, first_reason: str | None) -> str:
    if not skipped:
        return ""
    return one_line(f"{skipped} of {total} entries skipped ({first_reason})", 140, join=True, ellipsis=True)
