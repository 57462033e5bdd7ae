"""Any OpenAI-compatible server (vllm serve, SGLang, TGI, llama.cpp server, Ollama) over httpx
streaming. Chunks are timestamped as each SSE event is read, exactly where `vllm bench serve`
takes its timestamps; token counts come from the server's `usage` when it sends one."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport

from engine.engines.base import ChunkSink, Engine, ProgressSink
from engine.types import BadRequestError, Chunk, EngineError, GenerationRequest, RequestRecord

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
        self.client: httpx.AsyncClient | None = None
        self.served_models: list[str] = []
        self.continuous_usage = True
        # The model's tokenizer for token-exact workloads (workload_tokens): --tokenizer, else the served
        # model's folder when the server says where it is (vLLM's /v1/models `root`) and it is on this
        # machine, else the model id in the local Hugging Face cache. Loaded on first use, never downloaded.
        self.tokenizer_option = tokenizer
        self.model_root: str | None = None
        self._tokens: Any = None
        self._tokens_tried = False

    async def start(self, progress: ProgressSink) -> None:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            # httpx's API over aiohttp's transport: measured 2.3-2.7x the streamed chunks/s of the
            # default httpcore transport (benchmarks/harness_ceiling.py), as fast as vLLM's own client.
            transport=AiohttpTransport(limits=limits),
        )
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
            raise BadRequestError(f"{self.base_url}/models did not return an OpenAI model list: check --endpoint")
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
        self.model_root = str(root) if isinstance(root, str) and root else None
        progress(f"connected: {self.model}")

    def workload_tokens(self):
        """The model's tokenizer (see __init__), loaded once; None when none is on this machine.
        BadRequestError when --tokenizer names one that cannot be loaded."""
        if self._tokens_tried:
            return self._tokens
        self._tokens_tried = True
        from engine.workloads.tokens import Tokens

        if self.tokenizer_option:
            tok = _load_tokenizer(self.tokenizer_option)
            if tok is None:
                raise BadRequestError(f"--tokenizer {self.tokenizer_option}: no tokenizer there (a local model folder, "
                                      "or a model id in the Hugging Face cache)")
            self._tokens = Tokens(tok, source=self.tokenizer_option)
            return self._tokens
        for candidate in (self.model_root, self.requested_model, self.model):
            if not candidate:
                continue
            if candidate == self.model_root and not os.path.isdir(candidate):
                continue
            tok = _load_tokenizer(candidate)
            if tok is not None:
                self._tokens = Tokens(tok, source=candidate)
                break
        return self._tokens

    async def reset_prefix_cache(self) -> tuple[bool, str]:
        """POST /reset_prefix_cache on the server (vLLM serves it only with VLLM_SERVER_DEV_MODE=1)."""
        if self.client is None:
            return False, "the engine is not running"
        url = self.base_url.removesuffix("/v1") + "/reset_prefix_cache"
        try:
            resp = await self.client.post(url, timeout=CONNECT_TIMEOUT_S * 2)
        except httpx.HTTPError as exc:
            return False, f"POST /reset_prefix_cache failed ({_reason(exc)})"
        if resp.status_code in (404, 405):
            return False, ("the server has no /reset_prefix_cache (vLLM serves it with VLLM_SERVER_DEV_MODE=1): "
                           "levels may read earlier levels' prefix cache")
        if resp.status_code != 200:
            return False, f"POST /reset_prefix_cache answered HTTP {resp.status_code}"
        try:
            ok = resp.json().get("success", True)
        except (ValueError, AttributeError):
            ok = True  # older vLLM answers 200 with no body
        return (True, "prefix cache reset") if ok else (False, "the server refused to reset its prefix cache (busy)")

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.model,
            "dtype": None,
            "engine_args": {"endpoint": self.base_url, "api": self.api},
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
        if self.client is None:
            raise EngineError("the engine is not running")
        path = "/chat/completions" if self.api == "chat" else "/completions"
        prompt, record.prompt_form = self.prompt_fields(request)
        payload = self._payload(request, prompt)
        parts: list[str] = []
        reasoning_parts: list[str] = []
        last_completion_tokens = 0
        last_reasoning_tokens = 0
        # Per chunk: reasoning tokens from the server's cumulative usage details (exact), or None
        # where it gave none; and which text fields the chunk carried (for the fallback split).
        chunk_reasoning: list[int | None] = []
        chunk_kinds: list[int] = []  # bit 1: reasoning text, bit 2: answer text
        async with self.client.stream("POST", path, json=payload) as resp:
            if resp.status_code != 200:
                body = (await resp.aread())[:300].decode("utf-8", "replace")
                if resp.status_code in (400, 422) and self.continuous_usage and "usage" in body.lower():
                    # A server that rejects continuous usage stats: retry once without them.
                    self.continuous_usage = False
                    record.st_ns = time.perf_counter_ns()
                    return await self._generate(request, record, on_chunk)
                record.error = f"HTTP {resp.status_code}: {_one_line(body)}"
                return
            async for line in resp.aiter_lines():
                if not line or line.startswith(":"):
                    continue
                data = line.removeprefix("data:").strip()
                if data == "[DONE]":
                    break
                now = time.perf_counter_ns()
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                if "error" in event and not event.get("choices"):
                    record.error = _one_line(str(event["error"]))
                    return
                usage = event.get("usage") or None
                choices = event.get("choices")
                if choices:
                    choice = choices[0]
                    reasoning = ""
                    if self.api == "chat":
                        delta = choice.get("delta") or {}
                        text = delta.get("content") or ""
                        # vLLM's reasoning parsers: `reasoning` (new) or `reasoning_content` (older, DeepSeek's API).
                        reasoning = delta.get("reasoning") or delta.get("reasoning_content") or ""
                    else:
                        text = choice.get("text") or ""
                    if usage and usage.get("completion_tokens") is not None:
                        tokens = int(usage["completion_tokens"]) - last_completion_tokens
                        last_completion_tokens = int(usage["completion_tokens"])
                        cumulative = _reasoning_tokens(usage)
                        if cumulative is not None:
                            chunk_reasoning.append(cumulative - last_reasoning_tokens)
                            last_reasoning_tokens = cumulative
                        else:
                            chunk_reasoning.append(None)
                    else:
                        tokens = 1 if (text or reasoning) else 0
                        chunk_reasoning.append(None)
                    record.chunk_ns.append(now)
                    record.chunk_tokens.append(tokens)
                    chunk_kinds.append((1 if reasoning else 0) | (2 if text else 0))
                    if text:
                        parts.append(text)
                        if record.first_answer_ns is None:
                            record.first_answer_ns = now
                    if reasoning:
                        reasoning_parts.append(reasoning)
                    on_chunk(Chunk(now, text, tokens, reasoning))
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
        # After the last chunk (nothing here delays a timestamp): the reasoning/answer split.
        split_reasoning(record, chunk_reasoning, chunk_kinds, continuous=self.continuous_usage)
        record.reasoning_text = "".join(reasoning_parts)
        record.text = "".join(parts)


def _load_tokenizer(name: str):
    """A Hugging Face tokenizer from a local folder or the local cache (never downloaded), or None."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, local_files_only=True)
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
      * "chunk count (estimate)": no counts at all — one token per non-empty chunk.
    A response with no reasoning text and no reasoning count is left as "no reasoning" (None)."""
    saw_text = any(k & 1 for k in chunk_kinds)
    exact = [r for r in chunk_reasoning if r is not None]
    if not saw_text and not any(exact) and not record.reported_reasoning_tokens:
        return
    n = len(record.chunk_tokens)
    if len(exact) == n and n:
        record.chunk_reasoning_tokens = [int(r) for r in exact]  # type: ignore[misc]
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
    elif continuous and any(r is None for r in chunk_reasoning) and record.reported_output_tokens is not None \
            and sum(record.chunk_tokens) == record.reported_output_tokens:
        record.reasoning_method = "per-chunk usage + text"
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
    return _one_line(text) or type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
