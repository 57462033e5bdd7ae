"""Peak concurrency as an exact overlap count, and a level's steady state (its plateau), on hand-built
request timelines, and through `tokentop load` against a scripted loopback server.

Sources: vllm/benchmarks/serve.py calculate_metrics at vLLM HEAD (commit 009e6d4: a sweep over
half-open [start, start + latency) intervals, an end sorted before a start at the same instant), and
vLLM's Rust client vllm-bench, src/metrics/steady_state.rs (detect_window, compute) with its gate in
src/benchmark.rs (closed loop only: --max-concurrency set, --request-rate inf; threshold 0.95)."""

from __future__ import annotations

import json
import subprocess

import pytest

from engine.measure.metrics import (
    aggregate,
    peak_concurrency,
    request_metrics,
    steady_state,
    steady_state_fields,
    steady_state_lines,
)
from engine.types import GenerationRequest, RequestRecord

S = 1_000_000_000  # ns per second


def _request(st_s: float, chunks_s: list[float], input_tokens: int = 10, ok: bool = True):
    """A finished request sent at st_s whose chunks (one token each) arrived at chunks_s (s, absolute)."""
    rec = RequestRecord(request=GenerationRequest(prompt="p", max_tokens=len(chunks_s)), st_ns=int(round(st_s * S)))
    rec.chunk_ns = [int(round(t * S)) for t in chunks_s]
    rec.chunk_tokens = [1] * len(chunks_s)
    rec.reported_output_tokens = len(chunks_s)
    rec.input_tokens = input_tokens
    rec.success = ok
    return request_metrics(rec)


def test_five_back_to_back_requests_at_concurrency_1_peak_at_1():
    """Each request 0.3 s, the next sent as the last ends. vLLM 0.32's whole-second buckets read 4 (the
    first second holds four requests one after the other); in flight there was only ever one."""
    ms = [_request(0.3 * i, [0.3 * i + 0.1, 0.3 * i + 0.2, 0.3 * (i + 1)]) for i in range(5)]
    assert aggregate(ms, 1.5)["max_concurrent_requests"] == 1
    assert peak_concurrency(ms) == 1


def test_an_end_at_the_same_instant_as_a_start_does_not_overlap():
    """Ends exactly on the next start (integer seconds, exact in float): vLLM HEAD sorts (time, -1)
    before (time, +1), so the two never count together."""
    ms = [_request(float(i), [i + 0.5, i + 1.0]) for i in range(5)]
    assert aggregate(ms, 5.0)["max_concurrent_requests"] == 1


def test_overlapping_requests_are_counted_exactly():
    """[0,2) [1,3) [1.5,2.5) [2,4): three in flight at 1.5 s; at 2 s the first ends as the fourth
    starts (3 again, never 4). Whole-second buckets would read 4 (second 1 holds all four)."""
    ms = [_request(0.0, [0.5, 2.0]), _request(1.0, [1.5, 3.0]), _request(1.5, [2.0, 2.5]),
          _request(2.0, [2.5, 4.0])]
    assert aggregate(ms, 4.0)["max_concurrent_requests"] == 3
    # a failed request does not count (vLLM sweeps the successful outputs only)
    ms.append(_request(1.6, [1.7, 3.5], ok=False))
    assert aggregate(ms, 4.0)["max_concurrent_requests"] == 3


def _ramp_and_drain():
    """Concurrency 2, three requests: R1 ramps up alone, R3 drains alone.
         R1: sent 0, tokens at 3, 4, 5, 6         (TTFT 3 s)
         R2: sent 2, tokens at 3, 4, 5, 6, 7, 8   (TTFT 1 s)
         R3: sent 6, tokens at 7, 8, ..., 12      (TTFT 1 s)
    In flight: 1 on [0, 2), 2 on [2, 6), at 6 R1 ends before R3 starts (2 -> 1 -> 2), 2 on [6, 8),
    1 on [8, 12). threshold_abs = ceil(0.95 * 2) = 2: the window opens at 2 (R2's start, the first
    rise to 2) and closes at 8 (R2's end, the last fall below 2)."""
    return [_request(0.0, [3, 4, 5, 6], input_tokens=10), _request(2.0, [3, 4, 5, 6, 7, 8], input_tokens=20),
            _request(6.0, [7, 8, 9, 10, 11, 12], input_tokens=30)]


