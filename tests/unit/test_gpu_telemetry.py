"""GPU telemetry through a pynvml test double (no GPU here), /metrics parsing, the roofline."""

from __future__ import annotations

import json
import struct

import pytest

from engine.telemetry.gpu import GpuSample, GpuSampler, integrate_energy_j, summarise_gpu
from engine.telemetry.roofline import GpuSpec, decode_ceiling, estimate_parameters, load_gpu_specs, model_bytes
from engine.telemetry.server import InProcessStats, diff_samples, histogram_quantile, parse_vllm_metrics
from tests.support.fake_pynvml import FakeNvml
from tests.support.wait import wait_until


def test_sampler_reads_every_field_in_nvml_units():
    fake = FakeNvml(gpus=[{"name": b"NVIDIA H100 80GB HBM3", "mem_total": 80 * 1024**3},
                          {"name": "NVIDIA H100 80GB HBM3", "mem_total": 80 * 1024**3}])
    s = GpuSampler(nvml=fake.module())
    assert s.open() and s.available and s.note is None
    assert [g["name"] for g in s.gpus] == ["NVIDIA H100 80GB HBM3"] * 2
    assert s.gpus[0]["memory_mb"] == 80 * 1024
    batch = s.sample_once()
    assert len(batch) == 2
    g = batch[0]
    assert g.util_pct == 87 and g.mem_util_pct == 55
    assert g.power_w == 300.0 and g.power_limit_w == 700.0  # mW -> W
    assert g.mem_total_mb == 80 * 1024 and g.mem_used_mb == 40 * 1024
    assert g.temp_c == 64 and g.sm_clock_mhz == 1980 and g.mem_clock_mhz == 2619
    assert g.energy_counter_j == 1.0  # mJ -> J
    s.stop()
    assert fake.initialised == 0  # nvmlShutdown balanced nvmlInit


def test_sampler_thread_and_energy_per_token():
    fake = FakeNvml(power_w=250.0)
    seen = []
    with GpuSampler(interval_s=0.02, nvml=fake.module(), on_sample=seen.append) as s:
        wait_until(lambda: len(s.snapshot()) >= 5 and seen, 30, "five samples")
    samples = s.snapshot()
    assert len(samples) >= 5 and seen
    span = samples[-1].t_s - samples[0].t_s
    energy = integrate_energy_j(samples)
    assert energy == pytest.approx(250.0 * span, rel=1e-6)
    summary = summarise_gpu(samples, output_tokens=100)
    assert summary["j_per_output_token"] == pytest.approx(energy / 100)
    assert summary["max_power_w"] == 250.0 and summary["gpus"] == 1
    assert summary["energy_counter_j"] > 0


def test_unsupported_fields_are_none_not_a_crash():
    fake = FakeNvml(unsupported={"power", "energy", "clock"})
    s = GpuSampler(nvml=fake.module())
    assert s.open()
    g = s.sample_once()[0]
    assert g.power_w is None and g.energy_counter_j is None and g.sm_clock_mhz is None
    assert g.util_pct == 87
    assert integrate_energy_j([g]) is None
    s.stop()


def test_no_nvml_says_so_once_and_carries_on():
    s = GpuSampler(nvml=FakeNvml(missing=True).module())
    s.start()
    assert not s.available
    assert s.note == "no GPU (NVML unavailable: NVML Shared Library Not Found)"
    assert s.sample_once() == [] and s.snapshot() == []
    s.stop()
    assert summarise_gpu([], 10) == {}


def test_real_pynvml_on_this_machine_does_not_crash():
    """This machine has no GPU: the real nvidia-ml-py must report that, not raise."""
    s = GpuSampler()
    s.start()
    s.stop()
    assert s.available or s.note


def test_energy_integration_is_trapezoidal():
    samples = [GpuSample(t_s=0.0, gpu_index=0, power_w=100.0), GpuSample(t_s=1.0, gpu_index=0, power_w=300.0),
               GpuSample(t_s=0.0, gpu_index=1, power_w=50.0), GpuSample(t_s=2.0, gpu_index=1, power_w=50.0)]
    assert integrate_energy_j(samples) == pytest.approx(200.0 + 100.0)


