"""Stream shapes from the field (issue 21, "Traffic from the field": content as typed blocks, an error
and then the connection closes), each replayed byte for byte through the real client against a
scripted server on loopback (tests/support/fake_openai.py) and named after the server or gateway it comes
from. Each case's comment says where its bytes were taken from. Shapes tests/unit/test_streams.py already
covers (CRLF/CR line ends, usage-only final events, OpenAI/vLLM error objects before [DONE], non-200
bodies) are not repeated here."""

from __future__ import annotations

import json

from data.store.database import Store
from engine.measure.metrics import request_metrics
from engine.orchestrator import RunFinished
from engine.types import GenerationRequest, RequestRecord
from tests.support.fake_openai import Reply, ScriptServer, event, timed, usage
from tests.support.openai_client import load_levels, send_request


def one_request(server: ScriptServer, **kwargs) -> RequestRecord:
    return send_request(server, GenerationRequest("q", 64), **kwargs)


def load_level(server: ScriptServer, store: Store, num_prompts: int) -> RunFinished:
    """One load level at concurrency 1 through data.jobs.load, stored as the app stores it."""
    from data.jobs.load import LoadSpec
    from engine.load import LoadLevel
    from tests.support.prompts import PromptSource

    spec = LoadSpec(levels=[LoadLevel(max_concurrency=1, num_prompts=num_prompts)],
                    prompts=PromptSource(input_len=4, output_len=4))
    (level,) = load_levels(server, store, spec)
    return level


def mistral_chunk(content, *, finish: str | None = None, role: str | None = None, extra: dict | None = None,
                  model: str = "magistral-medium-2509") -> dict:
    """A chat.completion.chunk as Mistral's API writes it (id, object, created, model, choices)."""
    delta: dict = {"role": role} if role else {}
    delta["content"] = content
    out = {"id": "c3c77283055240cbbaf6f01d384cfccb", "object": "chat.completion.chunk", "created": 1762355135,
           "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    out.update(extra or {})
    return out


def thinking(text: str, **more) -> dict:
    """Mistral's ThinkChunk: {"type": "thinking", "thinking": [TextChunk, ...]} (`closed` optional)."""
    return {"type": "thinking", "thinking": [{"type": "text", "text": text}], **more}


# -- content as typed blocks ---------------------------------------------------------------------------
def test_mistral_magistral_thinking_blocks_then_text():
    """Magistral through Mistral's API: the reasoning arrives as `delta.content` lists of thinking blocks
    (each holding text blocks), the answer as plain strings, the usage on the last event. The events are
    those posted in BerriAI/litellm issue #16272 ("Magistral reasoning not working with streaming",
    magistral-medium-2509). Was: TypeError, every request failed."""
    parts = timed([
        (5, mistral_chunk("", role="assistant")),
        (10, mistral_chunk([thinking("'s a greeting")])),
        (15, mistral_chunk([thinking(", I should")])),
        (20, mistral_chunk([thinking(" return")])),
        (40, mistral_chunk("Hello")),
        (45, mistral_chunk("!")),
        (50, mistral_chunk("", finish="stop",
                           extra={"usage": {"prompt_tokens": 6, "total_tokens": 11, "completion_tokens": 5}})),
    ])
    with ScriptServer([Reply(parts=parts)]) as server:
        rec = one_request(server)
    m = request_metrics(rec)
    assert rec.success, rec.error
    assert rec.text == "Hello!" and rec.reasoning_text == "'s a greeting, I should return"
    assert rec.finish_reason == "stop" and rec.output_tokens == 5
    # TTFT stays vLLM's (the first event, the role-only one); the first answer comes after the thinking
    assert rec.first_content_ns == rec.chunk_ns[1] and rec.first_answer_ns == rec.chunk_ns[4]
    assert m.ttft_s < m.ttfo_s
    assert (m.reasoning_tokens, m.answer_tokens) == (3, 2)


def test_mistral_small_reasoning_effort_typed_text_blocks_closed_thinking_and_references():
    """Mistral Small 4 with reasoning_effort="high" (braintrustdata/braintrust-sdk-javascript issue #1857):
    both the thinking and the answer come as typed blocks — the answer as TextChunks
    {"type": "text", "text"}, a ThinkChunk may carry `closed: true`, one event may hold the end of the
    thinking and the start of the answer, and a ReferenceChunk {"type": "reference", "reference_ids"}
    carries no text (Mistral's OpenAPI schema: ThinkChunk, TextChunk, ReferenceChunk). Blocks of other
    types are skipped."""
    parts = timed([
        (5, mistral_chunk("", role="assistant", model="mistral-small-2603")),
        (10, mistral_chunk([thinking("plan")], model="mistral-small-2603")),
        (15, mistral_chunk([thinking(" done", closed=True), {"type": "text", "text": "An"}],
                           model="mistral-small-2603")),
        (20, mistral_chunk([{"type": "text", "text": "swer"}, {"type": "reference", "reference_ids": [1]},
                            {"type": "text", "text": "."}], model="mistral-small-2603")),
        (25, mistral_chunk([], finish="stop", model="mistral-small-2603",
                           extra={"usage": {"prompt_tokens": 9, "total_tokens": 13, "completion_tokens": 4}})),
    ])
    with ScriptServer([Reply(parts=parts)]) as server:
        rec = one_request(server)
    assert rec.success, rec.error
    assert rec.text == "Answer." and rec.reasoning_text == "plan done"
    assert rec.first_content_ns == rec.chunk_ns[1] and rec.first_answer_ns == rec.chunk_ns[2]
    assert rec.has_reasoning and rec.output_tokens == 4


# -- an error, then the connection closes ---------------------------------------------------------------
# SGLang's streaming error (python/sglang/srt/entrypoints/openai/serving_base.py,
# create_streaming_error_response): {"error": ErrorResponse(object="error", message, type, param, code)}.
SGLANG_ERROR = {"error": {"object": "error", "message": "The input (9000 tokens) is longer than the model's "
                          "context length (8192 tokens).", "type": "BadRequestError", "param": None, "code": 400}}
SGLANG_MESSAGE = ("The input (9000 tokens) is longer than the model's context length (8192 tokens). "
                  "(BadRequestError, 400)")


def sglang_chunk(content: str, **kwargs) -> dict:
    delta = {"role": "assistant", "content": content} if kwargs.pop("role", False) else {"content": content}
    return {"id": "0d1f", "object": "chat.completion.chunk", "created": 1762355135, "model": "default",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None,
                         "matched_stop": None}], **kwargs}


