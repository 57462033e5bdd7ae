"""Stream shapes real servers send, replayed byte for byte on loopback (tests/support/fake_openai.py), and what
tokentop must make of them (issue 17, cases 5-11 and 13): token counts per event and where they came
from, SSE lines split only at CR/LF/CRLF, the server's error message in every shape, requests that
stopped early, failures by kind per load level, schedule-to-finish latency, time to first content."""

from __future__ import annotations

import json
import math
import random
import subprocess

import pytest

from data.store.database import Store
from engine.engines.openai_engine import error_message
from engine.engines.sse import SSEParser
from engine.measure.metrics import aggregate, request_metrics
from engine.orchestrator import RunFinished, RunWatcher
from engine.types import GenerationRequest
from engine.workloads.suites import parse_suite
from tests.support.fake_openai import Reply, ScriptServer, chat, completion, event, timed, usage, usage_only
from tests.support.openai_client import load_levels, openai_host, send_request, stored_orchestrator
from tui.cli import main

# Every character Python's str.splitlines() (and so httpx's aiter_lines()) treats as a line end that
# the SSE standard does not: the last three may appear raw inside valid JSON text.
NOT_LINE_ENDS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def flat(text: str) -> str:
    """The CLI's output with its line wrapping undone (notes wrap at the terminal's width, 80 without one)."""
    return " ".join(text.split())


def one_request(server: ScriptServer, request: GenerationRequest | None = None, **kwargs):
    return send_request(server, request or GenerationRequest("q", 64), **kwargs)  # counts settled here


def orchestrated(server: ScriptServer, store: Store, kind: str, *, reps: int = 1, max_tokens: int = 64,
                 enforce_length: bool = False, **kwargs):
    """An interactive request or a suite through the orchestrator, stored and watched as the app does.
    Returns (view, stored run, stored requests)."""
    host = openai_host(server, **kwargs)
    try:
        orch = stored_orchestrator(host, store)
        watcher = RunWatcher()
        orch.subscribe(watcher, chunks=True)
        if kind == "interactive":
            job = orch.start_interactive(GenerationRequest("q", max_tokens))
        else:
            suite = parse_suite({"name": "s", "reps": reps, "enforce_length": enforce_length,
                                 "cases": [{"id": "c", "prompt": "q", "output_tokens": max_tokens}]})
            job = orch.start_suite(suite)
        assert job.wait(60)
    finally:
        host.shutdown()
    view = watcher.view(kind)
    run = store.get_run(view.run_id)
    return view, run, store.get_requests(view.run_id)


def raw_chat(content_json_text: str, finish: str = "null") -> str:
    """A chat event whose content is written into the JSON as given (raw characters stay raw)."""
    return ('{"id":"c","object":"chat.completion.chunk","created":0,"model":"scripted","choices":[{"index":0,'
            f'"delta":{{"content":"{content_json_text}"}},"finish_reason":{finish}}}]}}')


# -- case 7: SSE lines end only at CR, LF, CRLF ------------------------------------------------------
@pytest.mark.parametrize("ch", NOT_LINE_ENDS, ids=[f"U+{ord(c):04X}" for c in NOT_LINE_ENDS])
def test_raw_line_separator_inside_json_text_keeps_every_event(ch):
    """Case 7: content "a<ch>b" sent raw inside the JSON: every event arrives, none is dropped."""
    reply = Reply(parts=timed([(5, chat("", role="assistant")), (10, raw_chat(f"a{ch}b")), (15, chat("c")),
                               (20, chat("d")), (25, chat("e", finish="stop"))]))
    with ScriptServer([reply]) as server:
        rec = one_request(server)
    m = request_metrics(rec)
    assert rec.success, rec.error
    assert rec.text == f"a{ch}bcde"
    assert len(rec.chunk_ns) == 5 and len(m.itl_s) == 4
    assert rec.chunk_tokens == [0, 1, 1, 1, 1]


@pytest.mark.parametrize("ending", [b"\n\n", b"\r\n\r\n", b"\r\r", b"\n\r\n", b"\r\n\n"],
                         ids=["LF", "CRLF", "CR", "mixed1", "mixed2"])