def test_ramp_up_and_drain_steady_throughput_above_whole_run():
    ms = _ramp_and_drain()
    whole = aggregate(ms, 12.0)  # first send (0) to last token (12)
    assert whole["output_throughput"] == pytest.approx(16 / 12)  # 4 + 6 + 6 tokens
    ss = steady_state(ms, 2, 12.0)
    w = ss["window"]
    assert (w["start_s"], w["end_s"], w["duration_s"]) == (2.0, 8.0, 6.0)
    assert (w["threshold_abs"], w["observed_peak"]) == (2, 2)
    # started in [2, 8): R2 and R3; completed in [2, 8): R1 only (R2 ends at 8, half-open)
    assert (w["requests_started_in_window"], w["requests_completed_in_window"], w["requests_total"]) == (2, 1, 3)
    # tokens that arrived in [2, 8): R1 3,4,5,6 (4) + R2 3..7 (5; 8 is out) + R3 7 (1) = 10
    assert ss["output_throughput"] == pytest.approx(10 / 6)
    assert ss["output_throughput"] > whole["output_throughput"]
    assert ss["request_throughput"] == pytest.approx(1 / 6)
    assert ss["input_throughput"] == pytest.approx((20 + 30) / 6)  # inputs of the requests started in it
    assert ss["total_token_throughput"] == pytest.approx((50 + 10) / 6)
    # TTFT over R2 and R3 (1 s each) — R1's 3 s ramp-up TTFT is left out; whole-run mean is 5/3 s
    assert (ss["mean_ttft_ms"], ss["median_ttft_ms"], ss["p99_ttft_ms"]) == pytest.approx((1000, 1000, 1000))
    assert whole["mean_ttft_ms"] == pytest.approx(5000 / 3)
    # TPOT = (E2EL - TTFT) / (n - 1): R2 (6 - 1) / 5 = 1 s, R3 (6 - 1) / 5 = 1 s
    assert ss["mean_tpot_ms"] == pytest.approx(1000) and ss["p99_tpot_ms"] == pytest.approx(1000)
    # 6 s is under vllm-bench's minimum window, max(10 s, 10 % of the run): said, as vllm-bench says it
    assert w["warning"] == "steady-state window is 6.0s (50.0% of run); may not be representative"
    lines = steady_state_lines({"duration": 12.0, **steady_state_fields(ms, 2, 12.0)})
    assert lines[0] == "steady 6.0 of 12.0 s, >= 2 in flight: 0.17 req/s, 1.7 tok/s"
    assert lines[1] == "  TTFT mean/med/p99 1000/1000/1000 ms, TPOT 1000.0/1000.0/1000.0 ms"
    assert all(len(line) + 4 <= 80 for line in lines)


def test_a_dip_inside_the_plateau_stays_in_the_window():
    """vllm-bench keeps the first rise and the LAST fall: a brief dip (a reply and the next send a few
    ms apart) does not cut the window in two."""
    ms = [_request(0.0, [1, 2, 3, 4]), _request(0.0, [1, 2]), _request(2.01, [3, 4, 5]),
          _request(4.0, [5, 6])]
    w = steady_state(ms, 2, 6.0)["window"]
    assert (w["start_s"], w["end_s"]) == (0.0, pytest.approx(5.0))


def test_no_plateau_cases_say_why():
    ms = _ramp_and_drain()
    rate = steady_state_fields(ms, None, 12.0)  # a rate level or a trace: not closed loop
    assert rate["steady_state"] is None and rate["steady_state_note"].startswith("no plateau: only a fixed")
    few = steady_state_fields(ms, 4, 12.0)  # concurrency 4 with 3 requests: never 4 in flight
    assert few["steady_state"] is None
    assert few["steady_state_note"] == "no plateau: never 4 requests in flight (95% of 4; peak 2)"
    assert steady_state_lines(few) == [few["steady_state_note"]]
    failed = steady_state_fields([_request(0.0, [1.0], ok=False)], 1, 1.0)
    assert failed["steady_state_note"] == "no plateau: no request succeeded"
    assert steady_state_lines({"output_throughput": 1.0}) == []  # a summary from before steady state


