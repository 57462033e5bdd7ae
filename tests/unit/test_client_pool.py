"""Client processes (`--client-processes N`, engine.load.pool): a level shared among worker processes is
the same level as with one process — the same requests on the same schedule, the same stored rows and
metric definitions — and stopping it, or losing a worker, leaves nothing behind and says what happened.

Real parts: a scripted OpenAI-compatible server on loopback (tests/support/fake_openai.py), spawned worker
processes, real DuckDB files, the real `tokentop load` command under signals."""

from __future__ import annotations

import contextvars
import json
import os
import signal
import subprocess
import threading
import time

import psutil
import pytest

from data.jobs.load import LoadSpec, run_load
from data.jobs.session import Session
from data.store.database import Store
from engine.load import LoadLevel, arrival_offsets
from engine.load.pool import SharedCap, default_client_processes, split_level
from engine.measure.metrics import aggregate, request_metrics
from engine.workloads.synthetic import RandomWorkload
from tests.support.fake_openai import Reply, ScriptServer, chat, timed, usage, usage_only
from tests.support.prompts import PromptSource
from tests.support.serve_support import wait_until_gone
from tests.support.wait import wait_until


def _reply(tokens: int = 3, gap_ms: float = 5.0) -> Reply:
    """A chat stream: a role-only first event, then `tokens` one-token events `gap_ms` apart with usage."""
    events = [(0.0, chat(role="assistant", content=""))]
    for i in range(tokens):
        events.append(((i + 1) * gap_ms, chat(f" w{i}", usage=usage(i + 1),
                                              finish="length" if i == tokens - 1 else None)))
    events.append((tokens * gap_ms, usage_only(tokens)))
    return Reply(parts=timed(events))


def _run(server: ScriptServer, db, spec: LoadSpec, **engine):
    """`spec` through run_load on a Session of the openai engine at `server` (with `engine`'s further
    settings) recording to the database `db`; returns (the store, the LoadOutcome)."""
    store = Store(db)
    session = Session(store, dict(engine="openai", endpoint=server.url, **engine))
    session.start_engine()
    try:
        outcome = run_load(session, spec)
    finally:
        session.shutdown()
    return store, outcome


