"""A tiny, fast OpenAI-compatible streaming server: no model, it streams `max_tokens` one-token
chunks as fast as the socket takes them. Used to measure the load generator's own ceiling.

    python benchmarks/fast_sse_server.py --port 8123 [--token-delay-ms 0]

Endpoints: GET /health, GET /v1/models, GET /metrics (empty), POST /v1/chat/completions and
/v1/completions with "stream": true (SSE over HTTP/1.1 chunked, keep-alive), honouring
stream_options.include_usage / continuous_usage_stats like vLLM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

MODEL = "fast-sse"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:] if ":" in h)}
            body = b""
            if "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            path = path.split("?", 1)[0]
            if method == "GET":
                if path in ("/v1/models", "/models"):
                    payload = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()
                    ctype = b"application/json"
                elif path == "/health":
                    payload, ctype = b"", b"text/plain"
                elif path == "/metrics":
                    payload, ctype = b"", b"text/plain"
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                             % (ctype, len(payload), payload))
                await writer.drain()
                continue
            req = json.loads(body or b"{}")
            chat = path.endswith("/chat/completions")
            n = int(req.get("max_tokens") or req.get("max_completion_tokens") or 16)
            opts = req.get("stream_options") or {}
            include_usage = bool(opts.get("include_usage"))
            continuous = bool(opts.get("continuous_usage_stats"))
            prompt_tokens = 16
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            rid = f"cmpl-{time.monotonic_ns()}"
            obj = "chat.completion.chunk" if chat else "text_completion"
            for i in range(n):
                choice = ({"index": 0, "delta": {"content": " tok"} if i else {"role": "assistant", "content": " tok"},
                           "finish_reason": None if i < n - 1 else "length"} if chat
                          else {"index": 0, "text": " tok", "finish_reason": None if i < n - 1 else "length"})
                event = {"id": rid, "object": obj, "created": 0, "model": MODEL, "choices": [choice]}
                if continuous:
                    event["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": i + 1,
                                      "total_tokens": prompt_tokens + i + 1}
                writer.write(_chunked(b"data: " + json.dumps(event).encode() + b"\n\n"))
                if delay_s:
                    await writer.drain()
                    await asyncio.sleep(delay_s)
                elif i % 8 == 7:
                    await writer.drain()
            if include_usage:
                event = {"id": rid, "object": obj, "created": 0, "model": MODEL, "choices": [],
                         "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                                   "total_tokens": prompt_tokens + n}}
                writer.write(_chunked(b"data: " + json.dumps(event).encode() + b"\n\n"))
            writer.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int, delay_s: float) -> None:
    server = await asyncio.start_server(lambda r, w: handle(r, w, delay_s), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--token-delay-ms", type=float, default=0.0)
    a = p.parse_args()
    try:
        import uvloop  # optional

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(a.host, a.port, a.token_delay_ms / 1000))


if __name__ == "__main__":
    main()
