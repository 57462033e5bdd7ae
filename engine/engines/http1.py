"""A lean HTTP/1.1 client for the openai engine's streaming POSTs: the token path, and nothing else.

Why not aiohttp (what `vllm bench serve` uses): a streamed response reaches aiohttp's reader through
six Python calls per HTTP chunk (protocol, parser callbacks, the stream reader's buffer) and one
coroutine wake-up per read; profiled against the fast local source that was a third of the client's
CPU, and this client halved the whole client's profiled CPU (2.38 -> 1.18 s for 400 requests x 64
chunks) and took tokentop from 1.18x / 1.00x to 1.29x / 1.22x `vllm bench serve`'s requests/s at 32 /
128 users (benchmarks/RESULTS.md, "client ceiling"). Here the response is read by an asyncio Protocol:
every read is handled inside `data_received`, which takes the read's arrival time (perf_counter_ns)
first, then feeds the bytes to the parser and hands the read's body bytes, in one call, to the caller's
`on_body(data, now_ns)` — in tokentop, the SSE parser and the event decoder — so no coroutine runs per
read and the timestamp is taken before anything else happens.

The framing (status line, headers, chunked coding, Content-Length, the keep-alive decision, interim
1xx answers) is llhttp's, through httptools (MagicStack's binding, the parser uvicorn uses), not ours:
its per-chunk work is C, and the only Python it calls per HTTP chunk is a list's `append`. Against the
hand-written parser it replaced, fed the same reads without a socket, it needs 0.3-0.5x the time per
64-event answer (48-131 µs instead of 116-220 µs, 1 to 65 chunks per read); end to end against the
fast source, where the source sets the pace, the two are within a busy machine's noise (paired
requests/s 0.86-0.98x at 32 streams, 0.99-1.08x at 128; benchmarks/http1_ab.py, RESULTS.md).

What it speaks: HTTP/1.1 over TCP or TLS (the default SSL context, the server's name checked),
keep-alive connections pooled per client (at most `limit` open, a reused connection the server had
closed is retried once on a fresh one before any byte came back), responses framed by
`Transfer-Encoding: chunked`, `Content-Length` or the connection's end, `Content-Encoding` gzip or
deflate (never asked for: requests carry `Accept-Encoding: identity`), interim 1xx responses skipped,
response heads up to MAX_HEAD_BYTES. What llhttp refuses (a bad chunk size, a status line that is not
HTTP, both Content-Length and chunked, ...) is a ProtocolError carrying llhttp's reason.
Timeouts: `connect_timeout_s` to connect, `read_timeout_s` without a byte (both TimeoutError). No
proxies (a measurement goes straight to the server), no HTTP/2, no redirects.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import zlib
from typing import Any, Callable
from urllib.parse import urlsplit

import httptools

from engine.errors import TokentopError

MAX_HEAD_BYTES = 65536
ERROR_BODY_BYTES = 4000  # of a non-200 answer, what is kept for its message

OnBody = Callable[[bytes, int], bool]  # (body bytes of one read, its arrival perf_counter_ns) -> ended


class ProtocolError(TokentopError, ConnectionError):
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
        connection is closed instead of kept; a server that closes it first — SGLang after an error event —
        has still answered). Returns the Response when the answer has ended. Raises TimeoutError (connect, or
        no byte for read_timeout_s), OSError/ConnectionError (refused, reset, closed mid-answer: ProtocolError).
        Cancelling it closes the connection.
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


class _Stale(TokentopError):
    """A reused connection closed before any byte of the answer: safe to send again."""


def _malformed(exc: Exception) -> ProtocolError:
    """llhttp's reason for refusing the server's bytes (httptools' HttpParserError: 'Invalid character in
    chunk size', 'Expected HTTP/, RTSP/ or ICE/', ...), as a ProtocolError."""
    return ProtocolError(f"the server's answer is not valid HTTP/1.1: {exc}")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one exchange at a time. Its llhttp parser lives as long as the
    connection: on a kept connection the next answer starts where the last one ended.

    The methods named on_* are httptools' parser callbacks (it looks them up once, when the parser is
    made). `on_body` is the `append` of a list: llhttp calls it once per span of body bytes (each HTTP
    chunk's data), so no Python frame runs per chunk, and `data_received` joins one read's spans into the
    one `on_body(data, now_ns)` call the caller gets."""

    # One exchange's state, set at its start by exchange() (declared here for the type checker).
    ended: bool
    got_bytes: bool
    head_bytes: int
    header_bytes: int
    head_done: bool
    complete: bool
    extra: bool
    reason: bytes
    encoding: bytes
    framed: bool
    until_close: bool
    response: Response | None
    keep_alive: bool
    body_pieces: int
    decompress: Any
    error_body: list[bytes] | None
    error_len: int
    sink: OnBody | None

    def __init__(self, client: Client):
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.reusable = False
        self.waiter: asyncio.Future | None = None
        self.fresh = True
        self.pieces: list[bytes] = []
        self.on_body = self.pieces.append
        self.parser = httptools.HttpResponseParser(self)

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
        if self.head_done and self.until_close:  # a body framed by the connection's end: it has ended
            self._finish()
        elif self.ended:  # the caller had all it needed ([DONE], an error event): the close ends the grace
            self._finish()
        elif not self.got_bytes and not self.fresh:
            waiter.set_exception(_Stale())
        else:
            where = "before the response ended" if self.head_done else "before answering"
            waiter.set_exception(ProtocolError(f"the server closed the connection {where}"
                                               + (f" ({exc})" if exc else "")))

    def eof_received(self):
        return False  # close the transport: connection_lost says the rest

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()  # this read's arrival: every event it completes arrived now
        self.last_ns = now
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.reusable = False  # bytes nobody asked for: this connection is no longer in step
            if self.transport is not None:
                self.transport.close()
            return
        self.got_bytes = True
        pieces = self.pieces
        try:
            try:
                self.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                if not self.complete:
                    raise _malformed(exc) from None
                self.extra = True  # not HTTP after the answer: the answer stands, the connection goes
            if not self.head_done:  # every byte so far was head (the answer's, or an interim one's)
                self.head_bytes += len(data)
                if self.head_bytes > MAX_HEAD_BYTES:
                    raise ProtocolError("the response head is too large")
            if pieces:
                if self.complete:
                    del pieces[self.body_pieces:]  # spans of an answer after ours (the connection goes)
                if pieces:
                    body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                    pieces.clear()
                    self._body(body, now)
            if self.complete:
                self._finish()
        except Exception as exc:  # a protocol error, or the caller's on_body raised
            pieces.clear()
            self.reusable = False
            if not waiter.done():
                waiter.set_exception(exc)
            self.abort()

    # -- httptools (llhttp) callbacks, inside feed_data ---------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True  # another answer after ours, that nobody asked for
            return
        self.reason = b""
        self.encoding = b""
        self.framed = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason  # (in two parts when a read ends inside the status line)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            return  # a trailer
        self.header_bytes += len(name) + len(value)
        name = name.lower()
        if name == b"content-encoding":
            self.encoding = value.strip().lower()
        elif name == b"content-length" or name == b"transfer-encoding" and b"chunked" in value.lower():
            self.framed = True

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # an interim answer: the real one follows
        if self.header_bytes > MAX_HEAD_BYTES:  # one read brought it all: data_received says it
            self.head_bytes = self.header_bytes
            return
        self.head_done = True
        self.response = Response(status, self.reason.decode("latin-1"))
        if self.encoding in (b"gzip", b"x-gzip"):
            self.decompress = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding == b"deflate":
            self.decompress = zlib.decompressobj()
        if status != 200:
            self.error_body = []
        # neither Content-Length nor chunked: the body ends with the connection (llhttp reads it all as
        # body; httptools has no end-of-input call, so connection_lost ends it)
        self.until_close = not self.framed and status not in (204, 304)

    def on_message_complete(self) -> None:
        if self.complete or not self.head_done:
            return  # the end of an interim answer, or of one after ours
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # now: llhttp resets it for the next message
        self.body_pieces = len(self.pieces)

    # -- an exchange --------------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    async def exchange(self, request: bytes, on_body: OnBody, read_timeout_s: float, end_grace_s: float) -> Response:
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        self.sink = on_body
        self.ended = False  # the caller's on_body said the stream has ended
        self.got_bytes = False
        self.head_bytes = 0  # bytes read before the head was complete
        self.header_bytes = 0  # of header names and values
        self.head_done = False  # the final answer's head has been read
        self.complete = False  # the final answer has ended (llhttp's on_message_complete)
        self.extra = False  # bytes came after it: the connection is out of step
        self.reason = b""
        self.encoding = b""
        self.framed = False
        self.until_close = False
        self.response = None
        self.keep_alive = False
        self.body_pieces = 0
        self.decompress = None
        self.error_body = None
        self.error_len = 0
        self.reusable = False
        self.read_timeout_s = read_timeout_s
        self.end_grace_s = end_grace_s
        self.last_ns = time.perf_counter_ns()
        timer = loop.call_later(read_timeout_s, self._check_timeout)
        self._timer = timer
        try:
            self.transport.write(request)  # type: ignore[union-attr]  # a connection is made before its exchange
            return await waiter
        finally:
            self._timer.cancel()
            self.waiter = None
            self.sink = None
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
            self._finish()
            self.abort()

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _finish(self) -> None:
        """The answer has ended (or the caller has all it needs of it): the waiter gets the Response. The
        connection is kept only after a whole answer that llhttp says keeps it, with nothing after it."""
        waiter = self.waiter  # called only while an exchange waits: set, and the head read
        if waiter.done():  # type: ignore[union-attr]
            return
        self.reusable = self.complete and self.keep_alive and not self.extra and not self.lost
        response = self.response
        if self.error_body is not None:
            response.body = b"".join(self.error_body)[:ERROR_BODY_BYTES]  # type: ignore[union-attr]
        waiter.set_result(response)  # type: ignore[union-attr]

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
                self._finish()
            return
        if not self.ended and self.sink(data, now):  # type: ignore[misc]  # set for the exchange
            self.ended = True  # the caller has what it needs: the rest is read (framing only), briefly
            if not self.complete:
                self._timer.cancel()
                self._timer = asyncio.get_running_loop().call_later(self.end_grace_s, self._end_grace)
