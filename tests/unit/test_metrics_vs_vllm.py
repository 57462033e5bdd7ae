"""Our metrics against vLLM's own benchmark metric code, on the same synthetic timestamps."""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine.measure.metrics import aggregate, metrics_from_offsets, request_metrics
from engine.types import GenerationRequest, RequestRecord


def _synthetic_records(seed: int = 7, n: int = 12, one_token_chunks: bool = False) -> list[RequestRecord]:
    rng = random.Random(seed)
    records = []
    t = 1_000_000_000_000
    for i in range(n):
        st = t + rng.randint(0, 50_000_000)
        tokens = rng.choice([1, 2, 5, 17, 50])
        # Chunks that sometimes carry several tokens (like a server bundling), as vLLM's bench sees them.
        chunk_ns, chunk_tokens, now, left = [], [], st + rng.randint(20_000_000, 200_000_000), tokens
        while left > 0:
            k = 1 if one_token_chunks else min(left, rng.choice([1, 1, 1, 2, 3]))
            chunk_ns.append(now)
            chunk_tokens.append(k)
            left -= k
            now += rng.randint(5_000_000, 60_000_000)
        rec = RequestRecord(request=GenerationRequest(prompt="p", max_tokens=tokens), st_ns=st)
        rec.chunk_ns, rec.chunk_tokens = chunk_ns, chunk_tokens
        rec.reported_output_tokens = tokens
        rec.input_tokens = rng.randint(5, 40)
        rec.success = i % 7 != 3  # a few failures: excluded from latencies, not from the duration
        records.append(rec)
        t = st + 10_000_000
    return records


def _vllm_outputs(records):
    from vllm.benchmarks.datasets import SampleRequest
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncOutput

    inputs, outputs = [], []
    for rec in records:
        inputs.append(SampleRequest(prompt="p", prompt_len=rec.input_tokens, expected_output_len=rec.output_tokens))
        out = RequestFuncOutput()
        out.success = rec.success
        out.prompt_len = rec.input_tokens
        out.start_time = rec.st_ns / 1e9
        if rec.success:
            out.ttft = (rec.chunk_ns[0] - rec.st_ns) / 1e9
            out.itl = [(b - a) / 1e9 for a, b in zip(rec.chunk_ns, rec.chunk_ns[1:])]
            out.latency = (rec.chunk_ns[-1] - rec.st_ns) / 1e9
            out.output_tokens = rec.output_tokens
        outputs.append(out)
    return inputs, outputs


