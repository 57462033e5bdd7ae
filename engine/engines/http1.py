"""A lean HTTP/1.1 client for the openai engine's streaming POSTs: the token path, and nothing else.

Why not aiohttp (what `vllm bench serve` uses): a streamed response reaches aiohttp's reader through
six Python calls per HTTP chunk (protocol, parser callbacks, the stream reader's buffer) and one
coroutine wake-up per read; profiled against the fast local source that was a third of the client's
CPU (benchmarks/RESULTS.md, "client ceiling"). Here the response is read by an asyncio Protocol: every
read is handled inside `data_received`, which takes the read's arrival time (perf_counter_ns) first,
strips the chunked framing and hands the body bytes to the caller's `on_body(data, now_ns)` — in
tokentop, the SSE parser and the event decoder — so no coroutine runs per read and the timestamp is
taken before anything else happens.

What it speaks: HTTP/1.1 over TCP or TLS (the default SSL context, the server's name checked),
keep-alive connections pooled per client (at most `limit` open, a reused connection the server had
closed is retried once on a fresh one before any byte came back), responses framed by
`Transfer-Encoding: chunked`, `Content-Length` or the connection's end, `Content-Encoding` gzip or
deflate (never asked for: requests carry `Accept-Encoding: identity`), interim 1xx responses skipped.
Timeouts: `connect_timeout_s` to connect, `read_timeout_s` without a byte (both TimeoutError). No
proxies (a measurement goes straight to the server), no HTTP/2, no redirects.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import zlib
from typing import Callable
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 65536
ERROR_BODY_BYTES = 4000  # of a non-200 answer, what is kept for its message

OnBody = Callable[[bytes, int], bool]  # (body bytes of one read, its arrival perf_counter_ns) -> ended


class ProtocolError(ConnectionError):
    """The server's bytes are not HTTP/1.1 as this client reads it, or it closed the connection early."""


class Response:
    """What a streamed request ended with: the status, the reason phrase and, for a status other than
    200, the first ERROR_BODY_BYTES of the body (decoded from its transfer encoding)."""

    __slots__ = ("status", "reason", "body")

    def __init__(self, status: int, reason: str, body: bytes = b""):
        self.status, self.reason, self.body = status, reason, body


class Client:
    """Streaming POSTs to one server (scheme, host and port of `base_url`)."""

    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None, limit: int = 256,
                 connect_timeout_s: float = 5.0):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        host_header = parts.netloc.rsplit("@", 1)[-1]
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head_tail = (f"Host: {host_header}\r\nUser-Agent: tokentop\r\nAccept: */*\r\n"
                           f"Accept-Encoding: identity\r\n{extra}").encode("latin-1")
        self.connect_timeout_s = connect_timeout_s
        self._idle: collections.deque[_Connection] = collections.deque()
        self._limit = asyncio.Semaphore(limit) if limit else None
        self._open: set[_Connection] = set()
        self._closed = False

    async def post(self, path: str, body: bytes, on_body: OnBody, *, read_timeout_s: float,
                   end_grace_s: float = 1.0, content_type: str = "application/json",
                   on_retry: Callable[[], None] | None = None) -> Response:
        """POST `body` to `path` and stream the answer: for a 200, every read's body bytes go to
        `on_body(data, now_ns)` as they arrive (inside the protocol's data_received, `now_ns` taken first);
        once it returns True the rest of the answer is read without it, for at most `end_grace_s` (then the
        connection is closed instead of kept). Returns the Response when the answer has ended. Raises TimeoutError (connect, or no byte for read_timeout_s), OSError/ConnectionError
        (refused, reset, closed mid-answer: ProtocolError). Cancelling it closes the connection.
        `on_retry()` is called before a retry on a fresh connection (the first one was a stale keep-alive)."""
        if self._closed:
            raise ConnectionError("the client is closed")
        head = (b"POST %s HTTP/1.1\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                % (path.encode("latin-1"), self._head_tail, content_type.encode("latin-1"), len(body)))
        if self._limit is not None:
            await self._limit.acquire()
        try:
            for attempt in (0, 1):
                conn, reused = await self._connection()
                try:
                    response = await conn.exchange(head + body, on_body, read_timeout_s, end_grace_s)
                except _Stale:
                    if attempt == 0:  # the server had closed this idle connection: once more, on a new one
                        if on_retry is not None:
                            on_retry()
                        continue
                    raise ProtocolError("the server closed the connection before answering") from None
                except BaseException:
                    conn.abort()
                    raise
                if conn.reusable and not self._closed:
                    self._idle.append(conn)
                else:
                    conn.abort()
                return response
            raise AssertionError("unreachable")
        finally:
            if self._limit is not None:
                self._limit.release()

    async def _connection(self) -> tuple["_Connection", bool]:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to have been closed
            if conn.usable:
                return conn, True
            conn.abort()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout_s):
            _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
                                                   server_hostname=self.host if self.ssl else None)
        return conn, False

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    try:
        return int(text, 16)
    except ValueError:
        raise ProtocolError(f"bad chunk size {text[:20]!r}") from None