METRICS_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 400.0
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 1.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 4.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="m"} 9.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 10.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 10.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 2.5
"""


def test_parse_vllm_metrics_text():
    s = parse_vllm_metrics(METRICS_TEXT, t_s=1.0)
    assert (s.running, s.waiting, s.kv_cache_usage) == (3.0, 2.0, 0.25)
    assert (s.prefix_cache_queries, s.prefix_cache_hits, s.preemptions) == (1000.0, 400.0, 1.0)
    assert s.prefix_hit_rate == pytest.approx(0.4)
    assert s.ttft_count == 10.0 and s.ttft_sum_s == 2.5
    assert list(s.ttft_buckets) == ["0.1", "0.5", "+Inf"]
    # Prometheus' histogram_quantile: median lies in (0.1, 0.5]: 0.1 + 0.4 * (5-4)/(9-4).
    assert histogram_quantile(0.5, s.ttft_buckets) == pytest.approx(0.18)
    later = parse_vllm_metrics(METRICS_TEXT.replace("2.5\n", "4.5\n").replace("} 10.0", "} 12.0"), t_s=2.0)
    d = diff_samples(s, later)
    assert d["ttft_count"] == 2.0 and d["server_mean_ttft_ms"] == pytest.approx(1000.0)


def test_in_process_stats_from_vllm_stat_objects():
    from vllm.v1.metrics.stats import IterationStats, PrefixCacheStats, SchedulerStats

    stats = InProcessStats()
    factory = stats.factory()
    logger = factory(None, 0)
    sched = SchedulerStats(num_running_reqs=4, num_waiting_reqs=1, kv_cache_usage=0.5,
                           prefix_cache_stats=PrefixCacheStats(requests=1, queries=100, hits=30))
    it = IterationStats()
    it.num_generation_tokens = 7
    it.num_preempted_reqs = 1
    it.time_to_first_tokens_iter = [0.05, 3.0]
    logger.record(sched, it)
    s = stats.sample()
    assert (s.running, s.waiting, s.kv_cache_usage) == (4.0, 1.0, 0.5)
    assert (s.prefix_cache_queries, s.prefix_cache_hits, s.preemptions) == (100.0, 30.0, 1.0)
    assert s.ttft_count == 2 and s.ttft_sum_s == pytest.approx(3.05)
    assert s.ttft_buckets["+Inf"] == 2 and s.generation_tokens == 7


# -- roofline -------------------------------------------------------------------------------

LLAMA3_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "intermediate_size": 14336, "vocab_size": 128256, "tie_word_embeddings": False,
             "torch_dtype": "bfloat16"}


def test_llama3_8b_on_h100_sxm_is_about_210_tok_s():
    from data.analysis.roofline import gpu_specs_path

    specs = load_gpu_specs(gpu_specs_path())
    assert estimate_parameters(LLAMA3_8B) == pytest.approx(8.03e9, rel=0.002)
    weights = model_bytes(config=LLAMA3_8B, dtype="float16")
    assert weights.weight_bytes == pytest.approx(16.06e9, rel=0.002)
    roof = decode_ceiling(specs["H100-SXM-80"], weights)
    assert roof.ceiling_tok_s == pytest.approx(209, abs=2)
    assert roof.percent_of(104.3) == pytest.approx(50, abs=1)
    # Faster memory, higher ceiling; tensor parallel 2 doubles the bandwidth.
    assert decode_ceiling(specs["H200-SXM-141"], weights).ceiling_tok_s == pytest.approx(299, abs=2)
    assert decode_ceiling(specs["H100-SXM-80"], weights, tensor_parallel=2).ceiling_tok_s == pytest.approx(417, abs=3)
    # Context: KV reads per token = 2 * 32 layers * 8 heads * 128 dims * 2 bytes = 128 KiB per context token.
    assert weights.kv_bytes_per_token == 131072
    assert decode_ceiling(specs["H100-SXM-80"], weights, context_tokens=8192).ceiling_tok_s < 200


def test_gpu_specs_table_is_complete_and_sane():
    from data.analysis.roofline import gpu_specs_path

    specs = load_gpu_specs(gpu_specs_path())
    for key in ("H100-SXM-80", "H100-PCIE-80", "H100-NVL-94", "H200-SXM-141", "A100-SXM-40", "A100-SXM-80",
                "A100-PCIE-40", "A100-PCIE-80", "L40S-48", "L4-24", "A10-24", "A6000-48", "RTX4090-24",
                "RTX5090-32", "B200-180"):
        spec = specs[key]
        assert isinstance(spec, GpuSpec) and spec.source
        assert 0.2 <= spec.memory_bandwidth_tbs <= 10 and 16 <= spec.memory_gb <= 200 and spec.bf16_tflops > 50
    assert specs["H100-SXM-80"].memory_bandwidth_tbs == 3.35
    assert specs["H200-SXM-141"].memory_bandwidth_tbs == 4.8


def test_safetensors_headers_give_exact_bytes(tmp_path):
    header = {"a": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, 64]},
              "b": {"dtype": "F32", "shape": [10], "data_offsets": [64, 104]}, "__metadata__": {}}
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 104)
    (tmp_path / "config.json").write_text(json.dumps(LLAMA3_8B))
    mb = model_bytes(tmp_path)
    assert (mb.weight_bytes, mb.parameters, mb.how) == (104, 42, "safetensors headers")


def test_embedded_model_bytes(embedded_model_path):
    mb = model_bytes(embedded_model_path)
    assert mb.how == "safetensors headers"
    assert 0.9e8 < mb.parameters < 1.6e8  # SmolLM2-135M


def test_status_bar_gpu_summary_reads_the_latest_sample():
    from tui.widgets.status_bar import gpu_summary

    s = GpuSampler(nvml=FakeNvml(power_w=250.0).module())
    assert gpu_summary(s) == ""  # not opened: nothing to show
    s.open()
    s.sample_once()
    text = gpu_summary(s)
    assert text.startswith("GPU") and "250W" in text and "G" in text
    assert gpu_summary(GpuSampler(nvml=FakeNvml(missing=True).module())) == ""


def test_bench_roofline_share_on_a_known_gpu(embedded_model_path):
    from data.analysis.roofline import roofline_with_share

    env = {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "key": "H100-SXM-80"}], "model_path": embedded_model_path}
    desc = {"model": embedded_model_path, "dtype": "bfloat16", "engine_args": {}}
    roof = roofline_with_share(env, desc, {"cases": {"short": {"mean_decode_rate": 1000.0}}})
    # 3.35 TB/s over ~0.27 GB of bf16 weights per token: a ceiling in the thousands of tok/s
    assert 5_000 < roof["ceiling_tok_s"] < 20_000
    assert roof["decode_pct_of_ceiling"]["short"] == pytest.approx(100_000 / roof["ceiling_tok_s"])
    assert roofline_with_share({"gpus": []}, desc, {}) is None  # CPU: no ceiling


def test_run_detail_shows_the_roofline_share(embedded_model_path):
    from data.analysis.roofline import roofline_text, stored_run_roofline

    env = {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "key": "H100-SXM-80"}], "model_path": embedded_model_path}
    run = {"device": "NVIDIA H100 80GB HBM3", "dtype": "bfloat16", "engine_args": {}, "environment": env,
           "summary": {"cases": {"medium": {"mean_decode_rate": 500.0}}}}
    roof, _why = stored_run_roofline(run)
    lines = roofline_text(roof, run["device"])
    assert "tok/s" in lines[0] and "H100" in lines[0] and lines[1].startswith("decode rate (1000/TPOT)")
    assert "medium" in lines[1]
    cpu = {"device": "CPU", "environment": {"gpus": []}}
    roof, why = stored_run_roofline(cpu)
    assert roof is None and roofline_text(roof, "CPU", why)[0].startswith("no batch-1 ceiling: this run used no GPU")
