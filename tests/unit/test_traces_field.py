"""Traces as they are found in the field (issue 21, "traces out of time order"): each case replays a shape
taken from a public trace, fixture or replayer, named after its source. The rule they check
(engine/workloads/traces.py): lines sorted by timestamp (stable for ties), send times from the earliest,
timestamps as numbers or numeric strings read exactly, out-of-order input said in the run, and what a
trace can check without the engine checked before the engine starts (exit 2, one line, nothing stored).

Real parts: files the tests write, the embedded model's tokenizer, a scripted OpenAI-compatible server on
loopback (tests/support/fake_openai.py), the real `tokentop load` command, real DuckDB files."""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal

import pytest

from data.jobs.load import load_spec
from engine.types import BadRequestError
from engine.workloads import WorkloadOptions, make_workload
from engine.workloads.tokens import Tokens
from tests.support.fake_openai import Reply, ScriptServer, chat, timed, usage, usage_only

# LMCache/LMBench 3-workloads/trace-replayer/traces/gmi_trace.jsonl, its first 12 lines (newest first;
# timestamps are nanoseconds since 1970 written as strings; hash_ids cut to their first three here).
GMI_HEAD = [
    ("1753780607550317897", 2101, 84, [2843241808, 137021281, 3846380862]),
    ("1753780607488766527", 3650, 74, [618748680, 2346545311, 896378354]),
    ("1753780583232023294", 2251, 77, [2843241808, 137021281, 3846380862]),
    ("1753780555317425186", 377, 2, [1466271401, 1467988888, 4252262241]),
    ("1753780554237689808", 952, 953, [2309465281, 2713603729, 3848453558]),
    ("1753780528107100179", 2217, 67, [2843241808, 137021281, 3846380862]),
    ("1753780513400770606", 2317, 3626, [3045838615, 4267777459, 1816019179]),
    ("1753780513234379752", 2180, 80, [2843241808, 137021281, 3846380862]),
    ("1753780335718952957", 254, 7, [474128240, 2359050451, 1151784963]),
    ("1753780326225953648", 2209, 254, [3799507203, 3056364765, 180296668]),
    ("1753780320893155824", 232, 8, [2099307803, 2703018581, 771645695]),
    ("1753780317563449337", 253, 9, [2494408029, 3137221031, 1644996991]),
]


def _gmi_lines(rows=GMI_HEAD) -> list[dict]:
    return [{"timestamp": ts, "input_length": n_in, "output_length": n_out, "hash_ids": h}
            for ts, n_in, n_out, h in rows]


def _write(path, lines: list[dict], *, newline: str = "\n", bom: bool = False) -> str:
    text = "".join(json.dumps(x) + newline for x in lines)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return str(path)


@pytest.fixture(scope="module")
def tokens(embedded_model_path):
    from transformers import AutoTokenizer

    return Tokens(AutoTokenizer.from_pretrained(embedded_model_path), source="test")


def _planned(path: str, tokens, n: int | None = None, **opts):
    w = make_workload(WorkloadOptions(dataset_name=opts.pop("dataset_name", "timed_trace"), dataset_path=path,
                                      **opts))
    n = n or w.default_num_prompts()
    w.prepare(tokens, n)
    return w, w.level(n).initial()


