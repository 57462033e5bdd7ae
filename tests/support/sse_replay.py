"""A loopback OpenAI-compatible server that replays a recorded SSE stream (no model).

GET /v1/models lists one model; POST /v1/chat/completions and /v1/completions answer every request
with the recorded events, `delay_s` apart, over HTTP/1.1 chunked keep-alive (as vLLM's server does).
Runs on its own thread with its own event loop; `received` keeps the request payloads."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Callable

FIXTURES = Path(__file__).parent.parent / "fixtures"


def load_events(path: Path) -> list[str]:
    """The `data:` payloads of a recorded stream, in order ([DONE] included)."""
    return [line.removeprefix("data:").strip() for line in path.read_text().splitlines() if line.startswith("data:")]


def plain_stream(tokens: int, model: str = "replay") -> list[str]:
    """A chat stream without reasoning: a role chunk, one token per chunk, continuous usage."""
    base = {"id": "chatcmpl-plain", "object": "chat.completion.chunk", "created": 0, "model": model}

    def usage(c: int) -> dict:
        return {"prompt_tokens": 8, "completion_tokens": c, "total_tokens": 8 + c}

    out = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                usage=usage(0))]
    for i in range(tokens):
        out.append(dict(base, choices=[{"index": 0, "delta": {"content": f" t{i}"},
                                        "finish_reason": "length" if i == tokens - 1 else None}], usage=usage(i + 1)))
    out.append(dict(base, choices=[], usage=usage(tokens)))
    return [json.dumps(e) for e in out] + ["[DONE]"]


class ReplayServer:
    def __init__(self, events: list[str], *, delay_s: float = 0.005, model: str = "replay",
                 transform: Callable[[dict], dict | None] | None = None):
        self.events = events
        self.delay_s = delay_s
        self.model = model
        self.transform = transform
        self.received: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sse-replay", daemon=True)
        self.port = 0

    def __enter__(self) -> "ReplayServer":
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()

    def _payloads(self) -> list[bytes]:
        out = []
        for data in self.events:
            if data != "[DONE]" and self.transform is not None:
                event = self.transform(json.loads(data))
                if event is None:
                    continue
                data = json.dumps(event)
            out.append(f"data: {data}\n\n".encode())
        return out

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if method == "POST" and path.split("?")[0].rstrip("/").endswith(("/reset_prefix_cache", "/flush_cache")):
                    # as a vLLM server outside its dev mode (no such route; nor SGLang's /flush_cache): load levels try both
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                if method == "GET":
                    payload = json.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(payload), payload))
                    await writer.drain()
                    continue
                self.received.append(json.loads(body or b"{}"))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                for piece in self._payloads():
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