def _spawned_children() -> set[int]:
    return {c.pid for c in psutil.Process().children(recursive=True)
            if any("spawn_main" in part for part in _cmdline(c))}


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def test_a_fixed_schedule_over_two_processes_is_the_same_level_as_over_one(tmp_path):
    """Poisson arrivals (seeded): with 1 and with 2 client processes the level sends the same requests on
    the same schedule, stores the same rows, and its figures are vLLM's definitions over those rows."""
    levels = [LoadLevel(request_rate=40.0, num_prompts=24)]
    results = {}
    with ScriptServer([_reply()]) as server:
        for n in (1, 2):
            server.received.clear()
            spec = LoadSpec(levels=levels, prompts=PromptSource(input_len=8, output_len=3), pattern="rate",
                            seed=5, client_processes=n)
            store, outcome = _run(server, tmp_path / f"p{n}.duckdb", spec)
            (level,) = outcome.levels
            results[n] = (store, level, [json.dumps(r, sort_keys=True) for r in server.received if r.get("messages")])
    one, two = results[1], results[2]
    for _store, level, _ in (one, two):
        assert level.outcome.status == "completed"
        assert level.summary["overall"]["completed"] == 24 and level.summary["overall"]["failed"] == 0
    # The server got the same 24 requests from both.
    assert sorted(one[2]) == sorted(two[2]) and len(one[2]) == 24

    rows = {n: results[n][0].get_requests(results[n][1].run_id) for n in (1, 2)}
    assert [r["request_index"] for r in rows[1]] == [r["request_index"] for r in rows[2]] == list(range(24))
    same = ("prompt", "target_tokens", "output_tokens", "input_tokens", "success", "finish_reason", "output_text",
            "case_id", "rep", "token_count_source", "prompt_form", "first_chunk_empty", "error_kind")
    for a, b in zip(rows[1], rows[2]):
        assert {k: a[k] for k in same} == {k: b[k] for k in same}
    chunks = {n: results[n][0].get_chunks(results[n][1].run_id) for n in (1, 2)}
    assert [(c["request_index"], c["chunk_index"], c["tokens"]) for c in chunks[1]] == \
        [(c["request_index"], c["chunk_index"], c["tokens"]) for c in chunks[2]]
    assert len(chunks[1]) == 24 * 4
    # The same arrival process: each request's scheduled send (stored send offset - send lag) is the
    # seeded Poisson schedule, in both runs.
    expected = arrival_offsets(24, 40.0, 1.0, seed=5)
    for n in (1, 2):
        scheduled = [r["send_offset_s"] - r["send_lag_ms"] / 1000 for r in rows[n]]
        assert scheduled == pytest.approx(expected, abs=1e-3), n
        assert max(r["send_lag_ms"] for r in rows[n]) < 500  # and they went out on it
    # The figures are vLLM's definitions over the stored rows, computed the same way for both.
    for n in (1, 2):
        store, level, _ = results[n]
        overall = level.summary["overall"]
        ttfts = [r["ttft_ms"] for r in rows[n]]
        assert overall["mean_ttft_ms"] == pytest.approx(sum(ttfts) / len(ttfts), rel=1e-6)
        first = {c["request_index"]: c["t_ns"] for c in chunks[n] if c["chunk_index"] == 0}
        assert all(r["ttft_ms"] == pytest.approx(first[r["request_index"]] / 1e6) for r in rows[n])
        assert overall["request_throughput"] == pytest.approx(24 / level.outcome.duration_s, rel=1e-6)
        recomputed = aggregate([request_metrics(r) for r in level.outcome.records], level.outcome.duration_s)
        assert overall["mean_tpot_ms"] == pytest.approx(recomputed["mean_tpot_ms"])
        assert overall["total_output_tokens"] == 72
    assert set(one[1].summary["overall"]) == set(two[1].summary["overall"])
    # ... and two processes really drove it: each its CPU figures, its own pid, none of them this one.
    cpu1 = one[1].summary["client_health"]["client_cpu"]
    cpu2 = two[1].summary["client_health"]["client_cpu"]
    assert len(cpu1) == 1 and cpu1[0]["pid"] == os.getpid()
    assert len(cpu2) == 2 and len({c["pid"] for c in cpu2} | {os.getpid()}) == 3
    assert two[1].summary["client_health"]["client_processes"] == 2
    stored = one[0].get_run(one[1].run_id)["suite_json"], two[0].get_run(two[1].run_id)["suite_json"]
    assert (stored[0]["client_processes"], stored[1]["client_processes"]) == (1, 2)
    assert not _spawned_children()  # the job's workers are gone with it
    for store, _, _ in results.values():
        store.close()


def test_conversations_are_split_by_conversation_and_follow_ups_numbered_once(tmp_path):
    """--multi-turn over 2 processes: every conversation's turns go out from one process with the replies
    so far in their history, and the follow-ups are numbered once each after the first turns."""
    workload = RandomWorkload(8, 3, turns=3, seed=1)
    spec = LoadSpec(levels=[LoadLevel(max_concurrency=2, num_prompts=4)], prompts=workload, client_processes=2)
    with ScriptServer([_reply()]) as server:
        store, outcome = _run(server, tmp_path / "conv.duckdb", spec)
        received = [body for body in server.received if body.get("messages")]
    (level,) = outcome.levels
    rows = store.get_requests(level.run_id)
    assert level.outcome.status == "completed" and len(rows) == 12
    assert sorted(r["request_index"] for r in rows) == list(range(12))
    assert all(r["request_index"] < 4 for r in rows if r["turn_index"] == 0)
    by_conv: dict[int, list[int]] = {}
    for r in rows:
        by_conv.setdefault(r["conversation_id"], []).append(r["turn_index"])
    assert {c: sorted(t) for c, t in by_conv.items()} == {c: [0, 1, 2] for c in range(4)}
    # A later turn carries the model's actual replies so far.
    lengths = sorted(len(body["messages"]) for body in received)
    assert lengths == [1] * 4 + [3] * 4 + [5] * 4
    assert all(m["content"] == " w0 w1 w2" for body in received for m in body["messages"] if m["role"] == "assistant")
    store.close()


