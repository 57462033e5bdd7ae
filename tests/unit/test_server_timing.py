"""The server's own timing beside the client's (issue 21, item 2): vLLM 0.32's per-request `metrics` on
the final stream event (`--enable-per-request-metrics`), stored per request, and each load level's client
TTFT split into queue + engine + rest in `tokentop load`, `tokentop show` (and --json).

Field shapes, each named after its source:
  * vLLM 0.32's own final usage events, chat and completions, written as its serving code writes them
    (vllm/entrypoints/openai/chat_completion/serving.py and completion/serving.py: `choices: []`, `usage`,
    `metrics`, `model_dump_json(exclude_none=True)`), as installed in .venv;
  * vLLM's docs, docs/features/per_request_metrics.md (newer than 0.32): `null` fields and a nested
    `output_token_metrics` object;
  * vLLM's docs, docs/features/speculative_decoding/acceptance_metrics.md: `metrics.speculative_decoding`
    alone (spec-decode metrics on, timing off), with `acceptance_histogram_by_draft_length`.
"""

from __future__ import annotations

import json
import math
import re
import subprocess

import pytest

from data.store.database import Store
from engine.measure.server_timing import split_lines
from engine.orchestrator import RunFinished
from engine.types import GenerationRequest
from tests.support.apps import load_screen_started
from tests.support.fake_openai import Reply, ScriptServer, chat, completion, event, timed, usage
from tests.support.openai_client import load_levels, send_request
from tests.support.wait import wait_for


def flat(text: str) -> str:
    """The CLI's output with its line wrapping undone (notes wrap at the terminal's width)."""
    return " ".join(text.split())


# vLLM 0.32's final usage chunk of a chat stream (chat_completion/serving.py, streaming branch), as
# `model_dump_json(exclude_unset=True, exclude_none=True)` writes it: no choices, the usage, the metrics.
def vllm_chat_final(metrics: object, completion_tokens: int = 3) -> dict:
    return {"id": "chatcmpl-5d1f0c9e3b2a4f6e", "object": "chat.completion.chunk", "created": 1765000000,
            "model": "scripted", "choices": [], "usage": usage(completion_tokens), "metrics": metrics}


VLLM_032_METRICS = {"time_to_first_token_ms": 20.0, "generation_time_ms": 30.0, "queue_time_ms": 5.0,
                    "mean_itl_ms": 15.0, "tokens_per_second": 60.0}


def vllm_chat_reply(metrics: object, *, raw_final: bytes | None = None) -> Reply:
    """A chat stream as vLLM 0.32 sends it with continuous usage stats: a role event, two tokens, the
    finish, then the final usage event carrying `metrics` (first token at 60 ms)."""
    final = raw_final if raw_final is not None else vllm_chat_final(metrics)
    return Reply(parts=timed([
        (60, chat("", role="assistant", usage=usage(0))),
        (60, chat("Hel", usage=usage(1))),
        (70, chat("lo", usage=usage(2))),
        (80, chat("", finish="length", usage=usage(3))),
        (80, final),
    ]))


def one_request(server: ScriptServer, **kwargs):
    return send_request(server, GenerationRequest("q", 3), **kwargs)


def load_level(server: ScriptServer, store: Store, num_prompts: int = 4) -> RunFinished:
    """One load level at concurrency 1 through the orchestrator, stored as `tokentop load` stores it."""
    from data.jobs.load import LoadSpec
    from engine.load import LoadLevel
    from tests.support.prompts import PromptSource

    spec = LoadSpec(levels=[LoadLevel(max_concurrency=1, num_prompts=num_prompts)],
                    prompts=PromptSource(input_len=4, output_len=3))
    (level,) = load_levels(server, store, spec)
    return level


