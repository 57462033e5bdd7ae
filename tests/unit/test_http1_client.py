"""The openai engine's own HTTP/1.1 client (engine/engines/http1.py: httptools' llhttp parser on an
asyncio Protocol) against raw responses on loopback: every framing a server may choose gives the same
record, connections are kept and reused, a keep-alive connection the server dropped is retried once,
broken answers are failures of kind "connection" that say why, one read is one on_body call, and the
answer reads the same however the reads cut its bytes."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading

import pytest

import engine.engines.openai_engine as openai_engine
from engine.engines import http1
from engine.engines.host import EngineHost
from engine.engines.openai_engine import OpenAIEngine
from engine.types import GenerationRequest


def _sse(tokens: int = 3) -> bytes:
    out = b""
    for i in range(tokens):
        ev = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f" w{i}"},
                                                               "finish_reason": "length" if i == tokens - 1 else None}],
              "usage": {"prompt_tokens": 4, "completion_tokens": i + 1, "total_tokens": 5 + i}}
        out += b"data: " + json.dumps(ev).encode() + b"\n\n"
    return out + b"data: [DONE]\n\n"


def _chunked(body: bytes, size: int = 7, ext: bytes = b"", trailer: bytes = b"") -> bytes:
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
    return out + b"0\r\n" + trailer + b"\r\n"


OK_CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class RawServer:
    """Answers each POST with `answer(n)` -> (raw bytes, what to do after: "keep" | "close" | "drop-next"),
    n counting POSTs; GET /v1/models lists one model. Counts the connections POSTs came on."""

    def __init__(self, answer):
        self.answer = answer
        self.posts = 0
        self.post_connections: set[int] = set()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._conn_ids = 0

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer):
        self._conn_ids += 1
        conn = self._conn_ids
        drop_next = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)}
                await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if lines[0].startswith("GET"):
                    payload = json.dumps({"object": "list", "data": [{"id": "raw", "object": "model"}]}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(payload), payload))
                    await writer.drain()
                    continue
                if drop_next:  # a keep-alive connection the server drops without answering
                    writer.transport.abort()
                    return
                self.posts += 1
                self.post_connections.add(conn)
                raw, after = self.answer(self.posts)
                writer.write(raw)
                await writer.drain()
                if after == "close":
                    writer.close()
                    return
                drop_next = after == "drop-next"
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


def _requests(server: RawServer, n: int = 1):
    host = EngineHost(OpenAIEngine(server.url))
    host.start().result(10)
    try:
        return [host.submit(GenerationRequest("q", 3)).result(30) for _ in range(n)]
    finally:
        host.shutdown()


def _ok(record) -> None:
    assert record.success, record.error
    assert record.text == " w0 w1 w2" and record.chunk_tokens == [1, 1, 1] and len(record.chunk_ns) == 3
    assert record.finish_reason == "length" and record.token_count_source == "usage"


@pytest.mark.parametrize("raw", [
    pytest.param(OK_CHUNKED + _chunked(_sse()), id="chunked"),
    pytest.param(OK_CHUNKED + _chunked(_sse(), size=1), id="chunked-one-byte-chunks"),
    pytest.param(OK_CHUNKED + _chunked(_sse(), ext=b";name=value", trailer=b"x-trailer: 1\r\n"), id="extensions-trailer"),
    pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(_sse()), _sse()), id="content-length"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" + OK_CHUNKED + _chunked(_sse()), id="interim-100"),
    pytest.param(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
                 + _chunked(gzip.compress(_sse())), id="gzip"),
])
def test_every_framing_gives_the_same_record(raw):
    with RawServer(lambda n: (raw, "keep")) as server:
        (record,) = _requests(server)
    _ok(record)


def test_a_body_framed_by_the_connections_end():
    raw = b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + _sse()
    with RawServer(lambda n: (raw, "close")) as server:
        records = _requests(server, 2)
    for record in records:
        _ok(record)
    assert len(server.post_connections) == 2  # not kept: the body ended with the connection


def test_connections_are_kept_and_reused():
    with RawServer(lambda n: (OK_CHUNKED + _chunked(_sse()), "keep")) as server:
        records = _requests(server, 5)
    for record in records:
        _ok(record)
    assert server.posts == 5 and len(server.post_connections) == 1


def test_connection_close_is_honoured():
    raw = OK_CHUNKED.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n") + _chunked(_sse())
    with RawServer(lambda n: (raw, "keep")) as server:
        records = _requests(server, 3)
    for record in records:
        _ok(record)
    assert len(server.post_connections) == 3


def test_a_kept_connection_the_server_dropped_is_retried_once_on_a_new_one():
    with RawServer(lambda n: (OK_CHUNKED + _chunked(_sse()), "drop-next")) as server:
        first, second = _requests(server, 2)
    _ok(first)
    _ok(second)
    assert server.posts == 2 and len(server.post_connections) == 2


def test_an_error_status_keeps_the_servers_message_from_a_chunked_body():
    body = json.dumps({"error": {"message": "overloaded, retry", "type": "busy"}}).encode()
    raw = b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n" + _chunked(body, size=5)
    with RawServer(lambda n: (raw, "keep")) as server:
        (record,) = _requests(server)
    assert not record.success and record.error_kind == "http" and record.http_status == 503
    assert record.error == "HTTP 503: overloaded, retry (busy)"


def test_an_error_status_with_an_empty_body_says_the_reason_phrase_and_keeps_the_connection():
    answers = [b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n", OK_CHUNKED + _chunked(_sse())]
    with RawServer(lambda n: (answers[n - 1], "keep")) as server:
        first, second = _requests(server, 2)
    assert not first.success and first.http_status == 429 and first.error == "HTTP 429: Too Many Requests"
    _ok(second)
    assert len(server.post_connections) == 1


def test_a_long_error_body_is_cut_at_its_message_and_the_connection_dropped(monkeypatch):
    """A 503 whose body never ends: the first ERROR_BODY_BYTES are its message, at once (not a read
    timeout), and the connection is not kept (the rest of the body was never read)."""
    monkeypatch.setattr(openai_engine, "READ_TIMEOUT_S", 5.0)
    endless = (b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n"
               + _chunked(b"busy " * 2000, size=500)[:-5])  # without the last chunk
    answers = [endless, OK_CHUNKED + _chunked(_sse())]
    with RawServer(lambda n: (answers[n - 1], "keep")) as server:
        first, second = _requests(server, 2)
    assert not first.success and first.error_kind == "http" and first.http_status == 503
    assert first.error.startswith("HTTP 503: busy busy") and len(first.error) < http1.ERROR_BODY_BYTES + 20
    _ok(second)
    assert len(server.post_connections) == 2


def test_a_stream_the_server_leaves_open_after_done_ends_after_the_grace(monkeypatch):
    """[DONE] came, the chunked body never ends: the record is complete after DRAIN_AFTER_END_S and the
    connection is not kept."""
    monkeypatch.setattr(openai_engine, "DRAIN_AFTER_END_S", 0.2)
    monkeypatch.setattr(openai_engine, "READ_TIMEOUT_S", 20.0)
    open_ended = OK_CHUNKED + _chunked(_sse())[:-5]  # without the last chunk
    with RawServer(lambda n: (open_ended, "keep")) as server:
        first, second = _requests(server, 2)
    _ok(first)
    _ok(second)
    assert len(server.post_connections) == 2


@pytest.mark.parametrize("raw, why", [
    pytest.param(OK_CHUNKED + b"zz\r\nabc\r\n", "Invalid character in chunk size", id="bad-chunk-size"),
    pytest.param(OK_CHUNKED + b"3\r\nabcXY", "Expected LF after chunk data", id="chunk-without-crlf"),
    pytest.param(b"SPDY/3 200 OK\r\n\r\n", "Expected HTTP/", id="not-http"),
    pytest.param(b"HTTP/1.1 2x0 OK\r\n\r\n", "Invalid status code", id="bad-status"),
    pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: many\r\n\r\n", "Invalid character in Content-Length",
                 id="bad-content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 70000 + b"\r\n\r\n", "the response head is too large",
                 id="head-too-large"),
])
def test_a_broken_answer_is_a_connection_failure_that_says_why(raw, why):
    with RawServer(lambda n: (raw, "keep")) as server:
        (record,) = _requests(server)
    assert not record.success and record.error_kind == "connection" and why in record.error, record.error
    assert "not valid HTTP/1.1" in record.error or "too large" in record.error


async def test_one_read_of_many_http_chunks_is_one_on_body_call():
    """The whole answer in one write, ~100 HTTP chunks: the caller gets one on_body call with all the
    body bytes and the read's arrival time, not one per chunk."""
    with RawServer(lambda n: (OK_CHUNKED + _chunked(_sse(), size=7), "keep")) as server:
        client = http1.Client(server.url)
        calls: list[tuple[bytes, int]] = []
        try:
            resp = await client.post("/v1/chat/completions", b"{}",
                                     lambda data, now: calls.append((data, now)) or False, read_timeout_s=10)
        finally:
            await client.close()
    assert resp.status == 200 and resp.reason == "OK"
    assert len(calls) == 1 and calls[0][0] == _sse()


