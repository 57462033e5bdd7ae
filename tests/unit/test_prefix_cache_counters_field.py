"""Prefix-cache counters and the cache reset as real servers send them (issue 21, field corpus).

Every case replays what one server release answers, served by a loopback HTTP server, and is named after
its source. The /metrics pages keep the names, labels and `# HELP` texts of the releases they come from;
the numbers are chosen so a level's share is easy to check."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.telemetry.server import MetricsScraper, summarise_server


class FieldServer:
    """A loopback HTTP server: each (method, path without query) answers the next of its scripted
    (status, content type, body) replies (the last one repeats), or what a function of the full path
    gives; unknown routes answer 404 as FastAPI does. `asked` keeps every (method, full path) in order."""

    def __init__(self, routes: dict[tuple[str, str], list[tuple[int, str, bytes]]]):
        self.routes = {k: v if callable(v) else list(v) for k, v in routes.items()}
        self.asked: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                server.asked.append((method, self.path))
                replies = server.routes.get((method, self.path.split("?")[0]))
                if callable(replies):  # an answer that depends on the query, as vLLM's does
                    replies = [replies(self.path)]
                if not replies:
                    status, ctype, body = 404, "application/json", b'{"detail":"Not Found"}'
                else:
                    status, ctype, body = replies.pop(0) if len(replies) > 1 else replies[0]
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                self._answer("GET")

            def do_POST(self):  # noqa: N802
                self._answer("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FieldServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


MODELS = [(200, "application/json", json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode())]
PROM = "text/plain; version=0.0.4; charset=utf-8"


def _pages(*texts: str) -> list[tuple[int, str, bytes]]:
    return [(200, PROM, t.encode()) for t in texts]


def _level(pages: list[str]):
    """Scrape the pages in turn as a level's samples would be taken, and summarise them as a level."""
    with FieldServer({("GET", "/metrics"): _pages(*pages)}) as server:
        scraper = MetricsScraper(server.url + "/v1")
        samples = [scraper.sample_once() for _ in pages]
        scraper.close()
    assert all(s is not None for s in samples), scraper.note
    return samples, summarise_server(samples)


# -- /metrics pages --------------------------------------------------------------------------------

def _vllm_08_page(queries: float, hits: float) -> str:
    # vLLM 0.8.x, vllm/v1/metrics/loggers.py (PrometheusStatLogger): counters named
    # vllm:gpu_prefix_cache_{queries,hits} (prometheus_client adds _total and _created), the KV usage
    # gauge still vllm:gpu_cache_usage_perc, labels model_name only.
    return f"""\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{model_name="meta-llama/Llama-3.1-8B-Instruct"}} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{model_name="meta-llama/Llama-3.1-8B-Instruct"}} 0.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{{model_name="meta-llama/Llama-3.1-8B-Instruct"}} 0.12
# HELP vllm:gpu_prefix_cache_queries_total GPU prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:gpu_prefix_cache_queries_total counter
vllm:gpu_prefix_cache_queries_total{{model_name="meta-llama/Llama-3.1-8B-Instruct"}} {queries}
# HELP vllm:gpu_prefix_cache_queries_created GPU prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:gpu_prefix_cache_queries_created gauge
vllm:gpu_prefix_cache_queries_created{{model_name="meta-llama/Llama-3.1-8B-Instruct"}} 1.7423e+09
# HELP vllm:gpu_prefix_cache_hits_total GPU prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:gpu_prefix_cache_hits_total counter
vllm:gpu_prefix_cache_hits_total{{model_name="meta-llama/Llama-3.1-8B-Instruct"}} {hits}
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{{model_name="meta-llama/Llama-3.1-8B-Instruct"}} 0.0
"""


def _vllm_010_hidden_page(queries: float, hits: float) -> str:
    # vLLM 0.10-0.11 with --show-hidden-metrics-for-version=0.10 (loggers.py: "Deprecated in 0.9.2 -
    # Renamed as vllm:prefix_cache_queries"): both sets of names on one page, the same numbers.
    return f"""\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="Qwen/Qwen3-8B"}} 1.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="Qwen/Qwen3-8B"}} 0.3
# TYPE vllm:gpu_prefix_cache_queries_total counter
vllm:gpu_prefix_cache_queries_total{{engine="0",model_name="Qwen/Qwen3-8B"}} {queries}
# TYPE vllm:gpu_prefix_cache_hits_total counter
vllm:gpu_prefix_cache_hits_total{{engine="0",model_name="Qwen/Qwen3-8B"}} {hits}
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{{engine="0",model_name="Qwen/Qwen3-8B"}} {queries}
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{{engine="0",model_name="Qwen/Qwen3-8B"}} {hits}
"""