def test_threshold_is_95_percent_rounded_up():
    """threshold_abs = max(1, ceil(0.95 * N)): 20 -> 19, 16 -> 16, 1 -> 1 (vllm-bench)."""
    ms = [_request(0.0, [1.0, 2.0]) for _ in range(19)] + [_request(0.5, [1.0, 1.5])]
    assert steady_state(ms, 20, 2.0)["window"]["threshold_abs"] == 19
    assert steady_state(ms, 20, 2.0)["window"]["start_s"] == 0.0  # 19 in flight from the start
    assert steady_state(ms, 21, 2.0)["window"]["threshold_abs"] == 20  # ceil(19.95)
    assert steady_state(ms, 21, 2.0)["window"]["start_s"] == 0.5


def _token_reply():
    from tests.support.fake_openai import Reply, chat, timed, usage, usage_only

    return Reply(parts=timed([(0, chat("", role="assistant", usage=usage(0))), (20, chat("a", usage=usage(1))),
                              (40, chat("b", usage=usage(2))), (60, chat("c", usage=usage(3), finish="length")),
                              (60, usage_only(3))]))


def test_load_cli_shows_the_steady_state_and_the_exact_peak(tokentop_cmd, cli_env, tmp_path):
    """`tokentop load` against a scripted loopback server: concurrency 1 (three requests one after
    another: a peak of 1, and a plateau over the whole run), concurrency 4 with three requests (never
    4 in flight: no plateau, said with the peak)."""
    from tests.support.fake_openai import ScriptServer

    with ScriptServer([_token_reply()]) as server:
        base = [*tokentop_cmd, "load", "--engine", "openai", "--endpoint", server.url, "--concurrency", "1,4",
                "--num-prompts", "3", "--db", str(tmp_path / "l.duckdb")]
        proc = subprocess.run([*base, "--json"], capture_output=True, text=True, env=cli_env, timeout=180)
        assert proc.returncode == 0, proc.stderr
        one, four = json.loads(proc.stdout)["levels"]
        table = subprocess.run(base, capture_output=True, text=True, env=cli_env, timeout=180)
    show = subprocess.run([*tokentop_cmd, "show", one["run_id"], "--db", str(tmp_path / "l.duckdb")],
                          capture_output=True, text=True, env=cli_env, timeout=60)
    show_four = subprocess.run([*tokentop_cmd, "show", four["run_id"], "--db", str(tmp_path / "l.duckdb")],
                               capture_output=True, text=True, env=cli_env, timeout=60)
    assert one["max_concurrent_requests"] == 1 and four["max_concurrent_requests"] == 3
    w = one["steady_state"]["window"]
    assert (w["threshold_abs"], w["requests_started_in_window"], w["requests_total"]) == (1, 3, 3)
    assert one["steady_state"]["output_throughput"] > 0 and one["steady_state_note"] is None
    assert four["steady_state"] is None
    assert four["steady_state_note"] == "no plateau: never 4 requests in flight (95% of 4; peak 3)"
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    at = lines.index("steady state (>= 95 % of the level's concurrency in flight, as vllm-bench):")
    assert lines[at + 1] == "  concurrency 1:"
    assert lines[at + 2].startswith("    steady ") and ">= 1 in flight:" in lines[at + 2]
    assert lines[at + 3].startswith("      TTFT mean/med/p99 ")
    block = lines[at:at + 8]
    assert "  concurrency 4:" in block
    assert "    no plateau: never 4 requests in flight (95% of 4; peak 3)" in block
    assert all(len(line) <= 80 for line in block)
    # `tokentop show` of each level: the same lines under its table
    assert show.returncode == 0, show.stderr
    shown = show.stdout.splitlines()
    at = shown.index("steady state (>= 95 % of the level's concurrency in flight, as vllm-bench):")
    assert shown[at + 1].startswith("  steady ") and ">= 1 in flight:" in shown[at + 1]
    assert "  no plateau: never 4 requests in flight (95% of 4; peak 3)" in show_four.stdout.splitlines()


