"""Load on the real embedded CPU engine: a concurrency sweep, a Poisson run checked from the stored
send times, and in-process server telemetry from vLLM's stat loggers."""

from __future__ import annotations

import json

import pytest

from data.jobs.load import LoadSpec, run_load
from data.store.telemetry_rows import get_gpu_samples, get_server_samples
from engine.load import LiveLoad, LoadLevel, poisson_fit
from tests.support.prompts import PromptSource


def test_concurrency_sweep_1_2_4_stores_every_level(session, store):
    spec = LoadSpec(
        levels=[LoadLevel(max_concurrency=c, num_prompts=4) for c in (1, 2, 4)],
        prompts=PromptSource(input_len=32, output_len=16),
        slo_ms={"ttft": 60_000.0, "tpot": 60_000.0},
    )
    live = LiveLoad()
    seen_levels = []
    outcome = run_load(session, spec, live=live, on_level_done=lambda i, r: seen_levels.append(i))
    assert seen_levels == [0, 1, 2]
    assert [r.outcome.status for r in outcome.levels] == ["completed"] * 3
    assert outcome.stop_reason == "all levels ran"
    for result, c in zip(outcome.levels, (1, 2, 4)):
        run = store.get_run(result.run_id)
        assert run["kind"] == "load" and run["status"] == "completed"
        settings = run["suite_json"] if isinstance(run["suite_json"], dict) else json.loads(run["suite_json"])
        assert settings["load"]["max_concurrency"] == c
        assert settings["prompts"]["input_len"] == 32
        requests = store.get_requests(result.run_id)
        assert len(requests) == 4 and all(r["success"] for r in requests)
        assert all(r["input_tokens"] == 32 and r["output_tokens"] == 16 for r in requests)
        assert all(r["send_offset_s"] >= 0 for r in requests)
        summary = run["summary"] if isinstance(run["summary"], dict) else json.loads(run["summary"])
        overall = summary["overall"]
        assert overall["completed"] == 4
        assert overall["max_concurrency"] == c
        # The cap held: at no instant were more than c requests in flight (vLLM's
        # max_concurrent_requests buckets by whole seconds, so it is checked from the records instead).
        events = sorted([(r.st_ns, 1) for r in result.outcome.records] +
                        [(r.chunk_ns[-1], -1) for r in result.outcome.records])
        in_flight = peak = 0
        for _, step in events:
            in_flight += step
            peak = max(peak, in_flight)
        assert peak == c
        assert overall["good_requests"] == 4  # generous SLOs: all good
        assert overall["request_goodput"] == pytest.approx(overall["request_throughput"])
        assert "p50_ttft_ms" in overall and "p99_ttft_ms" in overall
        # No GPU here: the summary says so instead of figures.
        assert summary["gpu"].get("note") or summary["gpu"].get("samples")
        # In-process server telemetry from vLLM's stat loggers, stored with the run.
        assert summary["server"]["source"] == "stat_logger"
        assert get_server_samples(store, result.run_id)
        assert get_gpu_samples(store, result.run_id) == []
    # With 4 users, 4 requests go out together; with 1 user, one after another.
    first = store.get_requests(outcome.levels[0].run_id)
    last = store.get_requests(outcome.levels[2].run_id)
    assert max(r["send_offset_s"] for r in last) < min(
        sorted(r["send_offset_s"] for r in first)[1:]
    )
    # Batching helps: 4 users get more tokens/s than 1.
    t1 = outcome.levels[0].summary["overall"]["output_throughput"]
    t4 = outcome.levels[2].summary["overall"]["output_throughput"]
    assert t4 > t1
    assert live.snapshot().completed == 4


def test_poisson_run_send_times_fit_the_rate(session, store):
    rate, n = 4.0, 40
    spec = LoadSpec(
        levels=[LoadLevel(request_rate=rate, burstiness=1.0, num_prompts=n)],
        prompts=PromptSource(input_len=16, output_len=8),
        pattern="rate",
        seed=7,
    )
    outcome = run_load(session, spec)
    result = outcome.levels[0]
    assert result.outcome.status == "completed"
    rows = store.get_requests(result.run_id)
    assert len(rows) == n
    offsets = sorted(r["send_offset_s"] for r in rows)
    fit = poisson_fit(offsets, rate)
    # Kolmogorov-Smirnov: inter-arrival times are not distinguishable from Exp(rate).
    assert fit["ks_p"] > 0.01, fit
    assert fit["ci95_low_s"] <= 1 / rate <= fit["ci95_high_s"], fit
    # The whole batch went out in about n / rate seconds (vLLM rescales to exactly that).
    assert offsets[-1] == pytest.approx(n / rate, abs=0.5)
    # And they really were sent on schedule: the engine loop kept up (send lag small).
    from engine.load import arrival_offsets

    planned = arrival_offsets(n, rate, 1.0, seed=7)
    stored_by_index = [r["send_offset_s"] for r in sorted(rows, key=lambda r: r["request_index"])]
    lags = [s - p for s, p in zip(stored_by_index, planned)]
    assert max(lags) < 0.25 and min(lags) > -0.01
