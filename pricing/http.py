"""HTTP for the fetchers: bounded reads, one-line reasons, keys kept out of every message.

API responses are untrusted: a proxy can answer with an HTML page, a truncated body, or tens of
megabytes. Each failure becomes a ``FetchError`` whose message is one short line fit for a status bar.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from engine.errors import TokentopError
from engine.terminal_text import one_line

DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class FetchError(TokentopError):
    """A provider could not be read; ``str(exc)`` is a one-line reason."""


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"response too large ({_mb(int(declared))} > {_mb(max_bytes)} cap); ignored")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise FetchError(f"response too large (over the {_mb(max_bytes)} cap); ignored")
    return bytes(body)


async def request_bytes(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    key_hint: str | None = None,
    **kwargs: Any,
) -> tuple[bytes, str]:
    """Send a request; return (body, content-type) or raise FetchError with a one-line reason.

    ``key_hint`` names the env var that holds this provider's key, for the 401/403 message.
    """
    try:
        async with client.stream(method, url, timeout=timeout, **kwargs) as response:
            if response.status_code in (401, 403):
                has_key = "authorization" in {k.lower() for k in (kwargs.get("headers") or {})}
                if has_key:
                    why = "the API key was rejected"
                else:
                    why = "the API wants a key" + (f" (set {key_hint})" if key_hint else "")
                raise FetchError(f"HTTP {response.status_code}: {why}")
            if response.status_code >= 400:
                raise FetchError(f"HTTP {response.status_code} {response.reason_phrase}".strip())
            body = await read_capped(response, max_bytes)
            return body, response.headers.get("content-type", "")
    except FetchError:
        raise
    except httpx.TimeoutException:
        raise FetchError(f"timed out after {timeout:g} s") from None
    except httpx.ConnectError as exc:
        raise FetchError(f"cannot connect: {one_line(exc, 80, join=True, ellipsis=True)}") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {one_line(exc, 80, join=True, ellipsis=True)}") from None


async def request_json(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
    """request_bytes (the same keywords: timeout in seconds, required; max_bytes, key_hint and httpx's
    request keywords), its body parsed as JSON. FetchError with a one-line reason for HTML (a login page
    or proxy), an empty body or invalid JSON, as for a failed request."""
    body, content_type = await request_bytes(client, method, url, **kwargs)
    head = body[:200].lstrip().lower()
    if head.startswith(b"<") or "html" in content_type.lower():
        raise FetchError(f"not JSON: got {content_type.split(';')[0] or 'HTML'} (a login page or proxy?)")
    if not body.strip():
        raise FetchError("empty response body")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "undecodable bytes"
        raise FetchError(f"invalid JSON ({msg} at byte {getattr(exc, 'pos', '?')} of {len(body)})") from None


def require(obj: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    """Walk ``a.b.c`` through dicts; raise FetchError naming the field when missing or mistyped."""
    cur = obj
    walked = []
    for part in path.split("."):
        walked.append(part)
        if not isinstance(cur, dict) or part not in cur:
            raise FetchError(f"field '{'.'.join(walked)}' missing")
        cur = cur[part]
    if not isinstance(cur, kind) or (isinstance(cur, bool) and kind in (int, float, (int, float))):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise FetchError(f"field '{path}' is {type(cur).__name__}, expected {names}")
    return cur


def number(value: Any) -> float | None:
    """A positive finite price, or None (missing, null, zero, a string...)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    if v != v or v <= 0 or v == float("inf"):
        return None
    return v
