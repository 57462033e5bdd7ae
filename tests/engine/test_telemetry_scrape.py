"""Scraping a real vLLM server's Prometheus /metrics (CPU build, loopback) during a load run."""

from __future__ import annotations

import pytest

from data.jobs.load import LoadSpec, run_load
from data.jobs.session import Session
from data.store.telemetry_rows import get_server_samples
from engine.load import LoadLevel
from engine.telemetry.server import MetricsScraper
from tests.support.prompts import PromptSource


@pytest.fixture
def server_session(vllm_server, store):
    s = Session(store, dict(engine="openai", endpoint=vllm_server.base_url, model="smollm2"))
    s.start_engine()
    yield s
    s.shutdown()


def test_scrape_real_vllm_metrics(vllm_server):
    scraper = MetricsScraper(vllm_server.base_url)
    sample = scraper.sample_once()
    scraper.close()
    assert sample is not None, scraper.note
    assert sample.source == "metrics"
    assert sample.running is not None and sample.waiting is not None
    assert sample.kv_cache_usage is not None and 0.0 <= sample.kv_cache_usage <= 1.0
    assert sample.prefix_cache_queries is not None and sample.preemptions is not None
    assert sample.prefix_counters == "vllm"  # vllm:prefix_cache_* (0.32's names), not the deprecated ones
    assert sample.ttft_count is not None and "+Inf" in sample.ttft_buckets


def test_load_run_against_server_stores_metrics_samples(server_session, store):
    spec = LoadSpec(levels=[LoadLevel(max_concurrency=2, num_prompts=4)],
                    prompts=PromptSource(input_len=16, output_len=8))
    outcome = run_load(server_session, spec)
    result = outcome.levels[0]
    assert result.outcome.status == "completed"
    server = result.summary["server"]
    assert server["source"] == "metrics"
    # The server's own counters saw exactly this level's requests and tokens.
    assert server["ttft_count"] == 4
    assert server["generation_tokens"] == 32
    assert server["server_p50_ttft_ms"] is not None and server["max_running"] is not None
    rows = get_server_samples(store, result.run_id)
    assert rows and all(r["source"] == "metrics" for r in rows)
    assert isinstance(rows[-1]["ttft_buckets"], dict)


def test_scraper_reports_a_non_vllm_endpoint_once(tmp_path):
    scraper = MetricsScraper("http://127.0.0.1:9")  # nothing listens there
    assert scraper.sample_once() is None and scraper.sample_once() is None
    assert scraper.errors == 2 and scraper.note.startswith("server metrics unavailable")
    scraper.close()