def test_every_standard_line_end_over_loopback(ending):
    events = [chat("", role="assistant"), chat("x"), chat("y"), chat("z", finish="stop")]
    parts = [(5 * i, event(e, ending=ending)) for i, e in enumerate(events, 1)]
    parts.append((25, event("[DONE]", ending=ending)))
    with ScriptServer([Reply(parts=parts)]) as server:
        rec = one_request(server)
    assert rec.success and rec.text == "xyz" and len(rec.chunk_ns) == 4


def test_cr_at_the_end_of_one_read_and_lf_at_the_start_of_the_next_is_one_line_end():
    """A CR LF split between two reads: one line end, not a line end and a blank line. The event is
    complete (and timestamped) when its blank line arrives."""
    first = event(chat("", role="assistant"), ending=b"\r")
    parts = [(5, first), (30, b"\n\r\n"), (35, event(chat("x", finish="stop"), ending=b"\r")), (40, b"\n\r\n"),
             (45, event("[DONE]"))]
    with ScriptServer([Reply(parts=parts)]) as server:
        rec = one_request(server)
    assert rec.success and rec.text == "x" and len(rec.chunk_ns) == 2
    assert (rec.chunk_ns[0] - rec.st_ns) / 1e6 >= 25  # the role event ended with the blank line at ~30 ms


def test_parser_splits_only_at_cr_lf_crlf():
    p = SSEParser()
    raw = "".join(NOT_LINE_ENDS).encode()
    assert p.feed(b'data: {"t": "' + raw + b'"}\n\n') == [b'{"t": "' + raw + b'"}']
    assert p.feed(b"data: 1\r\n\r\ndata: 2\r\rdata: 3\n\n") == [b"1", b"2", b"3"]
    assert p.feed(b"data: a\ndata: b\n\n") == [b"a\nb"]  # data lines joined with LF, as the standard does
    assert p.feed(b": ping\n\nevent: x\nid: 7\nretry: 10\ndata:no-space\n\n") == [b"no-space"]
    # CR ends one read, LF starts the next: one line end
    assert p.feed(b"data: 4\r") == [] and p.feed(b"\n") == [] and p.feed(b"\r\n") == [b"4"]
    # an event split anywhere, even inside a multi-byte character
    text = 'data: {"t": "é\u2028漢"}\n\n'.encode()
    assert [out for i in range(len(text)) for out in p.feed(text[i:i + 1])] == [text[6:-2]]
    # the stream's end keeps a last event that had no blank line ([DONE] without one)
    assert p.feed(b"data: [DONE]") == [] and p.close() == [b"[DONE]"]
    assert SSEParser().feed(b"\xef\xbb\xbfdata: bom\n\n") == [b"bom"]  # a leading byte-order mark


def test_parser_gives_the_same_events_however_the_bytes_are_cut():
    rng = random.Random(5)
    endings = [b"\n\n", b"\r\n\r\n", b"\r\r", b"\n\r\n"]
    stream, want = b"", []
    for i in range(200):
        payload = json.dumps({"i": i, "t": rng.choice(NOT_LINE_ENDS) * rng.randint(0, 3)}, ensure_ascii=False).encode()
        stream += b"data: " + payload + rng.choice(endings)
        want.append(payload)
    for _ in range(20):
        p, got, pos = SSEParser(), [], 0
        while pos < len(stream):
            n = rng.randint(1, 40)
            got += p.feed(stream[pos:pos + n])
            pos += n
        got += p.close()
        assert got == want


def test_parser_reads_whole_lf_events_and_any_other_line_alike_however_cut():
    """The common bytes (one-line `data: X` events ending in LF LF, several per read) and every other
    shape around them (several data lines, comments, other fields, `data:` without a space, an empty
    value) give the events the standard defines, wherever the reads cut the stream."""
    rng = random.Random(11)
    shapes = [
        (lambda p: b"data: " + p + b"\n\n", lambda p: p),
        (lambda p: b"data:" + p + b"\n\n", lambda p: p),
        (lambda p: b"data: " + p + b"\ndata: two\n\n", lambda p: p + b"\ntwo"),
        (lambda p: b": ping\ndata: " + p + b"\n\n", lambda p: p),
        (lambda p: b"event: x\nid: 3\ndata: " + p + b"\n\n", lambda p: p),
        (lambda p: b"data: \n\n", lambda p: b""),
    ]
    stream, want = b"", []
    for i in range(300):
        payload = json.dumps({"i": i}).encode()
        make, expect = shapes[0] if rng.random() < 0.7 else rng.choice(shapes[1:])
        stream += make(payload)
        want.append(expect(payload))
    for _ in range(30):
        p, got, pos = SSEParser(), [], 0
        while pos < len(stream):
            n = rng.choice([1, 3, 17, 60, 200, 1000])
            got += p.feed(stream[pos:pos + n])
            pos += n
        got += p.close()
        assert got == want