def test_vllm_0_8_gpu_prefix_cache_counters_give_the_level_hit_rate():
    # Source: vllm-project/vllm vllm/v1/metrics/loggers.py as released in 0.8-0.9.1 (counter_gpu_prefix_cache_*),
    # and the users' scrapers that read vllm:gpu_prefix_cache_queries_total from such servers.
    samples, level = _level([_vllm_08_page(1000.0, 200.0), _vllm_08_page(3000.0, 1700.0)])
    assert samples[-1].prefix_counters == "vllm-gpu"
    assert level["prefix_cache_queries"] == 2000.0 and level["prefix_cache_hits"] == 1500.0
    assert level["prefix_hit_rate"] == pytest.approx(0.75)
    assert level["max_kv_cache_usage"] == pytest.approx(0.12)
    assert "prefix_cache_note" not in level
    # Source: the same file in 0.10/0.11 ("Deprecated in 0.9.2 - Renamed as vllm:prefix_cache_queries.
    # With 0.11.x you can enable with --show-hidden-metrics-for-version=0.10"): both names on one page,
    # read once (the new ones), never summed.
    samples, level = _level([_vllm_010_hidden_page(100.0, 0.0), _vllm_010_hidden_page(1100.0, 800.0)])
    assert samples[-1].prefix_counters == "vllm"
    assert level["prefix_cache_queries"] == 1000.0 and level["prefix_cache_hits"] == 800.0
    assert level["prefix_hit_rate"] == pytest.approx(0.8)


def _vllm_032_connector_page(q: float, h: float, xq: float, xh: float) -> str:
    # vLLM 0.32 (.venv vllm/v1/metrics/loggers.py) with a KV connector (CPU offload / LMCache): the local
    # counters and vllm:external_prefix_cache_{queries,hits} apart, two engines (DP=2) summed; label
    # layout as in an LMCache user's page (a test fixture with
    # vllm:external_prefix_cache_queries_total{engine="0",model_name="Qwen/Qwen2.5-Coder-7B-Instruct"}).
    m = 'model_name="Qwen/Qwen2.5-Coder-7B-Instruct"'
    return f"""\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",{m}}} 4.0
vllm:num_requests_running{{engine="1",{m}}} 4.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",{m}}} 0.25
vllm:kv_cache_usage_perc{{engine="1",{m}}} 0.35
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{{engine="0",{m}}} {q / 2}
vllm:prefix_cache_queries_total{{engine="1",{m}}} {q / 2}
vllm:prefix_cache_queries_created{{engine="0",{m}}} 1.785414856271799e+09
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{{engine="0",{m}}} {h / 2}
vllm:prefix_cache_hits_total{{engine="1",{m}}} {h / 2}
# HELP vllm:external_prefix_cache_queries_total External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.
# TYPE vllm:external_prefix_cache_queries_total counter
vllm:external_prefix_cache_queries_total{{engine="0",{m}}} {xq / 2}
vllm:external_prefix_cache_queries_total{{engine="1",{m}}} {xq / 2}
# HELP vllm:external_prefix_cache_hits_total External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.
# TYPE vllm:external_prefix_cache_hits_total counter
vllm:external_prefix_cache_hits_total{{engine="0",{m}}} {xh / 2}
vllm:external_prefix_cache_hits_total{{engine="1",{m}}} {xh / 2}
# HELP vllm:prompt_tokens_cached_by_source_total Prefix-cache hit tokens by the cache tier that supplied them
# TYPE vllm:prompt_tokens_cached_by_source_total counter
vllm:prompt_tokens_cached_by_source_total{{engine="0",{m},source="device"}} {h / 2}
vllm:prompt_tokens_cached_by_source_total{{engine="0",{m},source="host"}} {xh / 2}
"""