def test_lmbench_gmi_trace_newest_first_ns_strings(tmp_path, tokens):
    # Source: LMCache/LMBench 3-workloads/trace-replayer/traces/gmi_trace.jsonl (newest first, ns strings);
    # LMBench's trace-replayer-qa.py sorts it and counts from the earliest (/ 1e9): so do we.
    path = _write(tmp_path / "gmi_trace.jsonl", _gmi_lines())
    w, planned = _planned(path, tokens, timed_trace_sec_multiplier=1e-9)
    stamps = sorted(Decimal(ts) for ts, *_ in GMI_HEAD)
    expected = [float(ts - stamps[0]) * 1e-9 for ts in stamps]
    assert [p.at_s for p in planned] == pytest.approx(expected, abs=1e-9)
    assert planned[-1].at_s == pytest.approx(289.986868560)  # the trace's span, not a burst at 0
    # request i is the i-th earliest line: the file's last line first
    assert [p.request.max_tokens for p in planned] == [n_out for _, _, n_out, _ in reversed(GMI_HEAD)]
    assert [len(p.request.prompt_token_ids) for p in planned] == [n_in for _, n_in, _, _ in reversed(GMI_HEAD)]
    # and the run says the file was not in time order
    assert w.report()["out_of_order"] == 11
    assert w.notes[0] == "11 of 12 trace lines out of order, newest first: sent by timestamp"
    assert "notes" in w.to_json() and w.to_json()["notes"] == w.notes


def test_lmbench_gmi_trace_read_as_seconds_is_refused_naming_nanoseconds(tmp_path):
    # Source: the same gmi_trace.jsonl given to --dataset-name timed_trace without a multiplier (vLLM's
    # default reads timestamps as seconds): ~290 s of nanoseconds would be a level of centuries.
    path = _write(tmp_path / "gmi_trace.jsonl", _gmi_lines())
    with pytest.raises(BadRequestError) as exc:
        load_spec(workload=WorkloadOptions(dataset_name="timed_trace", dataset_path=path))
    message = str(exc.value)
    assert "\n" not in message
    assert "nanoseconds since 1970" in message and "--timed-trace-sec-multiplier 1e-9" in message, message


def test_lmbench_ns_strings_one_nanosecond_apart_are_read_exactly(tmp_path, tokens):
    # Source: gmi_trace.jsonl's timestamp shape ("1753780607550317897"): 19 digits do not fit a double
    # (its step there is 256 ns), so lines 1 ns apart must not become ties.
    rows = [(str(1753780607550317897 - k), 16, 2 + k, [1]) for k in range(3)]  # newest first
    path = _write(tmp_path / "ns.jsonl", _gmi_lines(rows))
    _, planned = _planned(path, tokens, timed_trace_sec_multiplier=1e-9)
    assert [p.request.max_tokens for p in planned] == [4, 3, 2]
    assert [p.at_s for p in planned] == pytest.approx([0.0, 1e-9, 2e-9], abs=1e-13)


def test_lmbench_timestamps_as_numbers_and_strings_mixed(tmp_path, tokens):
    # Source: LMBench trace-replayer-qa.py reads `int(entry['timestamp']) if isinstance(..., str)`, and its
    # ADDING_NEW_TRACES.md allows "string or number": one file may hold both.
    lines = [{"timestamp": "3000", "input_length": 16, "output_length": 3, "hash_ids": [1]},
             {"timestamp": 1000, "input_length": 16, "output_length": 1, "hash_ids": [1]},
             {"timestamp": "2000.5", "input_length": 16, "output_length": 2, "hash_ids": [1]}]
    path = _write(tmp_path / "mixed.jsonl", lines)
    w, planned = _planned(path, tokens, dataset_name="mooncake_trace", timed_trace_chunk_hash_size=16)
    assert [p.request.max_tokens for p in planned] == [1, 2, 3]
    assert [p.at_s for p in planned] == pytest.approx([0.0, 1.0005, 2.0])
    assert w.report()["out_of_order"] == 2
    bad = _write(tmp_path / "bad.jsonl", lines[:2] + [{"timestamp": "soon", "input_length": 16, "output_length": 2}])
    with pytest.raises(BadRequestError, match=r"bad\.jsonl: line 3 timestamp 'soon' is not a number"):
        make_workload(WorkloadOptions(dataset_name="mooncake_trace", dataset_path=bad))


