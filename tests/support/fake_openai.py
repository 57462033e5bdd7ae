"""One fake OpenAI-compatible server on loopback (no model), with two reply strategies (issue 22 step 7
merged tests/sse_script.py and tests/sse_replay.py, which repeated the server):

- `ScriptServer` plays scripted replies byte for byte. Each POST gets the next `Reply` (a list, cycled,
  or a function of the request's index): an HTTP status, and raw byte pieces each sent at its own time
  (ms after the request arrived) as one HTTP/1.1 chunk, so a test controls exactly which bytes arrive
  together and when — line ends, a CR and its LF in two reads, raw characters inside JSON text, errors
  in a 200 stream, non-200 bodies, a dropped connection. Only GET /v1/models answers a GET.
- `ReplayServer` replays a recorded SSE stream: POST /v1/chat/completions and /v1/completions answer
  every request with the recorded events, `delay_s` apart (each through `transform` when given), over
  HTTP/1.1 chunked keep-alive (as vLLM's server does). Any GET lists the model.

Both (FakeOpenAIServer): GET /v1/models lists `model`; POST /reset_prefix_cache and /flush_cache are 404
(a vLLM server outside its dev mode, an SGLang without /flush_cache: load levels and suites try them
first); `received` keeps the request payloads; each runs on its own thread and event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence


# -- the scripted strategy's reply and event builders ----------------------------------------------
@dataclass
class Reply:
    status: int = 200
    parts: list[tuple[float, bytes]] = field(default_factory=list)  # (ms after the request, raw bytes)
    content_type: str = "text/event-stream"
    drop: bool = False  # close the connection after the parts, mid-stream (no final chunk)


def event(obj: dict | str, *, ending: bytes = b"\n\n") -> bytes:
    """One SSE event: `data: <JSON>` and its blank line. Non-ASCII characters stay raw (UTF-8), as
    serde_json and pydantic write them."""
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return b"data: " + data.encode() + ending


def chat(content: str | None = None, *, role: str | None = None, reasoning: str | None = None,
         finish: str | None = None, usage: dict | None = None, model: str = "scripted") -> dict:
    delta: dict = {}
    if role is not None:
        delta["role"] = role
    if content is not None or role is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning"] = reasoning
    out = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 0, "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


def completion(text: str, *, finish: str | None = None, usage: dict | None = None, model: str = "scripted") -> dict:
    out = {"id": "cmpl-s", "object": "text_completion", "created": 0, "model": model,
           "choices": [{"index": 0, "text": text, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


def usage_only(completion_tokens: int, prompt_tokens: int = 8) -> dict:
    return {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "scripted", "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def usage(completion_tokens: int, prompt_tokens: int = 8) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def timed(events: Sequence[tuple[float, dict | str | bytes]], done_at: float | None = None) -> list[tuple[float, bytes]]:
    """(ms, event) pairs as reply parts, then `data: [DONE]` (at the last time unless `done_at`)."""
    parts = [(t, e if isinstance(e, bytes) else event(e)) for t, e in events]
    last = parts[-1][0] if parts else 0.0
    parts.append((done_at if done_at is not None else last, event("[DONE]")))
    return parts


# -- the replay strategy's recorded streams --------------------------------------------------------
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


class FakeOpenAIServer:
    """The server both strategies share: a context manager (enter starts it, `url` is its address, exit
    stops it and cancels what is in flight). A strategy subclass answers a POST in `_answer`, which
    returns True when it dropped the connection."""

    thread_name = "fake-openai"
    any_get_lists_models = False  # else only GET .../models does; other GETs are 404

    def __init__(self, *, model: str):
        self.model = model
        self.received: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self.port = 0

    def __enter__(self):
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

    async def _answer(self, writer: asyncio.StreamWriter) -> bool:
        raise NotImplementedError

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if method == "POST" and path.split("?")[0].rstrip("/").endswith(("/reset_prefix_cache", "/flush_cache")):
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                if method == "GET" and not self.any_get_lists_models and not path.rstrip("/").endswith("/models"):
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
                if await self._answer(writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


class ScriptServer(FakeOpenAIServer):
    """Scripted replies, byte for byte and on their own times (the module's first strategy)."""

    thread_name = "sse-script"

    def __init__(self, replies: Sequence[Reply] | Callable[[int], Reply], *, model: str = "scripted"):
        super().__init__(model=model)
        self.replies = replies
        self._count = 0

    def _reply(self) -> Reply:
        i = self._count
        self._count += 1
        if callable(self.replies):
            return self.replies(i)
        return self.replies[i % len(self.replies)]

    async def _answer(self, writer: asyncio.StreamWriter) -> bool:
        reply = self._reply()
        t0 = self.loop.time()
        if reply.status != 200:
            payload = b"".join(p for _t, p in reply.parts)
            writer.write(b"HTTP/1.1 %d Error\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                         % (reply.status, reply.content_type.encode(), len(payload), payload))
            await writer.drain()
            return False
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ntransfer-encoding: chunked\r\n\r\n"
                     % reply.content_type.encode())
        await writer.drain()
        for at_ms, piece in reply.parts:
            delay = t0 + at_ms / 1000 - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # deliberate: the script's pace (each part at its at_ms)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        if reply.drop:
            writer.transport.abort()
            return True
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return False


class ReplayServer(FakeOpenAIServer):
    """A recorded stream replayed to every request, `delay_s` apart (the module's second strategy)."""

    thread_name = "sse-replay"
    any_get_lists_models = True

    def __init__(self, events: list[str], *, delay_s: float = 0.005, model: str = "replay",
                 transform: Callable[[dict], dict | None] | None = None):
        super().__init__(model=model)
        self.events = events
        self.delay_s = delay_s
        self.transform = transform

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

    async def _answer(self, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in self._payloads():
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)  # deliberate: the replay's pace
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return False