# -- cases 5 and 6: tokens counted per event, and how -------------------------------------------------
def _four_per_event() -> Reply:
    """Case 5: completions events at 120/140/160 ms carrying 4 tokens each; usage only at the end."""
    return Reply(parts=timed([(120, completion("w0 w1 w2 w3")), (140, completion(" w4 w5 w6 w7")),
                              (160, completion(" w8 w9 w10 w11", finish="length")), (161, usage_only(12))]))


@pytest.mark.parametrize("kind", ["interactive", "suite"])
def test_several_tokens_per_event_peak_and_final_gauges_use_the_token_counts(kind, store):
    with ScriptServer([_four_per_event()]) as server:
        view, run, (row,) = orchestrated(server, store, kind, max_tokens=12, api="completions")
    rec, m = view.records[0], view.metrics[0]
    assert rec.output_tokens == 12 and rec.chunk_tokens == [4, 4, 4]
    assert rec.token_count_source == "usage+spread"  # the final usage (exact), spread: no tokenizer here
    overall = run["summary"]["overall"]
    assert overall["max_output_tokens_per_s"] == 12.0  # was 3.0: it counted events
    assert overall["max_output_chunks_per_s"] == 3.0  # vLLM's own figure, kept under its own name
    assert overall["output_tokens_estimated"] is False
    # the final Live/Suite gauges equal the stored figures (were 3 tokens, TPOT 20.9 ms, TPS 18)
    snap = view.meters[0].snapshot()
    assert snap.done and snap.tokens == 12 and not snap.estimated
    assert snap.tpot_s == pytest.approx(m.tpot_s, rel=1e-9) and snap.tpot_s == pytest.approx(row["tpot_ms"] / 1000)
    assert snap.tps_request == pytest.approx(m.tps, rel=1e-9) and snap.tps_request == pytest.approx(row["tps"])
    assert row["output_tokens"] == 12 and row["token_count_source"] == "usage+spread"
    assert m.tpot_s == pytest.approx((m.e2el_s - m.ttft_s) / 11)


def test_peak_of_a_five_token_answer_is_five(store):
    """Role chunk plus 5 one-token chunks with per-event usage: the peak is 5 tokens/s, not the 6-7
    chunks it used to count."""
    parts = [(2, chat("", role="assistant", usage=usage(0)))]
    parts += [(4 + 2 * i, chat(f" t{i}", usage=usage(i + 1), finish="length" if i == 4 else None)) for i in range(5)]
    parts += [(15, usage_only(5))]
    with ScriptServer([Reply(parts=timed(parts))]) as server:
        view, run, _rows = orchestrated(server, store, "interactive", max_tokens=5)
    assert view.records[0].token_count_source == "usage"
    assert run["summary"]["overall"]["max_output_tokens_per_s"] == 5.0


def _no_usage() -> Reply:
    """Case 6: a server that ignores include_usage: "one two" at 50 ms, " three four" at 70 ms."""
    return Reply(parts=timed([(50, chat("one two", role="assistant")), (70, chat(" three four", finish="stop"))]))