def test_the_slo_answer_the_frontier_and_a_load_runs_cost_say_they_use_whole_run_figures(capsys, tmp_path):
    """Costs, the SLO answer and the frontier are computed on each level's whole run (ramp-up and drain
    included, as `vllm bench serve` reports it), not on its plateau: each says so, in --json and on screen."""
    from tests.support.matrix_support import build_box
    from tui.cli import main

    db = tmp_path / "box.duckdb"
    build_box(db, "box_h100_runpod").close()
    note = "figures: each level's whole run, ramp-up and drain included (not its plateau)"
    for args in (["--slo", "ttft=500,tpot=50"], ["--frontier"]):
        capsys.readouterr()
        assert main(["--db", str(db), "compare", *args, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["figures"], out["figures_note"]) == ("whole run", note)
        assert main(["--db", str(db), "compare", *args]) == 0
        assert note in capsys.readouterr().out.splitlines()
    from data.store.database import Store

    with Store(db) as store:
        level = next(r for r in store.list_runs() if r["kind"] == "load")
    assert main(["--db", str(db), "compare", level["run_id"], "--json"]) == 0
    (costs,) = json.loads(capsys.readouterr().out)["runs"]
    assert costs["throughput_figures"] == "whole run"
    assert main(["--db", str(db), "compare", level["run_id"]]) == 0
    assert "throughput under load: the level's whole run (ramp-up and drain included)" in capsys.readouterr().out


# -- field corpus: vllm-bench's own unit tests, replayed ------------------------------------------------
# vllm-project/vllm-bench, src/metrics/steady_state.rs, `mod tests` (mk / mk_full build a RequestFuncOutput
# from start_time, latency, ttft, itl and output_tokens; prompt_len 10). Each case below keeps its name and
# its expectations, with the threshold, target and minimum window it passes.
def _vb(start: float, latency: float, ttft: float = 0.0, itl=(), output_tokens: int = 0, prompt_len: int = 10):
    from engine.measure.metrics import RequestMetrics

    tpot = (latency - ttft) / (output_tokens - 1) if output_tokens > 1 else None
    return RequestMetrics(success=True, output_tokens=output_tokens, input_tokens=prompt_len, ttft_s=ttft,
                          e2el_s=latency, tpot_s=tpot, itl_s=tuple(itl), start_s=start)


def test_vllm_bench_steady_state_rs_window_plateau_trapezoid():
    ms = [_vb(float(i), 30.0) for i in range(10)] + [_vb(15.0, 5.0)]
    w = steady_state(ms, 10, 30.0, threshold=1.0, min_window_s=5.0)["window"]
    assert (w["target_concurrency"], w["threshold_abs"]) == (10, 10)
    assert w["start_s"] == pytest.approx(9.0) and w["end_s"] == pytest.approx(30.0)
    assert w["observed_peak"] == 11 and w["warning"] is None


def test_vllm_bench_steady_state_rs_window_none_when_never_reaches_threshold():
    assert steady_state([_vb(i * 10.0, 1.0) for i in range(5)], 5, 100.0, min_window_s=1.0) is None


def test_vllm_bench_steady_state_rs_window_none_when_all_fail():
    from dataclasses import replace

    assert steady_state([replace(_vb(0.0, 1.0), success=False)], 1, 10.0, threshold=1.0) is None


def test_vllm_bench_steady_state_rs_window_threshold_one():
    w = steady_state([_vb(0.0, 5.0), _vb(1.0, 5.0)], 2, 10.0, threshold=1.0, min_window_s=0.1)["window"]
    assert w["threshold_abs"] == 2 and (w["start_s"], w["end_s"]) == (1.0, 5.0)


def test_vllm_bench_steady_state_rs_window_ties_net_to_zero():
    ms = [_vb(0.0, 5.0), _vb(2.0, 3.0), _vb(5.0, 2.0)]  # two end at 5.0 as the third starts
    assert steady_state(ms, 2, 20.0, threshold=1.0, min_window_s=0.1)["window"]["observed_peak"] == 2
    assert peak_concurrency(ms) == 2


def test_vllm_bench_steady_state_rs_window_warning_when_short():
    ms = [_vb(i * 0.1, 1.0) for i in range(10)]
    assert steady_state(ms, 10, 10.0, threshold=1.0, min_window_s=5.0)["window"]["warning"]


def test_vllm_bench_steady_state_rs_window_constant_concurrency_equals_full_run():
    w = steady_state([_vb(0.0, 10.0)] * 3, 3, 10.0, threshold=1.0, min_window_s=0.1)["window"]
    assert (w["start_s"], w["end_s"]) == (0.0, 10.0)


def test_vllm_bench_steady_state_rs_compute_constant_concurrency_matches_full_run():
    ms = [_vb(0.0, 10.0, 2.0, [2.0] * 4, 5)] * 3  # tokens at 2, 4, 6, 8, 10: the one at 10 is out
    ss = steady_state(ms, 3, 10.0, threshold=1.0, min_window_s=0.1)
    assert ss["window"]["requests_started_in_window"] == 3
    assert ss["request_throughput"] == 0.0  # the completions at 10.0 are outside [0, 10)
    assert ss["output_throughput"] == pytest.approx(1.2)
    assert ss["input_throughput"] == pytest.approx(3.0)


def test_vllm_bench_steady_state_rs_compute_drain_only_tokens_not_counted():
    ms = [_vb(0.0, 10.0, 0.0, [1.0] * 9, 10), _vb(9.9, 30.0, 0.05, [0.02] * 999, 1000)]
    ss = steady_state(ms, 2, 40.0, threshold=1.0, min_window_s=0.1)
    assert ss["output_throughput"] <= (10.0 + 6.0) / ss["window"]["duration_s"]


def test_vllm_bench_steady_state_rs_compute_tpot_matches_per_request_definition():
    ss = steady_state([_vb(0.0, 10.0, 2.0, [2.0] * 4, 5)] * 3, 3, 10.0, threshold=1.0, min_window_s=0.1)
    for key in ("mean_tpot_ms", "median_tpot_ms", "p90_tpot_ms", "p99_tpot_ms"):
        assert ss[key] == pytest.approx(2000.0), key


def test_vllm_bench_steady_state_rs_end_to_end_trapezoid_run():
    ms = [_vb(float(i), 20.0, 1.0, [1.0] * 9, 10, prompt_len=100) for i in range(5)]
    ss = steady_state(ms, 5, 25.0, threshold=1.0, min_window_s=1.0)
    w = ss["window"]
    assert w["threshold_abs"] == 5 and (w["start_s"], w["end_s"]) == (4.0, 20.0)
    assert json.loads(json.dumps(ss)) == ss  # stored as JSON with the level


# -- field corpus: the public reports that led vLLM to the exact count ---------------------------------
def test_vllm_issue_56653_requests_touching_at_a_second_boundary_are_not_concurrent():
    """vllm-project/vllm#56653 (and the test plan of PR #56675): [0, 1) and [1, 2) -> peak 1; the
    overlapping [0, 1.5) and [1, 2) -> peak 2. vLLM 0.32's inclusive buckets read 2 for both."""
    assert peak_concurrency([_vb(0.0, 1.0), _vb(1.0, 1.0)]) == 1
    assert peak_concurrency([_vb(0.0, 1.5), _vb(1.0, 1.0)]) == 2


def test_vllm_pr_56647_three_sequential_requests_within_one_second_peak_1():
    """vllm-project/vllm PR #56647: three sequential requests finishing within one second read as a
    peak of 3 in buckets; they never overlap."""
    ms = [_vb(0.0, 0.2), _vb(0.25, 0.2), _vb(0.5, 0.3)]
    assert aggregate(ms, 0.8)["max_concurrent_requests"] == 1


async def test_load_screen_says_each_levels_steady_state_when_the_sweep_ends(store):
    """The Load screen at 80x24 against the scripted server: when the sweep ends, a notification gives
    each level's plateau (or why it has none) beside the table's whole-run figures."""
    from tests.support.apps import load_screen_started
    from tests.support.fake_openai import ScriptServer
    from tests.support.wait import wait_for

    with ScriptServer([_token_reply()]) as server:
        fields = {"levels": "1,4", "num-prompts": "3"}
        async with load_screen_started(server, store, fields) as (app, pilot, screen):
            await wait_for(pilot, lambda: not screen.running and len(screen.finished) == 2, 60)
            # In the sweep's notes (n), which its one end-of-sweep notice points at (issue 24: no toast each).
            await wait_for(pilot, lambda: any(t.startswith("Steady state") for t in screen.notes), 10)
            (note,) = [lines for t, lines in screen.notes.items() if t.startswith("Steady state")]
            first, second = note
            assert first.startswith("concurrency 1: steady ") and ">= 1 in flight:" in first
            assert second == "concurrency 4: no plateau: never 4 requests in flight (95% of 4; peak 3)"