def test_sglang_error_event_then_the_connection_closes_keeps_the_message():
    """SGLang: a 200 stream, a chunk, the error event, then the connection closes with no [DONE] and no
    end of the chunked body. Was: "connection: the server closed the connection before the response
    ended" (the message lost since the HTTP/1.1 client replaced httpx)."""
    parts = [(5, event(sglang_chunk("", role=True))), (10, event(sglang_chunk("Hi"))), (15, event(SGLANG_ERROR))]
    with ScriptServer([Reply(parts=parts, drop=True)]) as server:
        rec = one_request(server)
    assert not rec.success
    assert (rec.error, rec.error_kind) == (SGLANG_MESSAGE, "stream")


def test_sglang_error_cut_before_its_blank_line_keeps_the_message():
    """The same, with the connection closed after the error's `data:` line and before its blank line:
    the event is complete as far as the server will ever send it."""
    parts = [(5, event(sglang_chunk("", role=True))), (10, event(SGLANG_ERROR, ending=b"\n"))]
    with ScriptServer([Reply(parts=parts, drop=True)]) as server:
        rec = one_request(server)
    assert (rec.error, rec.error_kind) == (SGLANG_MESSAGE, "stream")


def test_sglang_error_then_close_under_load_counts_as_an_error_in_stream(store):
    """Under load the level counts those failures as "error in stream" (metrics.failure_label), not as
    connection failures, and stores the server's message."""
    ok = Reply(parts=timed([(2, sglang_chunk("", role=True)), (4, sglang_chunk("a", usage=usage(1))),
                            (6, {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "default",
                                 "choices": [], "usage": usage(1)})]))
    failing = Reply(parts=[(2, event(sglang_chunk("", role=True))), (4, event(SGLANG_ERROR))], drop=True)
    with ScriptServer([ok, failing, ok, failing]) as server:
        level = load_level(server, store, 4)
    overall = level.summary["overall"]
    assert (overall["completed"], overall["failed"]) == (2, 2)
    assert overall["failures_by_kind"] == {"error in stream": 2}
    failed = [r for r in store.get_requests(level.run.run_id) if not r["success"]]
    assert [(r["error_kind"], r["error"]) for r in failed] == [("stream", SGLANG_MESSAGE)] * 2


