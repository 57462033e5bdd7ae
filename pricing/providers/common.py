"""Shared helpers for the provider modules."""

from __future__ import annotations

from collections.abc import Mapping

from engine.terminal_text import one_line


def base_url(value: str | None, default: str) -> str:
    """The provider's base URL: `value`, its ``TOKENTOP_<PROVIDER>_URL`` setting (engine.settings), when set
    (proxies, mirrors, tests), else `default`; no trailing slash."""
    value = (value or "").strip()
    return (value or default).rstrip("/")


def bearer(env: Mapping[str, str], var: str) -> dict[str, str]:
    """Authorization header from an env var. The key goes into the request only: never stored or shown."""
    key = (env.get(var) or "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def skipped_note(skipped: int, total: int, first_reason: str | None) -> str:
    if not skipped:
        return ""
    return one_line(f"{skipped} of {total} entries skipped ({first_reason})", 140, join=True, ellipsis=True)