def _vllm_head_peak_concurrency(outputs) -> int:
    """max_concurrent_requests as vLLM HEAD computes it (vllm/benchmarks/serve.py calculate_metrics,
    commit 009e6d4, replacing 0.32's whole-second buckets): a sweep over the successful outputs'
    half-open [start_time, start_time + latency) intervals, events sorted by (time, delta) so that a
    departure (-1) precedes an arrival (+1) at the same instant. Transcribed here because the installed
    vLLM (0.32) predates it."""
    events = []
    for output in (o for o in outputs if o.success):
        events.append((output.start_time, 1))
        events.append((output.start_time + output.latency, -1))
    events.sort(key=lambda x: (x[0], x[1]))
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("seed,one_token_chunks", [(1, False), (7, False), (42, False), (3, True)])
def test_aggregates_equal_vllm_calculate_metrics(seed, one_token_chunks):
    from vllm.benchmarks.serve import calculate_metrics

    records = _synthetic_records(seed, one_token_chunks=one_token_chunks)
    duration = (max(r.chunk_ns[-1] for r in records) - min(r.st_ns for r in records)) / 1e9
    slo = {"ttft": 120.0, "tpot": 40.0}
    ours = aggregate([request_metrics(r) for r in records], duration, percentiles=(50, 90, 99), slo_ms=slo)
    inputs, outputs = _vllm_outputs(records)
    theirs, _lens = calculate_metrics(inputs, outputs, duration, None, [50, 90, 99], slo)

    assert ours["completed"] == theirs.completed
    assert ours["failed"] == theirs.failed
    assert ours["total_output_tokens"] == theirs.total_output
    assert ours["total_input_tokens"] == theirs.total_input
    for name in ("request_throughput", "request_goodput", "output_throughput", "total_token_throughput"):
        assert ours[name] == pytest.approx(getattr(theirs, name), rel=1e-12), name
    # Peak concurrency: vLLM's exact overlap count (HEAD), which the installed vLLM 0.32 does not have yet:
    # its whole-second buckets can only read as many requests or more.
    assert ours["max_concurrent_requests"] == _vllm_head_peak_concurrency(outputs)
    assert ours["max_concurrent_requests"] <= theirs.max_concurrent_requests
    # vLLM's peak counts every chunk as one token: ours keeps that figure under its own name, and
    # counts the tokens each chunk carried in max_output_tokens_per_s (the same when chunks carry one).
    assert ours["max_output_chunks_per_s"] == theirs.max_output_tokens_per_s
    if one_token_chunks:
        assert ours["max_output_tokens_per_s"] == theirs.max_output_tokens_per_s
    else:
        assert ours["max_output_tokens_per_s"] > theirs.max_output_tokens_per_s
    for metric in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "std"):
            key = f"{stat}_{metric}_ms"
            assert ours[key] == pytest.approx(getattr(theirs, key), rel=1e-12, abs=1e-12), key
        for p, value in getattr(theirs, f"percentiles_{metric}_ms"):
            label = str(int(p)) if float(p).is_integer() else str(p)
            assert ours[f"p{label}_{metric}_ms"] == pytest.approx(value, rel=1e-12, abs=1e-12)
    assert ours["request_goodput"] > 0  # the SLOs above do admit some requests, so the check is real


def test_request_metrics_definitions():
    rec = RequestRecord(request=GenerationRequest(prompt="p", max_tokens=4), st_ns=0, success=True)
    rec.chunk_ns = [100_000_000, 150_000_000, 210_000_000, 300_000_000]
    rec.chunk_tokens = [1, 1, 1, 1]
    m = request_metrics(rec)
    assert m.ttft_s == pytest.approx(0.1)
    assert m.e2el_s == pytest.approx(0.3)
    assert m.itl_s == pytest.approx((0.05, 0.06, 0.09))
    assert m.tpot_s == pytest.approx((0.3 - 0.1) / 3)
    assert m.tps == pytest.approx(4 / 0.3)  # the article's TPS: output tokens / E2EL
    assert m.decode_rate == pytest.approx(3 / 0.2)


def test_single_token_request_has_no_tpot_and_server_count_wins():
    rec = RequestRecord(request=GenerationRequest(prompt="p", max_tokens=1), st_ns=0, success=True)
    rec.chunk_ns, rec.chunk_tokens = [80_000_000], [1]
    assert request_metrics(rec).tpot_s is None
    # The server's usage count is used over the number of chunks.
    rec2 = RequestRecord(request=GenerationRequest(prompt="p", max_tokens=9), st_ns=0, success=True)
    rec2.chunk_ns, rec2.chunk_tokens, rec2.reported_output_tokens = [10, 20, 30], [1, 1, 1], 9
    assert request_metrics(rec2).output_tokens == 9


def test_recompute_from_stored_offsets_matches():
    rec = _synthetic_records(3, 1)[0]
    rec.success = True
    direct = request_metrics(rec)
    again = metrics_from_offsets([t - rec.st_ns for t in rec.chunk_ns], rec.output_tokens)
    assert again.ttft_s == pytest.approx(direct.ttft_s)
    assert again.tpot_s == pytest.approx(direct.tpot_s)
    assert np.allclose(again.itl_s, direct.itl_s)


def test_aggregates_over_no_values_are_none_not_zero():
    """vLLM reports 0 for an aggregate over nothing (np.mean(x or 0)); tokentop stores None (null, "—")."""
    out = aggregate([], 1.0)
    assert out["completed"] == 0 and out["output_throughput"] == 0.0
    assert out["mean_ttft_ms"] is None and out["p99_ttft_ms"] is None and out["mean_tps"] is None
    assert out["failure_rate"] is None and out["failures_by_kind"] == {}