def test_a_worker_that_dies_is_said_and_its_requests_fail_as_client(tmp_path):
    """SIGKILL one of 2 workers mid-level: one line says so, its requests that never came back are failed
    with kind "client", every planned request has a row; the next level runs on the one left."""
    levels = [LoadLevel(max_concurrency=4, num_prompts=16), LoadLevel(max_concurrency=4, num_prompts=8)]
    spec = LoadSpec(levels=levels, prompts=PromptSource(input_len=8, output_len=10), client_processes=2)
    killed: list[int] = []

    def killer(server: ScriptServer) -> None:
        wait_until(lambda: len(server.received) >= 6, 60, quiet=True)  # then kill one, whatever came
        pids = sorted(_spawned_children())
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    with ScriptServer([_reply(tokens=10, gap_ms=40)]) as server:
        thread = threading.Thread(target=killer, args=(server,), daemon=True)
        thread.start()
        store, outcome = _run(server, tmp_path / "died.duckdb", spec)
        thread.join(5)
    assert killed
    first, second = outcome.levels
    health = first.summary["client_health"]
    lines = [w for w in health["warnings"] if w.startswith("client process")]
    assert len(lines) == 1 and f"pid {killed[0]}" in lines[0] and "SIGKILL" in lines[0], health["warnings"]
    rows = store.get_requests(first.run_id)
    assert len(rows) == 16
    lost = [r for r in rows if not r["success"]]
    assert lost and all(r["error_kind"] == "client" for r in lost)
    assert first.summary["overall"]["failures_by_kind"] == {"client": len(lost)}
    assert second.outcome.status == "completed" and second.summary["overall"]["completed"] == 8
    assert second.summary["client_health"]["client_processes"] == 1
    store.close()


