"""A load level's figures typed (issue 22 item 4): summarise_level returns a frozen LevelSummary with vLLM's
names, LiveLoad.snapshot() a frozen LoadSnapshot; the stored JSON is what it was (a summary stored before
reads back and writes the same bytes); `tokentop load`'s table columns come from one declaration."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine.load import LiveLoad, LoadLevel, summarise_level
from engine.load.results import LevelSummary
from engine.measure.metrics import RequestMetrics, aggregate

# A level's "overall" as `tokentop load` stores it today (a rate level under a TTFT SLO, a prefix-cache reset,
# the server's timing, two requests cut short by a stop, and the keys the run adds beside it: J/token and
# the server's prefix-cache hit rate), keys in their stored order.
STORED = json.loads("""{"duration": 4.0, "completed": 3, "failed": 1, "total_input_tokens": 96,
"total_output_tokens": 48, "request_throughput": 0.75, "request_goodput": 0.5, "output_throughput": 12.0,
"total_token_throughput": 36.0, "max_output_tokens_per_s": 16.0, "max_output_chunks_per_s": 16.0,
"max_concurrent_requests": 2, "failure_rate": 0.25, "failures_by_kind": {"HTTP 503": 1}, "stopped_early": 0,
"first_chunk_empty": 0, "token_count_sources": {"usage": 3}, "output_tokens_estimated": false,
"mean_ttft_ms": 120.0, "median_ttft_ms": 110.0, "std_ttft_ms": 20.0, "p50_ttft_ms": 110.0, "p90_ttft_ms": 150.0,
"p99_ttft_ms": 158.0, "mean_tpot_ms": 20.0, "median_tpot_ms": 20.0, "std_tpot_ms": 1.0, "p50_tpot_ms": 20.0,
"p90_tpot_ms": 21.0, "p99_tpot_ms": 21.5, "mean_itl_ms": 20.0, "median_itl_ms": 20.0, "std_itl_ms": 2.0,
"p50_itl_ms": 20.0, "p90_itl_ms": 22.0, "p99_itl_ms": 25.0, "mean_e2el_ms": 420.0, "median_e2el_ms": 410.0,
"std_e2el_ms": 30.0, "p50_e2el_ms": 410.0, "p90_e2el_ms": 450.0, "p99_e2el_ms": 459.0, "mean_ttfc_ms": 120.0,
"median_ttfc_ms": 110.0, "std_ttfc_ms": 20.0, "p50_ttfc_ms": 110.0, "p90_ttfc_ms": 150.0, "p99_ttfc_ms": 158.0,
"mean_schedule_to_finish_ms": 430.0, "median_schedule_to_finish_ms": 420.0, "std_schedule_to_finish_ms": 30.0,
"p50_schedule_to_finish_ms": 420.0, "p90_schedule_to_finish_ms": 460.0, "p99_schedule_to_finish_ms": 470.0,
"mean_tps": 50.0, "mean_decode_rate": 50.0, "steady_state": null,
"steady_state_note": "no plateau: only a fixed-concurrency level has one (not a rate or a trace)",
"good_requests": 2, "good_fraction": 0.5, "slo_ms": {"ttft": 150.0}, "request_rate": 2, "burstiness": 1.0,
"max_concurrency": null, "num_prompts": 6, "label": "rate 2/s", "workload": "random 32\\u21928",
"num_warmups": 1, "warmups_failed": 0, "prefix_cache_reset": true, "prefix_cache_reset_note": "reset",
"mean_schedule_lag_ms": 0.4, "p99_schedule_lag_ms": 1.2, "max_schedule_lag_ms": 1.3,
"total_target_input_tokens": 96, "input_len_checked": 3, "input_len_mismatches": 0, "max_input_len_error": 0,
"mean_ttft_client_ms": 120.0, "median_ttft_client_ms": 110.0, "mean_server_queue_time_ms": 5.0,
"median_server_queue_time_ms": 4.0, "mean_server_ttft_ms": 90.0, "median_server_ttft_ms": 85.0,
"mean_ttft_rest_ms": 25.0, "median_ttft_rest_ms": 21.0, "server_timed_requests": 3,
"server_timing_source": "vllm", "aborted": 2, "not_sent": 1, "j_per_output_token": 0.25,
"prefix_cache_hit_rate": 0.05}""")


def test_a_level_stored_before_reads_back_by_vllms_names_and_writes_the_same_bytes():
    summary = LevelSummary.from_dict(STORED)
    assert (summary.completed, summary.failed, summary.total_input, summary.total_output) == (3, 1, 96, 48)
    assert summary.output_throughput == 12.0 and summary.request_goodput == 0.5
    assert (summary.mean_ttft_ms, summary.p99_ttft_ms, summary.ttft.std_ms) == (120.0, 158.0, 20.0)
    assert summary.ttft.percentiles_ms == ((50.0, 110.0), (90.0, 150.0), (99.0, 158.0))
    assert summary.level == LoadLevel(request_rate=2, num_prompts=6) and summary.label == "rate 2/s"
    assert summary.good_requests == 2 and summary.slo_ms == {"ttft": 150.0}
    assert summary.prefix_cache_reset is True and summary.aborted == 2 and summary.not_sent == 1
    assert summary.server_timing["server_timed_requests"] == 3
    assert summary.extra == {"j_per_output_token": 0.25, "prefix_cache_hit_rate": 0.05}
    assert json.dumps(summary.to_dict()) == json.dumps(STORED)  # byte for byte, key order included


def _metrics(start_s: float, ttft_ms: float, tokens: int, *, success: bool = True) -> RequestMetrics:
    itl = (0.02,) * (tokens - 1)
    e2el = ttft_ms / 1000 + sum(itl)
    return RequestMetrics(success=success, output_tokens=tokens if success else 0, input_tokens=32,
                          ttft_s=ttft_ms / 1000 if success else None, e2el_s=e2el if success else None,
                          tpot_s=0.02 if success else None, itl_s=itl if success else (), start_s=start_s)


def test_summarise_level_returns_frozen_figures_stored_as_the_dict_they_replace():
    ms = [_metrics(0.0, 100, 8), _metrics(0.1, 600, 8), _metrics(0.2, 100, 8, success=False)]
    level = LoadLevel(max_concurrency=2, num_prompts=3)
    summary = summarise_level(level, ms, 2.0, {"ttft": 500.0})
    assert isinstance(summary, LevelSummary)
    assert (summary.completed, summary.failed, summary.good_requests, summary.label) == (2, 1, 1, "concurrency 2")
    assert summary.total_output == 16 and summary.request_throughput == pytest.approx(1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.completed = 3  # type: ignore[misc]
    stored = summary.to_dict()
    vllm = aggregate(ms, 2.0, (50.0, 90.0, 99.0), {"ttft": 500.0})
    assert list(stored)[: len(vllm)] == list(vllm) and {k: stored[k] for k in vllm} == vllm
    assert list(stored)[len(vllm):] == ["steady_state", "steady_state_note", "good_requests", "good_fraction",
                                        "slo_ms", "request_rate", "burstiness", "max_concurrency", "num_prompts",
                                        "label"]
    assert LevelSummary.from_dict(json.loads(json.dumps(stored))).to_dict() == json.loads(json.dumps(stored))


def test_the_live_snapshot_is_a_frozen_value_read_by_name():
    live = LiveLoad(level="concurrency 2", levels_total=3)
    live.sent, live.in_flight, live.completed, live.failed, live.output_tokens = 5, 2, 3, 0, 30
    snap = live.snapshot()
    assert (snap.level, snap.sent, snap.in_flight, snap.completed, snap.levels_total) == ("concurrency 2", 5, 2, 3, 3)
    assert snap.output_throughput > 0 and snap.ttft_p50_ms is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.in_flight = 0  # type: ignore[misc]
    assert dataclasses.replace(snap, in_flight=0).in_flight == 0 and snap.in_flight == 2


def test_the_load_commands_table_is_the_declared_columns_in_their_order():
    from tui.cells import LOAD_TABLE_COLUMNS, load_columns
    from tui.cli.commands.load import load_table

    row = {**STORED, "run_id": "r1", "prefix_cache_external_hit_rate": None}
    cols, table = load_table([row], {"ttft": 150.0})
    assert [c.header for c in cols] == [c.header for c in load_columns([row], {"ttft": 150.0})]
    assert [c.header for c in cols] == [c.header for c in LOAD_TABLE_COLUMNS if c.when != "external"]
    line = dict(zip([c.header for c in cols], table[0]))
    assert line["failed"] == "1 (25%) !" and line["hit %"] == "5%" and line["goodput"] == "0.50 (2)"
    assert line["peak tok/s"] == "16" and line["TPOT p99"] == "21.50" and line["J/tok"] == "0.250"
    cols, _table = load_table([{**row, "request_goodput": None}], None)  # no SLO: no goodput column
    assert "goodput" not in [c.header for c in cols] and "ext hit %" not in [c.header for c in cols]


def test_a_stored_plateau_reads_back_typed_and_writes_the_same_bytes():
    """The steady state inside a stored level (engine.measure.metrics.steady_state's dict, vllm-bench's names)
    reads back as a frozen SteadyState and is written back byte for byte, key order included."""
    from engine.measure.metrics import SteadyState

    window = {"start_s": 0.5, "end_s": 3.5, "duration_s": 3.0, "target_concurrency": 2, "threshold": 0.95,
              "threshold_abs": 2, "observed_peak": 2, "requests_started_in_window": 2,
              "requests_completed_in_window": 2, "requests_total": 3, "warning": None}
    plateau = {"window": window, "duration": 3.0, "request_throughput": 0.66, "input_throughput": 20.0,
               "output_throughput": 11.0, "total_token_throughput": 31.0, "mean_ttft_ms": 100.0,
               "median_ttft_ms": 100.0, "p99_ttft_ms": 101.0, "mean_tpot_ms": None, "median_tpot_ms": None,
               "p90_tpot_ms": None, "p99_tpot_ms": None}
    stored = json.loads(json.dumps({**STORED, "steady_state": plateau, "steady_state_note": None}))
    summary = LevelSummary.from_dict(stored)
    assert isinstance(summary.steady_state, SteadyState)
    assert (summary.steady_state.window.threshold_abs, summary.steady_state.output_throughput) == (2, 11.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.steady_state.duration = 1.0  # type: ignore[misc]
    assert json.dumps(summary.to_dict()) == json.dumps(stored)
    # ... and a level measured today stores the same shape (steady_state()'s dict) as it did.
    ms = [_metrics(0.0, 100, 8), _metrics(0.0, 100, 8), _metrics(0.5, 100, 8)]
    level = summarise_level(LoadLevel(max_concurrency=2, num_prompts=3), ms, 1.0, None)
    from engine.measure.metrics import steady_state

    assert level.to_dict()["steady_state"] == steady_state(ms, 2, 1.0) is not None