def test_mooncake_fast25_ms_lines_read_as_seconds_are_refused(tmp_path, tokens):
    # Source: Mooncake FAST'25 traces (kvcache-ai/Mooncake FAST25-release; lines as AIPerf's
    # docs/benchmark_modes/trace_replay.md quotes them): timestamp in ms. As mooncake_trace they replay in
    # ms; given to timed_trace (seconds) an hour of them would be a level of 42 days: refused, with the unit.
    lines = [{"timestamp": 0, "input_length": 655, "output_length": 52, "hash_ids": [46, 47]},
             {"timestamp": 10535, "input_length": 672, "output_length": 26, "hash_ids": [46, 47]},
             {"timestamp": 27482, "input_length": 655, "output_length": 52, "hash_ids": [46, 47]},
             {"timestamp": 3599998, "input_length": 700, "output_length": 8, "hash_ids": [48, 49]}]
    path = _write(tmp_path / "conversation_trace.jsonl", lines)
    spec = load_spec(workload=WorkloadOptions(dataset_name="mooncake_trace", dataset_path=path))
    assert spec.prompts.send_times() == pytest.approx([0.0, 10.535, 27.482, 3599.998])
    assert spec.prompts.notes == []  # in time order: nothing to say
    with pytest.raises(BadRequestError) as exc:
        load_spec(workload=WorkloadOptions(dataset_name="timed_trace", dataset_path=path))
    assert "41.7 days" in str(exc.value) and "0.001 ms" in str(exc.value), str(exc.value)


def test_aiperf_mooncake_fixture_blank_line_is_no_request(tmp_path):
    # Source: ai-dynamo/aiperf tests/unit/dataset/loader/test_mooncake_trace.py,
    # test_load_dataset_skips_empty_lines (keys in their order, an empty line between): 2 requests, and
    # --num-prompts 3 is refused before any engine starts.
    content = ['{"input_length": 100, "output_length": 50, "hash_ids": [123], "timestamp": 1000}', "",
               '{"input_length": 200, "output_length": 75, "hash_ids": [456], "timestamp": 2000}']
    path = tmp_path / "aiperf.jsonl"
    path.write_text("\n".join(content) + "\n")
    spec = load_spec(workload=WorkloadOptions(dataset_name="mooncake_trace", dataset_path=str(path)))
    assert spec.levels[0].num_prompts == 2 and spec.prompts.send_times() == pytest.approx([0.0, 1.0])
    with pytest.raises(BadRequestError, match=r"--num-prompts 3 is more than the 2 requests of aiperf\.jsonl"):
        load_spec(workload=WorkloadOptions(dataset_name="mooncake_trace", dataset_path=str(path)), num_prompts=3)


def test_aiperf_fixed_schedule_ties_keep_file_order(tmp_path, tokens):
    # Source: ai-dynamo/aiperf timing/strategies/fixed_schedule.py sorts with Python's stable sort
    # (`schedule.sort(key=timestamp_ms)`); LMBench's sort_traces.py reports "requests have duplicate
    # timestamps" in real traces. Equal timestamps keep the file's order; the rest are sorted.
    lines = [{"timestamp": t, "input_length": 16, "output_length": n, "hash_ids": [1]}
             for t, n in ((2000, 1), (1000, 2), (1000, 3), (0, 4), (1000, 5))]
    path = _write(tmp_path / "ties.jsonl", lines)
    w, planned = _planned(path, tokens, dataset_name="mooncake_trace", timed_trace_chunk_hash_size=16)
    assert [p.request.max_tokens for p in planned] == [4, 2, 3, 5, 1]
    assert [p.at_s for p in planned] == pytest.approx([0.0, 1.0, 1.0, 1.0, 2.0])
    assert w.report()["timestamp_ties"] == 2 and w.report()["out_of_order"] == 4


