"""The openai engine's own HTTP/1.1 client (engine/engines/http1.py) against raw responses on loopback:
every framing a server may choose gives the same record, connections are kept and reused, a keep-alive
connection the server dropped is retried once, and broken answers are failures of kind "connection"."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading

import pytest

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


@pytest.mark.parametrize("raw, why", [
    pytest.param(OK_CHUNKED + b"zz\r\nabc\r\n", "bad chunk size", id="bad-chunk-size"),
    pytest.param(OK_CHUNKED + b"3\r\nabcXY", "did not end with CRLF", id="chunk-without-crlf"),
    pytest.param(b"SPDY/3 200 OK\r\n\r\n", "not an HTTP response", id="not-http"),
])
def test_a_broken_answer_is_a_connection_failure_that_says_why(raw, why):
    with RawServer(lambda n: (raw, "keep")) as server:
        (record,) = _requests(server)
    assert not record.success and record.error_kind == "connection" and why in record.error, record.error
