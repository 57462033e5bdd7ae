"""A level's figures as a typed value (issue 22 step 4): engine.measure.metrics.BenchmarkMetrics carries
vLLM's field names inside engine/, and the stored result JSON is exactly what it was (to_dict/from_dict)."""

from __future__ import annotations

import json

from engine.measure.metrics import BenchmarkMetrics, aggregate, metrics_from_offsets, summarise
from engine.orchestrator import run_summary
from engine.telemetry.gpu import GpuSample


def _level():
    ok = [metrics_from_offsets([20_000_000 + 10_000_000 * k for k in range(n)], n, input_tokens=7) for n in (1, 3, 5)]
    return ok


def test_benchmark_metrics_has_vllms_field_names():
    figures = summarise(_level(), 2.0, (50, 99.9))
    # vllm/benchmarks/serve.py BenchmarkMetrics: completed, total_input, total_output, *_throughput, mean_ttft_ms
    assert (figures.completed, figures.failed, figures.total_input, figures.total_output) == (3, 0, 21, 9)
    assert figures.output_throughput == 4.5 and figures.request_throughput == 1.5
    assert figures.mean_ttft_ms == 20.0
    assert figures.ttft.percentiles_ms == ((50.0, 20.0), (99.9, 20.0))


def test_stored_result_reads_back_to_the_same_json():
    stored = aggregate(_level(), 2.0, (50, 99.9), {"ttft": 25.0})
    stored.update(goodput={"ttft_ms": 25.0}, label="c=1")  # keys the load summary adds after vLLM's
    again = BenchmarkMetrics.from_dict(json.loads(json.dumps(stored))).to_dict()
    assert json.dumps(again) == json.dumps(stored)  # same keys, same values, same order
    assert again["p99.9_ttft_ms"] == stored["p99.9_ttft_ms"] and again["label"] == "c=1"


def test_a_load_levels_overall_and_load_figures_are_separate_dicts():
    result = aggregate(_level(), 2.0)
    gpu = [GpuSample(t_s=t, gpu_index=0, power_w=100.0, energy_counter_j=None) for t in (0.0, 1.0, 2.0)]
    summary = run_summary([], [], [], gpu_samples=gpu, level_result=result)
    # The level's J/output token is stored with each copy, as before
    assert summary["overall"]["j_per_output_token"] == summary["load"]["j_per_output_token"] is not None
    assert summary["overall"] == summary["load"] == summary["cases"]["load"]
    summary["overall"]["prefix_cache_hit_rate"] = 0.5
    assert "prefix_cache_hit_rate" not in summary["load"] and "prefix_cache_hit_rate" not in summary["cases"]["load"]
    assert "j_per_output_token" not in result  # the level's own result is not changed
