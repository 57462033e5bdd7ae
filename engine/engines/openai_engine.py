"""Any OpenAI-compatible server (vllm serve, SGLang, TGI, llama.cpp server, Ollama).

The streaming POST goes through engine/engines/http1.py, a lean HTTP/1.1 client whose protocol hands
every read's body bytes, with the read's arrival time taken first, straight to this module's parser (the
control calls, /models and /reset_prefix_cache, use httpx). The bytes are split into SSE events by
engine/engines/sse.py (lines end only at CR, LF, CRLF) and every event a read completed is timestamped
with that read's arrival — where `vllm bench serve` (aiohttp, one coroutine wake-up per read) takes its
timestamps too, a wake-up later. Token counts per event come from the server's
`usage` when it sends one on every event; otherwise see engine/measure/token_counts.py (the tokenizer, the
final usage spread over the events, or the number of events — and the record says which).

The token path is kept lean (benchmarks/RESULTS.md, "client ceiling"): one request body encoded by
msgspec, no coroutine per read, an event decoded by msgspec into a typed struct holding only the fields
read here (an event of any other shape goes through the general dict reader, with the same result),
no Chunk object unless a live sink asked for chunks, and the per-event bookkeeping a reasoning model
needs only once one shows up."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from engine.engines import http1
from engine.engines.base import NO_SINK, ChunkSink, Engine, ProgressSink
from engine.engines.sse import SSEParser
from engine.measure.server_timing import parse_server_metrics
from engine.measure.token_counts import LazyCounter, find_tokenizer, settle_counts
from engine.terminal_text import one_line
from engine.types import BadRequestError, Chunk, EngineError, GenerationRequest, RequestRecord

_decode = msgspec.json.Decoder().decode  # ~3x faster than json.loads; the same result
_encode = msgspec.json.encode
_LENIENT = json.JSONDecoder(strict=False)
_JSON = {"Content-Type": "application/json"}
# After [DONE] the rest of the response (the chunked body's terminator) is read so the connection is
# kept for the next request; a server that keeps the stream open longer than this loses it instead.
DRAIN_AFTER_END_S = 1.0

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 300.0


def normalise_base_url(endpoint: str) -> str:
    url = endpoint.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise BadRequestError(f"--endpoint must start with http:// or https:// (got {endpoint!r})")
    for suffix in ("/chat/completions", "/completions", "/models"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    if not url.endswith("/v1"):
        url += "/v1"
    return url


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(
        self,
        endpoint: str,
        model: str | None = None,
        *,
        api: str = "chat",
        api_key: str | None = None,
        max_connections: int = 256,
        tokenizer: str | None = None,
    ):
        if api not in ("chat", "completions"):
            raise BadRequestError(f"--api must be chat or completions (got {api!r})")
        self.base_url = normalise_base_url(endpoint)
        self.requested_model = model
        self.model = model
        self.api = api
        # The key comes from the environment only, and is never stored or shown.
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.max_connections = max_connections
        self.client: httpx.AsyncClient | None = None  # control calls (/models)
        self._stream_client: http1.Client | None = None  # the streaming POSTs (engine/engines/http1.py)
        self._stream_path = urlsplit(self.base_url).path + ("/chat/completions" if api == "chat" else "/completions")
        self.served_models: list[str] = []
        self.continuous_usage = True
        # --tokenizer (vLLM's and AIPerf's name): counts tokens when the server sends no per-event
        # usage; else the served model id is tried (a local folder or the local HF cache only).
        self.tokenizer = tokenizer
        self.counter: LazyCounter | None = None
        # The served model's folder when the server names it (vLLM's /v1/models `root`): a tokenizer on this
        # machine for counting and for token-exact workloads (workload_tokens), loaded on first use.
        self.model_root: str | None = None
        self._tokens: Any = None
        self._tokens_tried = False

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """uvloop where it is installed (libuv's loop: less Python per read and per timer than asyncio's
        own, measured in benchmarks/RESULTS.md), else asyncio's."""
        try:
            import uvloop
        except ImportError:  # pragma: no cover - Windows, or a build without it
            return asyncio.new_event_loop()
        return uvloop.new_event_loop()

    async def start(self, progress: ProgressSink) -> None:
        if self.tokenizer:  # a local folder or a cached hub id, else its files downloaded (engine.engines.hub)
            from engine.engines.hub import ensure_tokenizer

            await asyncio.to_thread(ensure_tokenizer, self.tokenizer, progress)  # loading waits for first use
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        # Neither client reads proxy settings from the environment: a measurement goes straight to the server.
        self.client = httpx.AsyncClient(base_url=self.base_url, headers=headers, trust_env=False,
                                        timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        # The streaming POSTs: engine/engines/http1.py (no limit on a whole response; READ_TIMEOUT_S without
        # a byte, CONNECT_TIMEOUT_S to connect).
        self._stream_client = http1.Client(self.base_url, headers=headers, limit=self.max_connections,
                                           connect_timeout_s=CONNECT_TIMEOUT_S)
        progress(f"connecting to {self.base_url}")
        try:
            resp = await self.client.get("/models", timeout=CONNECT_TIMEOUT_S * 2)
        except httpx.ConnectError as exc:
            await self.close()
            raise BadRequestError(
                f"cannot connect to {self.base_url} ({_reason(exc)}): start the server or fix --endpoint"
            ) from None
        except httpx.HTTPError as exc:
            await self.close()
            raise BadRequestError(f"{self.base_url} did not answer ({_reason(exc)}): check --endpoint") from None
        if resp.status_code in (401, 403):
            await self.close()
            raise BadRequestError(f"{self.base_url} refused the request ({resp.status_code}): set OPENAI_API_KEY")
        if resp.status_code != 200:
            await self.close()
            raise BadRequestError(
                f"{self.base_url}/models answered HTTP {resp.status_code}: is this an OpenAI-compatible server?"
            )
        try:
            payload = resp.json()
            cards = [m for m in payload.get("data", []) if isinstance(m, dict)]
            self.served_models = [str(m["id"]) for m in cards]
        except (ValueError, KeyError, TypeError, AttributeError):
            await self.close()
            raise BadRequestError(
                f"{self.base_url}/models did not return an OpenAI model list: check --endpoint") from None
        if self.requested_model:
            if self.served_models and self.requested_model not in self.served_models:
                await self.close()
                raise BadRequestError(
                    f"the endpoint serves {', '.join(self.served_models)}, not {self.requested_model}: "
                    f"use --model {self.served_models[0]}"
                )
        elif self.served_models:
            self.model = self.served_models[0]
        else:
            await self.close()
            raise BadRequestError(f"{self.base_url} serves no model; pass --model NAME")
        root = next((m.get("root") for m in cards if str(m.get("id")) == self.model), None)
        self.model_root = str(root) if isinstance(root, str) and root and os.path.isdir(root) else None
        progress(f"connected: {self.model}")
        self.counter = LazyCounter([self.tokenizer] if self.tokenizer else [self.model_root, self.model])

    def worker_spec(self) -> dict[str, Any] | None:
        """This engine's settings for a client process (engine.load.pool): the endpoint, the model the
        server named, the API, what the server accepted (continuous usage stats) and whether the tokenizer
        was loaded. The API key travels only to this machine's own child process, through its pipe."""
        return {"endpoint": self.base_url, "model": self.model, "api": self.api, "api_key": self._api_key,
                "max_connections": self.max_connections, "tokenizer": self.tokenizer,
                "continuous_usage": self.continuous_usage,
                "load_tokens": self._tokens is not None and self.api == "completions"}

    @classmethod
    def from_worker_spec(cls, spec: dict[str, Any]) -> "OpenAIEngine":
        engine = cls(spec["endpoint"], spec.get("model"), api=spec.get("api", "chat"), api_key=spec.get("api_key"),
                     max_connections=int(spec.get("max_connections") or 256), tokenizer=spec.get("tokenizer"))
        engine.continuous_usage = bool(spec.get("continuous_usage", True))
        return engine

    def workload_tokens(self):
        """The model's tokenizer for token-exact workloads (engine.workloads.tokens.Tokens), loaded once:
        --tokenizer (a hub id was downloaded by start(): engine.engines.hub), else the served model's folder
        when it is on this machine, else the model id in the local Hugging Face cache
        (engine.measure.token_counts.find_tokenizer: the served id is never downloaded); None when there
        is none. BadRequestError when --tokenizer names one that cannot be loaded."""
        if self._tokens_tried:
            return self._tokens
        self._tokens_tried = True
        from engine.workloads.tokens import Tokens

        candidates = [self.tokenizer] if self.tokenizer else [self.model_root, self.requested_model, self.model]
        for name in candidates:
            folder, _why = find_tokenizer(name)
            tok = _load_tokenizer(str(folder)) if folder is not None else None
            if tok is not None:
                self._tokens = Tokens(tok, source=str(name))
                break
            if self.tokenizer:
                raise BadRequestError(f"--tokenizer {self.tokenizer}: no tokenizer can be read there "
                                      "(a local model folder, or a model id in the Hugging Face cache)")
        return self._tokens

    async def reset_prefix_cache(self) -> tuple[bool, str]:
        """Empty the server's prefix cache (engine.engines.cache_reset): vLLM's dev-mode
        POST /reset_prefix_cache?reset_external=true (its KV connector's tier too), retried while vLLM says
        it is busy; where there is no such route, SGLang's /flush_cache. (reset?, what happened)."""
        from engine.engines.cache_reset import reset_server_prefix_cache

        if self.client is None:
            return False, "the engine is not running"
        return await reset_server_prefix_cache(self.client, self.base_url.removesuffix("/v1"),
                                               timeout_s=CONNECT_TIMEOUT_S * 2, reason=_reason)

    async def close(self) -> None:
        client, self.client = self.client, None
        stream_client, self._stream_client = self._stream_client, None
        if client is not None:
            await client.aclose()
        if stream_client is not None:
            await stream_client.close()

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.model,
            "dtype": None,
            "engine_args": {"endpoint": self.base_url, "api": self.api,
                            **({"tokenizer": self.tokenizer} if self.tokenizer else {})},
            "versions": {},
            "device_kind": "remote",
        }

    def _payload(self, request: GenerationRequest, prompt: dict[str, Any] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.continuous_usage:
            payload["stream_options"]["continuous_usage_stats"] = True
        if request.seed is not None:
            payload["seed"] = request.seed
        if request.enforce_length:
            # vLLM's extensions (also accepted by SGLang): generate exactly max_tokens.
            payload["min_tokens"] = request.max_tokens
            payload["ignore_eos"] = True
        payload.update(prompt if prompt is not None else self.prompt_fields(request)[0])
        return payload

    def prompt_fields(self, request: GenerationRequest) -> tuple[dict[str, Any], str]:
        """The request's prompt as the API takes it, and how the model will see it (RequestRecord.prompt_form):
        the chat API gets messages (the server wraps them in the chat template); the completions API gets
        the text, which re-tokenises to the workload's exact ids, or the ids themselves for a trace (as
        vLLM's bench sends them), or a conversation in the model's chat template (needs the tokenizer)."""
        messages = request.messages or (("user", request.prompt),)
        if self.api == "chat":
            return {"messages": [{"role": r, "content": c} for r, c in messages]}, "chat"
        if request.messages:
            tokens = self._tokens
            if tokens is not None and tokens.has_chat_template:
                return {"prompt": tokens.chat_text(request.messages)}, "chat"
            return {"prompt": "\n".join(f"{r}: {c}" for r, c in request.messages) + "\nassistant:"}, "chat"
        if request.prompt_token_ids is not None and (request.send_ids or not request.prompt):
            return {"prompt": list(request.prompt_token_ids)}, "ids"
        return {"prompt": request.prompt}, "text"

    async def _generate(self, request: GenerationRequest, record: RequestRecord, on_chunk: ChunkSink) -> None:
        client = self._stream_client
        if client is None:
            raise EngineError("the engine is not running")
        prompt, record.prompt_form = self.prompt_fields(request)
        body = _encode(self._payload(request, prompt))
        stream = _Stream(self.api, record, None if on_chunk is NO_SINK else on_chunk)
        parser = SSEParser()
        feed, handle = parser.feed, stream.event

        def on_body(raw: bytes, now: int) -> bool:
            """One read's body bytes, inside the protocol's data_received: `now` is the read's arrival,
            and every event it completed arrived then. True once the stream has ended ([DONE], an error)."""
            for data in feed(raw):
                if handle(data, now):
                    return True
            return False

        def resent() -> None:  # a stale keep-alive connection: sent again on a fresh one, st with it
            record.st_ns = time.perf_counter_ns()

        try:
            resp = await client.post(self._stream_path, body, on_body, read_timeout_s=READ_TIMEOUT_S,
                                     end_grace_s=DRAIN_AFTER_END_S, on_retry=resent)
        except TimeoutError as exc:  # connecting, or no byte for READ_TIMEOUT_S
            record.error, record.error_kind = f"timeout: {_timeout_reason(exc)}", "timeout"
            return
        except OSError as exc:  # refused, reset, closed mid-stream (http1.ProtocolError is a ConnectionError)
            if not stream.ended:  # an error event the close cut short of its blank line: still the server's
                now = time.perf_counter_ns()
                for data in parser.close():
                    if b'"error"' in data and handle(data, now):
                        break
            if record.error_kind != "stream":  # else the server said why before it closed: that stands
                record.error, record.error_kind = f"connection: {_reason(exc)}", "connection"
            return
        if resp.status != 200:
            text = resp.body.decode("utf-8", "replace")
            if resp.status in (400, 422) and self.continuous_usage and "usage" in text.lower():
                # A server that rejects continuous usage stats: retry once without them.
                self.continuous_usage = False
                record.st_ns = time.perf_counter_ns()
                return await self._generate(request, record, on_chunk)
            record.error = f"HTTP {resp.status}: {error_message(resp.body) or resp.reason or 'no body'}"
            record.error_kind, record.http_status = "http", resp.status
            return
        if record.error is None and not stream.ended:
            now = time.perf_counter_ns()  # the response ended without [DONE]: an event left unterminated
            for data in parser.close():
                if handle(data, now):
                    break
        if record.error is not None:
            return
        # After the last event (nothing here delays a timestamp): counts, the reasoning split, text.
        stream.finish(continuous=self.continuous_usage)

    def settle(self, record: RequestRecord) -> None:
        """The tokenizer's per-event counts for a record whose server sent no per-event usage (on the
        caller's thread, off the token path: see engine.measure.token_counts)."""
        if record.chunk_texts is None:
            return
        counter = self.counter.get() if self.counter is not None else None
        if counter is not None:
            provisional = (list(record.chunk_tokens), record.token_count_source)
            try:
                settle_counts(record, counter)
            except Exception:  # a tokenizer that fails on this text: keep the provisional counts
                record.chunk_tokens, record.token_count_source = provisional
                counter = None
        if counter is not None:
            kinds = record.extra.pop("chunk_kinds", None)
            if kinds is not None and record.reasoning_method not in (None, "per-chunk usage"):
                record.chunk_reasoning_tokens = None
                split_reasoning(record, record.extra.pop("chunk_reasoning", [None] * len(kinds)), kinds,
                                continuous=self.continuous_usage)
        record.chunk_texts = None
        record.extra.pop("chunk_kinds", None)
        record.extra.pop("chunk_reasoning", None)

    def live_counter(self):
        counter = self.counter.ready if self.counter is not None else None
        return counter.count if counter is not None else None


class _Delta(msgspec.Struct):
    content: str | list | None = None  # a string, or typed blocks (content_blocks)
    reasoning: str | None = None  # vLLM's reasoning parsers (new name)
    reasoning_content: str | None = None  # older vLLM, DeepSeek's API


class _Choice(msgspec.Struct):
    delta: _Delta | None = None  # chat
    text: str | None = None  # completions
    finish_reason: str | None = None


class _Details(msgspec.Struct):
    reasoning_tokens: int | None = None


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    completion_tokens_details: _Details | None = None
    prompt_tokens_details: _PromptDetails | None = None


class _Event(msgspec.Struct):
    """The fields of a streamed event this module reads; msgspec skips the rest without building them."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    # vLLM's per-request timing on the final usage event (--enable-per-request-metrics): kept raw and
    # read by engine.measure.server_timing (outside input, any shape)
    metrics: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    object: str | None = None


_decode_event = msgspec.json.Decoder(_Event).decode
_UNUSUAL = (msgspec.ValidationError, msgspec.DecodeError)


class _Stream:
    """One response's events, decoded as they arrive (engine/engines/sse.py splits the bytes)."""

    __slots__ = ("chat", "record", "on_chunk", "parts", "reasoning_parts", "texts", "last_completion",
                 "last_reasoning", "chunk_reasoning", "chunk_kinds", "all_usage", "saw_usage", "chunk_ns",
                 "chunk_tokens", "ended")

    def __init__(self, api: str, record: RequestRecord, on_chunk: ChunkSink | None):
        self.chat = api == "chat"
        self.ended = False  # [DONE] or an error event came
        self.record, self.on_chunk = record, on_chunk  # on_chunk None: nobody asked for Chunk objects
        self.chunk_ns, self.chunk_tokens = record.chunk_ns, record.chunk_tokens
        # Each event's reasoning + answer text (to count tokens by, and the answer while there is no
        # reasoning); the answer's parts are kept apart only once reasoning shows up.
        self.texts: list[str] = []
        self.parts: list[str] | None = None
        self.reasoning_parts: list[str] = []
        self.last_completion = 0
        self.last_reasoning = 0
        # Per chunk: reasoning tokens from the server's cumulative usage details (exact), or None
        # where it gave none; and which text fields the chunk carried (for the fallback split). Both
        # stay None (nothing to keep per event) until an event carries a reasoning count or text.
        self.chunk_reasoning: list[int | None] | None = None
        self.chunk_kinds: list[int] | None = None  # bit 1: reasoning text, bit 2: answer text
        self.all_usage = True  # every event that carried text carried the server's cumulative usage
        self.saw_usage = False

    def event(self, data: bytes, now: int) -> bool:
        """Handle one event's data; True at the end of the stream ([DONE] or an error)."""
        if data == b"[DONE]":
            self.ended = True
            return True
        try:
            event = _decode_event(data)
        except _UNUSUAL:  # not JSON, or a field of another type: the general reader decides
            return self._general(data, now)
        if event.error is not msgspec.UNSET or event.object == "error":
            return self._general(data, now)
        if event.metrics is not msgspec.UNSET:
            self._server_metrics(event.metrics)
        usage = event.usage
        if usage is not None:
            completion = usage.completion_tokens
            details = usage.completion_tokens_details
            reasoning_total = details.reasoning_tokens if details is not None else None
        else:
            completion = reasoning_total = None
        choices = event.choices
        if choices:
            choice = choices[0]
            if self.chat:
                delta = choice.delta
                if delta is None:
                    text = reasoning = ""
                else:
                    text = delta.content or ""  # type: ignore[assignment]  # typed blocks: handled below
                    reasoning = delta.reasoning or delta.reasoning_content or ""
                    if text.__class__ is not str:  # typed blocks: Mistral's reasoning models, gateways
                        text, thinking = content_blocks(text)
                        reasoning += thinking
            else:
                text, reasoning = choice.text or "", ""
            self._chunk(now, text, reasoning, completion, reasoning_total)
            if choice.finish_reason:
                self.record.finish_reason = choice.finish_reason
        if usage is not None:
            record = self.record
            if completion is not None:
                record.reported_output_tokens = completion
            if usage.prompt_tokens is not None:
                record.input_tokens = usage.prompt_tokens
            prompt_details = usage.prompt_tokens_details
            if prompt_details is not None and prompt_details.cached_tokens is not None:
                record.cached_tokens = prompt_details.cached_tokens
            if not choices and reasoning_total is not None:
                record.reported_reasoning_tokens = reasoning_total
        return False

    def _server_metrics(self, raw: msgspec.Raw) -> None:
        """The server's own timing of the request (engine.measure.server_timing), where it sent one."""
        try:
            obj = _decode(raw)
        except ValueError:  # e.g. 1e999, which msgspec refuses: json reads it (as inf, then dropped)
            try:
                obj = _LENIENT.decode(bytes(raw).decode("utf-8", "replace"))
            except ValueError:
                return
        self.record.server_timing = parse_server_metrics(obj) or self.record.server_timing

    def _general(self, data: bytes, now: int) -> bool:
        """An event of any shape, read as plain JSON (lenient about raw control characters)."""
        try:
            event = _decode(data)
        except ValueError:
            try:  # lenient: raw control characters inside strings (json's strict=False)
                event = _LENIENT.decode(data.decode("utf-8", "replace"))
            except ValueError:
                return False
        if not isinstance(event, dict):
            return False
        record = self.record
        choices = event.get("choices")
        error = event.get("error")
        # An error event: {"error": ...} (also beside choices: OpenRouter's mid-stream error chunk has
        # finish_reason "error"), or vLLM's older {"object": "error"}. `"error": null` is no error.
        if error or (error is not None and not choices) or event.get("object") == "error":
            record.error = error_message(event) or "the server reported an error without a message"
            record.error_kind = "stream"
            self.ended = True
            return True
        if "metrics" in event:
            self.record.server_timing = parse_server_metrics(event["metrics"]) or self.record.server_timing
        usage = event.get("usage") or None
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            choice = choices[0]
            if self.chat:
                delta = choice.get("delta")
                delta = delta if isinstance(delta, dict) else {}
                text, reasoning = content_blocks(delta.get("content"))
                field = delta.get("reasoning") or delta.get("reasoning_content")
                if isinstance(field, str):
                    reasoning = field + reasoning
            else:
                text, reasoning = choice.get("text"), ""  # type: ignore[assignment]  # None: no text
                text = text if isinstance(text, str) else ""
            completion = reasoning_total = None
            if usage and usage.get("completion_tokens") is not None:
                completion = int(usage["completion_tokens"])
                reasoning_total = _reasoning_tokens(usage)
            self._chunk(now, text, reasoning, completion, reasoning_total)
            if choice.get("finish_reason"):
                record.finish_reason = choice["finish_reason"]
        if usage:
            if usage.get("completion_tokens") is not None:
                record.reported_output_tokens = int(usage["completion_tokens"])
            if usage.get("prompt_tokens") is not None:
                record.input_tokens = int(usage["prompt_tokens"])
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and details.get("cached_tokens") is not None:
                record.cached_tokens = int(details["cached_tokens"])
            if not choices and _reasoning_tokens(usage) is not None:
                record.reported_reasoning_tokens = _reasoning_tokens(usage)
        return False

    def _chunk(self, now: int, text: str, reasoning: str, completion: int | None, reasoning_total: int | None) -> None:
        """One event that carried a choice: its timestamp, tokens and texts."""
        per_reasoning = self.chunk_reasoning
        if completion is not None:
            tokens = completion - self.last_completion
            self.last_completion = completion
            exact = self.saw_usage = True
            if reasoning_total is not None:
                if per_reasoning is None:
                    per_reasoning = self.chunk_reasoning = [None] * len(self.chunk_ns)
                per_reasoning.append(reasoning_total - self.last_reasoning)
                self.last_reasoning = reasoning_total
            elif per_reasoning is not None:
                per_reasoning.append(None)
        else:
            if text or reasoning:
                tokens = 1  # provisional: settled after the stream
                exact = self.all_usage = False
            else:  # an event with nothing in it (a role-only first event) carries no token
                tokens, exact = 0, True
            if per_reasoning is not None:
                per_reasoning.append(None)
        self.chunk_ns.append(now)
        self.chunk_tokens.append(tokens)
        record = self.record
        if reasoning:
            kinds = self.chunk_kinds
            if kinds is None:  # the first reasoning text: the events before it carried answer text or nothing
                kinds = self.chunk_kinds = [2 if t else 0 for t in self.texts]
                self.parts = [t for t in self.texts if t]
            kinds.append(3 if text else 1)
            self.texts.append(reasoning + text)
            self.reasoning_parts.append(reasoning)
            if record.first_content_ns is None:
                record.first_content_ns = now
        else:
            if self.chunk_kinds is not None:
                self.chunk_kinds.append(2 if text else 0)
            self.texts.append(text)
        if text:
            if self.parts is not None:
                self.parts.append(text)
            if record.first_answer_ns is None:
                record.first_answer_ns = now
                if record.first_content_ns is None:
                    record.first_content_ns = now
        if self.on_chunk is not None:
            self.on_chunk(Chunk(now, text, tokens, reasoning, exact))

    def finish(self, *, continuous: bool) -> None:
        record = self.record
        n = len(record.chunk_ns)
        # No reasoning text, count or total: nothing to split (split_reasoning would say so after a
        # walk over every chunk).
        reasoning = (self.chunk_kinds is not None or self.chunk_reasoning is not None
                     or record.reported_reasoning_tokens is not None)
        usage_counts = bool(self.all_usage and self.saw_usage and n)
        if usage_counts:
            record.token_count_source = "usage"
        if reasoning or (n and not usage_counts):
            chunk_reasoning = self.chunk_reasoning if self.chunk_reasoning is not None else [None] * n
            chunk_kinds = self.chunk_kinds if self.chunk_kinds is not None else [2 if t else 0 for t in self.texts]
            if n and not usage_counts:
                # No per-event usage: the final usage spread over the events, or one per event, for now;
                # Engine.settle refines it with the tokenizer off the token path.
                record.chunk_texts = self.texts
                settle_counts(record, None)
                record.extra["chunk_kinds"] = chunk_kinds
                record.extra["chunk_reasoning"] = list(chunk_reasoning)
            if reasoning:
                split_reasoning(record, chunk_reasoning, chunk_kinds, continuous=continuous)  # type: ignore[arg-type]
        record.reasoning_text = "".join(self.reasoning_parts)
        record.text = "".join(self.parts if self.parts is not None else self.texts)


def content_blocks(content: object) -> tuple[str, str]:
    """(answer text, reasoning text) of a chat delta's `content`. A string is answer text. A list holds
    typed blocks, as Mistral's reasoning models stream them (Magistral; Mistral Small with
    reasoning_effort) and gateways in front of them pass them on (LiteLLM issue #16272):
    `{"type": "text", "text": ...}` is answer text, `{"type": "thinking", "thinking": [text blocks]}`
    is reasoning (Mistral's OpenAPI ThinkChunk; a string `thinking`, as Anthropic-style blocks carry it,
    too). Blocks of any other type (Mistral's `reference`, images) carry no text. Outside input:
    anything else reads as no text; never raises."""
    if content.__class__ is str:
        return content, ""
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return "", ""
    text: list[str] = []
    reasoning: list[str] = []
    for block in content:
        if isinstance(block, str):
            text.append(block)
            continue
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif kind == "thinking":
            inner = block.get("thinking")
            if isinstance(inner, str):
                reasoning.append(inner)
            elif isinstance(inner, list):
                for part in inner:
                    part = part.get("text") if isinstance(part, dict) else part
                    if isinstance(part, str):
                        reasoning.append(part)
    return "".join(text), "".join(reasoning)


def error_message(body: bytes | str | dict) -> str:
    """The server's own message from an error body or event, whatever its shape: OpenAI's
    `{"error": {"message", "type", "code"}}` (vLLM, SGLang, llama.cpp, Ollama, OpenRouter),
    `{"error": "text"}`, TGI's `{"error": "text", "error_type": kind}`, vLLM's older
    `{"object": "error", "message", "type", "code"}`, FastAPI's `{"detail": ...}`, or plain text.
    One line, at most 300 characters, the type and code after it in brackets; "" for an empty body."""
    obj: object = body
    if isinstance(body, (bytes, str)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            obj = json.loads(text, strict=False)
        except ValueError:
            return one_line(text, 300, join=True)
    if not isinstance(obj, dict):
        return one_line(str(obj), 300, join=True)
    err = obj.get("error")
    source = err if isinstance(err, dict) else obj
    if isinstance(err, str) and err:
        message = err
    elif isinstance(source.get("message"), str) and source.get("message"):
        message = source["message"]
    elif obj.get("detail") is not None:
        detail = obj["detail"]
        message = detail if isinstance(detail, str) else json.dumps(detail)
    elif err is not None:
        message = json.dumps(err)
    else:
        message = json.dumps(obj)
    extra = [str(source[k]) for k in ("type", "error_type", "code")
             if isinstance(source, dict) and source.get(k) not in (None, "")]
    if extra:
        message = f"{message} ({', '.join(extra)})"
    return one_line(message, 300, join=True)


def _load_tokenizer(folder: str):
    """A Hugging Face tokenizer from a local folder (never downloaded), or None."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception:
        return None


def _reasoning_tokens(usage: dict) -> int | None:
    details = usage.get("completion_tokens_details")
    if isinstance(details, dict) and details.get("reasoning_tokens") is not None:
        return int(details["reasoning_tokens"])
    return None


def split_reasoning(record: RequestRecord, chunk_reasoning: list[int | None], chunk_kinds: list[int],
                    *, continuous: bool) -> None:
    """Fill the record's reasoning/answer split from what the stream carried, and say how it is known:
      * "per-chunk usage": the server's cumulative usage.completion_tokens_details.reasoning_tokens on
        every chunk (vLLM with a reasoning parser and continuous_usage_stats) — exact per chunk;
      * "per-chunk usage + text": exact token counts per chunk, each chunk classed by the text field
        it carried (reasoning vs content); exact except a chunk carrying both, split in half;
      * "final usage totals": only the final usage's reasoning_tokens — exact totals, per-chunk
        split estimated from the text fields;
      * "tokenizer (estimate)": no counts at all — the tokenizer's count of each chunk's text;
      * "chunk count (estimate)": no counts at all and no tokenizer — one token per non-empty chunk
        (or the final usage spread over the chunks).
    A response with no reasoning text and no reasoning count is left as "no reasoning" (None)."""
    saw_text = any(k & 1 for k in chunk_kinds)
    exact = [r for r in chunk_reasoning if r is not None]
    if not saw_text and not any(exact) and not record.reported_reasoning_tokens:
        return
    n = len(record.chunk_tokens)
    if len(exact) == n and n:
        record.chunk_reasoning_tokens = [int(r) for r in exact]
        record.reasoning_method = "per-chunk usage"
        record.reported_reasoning_tokens = record.reported_reasoning_tokens or sum(record.chunk_reasoning_tokens)
        return
    split: list[int] = []
    for tokens, kind in zip(record.chunk_tokens, chunk_kinds):
        if kind == 1:
            split.append(tokens)
        elif kind == 3:
            split.append((tokens + 1) // 2 if tokens > 1 else tokens)
        else:
            split.append(0)
    record.chunk_reasoning_tokens = split
    if record.reported_reasoning_tokens is not None:
        record.reasoning_method = "final usage totals"
    elif continuous and record.token_count_source == "usage" and any(r is None for r in chunk_reasoning) \
            and record.reported_output_tokens is not None and sum(record.chunk_tokens) == record.reported_output_tokens:
        record.reasoning_method = "per-chunk usage + text"
    elif record.token_count_source == "tokenizer":
        record.reasoning_method = "tokenizer (estimate)"
    else:
        record.reasoning_method = "chunk count (estimate)"


def _reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:  # httpx wraps the OS error; look down the chain
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        for inner in getattr(seen, "exceptions", ()) or ():  # ExceptionGroup from happy eyeballs
            if isinstance(inner, ConnectionRefusedError):
                return "connection refused"
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip()
    if "refused" in text.lower() or "errno 111" in text.lower():
        return "connection refused"
    return one_line(text, 200, join=True) or type(exc).__name__


def _timeout_reason(exc: BaseException) -> str:
    """What a timeout was: http1's read timeout says it; a connect timeout (asyncio.timeout) carries no text."""
    return one_line(str(exc), 200, join=True) or f"no connection within {CONNECT_TIMEOUT_S:g} s"


