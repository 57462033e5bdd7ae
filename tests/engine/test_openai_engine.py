"""The openai engine against a real vLLM OpenAI server started on loopback."""

from __future__ import annotations

import pytest

from engine.engines.host import EngineHost
from engine.engines.managed_server import free_port
from engine.engines.openai_engine import OpenAIEngine, normalise_base_url
from engine.measure.metrics import request_metrics
from engine.types import BadRequestError, GenerationRequest

pytestmark = pytest.mark.engine


def _host(endpoint, model=None, api="chat"):
    host = EngineHost(OpenAIEngine(endpoint, model, api=api))
    return host


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_streams_exact_counts_from_usage(vllm_server, api):
    host = _host(vllm_server.base_url, "smollm2", api)
    try:
        host.start().result(60)
        seen = []
        rec = host.submit(
            GenerationRequest(prompt="Tell me about GPUs.", max_tokens=16, enforce_length=True), seen.append
        ).result(120)
        assert rec.success, rec.error
        assert rec.reported_output_tokens == 16 and rec.output_tokens == 16
        assert sum(rec.chunk_tokens) == 16  # continuous usage stats give per-chunk counts
        assert rec.token_count_source == "usage" and rec.finish_reason == "length"
        assert rec.first_content_ns is not None and rec.first_content_ns >= rec.chunk_ns[0]
        assert rec.input_tokens and rec.input_tokens > 3
        m = request_metrics(rec)
        assert m.ttft_s > 0 and m.tpot_s > 0
        assert rec.text and "".join(c.text for c in seen) == rec.text
    finally:
        host.shutdown()


def test_model_defaults_to_the_served_one(vllm_server):
    host = _host(vllm_server.base_url + "/v1/")
    try:
        host.start().result(60)
        assert host.engine.model == "smollm2"
    finally:
        host.shutdown()


def test_wrong_model_name_is_a_clear_error(vllm_server):
    host = _host(vllm_server.base_url, "llama-3-8b")
    try:
        with pytest.raises(BadRequestError) as err:
            host.start().result(60)
        assert "serves smollm2, not llama-3-8b" in str(err.value)
    finally:
        host.shutdown()


def test_refused_connection_is_a_clear_error():
    host = _host(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(BadRequestError) as err:
            host.start().result(30)
        assert "connection refused" in str(err.value) and "--endpoint" in str(err.value)
    finally:
        host.shutdown()


def test_base_url_forms():
    assert normalise_base_url("http://h:1") == "http://h:1/v1"
    assert normalise_base_url("http://h:1/v1/chat/completions") == "http://h:1/v1"
    with pytest.raises(BadRequestError):
        normalise_base_url("h:1")