def test_vllm_032_offload_tier_hits_are_read_apart_and_do_not_read_as_cold():
    # Source: .venv vllm 0.32 vllm/v1/metrics/loggers.py (counter_connector_prefix_cache_*) and
    # vllm/v1/core/sched/scheduler.py (external queries = the tokens the local cache missed). A level
    # after a reset: the local cache is empty, the CPU-offload tier holds the shared prefixes.
    _, level = _level([_vllm_032_connector_page(0, 0, 0, 0),
                       _vllm_032_connector_page(10000.0, 500.0, 9500.0, 8550.0)])
    assert level["prefix_counters"] == "vllm"
    assert level["prefix_hit_rate"] == pytest.approx(0.05)  # the local cache: nearly cold
    assert level["external_prefix_hit_rate"] == pytest.approx(0.9)  # vLLM's "External prefix cache hit rate"
    assert level["prefix_hit_rate_all_tiers"] == pytest.approx((500 + 8550) / 10000)
    assert level["external_prefix_cache_queries"] == 9500.0 and level["external_prefix_cache_hits"] == 8550.0
    assert level["mean_kv_cache_usage"] == pytest.approx(0.30)  # two engines: their mean


def _sglang_page(prompt: float, device: float, host: float) -> str:
    # SGLang (sgl-project/sglang python/sglang/srt/observability/metrics_collector.py): gauges
    # sglang:num_running_reqs / num_queue_reqs / token_usage / cache_hit_rate (the most recent batches'
    # rate), counters sglang:prompt_tokens_total and sglang:cached_tokens_total{cache_source=...}
    # ("Number of cached prompt tokens by source (device/host/storage)").
    m = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'
    return f"""\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{{{m}}} 3.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{{{m}}} 1.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{{{m}}} 0.4
# HELP sglang:cache_hit_rate The prefix cache hit rate.
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{{{m}}} 0.99
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{{{m}}} {prompt}
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{{{m}}} {prompt / 10}
# HELP sglang:cached_tokens_total Number of cached prompt tokens by source (device/host/storage).
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{{cache_source="device",{m}}} {device}
sglang:cached_tokens_total{{cache_source="host",{m}}} {host}
"""


def test_sglang_metrics_page_reads_cached_tokens_by_cache_source():
    # Source: sgl-project/sglang metrics_collector.py (cached_tokens_total by cache_source); the lifetime
    # sglang:cache_hit_rate gauge (0.99 here) is not the level's rate and is not read.
    samples, level = _level([_sglang_page(1000.0, 100.0, 0.0), _sglang_page(5000.0, 1100.0, 2400.0)])
    assert samples[-1].source == "metrics" and samples[-1].prefix_counters == "sglang"
    assert samples[-1].running == 3.0 and samples[-1].waiting == 1.0
    assert level["prefix_hit_rate"] == pytest.approx(1000 / 4000)  # device: the radix cache
    assert level["external_prefix_hit_rate"] == pytest.approx(2400 / 3000)  # host tier, of what it missed
    assert level["generation_tokens"] == pytest.approx(400.0)


def test_vllm_page_without_prefix_caching_counters_notes_no_hit_rate():
    # Source: a vLLM server whose page lacks every prefix-cache counter (vLLM V0 exported only the
    # vllm:gpu_prefix_cache_hit_rate gauge, a lifetime rate; vllm/engine/metrics.py in 0.6).
    page = ("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 0.0\n"
            "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{model_name=\"m\"} 0.1\n"
            "# TYPE vllm:gpu_prefix_cache_hit_rate gauge\nvllm:gpu_prefix_cache_hit_rate{model_name=\"m\"} 0.7\n")
    _, level = _level([page, page])
    assert level.get("prefix_hit_rate") is None
    assert "no prefix-cache counters" in level["prefix_cache_note"]


# -- the reset -------------------------------------------------------------------------------------

def _reset(routes: dict) -> tuple[bool, str, list[tuple[str, str]]]:
    from engine.engines.openai_engine import OpenAIEngine

    with FieldServer({("GET", "/v1/models"): MODELS, **routes}) as server:
        async def go():
            engine = OpenAIEngine(server.url, model="m")
            await engine.start(lambda *_: None)
            try:
                return await engine.reset_prefix_cache()
            finally:
                await engine.close()

        ok, note = asyncio.run(go())
        return ok, note, [a for a in server.asked if a[0] == "POST"]


def _json(obj) -> tuple[int, str, bytes]:
    return 200, "application/json", json.dumps(obj).encode()


