"""vLLM's in-process async engine (AsyncLLM), fed token ids from the model's chat template.

DELTA outputs: each RequestOutput carries only the new tokens, so counts come straight from the
engine's token ids and timestamps are taken the moment the output reaches this loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from engine.engines.base import ChunkSink, Engine, ProgressSink
from engine.engines.runtime import prepare_vllm_env
from engine.measure.server_timing import from_engine_stats
from engine.terminal_text import one_line
from engine.types import BadRequestError, Chunk, EngineError, GenerationRequest, RequestRecord

CPU_KV_CACHE_BYTES = 1 << 30  # 1 GiB: without it vLLM asks for 92% of the NUMA node and may refuse to start
CPU_MAX_MODEL_LEN = 4096
# On close, vLLM's engine process gets SIGTERM and this long to exit before it is killed. At idle it has
# nothing to drain; what it would spend the time on is its own (and its worker's) interpreter teardown,
# 4-5 s on a 2-core machine. Every run is stored before the engine is closed, so waiting buys nothing.
SHUTDOWN_GRACE_S = 1.0
RESET_WAIT_S = 4.0  # how long reset_prefix_cache retries while vLLM still holds blocks (the orchestrator waits 10 s)


class VllmEngine(Engine):
    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        enforce_eager: bool | None = None,
        max_model_len: int | None = None,
        kv_cache_memory_bytes: int | None = None,
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        extra_args: dict[str, Any] | None = None,
        warmup: bool = True,
    ):
        self.model = model
        self.dtype = dtype
        self.enforce_eager = enforce_eager
        self.max_model_len = max_model_len
        self.kv_cache_memory_bytes = kv_cache_memory_bytes
        self.tensor_parallel_size = tensor_parallel_size
        self.pipeline_parallel_size = pipeline_parallel_size
        self.extra_args = dict(extra_args or {})
        self.warmup = warmup
        self.llm: Any = None  # vLLM's AsyncLLM, from start()
        self.tokenizer: Any = None  # its tokenizer, from start()
        self.engine_args: dict[str, Any] = {}
        self.versions: dict[str, str] = {}
        self.resolved_dtype: str | None = None
        self.is_cpu = True
        # vLLM's stat loggers, read by engine.telemetry.server (running/waiting, KV cache, TTFT, ...).
        self.engine_stats: Any = None  # engine.telemetry.server.InProcessStats, from start()
        # A reasoning model's parser (vllm.reasoning), when the user names one
        # (--engine-arg reasoning_parser=NAME): splits the output into reasoning and answer tokens.
        self.reasoning_parser = None

    # -- lifecycle ------------------------------------------------------------
    async def start(self, progress: ProgressSink) -> None:
        prepare_vllm_env()
        progress("importing vLLM")
        t0 = time.perf_counter()
        # Importing vLLM takes seconds; do it off the loop so the loop stays responsive.
        modules = await asyncio.to_thread(_import_vllm)
        AsyncEngineArgs, AsyncLLM, current_platform, vllm_version, torch_version = modules
        self.versions = {"vllm": vllm_version, "torch": torch_version}
        self.is_cpu = bool(current_platform.is_cpu())
        enforce_eager = self.enforce_eager if self.enforce_eager is not None else self.is_cpu
        args: dict[str, Any] = dict(
            model=self.model,
            dtype=self.dtype,
            enforce_eager=enforce_eager,
            tensor_parallel_size=self.tensor_parallel_size,
            pipeline_parallel_size=self.pipeline_parallel_size,
            disable_log_stats=False,
            # vLLM's default (on), as `vllm serve` has it: shared prefixes are served from the cache as a
            # real server serves them. Every load level starts with the cache reset (reset_prefix_cache)
            # and suite repetitions do too, so a repeat never reads an earlier one's cache as speed.
            enable_prefix_caching=True,
        )
        if self.is_cpu:
            args["kv_cache_memory_bytes"] = self.kv_cache_memory_bytes or CPU_KV_CACHE_BYTES
            args["max_model_len"] = self.max_model_len or CPU_MAX_MODEL_LEN
        else:
            if self.kv_cache_memory_bytes:
                args["kv_cache_memory_bytes"] = self.kv_cache_memory_bytes
            if self.max_model_len:
                args["max_model_len"] = self.max_model_len
        args.update(self.extra_args)
        self.engine_args = args
        progress(f"vLLM {vllm_version} imported in {time.perf_counter() - t0:.1f}s; loading {self.model}")
        try:
            engine_args = AsyncEngineArgs(**args)
        except TypeError as exc:
            raise BadRequestError(f"unknown engine argument: {exc}") from None
        t1 = time.perf_counter()
        stat_loggers = self._stat_loggers()
        try:
            self.llm = await asyncio.to_thread(
                lambda: AsyncLLM.from_engine_args(engine_args, stat_loggers=stat_loggers)
            )
        except Exception as exc:
            raise EngineError(f"vLLM could not load {self.model}: {one_line(exc, 300)}") from None
        self.resolved_dtype = str(self.llm.vllm_config.model_config.dtype).removeprefix("torch.")
        self.tokenizer = self.llm.get_tokenizer()
        self.reasoning_parser = _reasoning_parser(args.get("reasoning_parser"), self.tokenizer)
        t2 = time.perf_counter()
        # The whole start, the import included (it is a third of it on a CPU box): no figure leaves it out.
        progress(f"engine ready in {t2 - t0:.1f}s (importing vLLM {t1 - t0:.1f}s, loading the model {t2 - t1:.1f}s)")
        if self.warmup:
            progress("warming up")
            await self.generate(GenerationRequest(prompt="Hi", max_tokens=4, temperature=0.0, case_id="warmup"))
        progress("ready")

    def _stat_loggers(self) -> list | None:
        """One extra stat logger that only keeps numbers (vLLM's default loggers stay on)."""
        try:
            from engine.telemetry.server import InProcessStats

            stats = InProcessStats()
            factory = stats.factory()
        except Exception:  # a vLLM without this interface: run without in-process stats
            self.engine_stats = None
            return None
        self.engine_stats = stats
        return [factory]

    async def close(self) -> None:
        """SIGTERM to vLLM's engine process, SHUTDOWN_GRACE_S for it to exit, then SIGKILL (vLLM's own
        shutdown with a timeout); its worker processes follow their parent (EngineHost kills any left)."""
        llm, self.llm = self.llm, None
        if llm is not None:
            await asyncio.to_thread(llm.shutdown, SHUTDOWN_GRACE_S)

    def healthy(self) -> bool:
        llm = self.llm
        return llm is not None and not llm.errored

    async def reset_prefix_cache(self) -> tuple[bool, str]:
        """AsyncLLM.reset_prefix_cache(reset_connector=True) (vLLM 0.32: vllm/v1/engine/async_llm.py; the
        KV connector's tier too, as a server's ?reset_external=true). vLLM refuses while blocks are still
        held (a request finishing, an offload transfer in flight), so it is tried for up to RESET_WAIT_S;
        then the local cache alone once. A vLLM without the flag is asked without it."""
        llm = self.llm
        if llm is None:
            return False, "the engine is not running"
        if not self.engine_args.get("enable_prefix_caching", True):
            return True, "prefix caching is off (enable_prefix_caching=false): nothing to reset"
        try:
            import inspect

            external = "reset_connector" in inspect.signature(llm.reset_prefix_cache).parameters
        except (TypeError, ValueError):
            external = False
        kwargs = {"reset_connector": True} if external else {}
        deadline = time.perf_counter() + RESET_WAIT_S
        pause = 0.02
        while True:
            if await llm.reset_prefix_cache(**kwargs):
                return True, ("prefix cache reset (local and external tiers: reset_connector=True)" if external
                              else "prefix cache reset")
            if time.perf_counter() + pause > deadline:
                break
            await asyncio.sleep(pause)
            pause = min(0.25, pause * 2)
        if external and await llm.reset_prefix_cache():
            return True, ("local prefix cache reset; the external (KV connector) tier could not be within "
                          f"{RESET_WAIT_S:g} s: levels may read it")
        return False, f"vLLM did not reset its prefix cache within {RESET_WAIT_S:g} s (blocks still in use)"

    def workload_tokens(self):
        from engine.workloads.tokens import Tokens

        if self.tokenizer is None:
            return None
        return Tokens(self.tokenizer, source=f"{self.model} (the engine's)")

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.model,
            "dtype": self.resolved_dtype or self.dtype,
            "engine_args": self.engine_args,
            "versions": self.versions,
            "device_kind": "cpu" if self.is_cpu else "gpu",
        }

    # -- requests -------------------------------------------------------------
    def prompt_token_ids(self, request: GenerationRequest) -> list[int]:
        """The ids fed to the model: a workload's exact token ids as they are (what a server makes of the
        prompt's text), else the conversation (or the one prompt) in the model's chat template."""
        if request.prompt_token_ids is not None:
            return list(request.prompt_token_ids)
        tok = self.tokenizer
        messages = [{"role": r, "content": c} for r, c in (request.messages or (("user", request.prompt),))]
        out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(out, dict) or hasattr(out, "input_ids"):
            out = out["input_ids"]
        return list(out)

    async def _generate(self, request: GenerationRequest, record: RequestRecord, on_chunk: ChunkSink) -> None:
        if self.llm is None:
            raise EngineError("the engine is not running")
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            min_tokens=request.max_tokens if request.enforce_length else 0,
            ignore_eos=request.enforce_length,
            output_kind=RequestOutputKind.DELTA,
        )
        ids = self.prompt_token_ids(request)
        record.input_tokens = len(ids)
        record.prompt_form = "ids" if request.prompt_token_ids is not None else "chat"
        total = 0
        parts: list[str] = []
        chunk_ids: list = []  # each output's token ids, for the reasoning split after the last one
        request_id = f"tokentop-{uuid.uuid4().hex}"
        finished = False
        # Tokenising after `st` (taken by Engine.generate) matches `vllm bench serve`, where the
        # server tokenises after the client's `st`.
        async for output in self.llm.generate({"prompt_token_ids": ids}, params, request_id):
            now = time.perf_counter_ns()
            completion = output.outputs[0]
            n = len(completion.token_ids)
            total += n
            record.chunk_ns.append(now)
            record.chunk_tokens.append(n)
            cached = getattr(output, "num_cached_tokens", None)
            if cached is not None:
                record.cached_tokens = int(cached)
            if self.reasoning_parser is not None:
                chunk_ids.append(completion.token_ids)
            if completion.text:
                parts.append(completion.text)
                if record.first_content_ns is None:
                    record.first_content_ns = now
            on_chunk(Chunk(now, completion.text or "", n))
            if output.finished:
                record.finish_reason = completion.finish_reason
                finished = True
                # The engine's own timing (RequestStateStats, kept with stats logging on), as vLLM's
                # server reports it with --enable-per-request-metrics (engine.measure.server_timing).
                record.server_timing = from_engine_stats(getattr(output, "metrics", None), total,
                                                         getattr(completion, "spec_decode_metrics", None))
        record.text = "".join(parts)
        record.reported_output_tokens = total
        record.token_count_source = "engine"
        if not finished or record.finish_reason not in ("stop", "length"):
            # Ended by the engine (shutting down, Ctrl-C reaching its process, an engine error): what
            # streamed is kept, but it is not a finished request, so it counts in no metric.
            record.aborted = record.finish_reason in (None, "abort")
            record.error = f"the engine ended the request before it finished ({record.finish_reason or 'no reason'})"
            record.error_kind = "aborted" if record.aborted else "engine"
        if self.reasoning_parser is not None:
            split_reasoning_ids(record, chunk_ids, self.reasoning_parser)