def test_without_usage_the_tokenizer_counts_and_the_count_is_marked_estimated(store, embedded_model_path, capsys):
    with ScriptServer([_no_usage()]) as server:
        view, run, (row,) = orchestrated(server, store, "interactive", tokenizer=embedded_model_path)
    rec, m = view.records[0], view.metrics[0]
    assert rec.chunk_tokens == [2, 2] and m.output_tokens == 4  # was 2: the number of events
    assert rec.token_count_source == "tokenizer"
    assert m.tpot_s == pytest.approx((m.e2el_s - m.ttft_s) / 3)  # ~7 ms, not the 20 ms of 2 "tokens"
    snap = view.meters[0].snapshot()
    assert snap.tokens == 4 and snap.estimated and snap.token_source == "tokenizer"
    assert snap.tpot_s == pytest.approx(m.tpot_s, rel=1e-9)
    assert row["token_count_source"] == "tokenizer" and row["output_tokens"] == 4
    assert run["output_tokens_estimated"] is True and run["token_count_source"] == "tokenizer"
    assert main(["--db", str(store.path), "show", run["run_id"]]) == 0
    out = flat(capsys.readouterr().out)
    assert "output tokens estimated: the tokenizer on the text" in out
    assert main(["--db", str(store.path), "show", run["run_id"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["output_tokens_estimated"] is True and shown["requests"][0]["token_count_source"] == "tokenizer"
    assert shown["overall"]["token_count_sources"] == {"tokenizer": 1}


def test_without_usage_or_tokenizer_the_count_is_the_number_of_events(store, capsys):
    with ScriptServer([_no_usage()]) as server:
        view, run, (row,) = orchestrated(server, store, "interactive")
    assert view.records[0].chunk_tokens == [1, 1] and row["token_count_source"] == "events"
    assert run["output_tokens_estimated"] is True
    assert main(["--db", str(store.path), "show", run["run_id"]]) == 0
    assert "the number of events (estimate: no usage and no tokenizer; pass --tokenizer)" in flat(capsys.readouterr().out)


def test_final_usage_split_by_the_tokenizer_keeps_the_servers_total(embedded_model_path):
    reply = Reply(parts=timed([(5, chat("one two", role="assistant")), (10, chat(" three four", finish="stop")),
                               (12, usage_only(5))]))
    with ScriptServer([reply]) as server:
        rec = one_request(server, tokenizer=embedded_model_path)
    assert rec.output_tokens == 5 and sum(rec.chunk_tokens) == 5 and rec.token_count_source == "usage+tokenizer"


def test_a_tokenizer_that_is_not_local_is_one_clear_line(tmp_path, tokentop_cmd, cli_env):
    with ScriptServer([_no_usage()]) as server:
        proc = subprocess.run([*tokentop_cmd, "bench", "--engine", "openai", "--endpoint", server.url,
                               "--tokenizer", "no-such-org/no-such-model", "--reps", "1",
                               "--db", str(tmp_path / "t.duckdb")], capture_output=True, text=True,
                              env=dict(cli_env, HF_HUB_OFFLINE="1"), timeout=120)  # online it is downloaded
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if "error" in x]
    assert "--tokenizer no-such-org/no-such-model" in line and "HF_HUB_OFFLINE" in line and "Traceback" not in proc.stderr


# -- case 8: the server's message, whatever the error's shape ------------------------------------------
IN_STREAM = [
    ({"object": "error", "message": "maximum context length exceeded", "type": "BadRequestError", "code": 400},
     "maximum context length exceeded (BadRequestError, 400)"),
    ({"error": {"message": "the engine is overloaded", "type": "server_error", "code": None}},
     "the engine is overloaded (server_error)"),
    ({"error": "upstream went away"}, "upstream went away"),
]


@pytest.mark.parametrize("shape,message", IN_STREAM, ids=["vllm-older", "openai", "text"])
def test_error_inside_a_200_stream_keeps_the_servers_message(shape, message):
    reply = Reply(parts=timed([(5, chat("", role="assistant")), (10, shape)]))
    with ScriptServer([reply]) as server:
        rec = one_request(server)
    assert not rec.success and rec.error == message and rec.error_kind == "stream"


NON_200 = [
    (400, {"object": "error", "message": "maximum context length exceeded", "type": "BadRequestError", "code": 400},
     "HTTP 400: maximum context length exceeded (BadRequestError, 400)"),
    (503, {"error": {"message": "try again later", "type": "overloaded"}}, "HTTP 503: try again later (overloaded)"),
    (429, {"error": "rate limited"}, "HTTP 429: rate limited"),
    (404, {"detail": "Not Found"}, "HTTP 404: Not Found"),
    (500, "upstream\nconnect error", "HTTP 500: upstream connect error"),
]


@pytest.mark.parametrize("status,body,message", NON_200, ids=["vllm-older", "openai", "text", "fastapi", "plain"])
def test_non_200_body_keeps_the_servers_message(status, body, message):
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with ScriptServer([Reply(status=status, parts=[(0, raw)])]) as server:
        rec = one_request(server)
    assert not rec.success and rec.error == message
    assert (rec.error_kind, rec.http_status) == ("http", status)


def test_error_message_of_every_shape():
    assert error_message(b'{"object":"error","message":"maximum context length exceeded"}') == \
        "maximum context length exceeded"
    assert error_message({"error": {"message": "m", "code": 429}}) == "m (429)"
    assert error_message(b"") == ""


# -- case 9: stopped early, and aggregates over nothing ------------------------------------------------
def test_request_that_stopped_early_says_asked_and_got_and_tpot_is_none(store, capsys):
    """Asked 20 tokens (min_tokens = max_tokens, ignore_eos), the server sent 1 with finish_reason
    eos_token: no TPOT (shown "–", stored null, not 0.00) and "asked 20, got 1"."""
    reply = Reply(parts=timed([(5, chat("", role="assistant", usage=usage(0))),
                               (10, chat("Hi", usage=usage(1), finish="eos_token")), (11, usage_only(1))]))
    with ScriptServer([reply]) as server:
        view, run, (row,) = orchestrated(server, store, "suite", max_tokens=20, enforce_length=True)
    assert server.received[0]["min_tokens"] == 20 and server.received[0]["ignore_eos"] is True
    assert (row["finish_reason"], row["asked_tokens"], row["output_tokens"], row["stopped_early"]) == \
        ("eos_token", 20, 1, True)
    assert row["tpot_ms"] is None
    overall = run["summary"]["overall"]
    assert overall["mean_tpot_ms"] is None and overall["mean_decode_rate"] is None  # were 0.00
    assert overall["stopped_early"] == 1 and run["stopped_early"] == 1
    assert view.meters[0].snapshot().stopped_early == (20, 1)
    assert main(["--db", str(store.path), "show", run["run_id"]]) == 0
    out = flat(capsys.readouterr().out)
    assert "stopped early: 1 request(s) got fewer tokens than they enforced: #0 asked 20, got 1 (eos_token)" in out
    assert "0.00" not in out.split("ms throughout")[0]  # the table has no made-up 0.00
    assert main(["--db", str(store.path), "show", run["run_id"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["cases"]["c"]["mean_tpot_ms"] is None and shown["cases"]["c"]["mean_decode_rate"] is None
    assert shown["requests"][0]["stopped_early"] is True and shown["failures"]["stopped_early"] == 1


# -- cases 10 and 11: load levels -----------------------------------------------------------------------
def _ok(ms_per_event: float = 5.0) -> Reply:
    return Reply(parts=timed([(ms_per_event * i, chat(f" t{i}", role="assistant" if i == 0 else None,
                                                      usage=usage(i + 1), finish="length" if i == 3 else None))
                              for i in range(4)] + [(ms_per_event * 4, usage_only(4))]))


FAILING_LEVEL = [_ok(), Reply(status=503, parts=[(0, b'{"error": {"message": "overloaded"}}')]), _ok(),
                 Reply(status=503, parts=[(0, b'{"error": "busy"}')]), Reply(status=429, parts=[(0, b"slow down")]),
                 _ok(), Reply(parts=timed([(5, chat("", role="assistant")), (10, {"error": {"message": "oom"}})])),
                 Reply(status=503, parts=[(0, b"")]), _ok(), _ok()]


def _load(server: ScriptServer, store: Store, levels, prompts=None, **kwargs) -> list[RunFinished]:
    from data.jobs.load import LoadSpec
    from tests.support.prompts import PromptSource

    spec = LoadSpec(levels=levels, prompts=prompts or PromptSource(input_len=4, output_len=4))
    return load_levels(server, store, spec, **kwargs)


def test_level_with_failures_has_a_rate_and_counts_by_kind(store):
    """Case 10: 3 x HTTP 503, 1 x 429 and 1 error inside a 200 stream out of 10 requests."""
    from engine.load import LoadLevel

    with ScriptServer(FAILING_LEVEL) as server:
        (level,) = _load(server, store, [LoadLevel(max_concurrency=1, num_prompts=10)])
    overall = level.summary["overall"]
    assert (overall["completed"], overall["failed"], overall["failure_rate"]) == (5, 5, 0.5)
    assert overall["failures_by_kind"] == {"HTTP 503": 3, "HTTP 429": 1, "error in stream": 1}
    run = store.get_run(level.run.run_id)
    assert (run["failed_requests"], run["failure_rate"]) == (5, 0.5)
    assert run["failures_by_kind"] == {"HTTP 503": 3, "HTTP 429": 1, "error in stream": 1}
    kinds = sorted((r["error_kind"], r["http_status"]) for r in store.get_requests(level.run.run_id) if not r["success"])
    assert kinds == [("http", 429), ("http", 503), ("http", 503), ("http", 503), ("stream", None)]


def test_load_cli_flags_a_level_with_failures_in_json_and_table(tokentop_cmd, cli_env, tmp_path):
    with ScriptServer(FAILING_LEVEL) as server:
        base = [*tokentop_cmd, "load", "--engine", "openai", "--endpoint", server.url, "--concurrency", "1",
                "--num-prompts", "10", "--db", str(tmp_path / "l.duckdb")]
        proc = subprocess.run([*base, "--json"], capture_output=True, text=True, env=cli_env, timeout=180)
        assert proc.returncode == 0, proc.stderr
        obj = json.loads(proc.stdout)
        (level,) = obj["levels"]
        assert level["failure_rate"] == 0.5 and level["failures_by_kind"]["HTTP 503"] == 3
        (flagged,) = obj["levels_with_failures"]
        assert flagged["note"] == "5 of 10 failed (50 %): HTTP 503 ×3, HTTP 429 ×1, error in stream ×1"
        table = subprocess.run(base, capture_output=True, text=True, env=cli_env, timeout=180)
    assert table.returncode == 0, table.stderr
    assert "5 (50%) !" in table.stdout
    assert "! concurrency 1: 5 of 10 failed (50 %): HTTP 503 ×3, HTTP 429 ×1, error in stream ×1" in flat(table.stdout)


def test_schedule_to_finish_shows_the_clients_queue(store):
    """Case 11: --request-rate 10 --max-concurrency 1 against 500 ms requests: each request waits for the
    one before; schedule-to-finish (what the service's user waits) grows by ~400 ms a request, while
    E2EL stays ~500 ms. The level's duration counts from its first scheduled send."""
    from engine.load import LoadLevel

    slow = Reply(parts=timed([(0, chat("", role="assistant", usage=usage(0))), (250, chat("a", usage=usage(1))),
                              (500, chat("b", usage=usage(2), finish="length")), (500, usage_only(2))]))
    with ScriptServer([slow]) as server:
        (level,) = _load(server, store, [LoadLevel(request_rate=10, burstiness=math.inf, max_concurrency=1,
                                                   num_prompts=4)])
    rows = store.get_requests(level.run.run_id)
    s2f = [r["schedule_to_finish_ms"] for r in rows]
    for i, (r, value) in enumerate(zip(rows, s2f)):
        assert r["success"] and 480 <= r["e2el_ms"] < 700
        assert value == pytest.approx(500 + 400 * i, abs=150)  # scheduled at 100(i+1) ms, done at ~500(i+1)
        assert value >= r["e2el_ms"] + (r["queue_wait_ms"] or 0) - 1
    overall = level.summary["overall"]
    assert overall["p99_schedule_to_finish_ms"] > overall["p99_e2el_ms"] * 2
    assert {"mean_schedule_to_finish_ms", "p50_schedule_to_finish_ms", "p90_schedule_to_finish_ms"} <= overall.keys()
    # from the first scheduled send (100 ms) to the last token (~2000 ms), not from the level's set-up
    assert overall["duration"] == pytest.approx(1.9, abs=0.2)


# -- case 13: time to first content ------------------------------------------------------------------
def test_role_only_first_event_time_to_first_content_is_stored_and_flagged(store, capsys):
    reply = Reply(parts=timed([(5, chat(None, role="assistant")), (900, chat("Hello", finish="stop"))]))
    with ScriptServer([reply]) as server:
        view, run, (row,) = orchestrated(server, store, "suite", max_tokens=8)
    m = view.metrics[0]
    assert m.ttft_s < 0.2  # vLLM's definition: the first event of any kind
    assert 0.88 <= m.ttfc_s < 1.2 and m.first_chunk_empty
    assert row["ttfc_ms"] == pytest.approx(m.ttfc_s * 1000) and row["first_chunk_empty"] is True
    assert row["ttft_ms"] == pytest.approx(m.ttft_s * 1000)
    overall = run["summary"]["overall"]
    assert overall["first_chunk_empty"] == 1 and overall["mean_ttfc_ms"] == pytest.approx(row["ttfc_ms"])
    assert main(["--db", str(store.path), "show", run["run_id"]]) == 0
    assert "1 request(s) began with a chunk that carried no text" in flat(capsys.readouterr().out)


def test_ttfc_equals_ttft_when_the_first_event_carries_text():
    reply = Reply(parts=timed([(5, chat("Hi", role="assistant")), (10, chat("!", finish="stop"))]))
    with ScriptServer([reply]) as server:
        rec = one_request(server)
    m = request_metrics(rec)
    assert m.ttfc_s == m.ttft_s and not m.first_chunk_empty
    assert aggregate([m], 1.0)["first_chunk_empty"] == 0


def test_timeouts_and_dropped_connections_are_their_own_kinds(monkeypatch):
    dropped = Reply(parts=[(5, event(chat("", role="assistant"))), (10, b"data: {\"trunc")], drop=True)
    with ScriptServer([dropped]) as server:
        rec = one_request(server)
    assert not rec.success and rec.error_kind == "connection", rec.error
    import engine.engines.openai_engine as openai_engine

    monkeypatch.setattr(openai_engine, "READ_TIMEOUT_S", 0.3)
    stalled = Reply(parts=timed([(5, chat("", role="assistant")), (1500, chat("late", finish="stop"))]))
    with ScriptServer([stalled]) as server:
        rec = one_request(server)
    assert not rec.success and rec.error_kind == "timeout" and rec.error.startswith("timeout"), rec.error
    m = request_metrics(rec)
    assert aggregate([m], 1.0)["failures_by_kind"] == {"timeout": 1}


def test_a_bundle_written_before_schema_006_still_imports(tmp_path):
    """Bundles copy columns by name: one without 006's columns imports, those columns null."""
    import duckdb

    from data.store.recorder import RunRecorder
    from data.travel.bundle import export_runs, import_bundle

    reply = Reply(parts=timed([(5, chat("Hi", role="assistant")), (10, chat("!", finish="stop"))]))
    with ScriptServer([reply]) as server:
        rec = one_request(server)
    with Store(tmp_path / "src.duckdb") as src:
        recorder = RunRecorder(src)
        run_id = recorder.start(kind="suite", engine_description={"engine": "openai", "model": "m"}, environment={})
        recorder.record(0, rec, request_metrics(rec))
        recorder.finish("completed", duration_s=0.1, summary={"overall": aggregate([request_metrics(rec)], 0.1)})
        export_runs(src, [run_id], tmp_path / "old.duckdb")
    with duckdb.connect(str(tmp_path / "old.duckdb")) as con:  # as schema 005 wrote it
        con.execute("UPDATE tokentop_bundle SET schema_version = 5")
        for table, column in [("requests", "token_count_source"), ("requests", "ttfc_ms"), ("requests", "error_kind"),
                              ("requests", "schedule_to_finish_ms"), ("runs", "failures_by_kind"),
                              ("runs", "output_tokens_estimated")]:
            con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    with Store(tmp_path / "dst.duckdb") as dst:
        assert import_bundle(dst, tmp_path / "old.duckdb").imported == [run_id]
        (row,) = dst.get_requests(run_id)
        assert row["token_count_source"] is None and row["ttfc_ms"] is None and row["output_tokens"] == 2
        assert dst.get_run(run_id)["failures_by_kind"] is None