def test_vllm_032_dev_mode_reset_busy_answer_is_retried_with_reset_external():
    # Source: .venv vllm 0.32 vllm/entrypoints/serve/dev/cache/api_router.py: 200 {"success": false}
    # "while blocks are still held, e.g. by running requests or in-flight async KV offload transfers;
    # callers may retry"; ?reset_external=true also resets the connector's cache.
    ok, note, posts = _reset({("POST", "/reset_prefix_cache"): [
        _json({"success": False}), _json({"success": False}), _json({"success": True})]})
    assert ok, note
    assert "external" in note
    assert posts == [("POST", "/reset_prefix_cache?reset_external=true")] * 3


def test_vllm_032_connector_that_cannot_reset_falls_back_to_the_local_cache_and_says_so(monkeypatch):
    # Source: .venv vllm 0.32 vllm/v1/core/sched/scheduler.py reset_prefix_cache: with reset_connector the
    # answer is False whenever the connector's reset_cache() returns False; the local reset alone succeeds.
    import engine.engines.cache_reset as cache_reset

    monkeypatch.setattr(cache_reset, "RESET_WAIT_S", 0.2)
    ok, note, posts = _reset({("POST", "/reset_prefix_cache"):
                              lambda path: _json({"success": "reset_external=true" not in path})})
    assert ok and note.startswith("local prefix cache reset"), note
    assert "external (KV connector) tier could not be" in note
    assert posts[0] == ("POST", "/reset_prefix_cache?reset_external=true")
    assert posts[-1] == ("POST", "/reset_prefix_cache") and len(posts) >= 3  # retried, then local alone


def test_sglang_flush_cache_is_tried_where_reset_prefix_cache_is_missing():
    # Source: sgl-project/sglang python/sglang/srt/entrypoints/http_server.py: /flush_cache (GET or POST)
    # answers 400 with a reason while requests run or wait, 200 "Cache flushed.\nPlease check backend
    # logs ..." once done. SGLang has no /reset_prefix_cache (FastAPI's 404).
    flushed = b"Cache flushed.\nPlease check backend logs for more details. (When there are running or " \
              b"waiting requests, the operation will not be performed.)\n"
    ok, note, posts = _reset({("POST", "/flush_cache"): [(400, "text/plain", b"Flush cache failed.\n"),
                                                         (200, "text/plain", flushed)]})
    assert ok, note
    assert "SGLang" in note
    assert posts == [("POST", "/reset_prefix_cache?reset_external=true"), ("POST", "/flush_cache"),
                     ("POST", "/flush_cache")]


def test_server_with_neither_route_says_both_were_tried():
    # Source: a vLLM server outside VLLM_SERVER_DEV_MODE (vllm/entrypoints/serve/dev is not mounted),
    # or TGI / llama.cpp / Ollama: 404 for both routes.
    ok, note, posts = _reset({})
    assert not ok
    assert "VLLM_SERVER_DEV_MODE=1" in note and "/flush_cache" in note
    assert [p.split("?")[0] for _, p in posts] == ["/reset_prefix_cache", "/flush_cache"]


# -- the in-process engine -------------------------------------------------------------------------

def test_in_process_stats_read_the_connector_tier_apart():
    # Source: .venv vllm 0.32 vllm/v1/metrics/stats.py SchedulerStats.connector_prefix_cache_stats (a
    # PrefixCacheStats, None without a KV connector), counted as PrometheusStatLogger counts them.
    from vllm.v1.metrics.stats import PrefixCacheStats, SchedulerStats

    from engine.telemetry.server import InProcessStats

    stats = InProcessStats()
    first = stats.sample()
    stats.record(SchedulerStats(prefix_cache_stats=PrefixCacheStats(requests=2, queries=400, hits=40),
                                connector_prefix_cache_stats=PrefixCacheStats(requests=2, queries=360, hits=300)),
                 None)
    level = summarise_server([first, stats.sample()])
    assert level["prefix_hit_rate"] == pytest.approx(0.1)
    assert level["external_prefix_hit_rate"] == pytest.approx(300 / 360)


def test_in_process_reset_asks_vllm_032_to_reset_the_connector_too():
    # Source: .venv vllm 0.32 vllm/v1/engine/async_llm.py:
    # AsyncLLM.reset_prefix_cache(reset_running_requests=False, reset_connector=False) -> bool.
    from vllm.v1.engine.async_llm import AsyncLLM

    from engine.engines.vllm_engine import VllmEngine

    real = inspect.signature(AsyncLLM.reset_prefix_cache)
    calls: list[dict] = []

    class Llm:  # AsyncLLM's method, with its signature, in front of a scheduler that is busy once
        async def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False):
            calls.append({"reset_running_requests": reset_running_requests, "reset_connector": reset_connector})
            return len(calls) > 1

    assert list(inspect.signature(Llm.reset_prefix_cache).parameters) == list(real.parameters)
    engine = VllmEngine("m")
    engine.llm = Llm()
    ok, note = asyncio.run(engine.reset_prefix_cache())
    assert ok, note
    assert calls == [{"reset_running_requests": False, "reset_connector": True}] * 2
    assert "external" in note