def test_windows_copy_with_bom_and_crlf_newest_first(tmp_path, tokens):
    # Source: issue 21 ("files as users have them": a BOM, CRLF line ends) on gmi_trace.jsonl's shape, as a
    # Windows editor saves it. DuckDB's read_json takes both; the order rule still applies.
    path = _write(tmp_path / "gmi_windows.jsonl", _gmi_lines(GMI_HEAD[:4]), newline="\r\n", bom=True)
    w, planned = _planned(path, tokens, timed_trace_sec_multiplier=1e-9)
    assert [p.request.max_tokens for p in planned] == [2, 77, 74, 84]
    assert planned[0].at_s == 0.0 and planned[-1].at_s == pytest.approx(52.232892711)
    assert "newest first" in w.notes[0]


def _reply() -> Reply:
    return Reply(parts=timed([(0.0, chat(role="assistant", content="")), (1.0, chat(" a", usage=usage(1))),
                              (2.0, chat(" b", usage=usage(2), finish="length")), (2.0, usage_only(2))]))


def test_num_prompts_beyond_the_trace_is_refused_before_the_engine_starts(tokentop_cmd, cli_env, tmp_path,
                                                                          embedded_model_path):
    # Source: issue 21 item 5 — `--num-prompts 500` on a 12-line trace started the engine, failed after
    # 28 s with exit 1 and stored a failed run. Now: exit 2, one line, no request, nothing stored.
    path = _write(tmp_path / "t.jsonl", _gmi_lines())
    db = tmp_path / "t.duckdb"
    with ScriptServer([_reply()]) as server:
        proc = subprocess.run([*tokentop_cmd, "load", "--engine", "openai", "--endpoint", server.url,
                               "--tokenizer", embedded_model_path, "--dataset-name", "timed_trace",
                               "--dataset-path", path, "--timed-trace-sec-multiplier", "1e-9",
                               "--num-prompts", "500", "--db", str(db)],
                              capture_output=True, text=True, env=cli_env, timeout=240)
        received = list(server.received)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(err) == 1 and "--num-prompts 500 is more than the 12 requests of t.jsonl" in err[0], err
    assert len(err[0]) <= 200 and received == []
    if db.exists():
        from data.store.database import Store

        with Store(db) as store:
            assert store.list_runs() == []


def test_load_says_a_trace_was_out_of_order_and_stores_it(tokentop_cmd, cli_env, tmp_path, embedded_model_path):
    # Source: LMBench's gmi_trace.jsonl shape (newest first, ns strings), its first 4 lines compressed
    # (x 1e-12: 52 s of trace in 52 ms). `tokentop load` prints the note and stores it with the run.
    path = _write(tmp_path / "gmi4.jsonl", _gmi_lines(GMI_HEAD[:4]))
    db = tmp_path / "n.duckdb"
    with ScriptServer([_reply()]) as server:
        proc = subprocess.run([*tokentop_cmd, "load", "--engine", "openai", "--endpoint", server.url,
                               "--tokenizer", embedded_model_path, "--dataset-name", "timed_trace",
                               "--dataset-path", path, "--timed-trace-sec-multiplier", "1e-12",
                               "--output-len", "2", "--db", str(db)],
                              capture_output=True, text=True, env=cli_env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    note = "3 of 4 trace lines out of order, newest first: sent by timestamp"
    said = [line for line in proc.stderr.splitlines() if note in line]
    assert said == [f"tokentop: {note}"] and len(said[0]) <= 80, proc.stderr
    assert note in " ".join(proc.stdout.split())  # under the table too (wrapped at the terminal's width)
    from data.store.database import Store

    with Store(db) as store:
        (run,) = [r for r in store.list_runs() if r["kind"] == "load"]
        stored = store.get_run(run["run_id"])
        assert stored["summary"]["workload"]["out_of_order"] == 3
        assert note in stored["suite_json"]["prompts"]["notes"]
        rows = store.get_requests(run["run_id"])
        scheduled = [r["send_offset_s"] - r["send_lag_ms"] / 1000 for r in rows]
        assert scheduled == pytest.approx([0.0, 0.027914598, 0.052171341, 0.052232893], abs=2e-3)
