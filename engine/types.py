"""What flows out of an engine: a request, the chunks it streams, and the timed record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from engine.errors import TokentopError

# How a stored run, a suite's or a load level's outcome, or a job ended (the store's runs.status):
# completed (it ran to its end), failed (an error, or no request succeeded), aborted (someone stopped it).
RunStatus = Literal["completed", "failed", "aborted"]
# A job as a screen sees it (engine.orchestrator.JobView.status): still running, stopping, or how it ended.
JobViewStatus = Literal["running", "stopping", "completed", "failed", "aborted"]


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_tokens: int
    temperature: float = 0.8
    top_p: float = 1.0
    # Enforce the length: generate exactly max_tokens (min_tokens = max_tokens, ignore EOS).
    enforce_length: bool = False
    seed: int | None = None
    case_id: str = "interactive"
    rep: int = 0
    # The prompt length the workload asked for, in tokens as the engine counts them (special tokens
    # included, chat template not): stored beside the engine's own count (RequestRecord.input_tokens).
    input_len: int | None = None
    # The exact prompt tokens (engine.workloads: synthetic, prefix_repetition, traces), as the server's
    # tokenizer would produce them from `prompt` (special tokens included, no chat template). The
    # in-process engine feeds them as they are; the openai engine sends `prompt` (text that re-tokenises
    # to them) on the completions API, or the ids themselves when `send_ids` (traces, like vLLM).
    prompt_token_ids: tuple[int, ...] | None = None
    send_ids: bool = False
    # A multi-turn conversation: the whole history as (role, content) pairs, the last being this
    # turn's user message (`prompt`). The engine wraps them in the model's chat template.
    messages: tuple[tuple[str, str], ...] | None = None
    conversation_id: int | None = None  # which simulated user (multi-turn), stored per request
    turn: int | None = None  # 0-based turn index within the conversation


@dataclass(frozen=True)
class Chunk:
    """One streamed piece of output, timestamped where it arrived (inside engine/)."""

    t_ns: int  # time.perf_counter_ns() on arrival
    text: str
    tokens: int  # output tokens this chunk carried (0 for an empty first chunk)
    reasoning: str = ""  # reasoning text this chunk carried (reasoning models), kept apart from the answer
    # False when `tokens` is provisional (the server sent no per-event usage: 1 per non-empty event);
    # a live meter with a tokenizer counts the text instead, and the final count replaces it.
    exact: bool = True


@dataclass
class RequestRecord:
    """Everything measured for one request. Times are perf_counter_ns; metrics derive from them."""

    request: GenerationRequest
    st_ns: int = 0  # perf_counter_ns just before sending (vLLM bench: `st`)
    sent_wall: float = 0.0  # time.time() at sending, for storage
    chunk_ns: list[int] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    text: str = ""
    input_tokens: int | None = None
    # The engine's/server's own count; None when it gave none (then we count chunk tokens).
    reported_output_tokens: int | None = None
    finish_reason: str | None = None
    success: bool = False
    error: str | None = None
    aborted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # Reasoning models. None = the response carried no reasoning. chunk_reasoning_tokens[i] is how
    # many of chunk_tokens[i] were reasoning; first_answer_ns is when the first answer (content)
    # token arrived; reasoning_method says how the split was known (engine.reasoning.METHODS).
    chunk_reasoning_tokens: list[int] | None = None
    first_answer_ns: int | None = None
    reported_reasoning_tokens: int | None = None
    reasoning_method: str | None = None
    reasoning_text: str = ""
    # Client self-check (load runs): when the load pattern meant this request to go out, and how
    # long it waited on the client's own concurrency limit before it could (vLLM #54101).
    scheduled_ns: int | None = None
    queue_wait_ns: int | None = None
    # Prompt tokens the engine served from its prefix cache (in-process: RequestOutput.num_cached_tokens;
    # a server: usage.prompt_tokens_details.cached_tokens where it reports it), None when unknown.
    cached_tokens: int | None = None
    # How the prompt reached the model: "ids" (token ids as given), "text" (raw text, tokenised by the
    # server), "chat" (wrapped in the chat template, so the count includes the template's tokens).
    prompt_form: str | None = None
    # How chunk_tokens were counted (engine.measure.token_counts.SOURCES): "usage", "engine",
    # "usage+tokenizer", "usage+spread", "tokenizer" or "events" (the last two are estimates).
    token_count_source: str | None = None
    # Each event's text (reasoning + answer), kept only while the counts may still be refined by a
    # tokenizer off the token path (Engine.settle); None once settled.
    chunk_texts: list[str] | None = None
    # The first event that carried text or reasoning (TTFC); TTFT counts any event, as vLLM does.
    first_content_ns: int | None = None
    # Why it failed: "http" (with http_status), "stream" (an error event inside a 200 stream),
    # "timeout", "connection", "no output", "aborted", "engine" or "other"; None when it succeeded.
    error_kind: str | None = None
    http_status: int | None = None
    # The server's own timing of this request (engine.measure.server_timing.ServerTiming: vLLM's
    # per-request `metrics`, or the in-process engine's RequestOutput.metrics); None when it gave none.
    server_timing: Any = None

    @property
    def has_reasoning(self) -> bool:
        return self.chunk_reasoning_tokens is not None or self.reported_reasoning_tokens is not None

    @property
    def reasoning_tokens(self) -> int | None:
        if self.reported_reasoning_tokens is not None:
            return self.reported_reasoning_tokens
        if self.chunk_reasoning_tokens is not None:
            return sum(self.chunk_reasoning_tokens)
        return None

    @property
    def answer_tokens(self) -> int | None:
        reasoning = self.reasoning_tokens
        return None if reasoning is None else max(0, self.output_tokens - reasoning)

    @property
    def output_tokens(self) -> int:
        if self.reported_output_tokens is not None:
            return self.reported_output_tokens
        return sum(self.chunk_tokens)


class EngineError(TokentopError):
    """The engine cannot start or serve; the message is one line that says what to do."""


class BadRequestError(EngineError):
    """The user's settings are wrong (exit code 2)."""

    exit_code = 2  # bad input (engine.errors)