def _reasoning_parser(name: str | None, tokenizer):
    """vLLM's reasoning parser by name (vllm.reasoning.ReasoningParserManager), or None."""
    if not name:
        return None
    from vllm.reasoning import ReasoningParserManager

    try:
        cls = ReasoningParserManager.get_reasoning_parser(name)
    except KeyError:
        known = ", ".join(ReasoningParserManager.list_registered())
        raise BadRequestError(f"unknown reasoning parser {name!r}; vLLM knows {known}") from None
    try:
        return cls(tokenizer)
    except Exception as exc:  # e.g. the model's tokenizer lacks the parser's think tokens
        raise BadRequestError(f"reasoning parser {name!r} does not fit this model: {one_line(exc, 300)}") from None


def split_reasoning_ids(record: RequestRecord, chunk_ids: list, parser) -> None:
    """The reasoning/answer split from the engine's own token ids (method "engine token ids"), after
    the request finished. The answer is what the parser extracts as content; every output token
    before the first answer token (think markers included) counts as reasoning. A response in
    which the parser finds no reasoning is left as "no reasoning"."""
    ids = [int(t) for part in chunk_ids for t in part]
    total = len(ids)
    ended = bool(parser.is_reasoning_end(ids))
    if not ended and not parser.count_reasoning_tokens(ids):
        return
    answer = len(parser.extract_content_ids(ids)) if ended else 0
    reasoning = total - answer
    record.reported_reasoning_tokens = reasoning
    record.reasoning_method = "engine token ids"
    split, seen = [], 0
    for n, t_ns in zip(record.chunk_tokens, record.chunk_ns):
        split.append(max(0, min(n, reasoning - seen)))
        if record.first_answer_ns is None and seen + n > reasoning:
            record.first_answer_ns = t_ns  # the chunk that carried the first answer token
        seen += n
    record.chunk_reasoning_tokens = split


def _import_vllm():
    import torch
    import vllm
    from vllm import AsyncEngineArgs
    from vllm.platforms import current_platform
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncEngineArgs, AsyncLLM, current_platform, vllm.__version__, torch.__version__
