"""Load patterns without an engine: arrivals as vLLM draws them, SLO parsing, goodput, sweep rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.load import (
    LoadLevel,
    arrival_offsets,
    goodput_count,
    parse_slo,
    poisson_fit,
    summarise_level,
    sweep_levels,
    sweep_verdict,
)
from engine.measure.metrics import RequestMetrics, aggregate, request_metrics
from engine.types import BadRequestError, GenerationRequest, RequestRecord
from tests.support.prompts import PromptSource


def _metrics(ttft_ms: float, tpot_ms: float, n: int = 11, success: bool = True) -> RequestMetrics:
    """A synthetic request: first chunk at TTFT, then n-1 chunks TPOT apart."""
    rec = RequestRecord(request=GenerationRequest(prompt="x", max_tokens=n), st_ns=1_000_000_000)
    t = rec.st_ns + int(ttft_ms * 1e6)
    rec.chunk_ns = [t + int(i * tpot_ms * 1e6) for i in range(n)]
    rec.chunk_tokens = [1] * n
    rec.reported_output_tokens = n
    rec.success = success
    if not success:
        rec.error = "boom"
    return request_metrics(rec)


def test_poisson_arrivals_fit_rate():
    offsets = arrival_offsets(2000, request_rate=5.0, burstiness=1.0, seed=1)
    fit = poisson_fit(offsets, 5.0)
    assert fit["ci95_low_s"] <= 0.2 <= fit["ci95_high_s"]
    assert fit["ks_p"] > 0.01, fit
    # vLLM rescales so the last request goes out at n / rate.
    assert offsets[-1] == pytest.approx(2000 / 5.0)
    # Not Poisson at a wrong rate: the same draws rejected against twice the rate.
    assert poisson_fit(offsets, 10.0)["ks_p"] < 1e-6


def test_gamma_burstiness_changes_variability_not_rate():
    for b in (0.25, 4.0):
        gaps = np.diff([0.0] + arrival_offsets(4000, 2.0, burstiness=b, seed=2))
        assert gaps.mean() == pytest.approx(0.5, rel=1e-9)
        cv2 = gaps.var() / gaps.mean() ** 2  # gamma(shape=b): CV^2 = 1 / b
        assert cv2 == pytest.approx(1 / b, rel=0.15)


def test_infinite_rate_and_uniform_burstiness():
    assert arrival_offsets(3, math.inf) == [0.0, 0.0, 0.0]
    assert arrival_offsets(4, 2.0, burstiness=math.inf) == pytest.approx([0.5, 1.0, 1.5, 2.0])
    with pytest.raises(BadRequestError):
        arrival_offsets(3, 1.0, burstiness=0)


def test_parse_slo():
    assert parse_slo("ttft=500,tpot=50") == {"ttft": 500.0, "tpot": 50.0}
    assert parse_slo("e2el:2000") == {"e2el": 2000.0}
    assert parse_slo(None) == {}
    for bad in ("ttft", "itl=5", "ttft=abc", "ttft=-1"):
        with pytest.raises(BadRequestError):
            parse_slo(bad)


def test_goodput_counts_only_requests_meeting_every_slo():
    ms = [
        _metrics(100, 20),  # meets both
        _metrics(600, 20),  # TTFT too slow
        _metrics(100, 80),  # TPOT too slow
        _metrics(499, 49),  # meets both, just
        _metrics(100, 20, success=False),  # failed: never good
    ]
    slo = {"ttft": 500.0, "tpot": 50.0}
    assert goodput_count(ms, slo) == 2
    result = summarise_level(LoadLevel(max_concurrency=2, num_prompts=5), ms, 2.0, slo).to_dict()  # as stored
    assert result["good_requests"] == 2
    assert result["request_goodput"] == pytest.approx(1.0)  # 2 good / 2 s
    assert result["completed"] == 4 and result["failed"] == 1
    # The same count as the shared aggregate (vLLM's rule).
    assert aggregate(ms, 2.0, slo_ms=slo)["request_goodput"] == pytest.approx(1.0)
    # A TTFT-only SLO lets the slow-TPOT request through.
    assert goodput_count(ms, {"ttft": 500.0}) == 3


def test_sweep_rules():
    assert sweep_levels(16) == [1, 2, 4, 8, 16]
    base = {"label": "c", "failed": 0, "p99_ttft_ms": 100.0}
    assert sweep_verdict({**base, "output_throughput": 50.0}, 0.0, {}) is None
    assert sweep_verdict({**base, "output_throughput": 60.0}, 50.0, {}) is None  # +20 %
    assert "stopped rising" in sweep_verdict({**base, "output_throughput": 52.0}, 50.0, {})
    assert "TTFT SLO" in sweep_verdict({**base, "p99_ttft_ms": 900.0, "output_throughput": 99.0}, 50.0,
                                       {"ttft": 500.0})
    assert "failed" in sweep_verdict({**base, "failed": 1, "output_throughput": 99.0}, 0.0, {})


def test_prompt_source_synthetic_and_suite():
    reqs = PromptSource(input_len=32, output_len=8).requests(3)
    assert [r.input_len for r in reqs] == [32, 32, 32]
    assert all(r.max_tokens == 8 and r.enforce_length for r in reqs)
    assert all(r.seed is None for r in reqs)  # like vllm bench serve: no per-request seed (prompts differ)
    base = (GenerationRequest(prompt="a", max_tokens=50, case_id="short"),
            GenerationRequest(prompt="b", max_tokens=200, case_id="medium"))
    reqs = PromptSource(suite_requests=base, suite_name="seed").requests(3)
    assert [r.case_id for r in reqs] == ["short", "medium", "short"]
    assert [r.max_tokens for r in reqs] == [50, 200, 50]


def test_level_labels_and_json():
    assert LoadLevel(max_concurrency=4).label == "concurrency 4"
    lv = LoadLevel(request_rate=2.0, burstiness=0.5, max_concurrency=8)
    assert lv.label == "rate 2/s burstiness 0.5 max-concurrency 8"
    assert LoadLevel().to_json()["request_rate"] == "inf"