def test_llamacpp_error_field_before_pr_16109_keeps_the_message():
    """llama.cpp's server before ggml-org/llama.cpp PR #16109 (builds through 2025, e.g. b5966) sent a
    mid-stream failure as an SSE field named `error`, which the standard ignores, then `data: [DONE]`
    (bytes as quoted in coddy-project/coddy-agent PR #106). Was: "no output chunk was received"."""
    parts = [(5, b'error: {"code":400,"message":"the request exceeds the available context size. try '
                 b'increasing the context size or enable context shift","type":"invalid_request_error"}\n\n'),
             (6, event("[DONE]"))]
    with ScriptServer([Reply(parts=parts)]) as server:
        rec = one_request(server)
    assert not rec.success and rec.error_kind == "stream"
    assert rec.error == ("the request exceeds the available context size. try increasing the context size or "
                         "enable context shift (invalid_request_error, 400)")


def test_tgi_error_event_without_a_space_keeps_its_error_type():
    """TGI's router writes events through axum (`data:` with no space) and a generation error as
    {"error": text, "error_type": kind} (router/src/server.rs, `impl From<InferError> for Event`), then
    ends the stream. The error type says which kind of failure it was (generation, validation,
    overloaded, ...)."""
    chunk = {"object": "chat.completion.chunk", "id": "", "created": 1732000000, "model": "tgi",
             "system_fingerprint": "2.4.0-native",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "The"}, "logprobs": None,
                          "finish_reason": None}], "usage": None}
    error = {"error": "Request failed during generation: Server error: CUDA out of memory. Tried to allocate "
                      "2.00 GiB", "error_type": "generation"}
    parts = [(5, b"data:" + json.dumps(chunk).encode() + b"\n\n"), (10, b"data:" + json.dumps(error).encode() + b"\n\n")]
    with ScriptServer([Reply(parts=parts)]) as server:
        rec = one_request(server)
    assert not rec.success and rec.error_kind == "stream"
    assert rec.error == ("Request failed during generation: Server error: CUDA out of memory. Tried to allocate "
                         "2.00 GiB (generation)")


def test_ollama_bare_json_error_line_mid_stream_is_a_failure():
    """Ollama's OpenAI layer (middleware/openai.go, BaseWriter.writeError) writes a mid-stream failure as a
    bare JSON line — no `data:` prefix, no [DONE] — into the text/event-stream body, then ends it. Was: a
    success with the partial answer (the line is not an SSE field the standard reads)."""
    chunk = {"id": "chatcmpl-512", "object": "chat.completion.chunk", "created": 1762355135, "model": "llama3.2",
             "system_fingerprint": "fp_ollama",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Once"}, "finish_reason": None}]}
    error = (b'{"error":{"message":"model runner has unexpectedly stopped, this may be due to resource '
             b'limitations or an internal error, check ollama server logs for details","type":"api_error",'
             b'"param":null,"code":null}}\n')
    with ScriptServer([Reply(parts=[(5, event(chunk)), (10, error)])]) as server:
        rec = one_request(server)
    assert not rec.success and rec.error_kind == "stream"
    assert rec.error == ("model runner has unexpectedly stopped, this may be due to resource limitations or an "
                         "internal error, check ollama server logs for details (api_error)")


def test_openrouter_processing_comments_and_an_error_chunk_with_finish_reason_error():
    """OpenRouter: `: OPENROUTER PROCESSING` comments keep the connection alive before the first event
    (they are not events: TTFT counts from the first event, as vLLM's does), and a mid-stream failure
    is a chunk with the error at the top level beside `choices` whose finish_reason is "error"
    (openrouter.ai/docs, "Errors and Debugging", streaming error formats). Was: a success with the
    partial answer and finish_reason "error"."""
    base = {"id": "gen-1762355135-abc", "provider": "Mistral", "model": "mistralai/magistral-medium-2506",
            "object": "chat.completion.chunk", "created": 1762355135}
    parts = [(5, b": OPENROUTER PROCESSING\n\n"), (150, b": OPENROUTER PROCESSING\n\n"),
             (300, event(dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": "Hel"},
                                              "finish_reason": None}]))),
             (310, event(dict(base, error={"code": 502, "message": "Provider disconnected unexpectedly"},
                              choices=[{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]))),
             (311, event("[DONE]"))]
    with ScriptServer([Reply(parts=parts)]) as server:
        rec = one_request(server)
    assert not rec.success and rec.error_kind == "stream"
    assert rec.error == "Provider disconnected unexpectedly (502)"
    assert len(rec.chunk_ns) == 1 and (rec.chunk_ns[0] - rec.st_ns) / 1e6 >= 250  # not the comments' times