def test_the_in_process_engine_cannot_be_shared(tmp_path, capsys):
    from tui.cli import main

    code = main(["load", "--db", str(tmp_path / "x.duckdb"), "--client-processes", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs --engine openai" in err[0], err


@pytest.mark.parametrize("signum", [
    pytest.param(signal.SIGINT, id="ctrl-c"),
    pytest.param(signal.SIGHUP, id="ssh-dropped"),
    pytest.param(signal.SIGTERM, id="sigterm"),
])
def test_stopping_load_with_workers_stores_aborted_and_leaves_no_process(tokentop_cmd, cli_env, tmp_path, signum):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it), a dropped SSH session (SIGHUP,
    the group too) or SIGTERM (the main process only) while 2 workers stream: the level is stored as
    aborted with what finished, the command exits 130, and no process is left."""
    db = tmp_path / "stop.duckdb"
    with ScriptServer([_reply(tokens=40, gap_ms=100)]) as server:
        proc = subprocess.Popen([*tokentop_cmd, "load", "--engine", "openai", "--endpoint", server.url,
                                 "--client-processes", "2", "--concurrency", "4", "--num-prompts", "8",
                                 "--input-len", "8", "--output-len", "40", "--db", str(db)],
                                env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        children: set[int] = set()
        try:
            def four_sent_or_ended() -> bool:
                children.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
                return len(server.received) >= 4 or proc.poll() is not None

            wait_until(four_sent_or_ended, 120, quiet=True)  # the assertion below says which
            children |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
            assert len(server.received) >= 4, proc.stderr.read() if proc.poll() is not None else "no requests"
            if signum == signal.SIGTERM:
                os.kill(proc.pid, signum)
            else:
                os.killpg(proc.pid, signum)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        err = proc.stderr.read()
    assert rc == 130, err[-2000:]
    assert "Traceback" not in err and "2 client processes" in err
    assert len(children) >= 2  # the two workers (and multiprocessing's resource tracker)
    assert not wait_until_gone(children, 10), f"processes left: {children}"
    with Store(db) as store:
        (run,) = store.list_runs()
        assert run["status"] == "aborted"
        rows = store.get_requests(run["run_id"])
        assert rows and all(r["error_kind"] in (None, "aborted") for r in rows)
        assert any(r["error_kind"] == "aborted" for r in rows)


def test_split_level_deals_round_robin_and_keeps_the_schedule():
    # 5 users over 2 processes: the requests dealt round robin; the 5 are one cap over both (SharedCap).
    shares = split_level(LoadLevel(max_concurrency=5, num_prompts=15), [0.0] * 15, 2)
    assert [len(s.positions) for s in shares] == [8, 7]
    assert sorted(shares[0].positions + shares[1].positions) == list(range(15))
    # 1 user over 2 processes: one process holds them all, the other sits the level out (one user never
    # hops between processes through the shared semaphore).
    shares = split_level(LoadLevel(max_concurrency=1, num_prompts=4), [0.0] * 4, 2)
    assert [s.positions for s in shares] == [[0, 1, 2, 3], []]
    # 2 users over 3 processes: two processes, round robin; the third sits it out.
    shares = split_level(LoadLevel(max_concurrency=2, num_prompts=5), [0.0] * 5, 3)
    assert [s.positions for s in shares] == [[0, 2, 4], [1, 3], []]
    # A fixed schedule: sorted by send time and dealt round robin; together exactly the one schedule.
    offsets = arrival_offsets(9, 3.0, 1.0, seed=2)
    shares = split_level(LoadLevel(request_rate=3.0, num_prompts=9), offsets, 2)
    assert shares[0].positions == [0, 2, 4, 6, 8] and shares[1].positions == [1, 3, 5, 7]
    assert sorted(offsets[i] for s in shares for i in s.positions) == sorted(offsets)
    # Offsets out of order are dealt by send time.
    shares = split_level(LoadLevel(self_timed=True, max_concurrency=3, num_prompts=4), [0.3, 0.1, 0.2, 0.0], 3)
    assert [s.positions for s in shares] == [[3, 0], [1], [2]]
    shares = split_level(LoadLevel(self_timed=True, max_concurrency=1, num_prompts=4), [0.3, 0.1, 0.2, 0.0], 3)
    assert [s.positions for s in shares] == [[3, 1, 2, 0], [], []]


def test_the_shared_cap_gives_a_dead_workers_slots_back_and_resets_per_level():
    """SharedCap (the one --max-concurrency of every client process): a worker that died holding slots
    does not shrink the cap for the others, and a level never inherits slots from the one before."""
    import multiprocessing

    cap = SharedCap(multiprocessing.get_context("spawn"), 2)
    cap.reset(2)
    assert cap.acquire(0, None) and cap.acquire(0, None)
    assert not cap.acquire(1, None)  # the cap is the level's, whichever process asks
    assert cap.forget(0) == 2  # worker 0 died holding both: they go back
    assert cap.acquire(1, None) and cap.acquire(1, None) and not cap.acquire(1, None)
    cap.release(1)
    cap.reset(3)  # the next level: 3 slots, none left over from this one
    assert [cap.acquire(0, None) for _ in range(4)] == [True, True, True, False]


def _trace(tmp_path, timestamps_ms, output_lengths, name="trace.jsonl"):
    """A Mooncake-format trace (FAST'25: timestamp ms, input_length, output_length, hash_ids) in the given
    line order."""
    path = tmp_path / name
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": 24, "output_length": n, "hash_ids": [1, 2]})
                            + "\n" for t, n in zip(timestamps_ms, output_lengths)))
    return path


def _trace_spec(path, processes, max_concurrency=None):
    from data.jobs.load import load_spec
    from engine.workloads import WorkloadOptions

    spec = load_spec(workload=WorkloadOptions(dataset_name="mooncake_trace", dataset_path=str(path),
                                              timed_trace_chunk_hash_size=16), max_concurrency=max_concurrency)
    spec.client_processes = processes
    return spec


def _run_tokenized(server: ScriptServer, db, spec: LoadSpec, tokenizer: str):
    """As _run, with the model's tokenizer (a trace's prompts are token ids)."""
    return _run(server, db, spec, tokenizer=tokenizer)


def test_a_trace_out_of_order_has_one_schedule_over_one_and_two_processes(tmp_path, embedded_model_path):
    """A trace whose lines are not in time order (issue 21: one process sent it in file order and blamed
    the late lines on the client, the pool sorted it): with 1 and with 2 client processes every request is
    scheduled at its timestamp counted from the earliest, request i being the i-th earliest, and goes out
    on it."""
    stamps = [0, 450, 150, 300, 600, 75, 525, 225]  # ms; sorted: 0 75 150 225 300 450 525 600
    path = _trace(tmp_path, stamps, [2 + i for i in range(len(stamps))])
    expected = [t / 1000 for t in sorted(stamps)]
    scheduled, lengths = {}, {}
    with ScriptServer([_reply(tokens=2, gap_ms=2)]) as server:
        for n in (1, 2):
            store, outcome = _run_tokenized(server, tmp_path / f"t{n}.duckdb", _trace_spec(path, n),
                                            embedded_model_path)
            (level,) = outcome.levels
            assert level.outcome.status == "completed", level.outcome.error
            rows = store.get_requests(level.run_id)
            assert [r["request_index"] for r in rows] == list(range(len(stamps)))
            scheduled[n] = [r["send_offset_s"] - r["send_lag_ms"] / 1000 for r in rows]
            lengths[n] = [r["target_tokens"] for r in rows]
            # sent on that schedule: no request waited behind a later one
            assert max(r["send_lag_ms"] for r in rows) < 60, (n, [r["send_lag_ms"] for r in rows])
            assert level.summary["client_health"]["client_processes"] == n
            store.close()
    assert scheduled[1] == pytest.approx(expected, abs=2e-3)
    assert scheduled[2] == pytest.approx(scheduled[1], abs=2e-3)
    # request i is the i-th earliest line (output_length 2 + its line number - 1)
    by_time = [2 + stamps.index(t) for t in sorted(stamps)]
    assert lengths[1] == lengths[2] == by_time


class _CountingServer(ScriptServer):
    """The scripted server, counting the streams it has open (a request from its headers to the chunked
    body's last chunk): what a server sees in flight, whichever client process sent them."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.in_flight = 0
        self.peak = 0
        self.slow_in_flight = 0
        self.slow_peak = 0

    def _reply(self) -> Reply:
        body = self.received[-1]
        reply = super()._reply()
        slow = body.get("max_tokens", 0) >= 10
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if slow:
            self.slow_in_flight += 1
            self.slow_peak = max(self.slow_peak, self.slow_in_flight)
        _OPEN.get().append(slow)
        return reply

    async def _handle(self, reader, writer):
        opened: list[bool] = []  # this connection's streams (a task each: the context is its own)
        _OPEN.set(opened)
        server = self

        class Writer:  # a stream ends with the chunked body's last chunk
            def __getattr__(self, name):
                return getattr(writer, name)

            def write(self, data):
                if data == b"0\r\n\r\n" and opened:
                    slow = opened.pop(0)
                    server.in_flight -= 1
                    server.slow_in_flight -= slow
                writer.write(data)

        await super()._handle(reader, Writer())


_OPEN: contextvars.ContextVar = contextvars.ContextVar("open_streams")


def test_one_max_concurrency_is_shared_by_every_client_process(tmp_path, embedded_model_path):
    """--max-concurrency 2 over 2 client processes is one cap of 2 (issue 21: it was split 1 + 1, so the
    process holding the slow requests sent them one by one while the other, done with its fast ones,
    idled). Every request is due at once; the even lines (dealt to process 1) are slow, the odd ones fast.
    The server never sees more than 2 in flight, and once the fast ones are done it sees 2 slow ones at
    once."""
    n = 12
    path = _trace(tmp_path, [0] * n, [20 if i % 2 == 0 else 2 for i in range(n)])

    def reply(i: int) -> Reply:
        slow = server.received[i].get("max_tokens", 0) >= 10
        return _reply(tokens=2, gap_ms=150 if slow else 1)

    with _CountingServer(reply) as server:
        store, outcome = _run_tokenized(server, tmp_path / "cap.duckdb", _trace_spec(path, 2, max_concurrency=2),
                                        embedded_model_path)
        (level,) = outcome.levels
        assert level.outcome.status == "completed" and level.summary["overall"]["completed"] == n
        assert level.summary["client_health"]["client_processes"] == 2
        assert server.peak == 2  # the cap, never more
        assert server.slow_peak == 2  # both slots on the slow requests once the fast ones were done
        assert server.in_flight == 0
        rows = store.get_requests(level.run_id)
        # waiting for a slot is the client's own queue: stored apart, and TTFT leaves it out (vLLM #54101)
        waited = [r for r in rows if (r["queue_wait_ms"] or 0) > 100]
        assert waited and all(r["ttft_ms"] < r["queue_wait_ms"] for r in waited)
        store.close()


def test_one_user_over_two_processes_is_driven_by_one(tmp_path):
    """--concurrency 1,3 over 2 client processes: the level with one user is sent by one process alone
    (the other sits it out: one user never hops between processes through the shared semaphore), one
    request at a time; the level with 3 users uses both processes under their one cap of 3."""
    levels = [LoadLevel(max_concurrency=1, num_prompts=4), LoadLevel(max_concurrency=3, num_prompts=6)]
    spec = LoadSpec(levels=levels, prompts=PromptSource(input_len=8, output_len=3), client_processes=2)
    with _CountingServer([_reply(tokens=3, gap_ms=20)]) as server:
        store, outcome = _run(server, tmp_path / "one.duckdb", spec)
        assert server.in_flight == 0 and server.peak <= 3
    one, three = outcome.levels
    assert [lv.summary["overall"]["completed"] for lv in (one, three)] == [4, 6]
    assert one.summary["client_health"]["client_processes"] == 1
    assert len(one.summary["client_health"]["client_cpu"]) == 1
    assert three.summary["client_health"]["client_processes"] == 2
    assert len(three.summary["client_health"]["client_cpu"]) == 2
    rows = sorted(store.get_requests(one.run_id), key=lambda r: r["send_offset_s"])
    ends = [r["send_offset_s"] + r["e2el_ms"] / 1000 for r in rows]
    assert all(b["send_offset_s"] >= a_end - 1e-3 for a_end, b in zip(ends, rows[1:]))  # one at a time
    store.close()


def test_default_is_one_process_per_two_idle_cores_capped():
    assert default_client_processes(2, 0.0) == 1  # this 2-core box
    assert default_client_processes(2, 1.5) == 1
    assert default_client_processes(16, 0.0) == 8
    assert default_client_processes(16, 10.2) == 2
    assert default_client_processes(64, 0.0) == 8  # capped
    assert default_client_processes(1, 4.0) == 1


def test_perf_counter_is_one_clock_for_every_process():
    """The workers' timestamps and the parent's level start must lie on one time line."""
    import subprocess as sp
    import sys

    info = time.get_clock_info("perf_counter")
    if sys.platform.startswith("linux"):
        assert info.implementation == "clock_gettime(CLOCK_MONOTONIC)"
    before = time.perf_counter_ns()
    child = int(sp.run([sys.executable, "-c", "import time; print(time.perf_counter_ns())"], capture_output=True,
                       text=True, check=True).stdout)
    after = time.perf_counter_ns()
    assert before < child < after


def test_ctrl_c_while_the_client_processes_start_is_a_plain_stop(tokentop_cmd, cli_env, tmp_path):
    """Ctrl-C to the whole group while the workers are still starting (importing): tokentop stops as it
    would with one process — exit 130, nothing stored, no error about a worker, no process left."""
    db = tmp_path / "early.duckdb"
    with ScriptServer([_reply()]) as server:
        proc = subprocess.Popen([*tokentop_cmd, "load", "--engine", "openai", "--endpoint", server.url,
                                 "--client-processes", "2", "--concurrency", "4", "--num-prompts", "8",
                                 "--db", str(db)], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        children: set[int] = set()
        try:
            while True:
                line = proc.stderr.readline()
                assert line, "tokentop ended before starting its client processes"
                if "2 client processes" in line:
                    break
            wait_until(lambda: _spawned_of(proc.pid), 30, quiet=True)  # asserted below
            children = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
            assert children, "no client process was started"
            os.killpg(proc.pid, signal.SIGINT)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.stdout.read(), proc.stderr.read()
    assert rc == 130, err
    assert "client process" not in err + out and "Traceback" not in err
    assert not wait_until_gone(children, 10)
    with Store(db) as store:
        assert [r for r in store.list_runs() if r["kind"] == "load"] == []


def _spawned_of(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)
                if any("spawn_main" in part for part in _cmdline(c))]
    except psutil.Error:
        return []


def test_the_parent_counts_tokens_while_client_processes_stream(tmp_path):
    """The Load screen's progress counts tokens as they stream (engine.measure.progress.LevelProgress).
    With --client-processes 2 the streams are in the workers: they report what their requests in flight
    have streamed, so the parent's count moves before any request ends (it stood still until one did)."""
    from engine.orchestrator import JobStarted

    spec = LoadSpec(levels=[LoadLevel(max_concurrency=2, num_prompts=2)],
                    prompts=PromptSource(input_len=8, output_len=60), client_processes=2)
    seen: list = []
    with ScriptServer([_reply(tokens=60, gap_ms=40)]) as server:
        store = Store(tmp_path / "stream.duckdb")
        session = Session(store, dict(engine="openai", endpoint=server.url))
        session.start_engine()
        session.orchestrator.subscribe(lambda event: seen.append(event.job) if isinstance(event, JobStarted) else None)
        ran = threading.Thread(target=run_load, args=(session, spec), daemon=True)
        try:
            ran.start()
            job = wait_until(lambda: seen and seen[0], 60, "the load job")
            mid = wait_until(lambda: job.live.streamed_tokens() >= 10 and job.live.completed == 0 and (
                job.live.streamed_tokens(),), 60, lambda: f"tokens mid-stream (live {job.live.snapshot()})")
            assert mid[0] >= 10
            ran.join(120)
            assert not ran.is_alive() and job.live.completed == 2
        finally:
            session.shutdown()
            store.close()