# -- a level, end to end ---------------------------------------------------------------------------

def test_load_level_on_an_offload_server_stores_and_says_the_external_tier_hit_rate(tmp_path):
    # Source: .venv vllm 0.32 loggers.py counters as a server with a CPU-offload connector moves them: each
    # request queries 1000 prompt tokens locally (50 hit after the reset), the connector is asked for the
    # 950 the local cache missed and holds 900 of them. The level must not read as cold.
    from data.jobs.load import LoadSpec, level_rows, run_load
    from data.jobs.session import Session
    from data.store.database import Store
    from engine.load import LoadLevel
    from tests.support.fake_openai import chat, event, usage
    from tests.support.prompts import PromptSource
    from tui.cli.commands.load import _level_line, load_table

    served = []
    stream = b"".join(event(e) for e in (chat("", role="assistant"), chat("hi"), chat(" there", finish="length",
                                                                                       usage=usage(2)))) + event("[DONE]")

    def completion(_path):
        served.append(1)
        return 200, "text/event-stream", stream

    def metrics(_path):
        n = len(served)
        return 200, PROM, _vllm_032_connector_page(1000.0 * n, 50.0 * n, 950.0 * n, 900.0 * n).encode()

    with FieldServer({("GET", "/v1/models"): MODELS, ("GET", "/metrics"): metrics,
                      ("POST", "/v1/chat/completions"): completion,
                      ("POST", "/reset_prefix_cache"): [_json({"success": True})]}) as server, \
            Store(tmp_path / "r.duckdb") as store:
        session = Session(store, dict(engine="openai", endpoint=server.url, model="m"))
        session.start_engine()
        try:
            outcome = run_load(session, LoadSpec(levels=[LoadLevel(max_concurrency=1, num_prompts=4)],
                                                 prompts=PromptSource(input_len=8, output_len=2)))
        finally:
            session.shutdown()
        level = outcome.levels[0]
        overall = level.summary["overall"]
        assert level.outcome.status == "completed"
        assert overall["prefix_cache_reset"] is True
        assert "reset_external=true" in overall["prefix_cache_reset_note"]
        assert overall["prefix_cache_hit_rate"] == pytest.approx(0.05)
        assert overall["prefix_cache_external_hit_rate"] == pytest.approx(900 / 950)
        stored = store.get_run(level.run_id)["summary"]
        assert stored["overall"]["prefix_cache_external_hit_rate"] == pytest.approx(900 / 950)
        assert stored["server"]["prefix_hit_rate_all_tiers"] == pytest.approx(0.95)
        assert "external tier hits 95 % of the misses" in _level_line(level_rows(outcome.levels)[0])
        cols, table = load_table(level_rows(outcome.levels), None)
        headers = [c.header for c in cols]
        assert table[0][headers.index("hit %")] == "5%" and table[0][headers.index("ext hit %")] == "95%"


def test_sglang_release_without_cached_tokens_counter_has_no_hit_rate_rather_than_zero():
    # Source: sgl-project/sglang's first metrics_collector.py (SchedulerMetricsCollector): gauges
    # sglang:prompt_tokens_total ("Number of prefill tokens processed.", multiprocess_mode="sum") and
    # sglang:cache_hit_rate, no cached-tokens counter yet. Prompt tokens alone must not read as a 0 % rate.
    page = ("# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs{model_name=\"m\"} 1.0\n"
            "# TYPE sglang:token_usage gauge\nsglang:token_usage{model_name=\"m\"} 0.2\n"
            "# TYPE sglang:cache_hit_rate gauge\nsglang:cache_hit_rate{model_name=\"m\"} 0.6\n"
            "# TYPE sglang:prompt_tokens_total gauge\nsglang:prompt_tokens_total{model_name=\"m\"} %s\n")
    _, level = _level([page % 100.0, page % 900.0])
    assert level.get("prefix_hit_rate") is None
    assert "no prefix-cache counters" in level["prefix_cache_note"]