class _Transport:
    """Just enough of a transport for a _Connection fed by hand."""

    def __init__(self):
        self.closing = False

    def write(self, data):
        pass

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True

    abort = close


async def _feed(reads: list[bytes]) -> tuple[http1.Response, bytes, int, bool]:
    conn = http1._Connection(http1.Client("http://127.0.0.1:9"))
    conn.connection_made(_Transport())
    got: list[bytes] = []
    task = asyncio.ensure_future(conn.exchange(b"POST", lambda data, now: got.append(data) or False, 10, 1))
    await asyncio.sleep(0)  # the exchange has started (its waiter is set)
    for data in reads:
        conn.data_received(data)
    resp = await task
    return resp, b"".join(got), len(got), conn.reusable


ANSWERS = {
    "chunked": (OK_CHUNKED.replace(b"\r\n\r\n", b"\r\nx-a: 1\r\n\r\n")
                + _chunked(_sse(1), size=9, ext=b";n=v", trailer=b"x-t: 2\r\n")),
    "content-length": (b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: %d\r\n\r\n%s"
                       % (len(_sse(1)), _sse(1))),
    "interim-gzip": (b"HTTP/1.1 100 Continue\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(gzip.compress(_sse(1))), gzip.compress(_sse(1)))),
}


@pytest.mark.parametrize("name", list(ANSWERS))
async def test_an_answer_reads_the_same_however_the_reads_cut_it(name):
    """Cut in two at every byte, and one byte per read: the same status, reason and body, the
    connection kept, and never more on_body calls than reads."""
    raw = ANSWERS[name]
    cuts = [[raw[:i], raw[i:]] for i in range(1, len(raw))] + [[raw[i:i + 1] for i in range(len(raw))]]
    for reads in cuts:
        resp, body, calls, reusable = await _feed(reads)
        assert (resp.status, resp.reason, body, reusable) == (200, "OK", _sse(1), True), [len(r) for r in reads[:2]]
        assert calls <= len(reads)


async def test_bytes_after_the_answer_keep_the_answer_and_drop_the_connection():
    for after in (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc", b"garbage"):
        resp, body, _, reusable = await _feed([ANSWERS["chunked"] + after])
        assert resp.status == 200 and body == _sse(1) and not reusable