class _Stale(Exception):
    """A reused connection closed before any byte of the answer: safe to send again."""


# Response parser states
_HEAD, _SIZE, _DATA, _CRLF, _TRAILER, _LENGTH, _UNTIL_CLOSE, _DONE = range(8)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one exchange at a time."""

    def __init__(self, client: Client):
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.reusable = False
        self.waiter: asyncio.Future | None = None
        self.fresh = True

    # -- asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client._open.add(self)

    def connection_lost(self, exc) -> None:
        self.lost = True
        self.client._open.discard(self)
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.state == _UNTIL_CLOSE:  # a body framed by the connection's end: it has ended
            self._finish()
        elif self.state == _HEAD and not self.got_bytes and not self.fresh:
            waiter.set_exception(_Stale())
        else:
            where = "before answering" if self.state == _HEAD else "before the response ended"
            waiter.set_exception(ProtocolError(f"the server closed the connection {where}"
                                               + (f" ({exc})" if exc else "")))

    def eof_received(self):
        return False  # close the transport: connection_lost says the rest

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()  # this read's arrival: every event it completes arrived now
        self.last_ns = now
        if self.waiter is None or self.waiter.done():
            self.reusable = False  # bytes nobody asked for: this connection is no longer in step
            if self.transport is not None:
                self.transport.close()
            return
        self.got_bytes = True
        try:
            self._read(data, now)
        except Exception as exc:  # a protocol error, or the caller's on_body raised
            self.reusable = False
            if not self.waiter.done():
                self.waiter.set_exception(exc)
            self.abort()

    # -- an exchange --------------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    async def exchange(self, request: bytes, on_body: OnBody, read_timeout_s: float, end_grace_s: float) -> Response:
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        self.on_body = on_body
        self.ended = False
        self.state = _HEAD
        self.buf = b""
        self.got_bytes = False
        self.response: Response | None = None
        self.remaining = 0
        self.keep_alive = True
        self.decompress = None
        self.error_body: list[bytes] | None = None
        self.error_len = 0
        self.reusable = False
        self.read_timeout_s = read_timeout_s
        self.end_grace_s = end_grace_s
        self.last_ns = time.perf_counter_ns()
        timer = loop.call_later(read_timeout_s, self._check_timeout)
        self._timer = timer
        try:
            self.transport.write(request)
            return await waiter
        finally:
            self._timer.cancel()
            self.waiter = None
            self.on_body = None
            self.fresh = False

    def _check_timeout(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        idle_s = (time.perf_counter_ns() - self.last_ns) / 1e9
        if idle_s >= self.read_timeout_s:
            waiter.set_exception(TimeoutError(f"no data for {self.read_timeout_s:g} s"))
            self.abort()
        else:
            self._timer = asyncio.get_running_loop().call_later(self.read_timeout_s - idle_s, self._check_timeout)

    def _end_grace(self) -> None:
        """The caller had its answer, the server did not end the response within end_grace_s: done, and
        the connection is not kept."""
        if self.waiter is not None and not self.waiter.done():
            self.keep_alive = False
            self._finish()
            self.abort()

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _finish(self) -> None:
        """The answer has ended."""
        self.state = _DONE
        self.reusable = self.keep_alive and not self.lost and not self.buf
        response = self.response
        if self.error_body is not None:
            response.body = b"".join(self.error_body)[:ERROR_BODY_BYTES]
        if not self.waiter.done():
            self.waiter.set_result(response)

    # -- parsing ---------------------------------------------------------------------------
    def _read(self, data: bytes, now: int) -> None:
        buf = self.buf + data if self.buf else data
        self.buf = b""
        if self.state == _HEAD:
            buf = self._head(buf)
            if buf is None:
                return
        state = self.state
        if state == _LENGTH:
            take = buf[:self.remaining]
            self.remaining -= len(take)
            if len(buf) > len(take):
                self.buf = buf[len(take):]  # more than the body: out of step
                self.keep_alive = False
            if take:
                self._body(take, now)
            if self.remaining == 0:
                self._finish()
            return
        if state == _UNTIL_CLOSE:
            if buf:
                self._body(buf, now)
            return
        pieces: list[bytes] = []
        pos = 0
        end = len(buf)
        find = buf.find
        while pos < end:
            if state == _SIZE:
                eol = find(b"\r\n", pos)
                if eol < 0:
                    break
                try:
                    size = int(buf[pos:eol], 16)
                except ValueError:  # chunk extensions (";name=value"), or not a size at all
                    size = _chunk_size(buf[pos:eol])
                start = eol + 2
                if size == 0:
                    pos = start
                    state = _TRAILER
                    continue
                stop = start + size
                if stop + 2 <= end:  # the usual case: the whole chunk and its CRLF are in this read
                    if buf[stop:stop + 2] != b"\r\n":
                        raise ProtocolError("a chunk did not end with CRLF")
                    pieces.append(buf[start:stop])
                    pos = stop + 2
                    continue
                pos = start
                self.remaining = size
                state = _DATA
            elif state == _DATA:
                stop = pos + self.remaining
                if stop <= end:
                    pieces.append(buf[pos:stop])
                    self.remaining = 0
                    pos = stop
                    state = _CRLF
                else:
                    pieces.append(buf[pos:])
                    self.remaining -= end - pos
                    pos = end
            elif state == _CRLF:
                if end - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise ProtocolError("a chunk did not end with CRLF")
                pos += 2
                state = _SIZE
            elif state == _TRAILER:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                line_empty = eol == pos
                pos = eol + 2
                if line_empty:
                    state = _DONE
                    break
            else:
                break
        self.state = state
        if pos < end:
            self.buf = buf[pos:]
        if pieces:
            self._body(pieces[0] if len(pieces) == 1 else b"".join(pieces), now)
        if state == _DONE:
            self._finish()

    def _head(self, buf: bytes) -> bytes | None:
        """Parse the status line and headers; returns the bytes after them (None: need more)."""
        while True:
            at = buf.find(b"\r\n\r\n")
            if at < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise ProtocolError("the response head is too large")
                self.buf = buf
                return None
            lines = buf[:at].decode("latin-1").split("\r\n")
            buf = buf[at + 4:]
            status_line = lines[0].split(" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
                raise ProtocolError(f"not an HTTP response: {lines[0][:60]!r}")
            try:
                status = int(status_line[1])
            except ValueError:
                raise ProtocolError(f"bad status line: {lines[0][:60]!r}") from None
            if 100 <= status < 200 and status != 101:
                continue  # an interim answer: the real one follows
            break
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self.response = Response(status, status_line[2] if len(status_line) > 2 else "")
        connection = headers.get("connection", "").lower()
        if status_line[0] == "HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        else:
            self.keep_alive = "close" not in connection
        encoding = headers.get("content-encoding", "").lower().strip()
        if encoding in ("gzip", "x-gzip"):
            self.decompress = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.decompress = zlib.decompressobj()
        if status != 200:
            self.error_body = []
        if status in (204, 304):
            self.state = _LENGTH
            self.remaining = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = _SIZE
        elif "content-length" in headers:
            try:
                self.remaining = int(headers["content-length"])
            except ValueError:
                raise ProtocolError("bad Content-Length") from None
            self.state = _LENGTH
        else:
            self.state = _UNTIL_CLOSE
            self.keep_alive = False
        if self.state == _LENGTH and self.remaining == 0:
            self.buf = buf
            self.keep_alive = self.keep_alive and not buf
            self._finish()
            return None
        return buf

    def _body(self, data: bytes, now: int) -> None:
        if self.decompress is not None:
            data = self.decompress.decompress(data)
            if not data:
                return
        if self.error_body is not None:
            if self.error_len < ERROR_BODY_BYTES:
                self.error_body.append(data)
                self.error_len += len(data)
            if self.error_len >= ERROR_BODY_BYTES:  # enough for a message: the rest is not read
                self.keep_alive = False
                self.state = _DONE
                self._finish()
            return
        if not self.ended and self.on_body(data, now):
            self.ended = True  # the caller has what it needs: the rest is read (framing only), briefly
            if self.state != _DONE:
                self._timer.cancel()
                self._timer = asyncio.get_running_loop().call_later(self.end_grace_s, self._end_grace)