def test_vllm_032_final_chat_event_metrics_stored_and_split_shown_by_load_and_show(tokentop_cmd, cli_env, tmp_path):
    db = tmp_path / "t.duckdb"
    with ScriptServer([vllm_chat_reply(VLLM_032_METRICS)]) as server:
        proc = subprocess.run([*tokentop_cmd, "load", "--engine", "openai", "--endpoint", server.url,
                               "--concurrency", "1", "--num-prompts", "4", "--output-len", "3", "--db", str(db)],
                              capture_output=True, text=True, env=cli_env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = flat(proc.stdout)
    # Client TTFT >= 60 ms (the scripted first event); the server says 5 ms queued + 20 ms to the first token.
    assert "TTFT split by the server's own timing" in out
    assert re.search(r"concurrency 1: TTFT (\d+) ms = queue 5\.0 \+ engine 20 \+ rest (\d+) ", out), out
    assert re.search(r"median \d+ = 5\.0 \+ 20 \+ \d+, 4 req with server timing", out), out
    assert all(len(line) <= 80 for line in proc.stdout.splitlines())

    with Store(db) as store:
        (run,) = store.list_runs()
        rows = store.get_requests(run["run_id"])
    assert len(rows) == 4
    for row in rows:
        assert (row["server_queue_time_ms"], row["server_ttft_ms"], row["server_generation_time_ms"],
                row["server_mean_itl_ms"], row["server_tokens_per_second"]) == (5.0, 20.0, 30.0, 15.0, 60.0)
        assert row["server_timing_source"] == "server" and row["spec_acceptance_rate"] is None
        assert row["server_ttft_ms"] + row["server_queue_time_ms"] <= row["ttft_ms"]

    shown = subprocess.run([*tokentop_cmd, "show", run["run_id"], "--json", "--db", str(db)],
                           capture_output=True, text=True, env=cli_env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    obj = json.loads(shown.stdout)
    overall = obj["overall"]
    assert overall["server_timed_requests"] == 4
    assert (overall["mean_server_queue_time_ms"], overall["mean_server_ttft_ms"]) == (5.0, 20.0)
    assert overall["median_server_ttft_ms"] == 20.0
    assert math.isclose(overall["mean_ttft_rest_ms"], overall["mean_ttft_client_ms"] - 25.0)
    assert overall["mean_ttft_client_ms"] >= 60.0
    assert [r["server_ttft_ms"] for r in obj["requests"]] == [20.0] * 4
    text = subprocess.run([*tokentop_cmd, "show", run["run_id"], "--db", str(db)],
                          capture_output=True, text=True, env=cli_env, timeout=60)
    assert text.returncode == 0, text.stderr
    assert re.search(r"concurrency 1: TTFT \d+ ms = queue 5\.0 \+ engine 20 \+ rest \d+", flat(text.stdout))


def test_vllm_032_final_completions_event_metrics_read():
    # completion/serving.py: CompletionStreamResponse dumped with exclude_unset=False, exclude_none=True.
    final = {"id": "cmpl-8f2e", "object": "text_completion", "created": 1765000000, "model": "scripted",
             "choices": [], "usage": usage(2),
             "metrics": {"time_to_first_token_ms": 12.5, "generation_time_ms": 8.25, "queue_time_ms": 0.5,
                         "mean_itl_ms": 8.25, "tokens_per_second": 95.2}}
    reply = Reply(parts=timed([(20, completion("a", usage=usage(1))), (30, completion("b", finish="length",
                                                                                       usage=usage(2))),
                               (30, final)]))
    with ScriptServer([reply]) as server:
        record = one_request(server, api="completions")
    assert record.success and record.output_tokens == 2
    t = record.server_timing
    assert (t.time_to_first_token_ms, t.queue_time_ms, t.generation_time_ms, t.mean_itl_ms,
            t.tokens_per_second) == (12.5, 0.5, 8.25, 8.25, 95.2)


def test_no_metrics_object_means_no_server_timing(store):
    plain = Reply(parts=timed([(10, chat("hi", usage=usage(1))), (10, chat("", finish="stop", usage=usage(1))),
                               (10, {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
                                     "choices": [], "usage": usage(1)})]))
    with ScriptServer([plain]) as server:
        level = load_level(server, store, num_prompts=2)
    overall = level.summary["overall"]
    assert "server_timed_requests" not in overall and split_lines(overall) == []
    assert all(r["server_ttft_ms"] is None for r in store.get_requests(level.run.run_id))


GARBAGE = {
    "strings": {"time_to_first_token_ms": "20.0", "queue_time_ms": "5", "mean_itl_ms": "fast"},
    "negative": {"time_to_first_token_ms": -20.0, "queue_time_ms": -0.001, "generation_time_ms": -1},
    "booleans": {"time_to_first_token_ms": True, "queue_time_ms": False},
    "nested junk": {"time_to_first_token_ms": {"value": 20}, "queue_time_ms": [5], "tokens_per_second": None,
                    "speculative_decoding": {"draft_acceptance_rate": 7.5, "mean_acceptance_length": 0.2,
                                             "num_draft_tokens": "9", "num_spec_steps": 1.5}},
    "not an object": ["time_to_first_token_ms", 20],
    "a string": "time_to_first_token_ms=20",
    # docs/features/per_request_metrics.md: "the `metrics` object is `null`" for n > 1
    "vllm docs null for n>1": None,
}


@pytest.mark.parametrize("case", list(GARBAGE), ids=list(GARBAGE))
def test_garbage_metrics_are_ignored_and_the_request_still_counts(case):
    with ScriptServer([vllm_chat_reply(GARBAGE[case])]) as server:
        record = one_request(server)
    assert record.success and record.output_tokens == 3 and record.text == "Hello"
    assert record.server_timing is None


@pytest.mark.parametrize("raw", [b'"time_to_first_token_ms": NaN, "queue_time_ms": 5.0',
                                 b'"time_to_first_token_ms": Infinity, "queue_time_ms": -Infinity',
                                 b'"time_to_first_token_ms": 1e999, "queue_time_ms": 5.0'],
                         ids=["NaN", "Infinity", "overflow"])
def test_non_finite_metrics_are_dropped_field_by_field(raw):
    # Not JSON (NaN, Infinity) or out of range (1e999): the event still gives its usage; only the finite
    # fields are kept.
    body = (b'{"id":"c","object":"chat.completion.chunk","created":0,"model":"scripted","choices":[],'
            b'"usage":{"prompt_tokens":8,"completion_tokens":3,"total_tokens":11},"metrics":{' + raw + b'}}')
    with ScriptServer([vllm_chat_reply(None, raw_final=event(body.decode()))]) as server:
        record = one_request(server)
    assert record.success and record.output_tokens == 3 and record.input_tokens == 8
    t = record.server_timing
    assert t is None or t.time_to_first_token_ms is None
    if b"queue_time_ms\": 5.0" in raw:
        assert t.queue_time_ms == 5.0


def test_vllm_docs_per_request_metrics_nulls_and_output_token_metrics():
    # docs/features/per_request_metrics.md (vLLM main): fields are null when unavailable, and
    # --enable-per-request-output-token-metrics nests `output_token_metrics`; the known numbers are kept.
    metrics = {"time_to_first_token_ms": 85.2, "generation_time_ms": 1240.5, "queue_time_ms": 12.3,
               "mean_itl_ms": None, "tokens_per_second": 103.2,
               "output_token_metrics": {"reasoning": {"token_count": 36, "time_to_first_token_ms": 108.22},
                                        "content": {"token_count": 20, "time_to_first_token_ms": 268.22},
                                        "unclassified_token_count": 2}}
    with ScriptServer([vllm_chat_reply(metrics)]) as server:
        record = one_request(server)
    t = record.server_timing
    assert (t.time_to_first_token_ms, t.queue_time_ms, t.mean_itl_ms, t.tokens_per_second) == (85.2, 12.3, None, 103.2)


def test_vllm_docs_spec_decode_acceptance_beside_the_levels_throughput(store):
    # docs/features/speculative_decoding/acceptance_metrics.md: `summary` level, spec metrics alone
    # (no timing fields): 10 of 129 drafted tokens accepted over 43 verify steps.
    spec = {"speculative_decoding": {"mean_acceptance_length": 1.2325581395348837,
                                     "draft_acceptance_rate": 0.07751937984496124,
                                     "acceptance_histogram": [39, 1, 0, 3],
                                     "acceptance_histogram_by_draft_length": {"3": [39, 1, 0, 3]},
                                     "num_spec_steps": 43, "num_accepted_draft_tokens": 10, "num_draft_tokens": 129,
                                     "num_spec_tokens": 3}}
    # ... and a request that drafted nothing (all-zero histogram), which must not move the level's rates.
    idle = {"speculative_decoding": {"mean_acceptance_length": 1.0, "draft_acceptance_rate": 0.0,
                                     "acceptance_histogram": [0, 0, 0, 0], "num_spec_steps": 0,
                                     "num_accepted_draft_tokens": 0, "num_draft_tokens": 0, "num_spec_tokens": 3}}
    with ScriptServer([vllm_chat_reply(spec), vllm_chat_reply(idle)]) as server:
        level = load_level(server, store, num_prompts=4)
    overall = level.summary["overall"]
    assert overall["spec_decode_requests"] == 4
    assert math.isclose(overall["spec_decode_acceptance_rate"], 20 / 258)
    assert math.isclose(overall["spec_decode_acceptance_length"], 1 + 20 / 86)
    assert "server_timed_requests" not in overall  # no timing fields: no TTFT split
    (line,) = split_lines(overall)
    assert line.startswith("concurrency 1: spec decode acceptance 8 %, accepted length 1.23 at ")
    assert line.endswith(" tok/s")
    rows = store.get_requests(level.run.run_id)
    assert sorted(r["spec_accepted_tokens"] for r in rows) == [0, 0, 10, 10]
    assert {r["spec_acceptance_length"] for r in rows} == {1.0, 1.2325581395348837}


async def test_load_screen_shows_the_split_at_80x24(store):
    with ScriptServer([vllm_chat_reply(VLLM_032_METRICS)]) as server:
        fields = {"levels": "1", "num-prompts": "4", "output-len": "3"}
        async with load_screen_started(server, store, fields) as (app, pilot, screen):
            await wait_for(pilot, lambda: not screen.running and screen.finished, 60, "the level to end")
            await pilot.pause()
            rows = [strip.text for strip in app.screen._compositor.render_strips()]
            # The live lines keep the final counts under the mean split; every line of the split, the
            # median's included, is in the sweep's notes (n; issue 24: one notice, not a toast each).
            noted = [line for t, lines in screen.notes.items() if t.startswith("TTFT split") for line in lines]
    shown = [row.strip() for row in rows if "= queue 5.0 + engine 20 + rest" in row]
    assert shown and re.match(r"concurrency 1: TTFT \d+ ms = queue", shown[0]), rows
    assert any(re.search(r"median \d+ = 5\.0 \+ 20 \+ \d+, 4 req", row) for row in noted), noted
    assert any(re.search(r"done 4 · failed 0", row) for row in rows), rows


def test_split_lines_fit_80_columns_with_a_long_label():
    res = {"label": "rate 12.5/s burstiness 0.5 max-concurrency 128 and a very long workload name",
           "mean_ttft_client_ms": 1234.5, "median_ttft_client_ms": 1200.0, "mean_server_queue_time_ms": 800.25,
           "median_server_queue_time_ms": 790.0, "mean_server_ttft_ms": 300.0, "median_server_ttft_ms": 290.0,
           "mean_ttft_rest_ms": 134.25, "median_ttft_rest_ms": 120.0, "server_timed_requests": 1000}
    lines = split_lines(res)
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    assert lines[0].endswith("…: TTFT 1234 ms = queue 800 + engine 300 + rest 134")
    assert lines[1] == "  median 1200 = 790 + 290 + 120, 1000 req with server timing"


@pytest.mark.engine
def test_real_vllm_server_per_request_metrics_stored(vllm_server, tokentop_cmd, cli_env, db_path):
    """The shared vLLM CPU server (tests/conftest.py) runs with --enable-per-request-metrics
    (engine.engines.managed_server): each request's server TTFT and queue time are stored, inside the
    client's TTFT, and the level's split is printed."""
    proc = subprocess.run([*tokentop_cmd, "load", "--engine", "openai", "--endpoint", vllm_server.base_url,
                           "--concurrency", "2", "--num-prompts", "4", "--input-len", "16", "--output-len", "8",
                           "--db", str(db_path)], capture_output=True, text=True, env=cli_env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"concurrency 2: TTFT \d+ ms = queue [\d.]+ \+ engine [\d.]+ \+ rest", flat(proc.stdout))
    with Store(db_path) as store:
        (run,) = store.list_runs()
        rows = [r for r in store.get_requests(run["run_id"]) if r["success"]]
    assert len(rows) == 4
    for row in rows:
        assert row["server_timing_source"] == "server"
        assert row["server_ttft_ms"] is not None and row["server_queue_time_ms"] is not None
        assert 0 < row["server_ttft_ms"] <= row["ttft_ms"]
        assert row["server_ttft_ms"] + row["server_queue_time_ms"] <= row["ttft_ms"]


def test_managed_server_asks_for_per_request_metrics_only_where_vllm_accepts_them():
    # vLLM 0.32 refuses --enable-per-request-metrics with --disable-log-stats (launchers/cli_args.py) and
    # --per-request-spec-decode-metrics without --speculative-config (config/observability.py): either
    # would stop the server from starting.
    from engine.engines.managed_server import ManagedVllmServer

    plain = ManagedVllmServer("m", port=1).command()
    assert "--enable-per-request-metrics" in plain and "--per-request-spec-decode-metrics" not in plain
    spec = ManagedVllmServer("m", port=1, extra_args=["--speculative-config", '{"method": "ngram"}']).command()
    assert spec[spec.index("--per-request-spec-decode-metrics") + 1] == "summary"
    quiet = ManagedVllmServer("m", port=1, extra_args=["--disable-log-stats"]).command()
    assert "--enable-per-request-metrics" not in quiet


def test_in_process_figures_are_vllms_build_per_request_timing_metrics():
    # The in-process engine reads RequestOutput.metrics (RequestStateStats) itself: the figures must be
    # the ones vLLM 0.32's server would send for the same stats (vllm/entrypoints/generate/base/serving.py),
    # including the fields it leaves out (a timestamp not seen is 0; one token has no ITL).
    from vllm.entrypoints.generate.base.serving import build_per_request_timing_metrics
    from vllm.v1.metrics.stats import RequestStateStats

    from engine.measure.server_timing import TIMING_FIELDS, from_engine_stats

    cases = [(RequestStateStats(queued_ts=10.0, scheduled_ts=10.005, first_token_ts=10.025, last_token_ts=10.055), 4),
             (RequestStateStats(queued_ts=0.0, scheduled_ts=3.5, first_token_ts=3.54, last_token_ts=3.54), 1)]
    for stats, tokens in cases:
        ours = from_engine_stats(stats, tokens)
        theirs = build_per_request_timing_metrics(stats, tokens)
        assert ours.source == "engine"
        for name in TIMING_FIELDS:
            assert getattr(ours, name) == getattr(theirs, name), name
    assert from_engine_stats(None, 4) is None  # stats logging off: no timing
