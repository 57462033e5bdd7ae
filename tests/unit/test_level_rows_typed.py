"""A finished level is read from its stored summary once (issue 22 item 4: dicts only at the JSON and store
boundary): data.jobs.load.LevelRow holds the level's typed figures (engine.load.results.LevelSummary), and the
lines under `tokentop load`'s table, the level line and the Load screen's notes read them by name, with the
same text they printed from the stored dict; the JSON row is the stored "overall" key for key."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from data.jobs.load import LevelRow
from engine.load.results import LevelSummary
from engine.measure.metrics import failure_note, steady_state_lines
from engine.measure.server_timing import split_lines
from tests.unit.test_level_summary_typed import STORED

# vllm-bench's steady-state window as steady_state() stores it (engine.measure.metrics), keys in stored order.
STEADY = {"window": {"start_s": 0.5, "end_s": 3.5, "duration_s": 3.0, "target_concurrency": 2, "threshold": 0.95,
                     "threshold_abs": 2, "observed_peak": 2, "requests_started_in_window": 2,
                     "requests_completed_in_window": 2, "requests_total": 3,
                     "warning": "steady-state window is 3.0s (75.0% of run); may not be representative"},
          "duration": 3.0, "request_throughput": 0.66, "input_throughput": 20.0, "output_throughput": 11.0,
          "total_token_throughput": 31.0, "mean_ttft_ms": 100.0, "median_ttft_ms": 100.0, "p99_ttft_ms": 101.0,
          "mean_tpot_ms": 20.0, "median_tpot_ms": 20.0, "p90_tpot_ms": 21.0, "p99_tpot_ms": 22.0}


def test_the_notes_read_a_levels_typed_figures_as_they_read_its_stored_dict():
    summary = LevelSummary.from_dict(STORED)
    assert failure_note(summary) == "1 of 4 failed (25 %): HTTP 503 ×1"
    assert steady_state_lines(summary) == [STORED["steady_state_note"]] == steady_state_lines(STORED)
    assert split_lines(summary) == ["rate 2/s: TTFT 120 ms = queue 5.0 + engine 90 + rest 25",
                                    "  median 110 = 4.0 + 85 + 21, 3 req with server timing"] == split_lines(STORED)
    assert split_lines(summary, label="r")[0].startswith("r: TTFT 120 ms")
    plateau = {**STORED, "steady_state": STEADY, "steady_state_note": None}
    assert steady_state_lines(LevelSummary.from_dict(plateau)) == steady_state_lines(plateau) == [
        "steady 3.0 of 4.0 s, >= 2 in flight: 0.66 req/s, 11.0 tok/s",
        "  TTFT mean/med/p99 100/100/101 ms, TPOT 20.0/20.0/22.0 ms",
        "  ! steady-state window is 3.0s (75.0% of run); may not be representative"]
    before = {k: v for k, v in STORED.items() if not k.startswith("steady_state")}  # stored before steady state
    assert steady_state_lines(LevelSummary.from_dict(before)) == [] == steady_state_lines(before)


def test_a_level_row_reads_the_stored_summary_once_and_writes_the_json_row_back():
    row = LevelRow.of("r1", "completed", {"overall": STORED, "gpu": {"note": "no GPU telemetry"}, "client": 1})
    assert isinstance(row.summary, LevelSummary) and row.label == "rate 2/s" and row.summary.failed == 1
    assert row.beside("prefix_cache_hit_rate") == 0.05 and row.beside("prefix_cache_external_hit_rate") is None
    written = row.to_dict()
    assert json.dumps(written) == json.dumps({"run_id": "r1", "status": "completed", **STORED,
                                              "gpu": {"note": "no GPU telemetry"}, "server": None})
    # A level that stored no figures (it ended before any): what its "overall" held, as it was.
    bare = LevelRow.of("r2", "aborted", {"overall": {"prefix_cache_hit_rate": 0.3, "label": "concurrency 8"}})
    assert bare.summary is None and bare.label == "concurrency 8" and bare.beside("prefix_cache_hit_rate") == 0.3
    assert bare.to_dict(beside=False) == {"run_id": "r2", "status": "aborted", "prefix_cache_hit_rate": 0.3,
                                          "label": "concurrency 8"}


def test_the_load_commands_lines_come_from_the_typed_rows():
    from tui.cli.commands.load import _level_line, _print_table

    rows = [LevelRow.of("r1", "completed", {"overall": STORED}),
            LevelRow.of("r2", "aborted", {"overall": {"prefix_cache_hit_rate": 0.3}})]
    assert _level_line(rows[0]) == (
        "  rate 2/s: completed, 3 ok / 1 failed (25 %) / 2 stopped mid-stream (1 not sent), 0.75 req/s, "
        "12.0 tok/s, TTFT p50 110 ms p99 158 ms, goodput 0.50 req/s, prefix cache hits 5 %")
    assert _level_line(rows[1]) == ("  None: aborted, 0 ok / 0 failed, - req/s, - tok/s, TTFT p50 - ms p99 - ms, "
                                    "prefix cache hits 30 %")
    spec = SimpleNamespace(prompts=SimpleNamespace(label=lambda: "random 32→8", notes=[]), slo_ms={"ttft": 150.0},
                           num_warmups=1, pattern="trace")
    out = io.StringIO()
    _print_table(rows, spec, SimpleNamespace(stop_reason="every level ran", gpu_note=None), None, out)
    text = " ".join(out.getvalue().split())  # the lines as read, wrapped at the terminal's 80 columns or not
    for line in ("! rate 2/s: 1 of 4 failed (25 %): HTTP 503 ×1",
                 "  rate 2/s: p50 420 / p90 460 / p99 470 ms (E2EL p99 459 ms)",
                 "    no plateau: only a fixed-concurrency level has one (not a rate or a trace)",
                 "warm-up: 1 request(s) before every level, not measured", "prefix cache reset before every level",
                 "rate 2/s: prompt tokens 96 (target 96): every prompt exact",
                 "rate 2/s: schedule lag (actual - scheduled send) mean 0.4 ms, p99 1.2 ms, max 1.3 ms",
                 "rate 2/s: TTFT 120 ms = queue 5.0 + engine 90 + rest 25"):
        assert " ".join(line.split()) in text, (line, text)
